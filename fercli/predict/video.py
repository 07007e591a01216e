"""`fercli predict-video FILE...`: the faces in a video's frames, sampled at --fps (0: every
frame), each followed from frame to frame as a numbered track (fercli.faces.tracking).

Frames are decoded one at a time with PyAV (the `video` extra: `pip install 'fercli[video]'`)
and dropped once their faces are cut out, so a long video needs no more memory than a short
one (a track keeps running sums; only --timeline keeps each track's small probability curve).
Frames are turned as the video's display matrix says (a phone's portrait video).
Each sampled frame gives one row per face, left to right (as `predict-dir --faces detect`,
plus `time` in seconds, `frame`, the frame's number in the stream, and `track`, the person's
number in this video, from 0), or one `no_face` row; a file that cannot be opened, or whose
decoding breaks off, gives an `error` row with a one-line reason worded as predict-dir words a
bad photo's ("file not found", "not a video (or an unsupported format)", "empty file (0
bytes)"), and the run goes on with the next file. The output is written to a temporary file
and renamed at the end; so are --summary (per video and track: times, frames, mean
probabilities, dominant emotion) and --timeline (one panel per video and track). The format
of each is described in docs/video.md.
"""

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from fercli import defaults
from fercli.data.images import ImageError, is_empty_file, open_regular, read_error_reason
from fercli.errors import FercliError
from fercli.faces.align import align
from fercli.faces.detect import DEFAULT_DETECTOR, DEFAULT_MIN_FACE_SIZE, Face, detect_scaled
from fercli.faces.tracking import Tracker, TrackLog, iou
from fercli.predict.faces import COLUMNS as FACE_COLUMNS
from fercli.predict.faces import detector as make_detector
from fercli.predict.faces import face_columns, keep_faces, reset_detectors
from fercli.predict.output import (
    ENCODING,
    UNCERTAIN,
    CsvOut,
    abstain_rows,
    make_rows,
    output_format,
)
from fercli.progress import say
from fercli.util import atomic_path

# face (left to right in its frame) and track (the person, across frames), then the box...
COLUMNS = ("time", "frame", FACE_COLUMNS[0], "track", *FACE_COLUMNS[1:])


def smoothed_columns(classes, csv: bool) -> tuple[str, ...]:
    """The columns --smoothed-columns adds (after every other): CSV flattens the smoothed
    probabilities into smoothed_prob_<class>; JSON Lines keeps them as one object."""
    probs = tuple(f"smoothed_prob_{c}" for c in classes) if csv else ("smoothed_probabilities",)
    return ("smoothed_label", "smoothed_confidence", *probs)


def import_av():
    try:
        import av
    except ImportError:
        raise FercliError(
            "predict-video needs PyAV to decode videos: pip install 'fercli[video]' "
            "(or pip install av)."
        ) from None
    return av


def sampled_frames(path, fps: float):
    """(time in seconds, frame number, RGB Pillow image) for one frame every 1/fps seconds
    (fps 0: every frame), decoded as a stream."""
    av = import_av()
    open_regular(path).close()  # a missing file, a folder, a pipe: ImageError, as for photos
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ImageError("no video stream in the file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        next_t = 0.0
        for number, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else number / rate
            if fps > 0:
                if t + 1e-6 < next_t:
                    continue
                while next_t <= t + 1e-6:
                    next_t += 1.0 / fps
            yield t, number, upright(frame.to_image(), getattr(frame, "rotation", 0))


# The rotation a video's display matrix asks for (counter-clockwise degrees, as PyAV reads
# it; a phone's portrait video says -90) -> the Pillow transpose that shows it upright.
_TURNS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def upright(image, rotation) -> "Image.Image":
    """A frame as it is meant to be shown: turned by its display matrix's rotation."""
    turn = _TURNS.get(round(rotation or 0) % 360)
    return image.transpose(turn) if turn is not None else image


@dataclass
class VideoOptions:
    """What `fercli predict-video` does besides reading the videos (its options)."""

    fps: float = defaults.FPS  # frames sampled per second; 0: every frame
    detector: str = DEFAULT_DETECTOR
    provider: str = defaults.PROVIDER
    threads: int | None = None
    topk: int = defaults.TOPK
    min_face_score: float | None = defaults.MIN_FACE_SCORE  # None: the detector's own default
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    timeline: Path | str | None = None  # PNG: one panel per video and track
    summary: Path | str | None = None  # JSON: per video and track
    smooth: float = 0.0  # seconds: the time constant of each track's smoothing; 0: off
    smoothed_columns: bool = False  # the rows gain the smoothed label and probabilities
    track_gap: float = defaults.TRACK_GAP  # seconds a track waits for a face it has lost
    redetect: float = 0.0  # seconds between whole-frame detections; 0: every sampled frame
    abstain: float = defaults.ABSTAIN  # a face whose top probability is below it: label "uncertain"

    def check(self, output: Path) -> None:
        for name, value in (
            ("fps", self.fps),
            ("smooth", self.smooth),
            ("redetect", self.redetect),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise FercliError(f"--{name} must be 0 or more (got {value}).")
        if not (isinstance(self.abstain, (int, float)) and 0 <= self.abstain < 1):
            raise FercliError(f"--abstain must be at least 0 and below 1 (got {self.abstain}).")
        if not (math.isfinite(self.track_gap) and self.track_gap >= 0):
            raise FercliError(f"--track-gap must be 0 or more seconds (got {self.track_gap}).")
        if self.smoothed_columns and not self.smooth:
            raise FercliError("--smoothed-columns needs --smooth SECONDS (more than 0).")
        files = {"the output": output, "--summary": self.summary, "--timeline": self.timeline}
        for option, path in files.items():
            if path is not None and Path(path).is_dir():
                raise FercliError(f"{option} {path} is a folder: pass a file name.")
        if self.summary is not None and Path(self.summary).resolve() == output.resolve():
            raise FercliError("--summary must be another file than the output (-o).")


@dataclass
class VideoResult:
    output: Path
    videos: int
    frames: int  # sampled frames
    faces: int  # rows with a face
    no_face: int  # sampled frames without a face
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    timeline: Path | None = None
    summary: Path | None = None
    tracks: int = 0  # tracks, all videos together
    timeline_panels: list[str] = field(default_factory=list)  # each panel's title


def predict_video(
    paths, output, model=None, options: VideoOptions | None = None, *, engine: str = "local",
    ray_address: str | None = None, actors: int | None = None, threads_per_actor: int = 1,
    **changes,
):  # fmt: skip
    """Predict the emotion of every face in frames sampled from each video, and number the
    people (tracks). `options` (VideoOptions), or its fields as keywords; a VideoResult.
    engine "ray": one video per call of a Ray Data actor (fercli.predict.ray.video_logs), on
    the cluster at ray_address (None: a local one), the same rows in the same order."""
    start = time.perf_counter()
    options = replace(options or VideoOptions(), **changes)
    output = Path(output)
    options.check(output)
    if engine not in ("local", "ray"):
        raise FercliError(f"unknown engine {engine!r}: choose local or ray.")
    if engine == "ray":
        from fercli.predict import ray as ray_engine

        hint = "set --actors and --threads-per-actor"
        ray_engine.refuse_local_sizes(hint, threads=options.threads)
        ray_engine.import_ray()  # a missing extra is said before any work
    import_av()
    run = VideoRun(model, output, options)
    result = VideoResult(output, len(paths), 0, 0, 0)
    logs = []
    with atomic_path(output) as tmp, open(tmp, "w", newline="", **ENCODING) as f:
        run.fmt.start(f, new_file=True)
        if engine == "ray":
            with ray_engine.cluster(ray_address):
                logs = ray_engine.video_logs(
                    paths, run, f, result, model_path=run.onnx.path, output=output,
                    actors=actors, threads_per_actor=threads_per_actor,
                )  # fmt: skip
        else:
            for path in map(str, paths):
                logs.append(run.video(path, f, result))
                result.tracks += len(logs[-1].tracks)
    if options.summary:
        result.summary = write_summary(logs, Path(options.summary), options, run.classes)
    if options.timeline:
        result.timeline, result.timeline_panels = draw_timeline(
            logs, run.classes, Path(options.timeline)
        )
    result.seconds = time.perf_counter() - start
    return result


class VideoRun:
    """The models, output format and options of one predict_video call, and its loop over
    one video's frames."""

    def __init__(self, model, output: Path, options: VideoOptions):
        from fercli import registry
        from fercli.predict.bundled import model_path
        from fercli.predict.onnx_model import OnnxModel

        registry.get("detector", options.detector)
        self.options = options
        self.onnx = OnnxModel(model_path(model), options.provider, options.threads)
        self.classes, self.size = self.onnx.info.classes, self.onnx.info.image_size
        csv = output.suffix.lower() == ".csv"
        extra = COLUMNS + (smoothed_columns(self.classes, csv) if options.smoothed_columns else ())
        self.fmt = output_format(output, self.classes, options.topk, extra)
        reset_detectors()
        self.detector = make_detector(options.detector)
        self.whole_at = -math.inf  # the time of the last whole-frame search (--redetect)

    def find(self, image, t: float, tracker: Tracker) -> list:
        """The faces of a frame, left to right: found in the whole frame or, with --redetect
        between two whole-frame detections, only around where the tracks are going."""
        o = self.options
        near = tracker.expected(t) if o.redetect > 0 else ()
        if len(near) and t - self.whole_at < o.redetect:
            faces = find_near(self.detector, image, near)
        else:
            faces, self.whole_at = detect_scaled(self.detector, image), t
        return keep_faces(faces, o.min_face_score, o.min_face_size, self.detector)

    def video(self, path: str, f, result: VideoResult) -> TrackLog:
        """Write one video's rows; its TrackLog."""
        o = self.options
        every = "every frame" if o.fps == 0 else f"{o.fps:g} frames/s"
        say(f"Predicting faces in {path} at {every}")
        log = TrackLog(path, self.classes, o.smooth, curves=bool(o.timeline))
        tracker, self.whole_at = Tracker(max_age=o.track_gap), -math.inf
        t = 0.0
        try:
            for t, number, image in sampled_frames(path, o.fps):
                rows = self.frame_rows(path, t, number, image, tracker, log)
                result.frames += 1
                f.write(self.fmt.text(rows))
                faces = sum(r["status"] == "ok" for r in rows)
                result.faces += faces
                result.no_face += not faces
        except FercliError:
            raise
        except Exception as exc:  # PyAV's errors: unreadable file, broken stream
            reason = video_reason(exc, path, started=log.frames > 0)
            if log.frames:
                reason += f" (after {t:.1f} s)"
            row = {
                "path": path,
                "status": "error",
                "error": reason,
                **dict.fromkeys(self.fmt.extra),
            }
            f.write(self.fmt.text([row]))
            result.errors.append((path, reason))
            log.error = reason
        return log

    def frame_rows(self, path, t, number, image, tracker: Tracker, log: TrackLog) -> list[dict]:
        """A frame's rows, one per face left to right, each with its track number."""
        faces = self.find(image, t, tracker)
        where = {"time": round(float(t), 3), "frame": number}
        if not faces:
            tracker.update(t, [])  # the tracks missed a frame
            log.empty(t)
            blank = dict.fromkeys(self.fmt.extra[2:])
            return [{"path": path, "status": "no_face", "error": "", **where, **blank}]
        gray = image.convert("L")
        probs = self.onnx.predict_proba(np.stack([align(gray, face, self.size) for face in faces]))
        ids = tracker.update(t, [face.box for face in faces])
        smoothed = log.add(t, ids, probs)
        rows = make_rows([path] * len(faces), probs, {}, self.classes, self.options.topk)
        rows = abstain_rows(rows, self.options.abstain)
        for i, (row, face) in enumerate(zip(rows, faces)):
            row.update(where, **face_columns(i, face), track=ids[i])
            if self.options.smoothed_columns:
                row.update(self.smoothed_fields(smoothed[i]))
        return rows

    def smoothed_fields(self, p: np.ndarray) -> dict:
        top = int(np.argmax(p))
        values = [round(float(v), 6) for v in p]
        label = self.classes[top] if values[top] >= self.options.abstain else UNCERTAIN
        fields = {"smoothed_label": label, "smoothed_confidence": values[top]}
        if isinstance(self.fmt, CsvOut):
            return {**fields, **{f"smoothed_prob_{c}": v for c, v in zip(self.classes, values)}}
        return {**fields, "smoothed_probabilities": dict(zip(self.classes, values))}


NEAR_SIDE = 64  # a tracked face's side, in pixels, in the copy of its region searched


def find_near(detector, image: Image.Image, boxes) -> list[Face]:
    """The faces found in a region around each box (x1, y1, x2, y2): a square twice the
    box's side, scaled down so that the face is about NEAR_SIDE pixels (a region costs the
    detector far less than the whole frame), in the image's own pixels; a face found in
    two regions (people side by side) counted once, its best score kept."""
    regions, copies = [], []
    for x1, y1, x2, y2 in boxes:
        side, cx, cy = max(x2 - x1, y2 - y1, 1.0), (x1 + x2) / 2, (y1 + y2) / 2
        left, top = max(0, int(cx - side)), max(0, int(cy - side))
        right, bottom = min(image.width, int(cx + side)), min(image.height, int(cy + side))
        if right - left < 8 or bottom - top < 8:
            continue
        crop = image.crop((left, top, right, bottom))
        factor = min(1.0, NEAR_SIDE / side)
        size = (max(1, round(crop.width * factor)), max(1, round(crop.height * factor)))
        copies.append(np.asarray(crop.resize(size, Image.BILINEAR) if factor < 1 else crop))
        regions.append((left, top, crop.width / size[0]))
    found = detector.detect(copies) if copies else []
    faces = [moved(face, *where) for where, got in zip(regions, found) for face in got]
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        box = np.array([face.box])
        if not kept or iou(box, np.array([k.box for k in kept])).max() < 0.5:
            kept.append(face)
    return kept


def moved(face: Face, left: float, top: float, factor: float) -> Face:
    """A face found in a scaled copy of a region -> the same face in the whole frame."""
    face = face.scaled(factor)
    x1, y1, x2, y2 = face.box
    marks = None if face.landmarks is None else np.asarray(face.landmarks) + (left, top)
    return Face((x1 + left, y1 + top, x2 + left, y2 + top), face.score, marks)


def video_reason(exc: Exception, path, started: bool = False) -> str:
    """One line for why a video could not be read: predict-dir's reasons for a bad photo
    (fercli.data.images), or "not a video" where FFmpeg finds none in the file."""
    import av

    if isinstance(exc, ImageError):  # open_regular's: not found, a folder, a pipe...
        return str(exc)
    if isinstance(exc, av.error.InvalidDataError) and not started:
        if is_empty_file(path):
            return "empty file (0 bytes)"
        return "not a video (or an unsupported format)"
    if isinstance(exc, av.error.FFmpegError):  # its message repeats the path: drop it
        return exc.strerror or type(exc).__name__
    if isinstance(exc, OSError):
        return read_error_reason(exc, path)
    return f"{type(exc).__name__}: {exc}"


def write_summary(logs: list[TrackLog], path: Path, options: VideoOptions, classes) -> Path:
    """--summary: per video (in the order given) and track, as docs/video.md describes."""
    summary = {
        "classes": list(classes),
        "fps": options.fps,
        "smooth": options.smooth,
        "track_gap": options.track_gap,
        "videos": [log.summary() for log in logs],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", **ENCODING)
    return path


def draw_timeline(logs: list[TrackLog], classes, path: Path) -> tuple[Path, list[str]]:
    """One panel per video and track: each emotion's probability over the track's frames
    (smoothed with --smooth; gaps where it was not seen). (the PNG, the panels' titles)"""
    from fercli.metrics.plots import figure, save

    panels = [
        (f"{Path(log.path).name}: track {number}", track.curve, log.end)
        for log in logs
        for number, track in sorted(log.tracks.items())
    ] or [("no faces", [], 0.0)]
    fig = figure(10, min(2.6, 600 / len(panels)) * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, curve, end) in zip(axes, panels):
        times = [t for t, _ in curve]
        values = np.array([p if p is not None else [np.nan] * len(classes) for _, p in curve])
        for k, label in enumerate(classes):
            if len(values):
                ax.plot(times, values[:, k], label=label, linewidth=1.5, marker=".", markersize=3)
        ax.set_title(title, fontsize=10)
        ax.set(ylabel="probability", ylim=(0, 1), xlim=(0, max(end, 0.1)))  # the whole video
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    if len(panels[0][1]):
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center",
                   ncol=len(classes), fontsize=8)  # fmt: skip
    return save(fig, path), [title for title, _, _ in panels]
