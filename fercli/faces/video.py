"""`fercli predict-video FILE...`: the faces in a video's frames, sampled at --fps.

Frames are decoded one at a time with PyAV (the `video` extra: `pip install 'fercli[video]'`)
and dropped once their faces are cut out, so a long video needs no more memory than a short
one. Frames are turned as the video's display matrix says (a phone's portrait video).
Each sampled frame gives one row per face (as `predict-dir --faces detect`, plus
`time` in seconds and `frame`, the frame's number in the stream), or one `no_face` row; a
file that cannot be opened, or whose decoding breaks off, gives an `error` row with a
one-line reason worded as predict-dir words a bad photo's ("file not found", "not a video
(or an unsupported format)", "empty file (0 bytes)"), and the run goes on with the next
file. The output is written to a temporary file and renamed at the end.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.errors import FercliError
from fercli.faces.align import align
from fercli.faces.detect import detect_scaled
from fercli.faces.predict_faces import COLUMNS as FACE_COLUMNS
from fercli.faces.predict_faces import detector as make_detector
from fercli.faces.predict_faces import face_columns, keep_faces, reset_detectors
from fercli.images import ImageError, _is_empty, _reason, open_regular
from fercli.predict_output import ENCODING, make_rows, output_format
from fercli.progress import say
from fercli.util import atomic_path

COLUMNS = ("time", "frame", *FACE_COLUMNS)


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
    """(time in seconds, frame number, RGB Pillow image) for one frame every 1/fps seconds,
    decoded as a stream."""
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
class VideoResult:
    output: Path
    videos: int
    frames: int  # sampled frames
    faces: int  # rows with a face
    no_face: int  # sampled frames without a face
    errors: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    timeline: Path | None = None


def predict_video(
    paths,
    output,
    model=None,
    *,
    fps: float = 2.0,
    detector: str = "mtcnn",
    provider: str = "auto",
    threads: int | None = None,
    timeline=None,
    topk: int = 0,
    min_face_score: float = 0.0,
    min_face_size: int = 0,
) -> VideoResult:
    """Predict the emotion of every face in frames sampled at fps from each video (faces
    scoring below min_face_score or smaller than min_face_size pixels left out)."""
    from fercli import registry
    from fercli.bundled import model_path
    from fercli.onnx_model import OnnxModel

    start = time.perf_counter()
    if fps <= 0:
        raise FercliError("--fps must be more than 0.")
    output = Path(output)
    if output.is_dir():
        raise FercliError(f"the output {output} is a folder: pass a file name ending in .csv.")
    import_av()
    registry.get("detector", detector)
    onnx = OnnxModel(model_path(model), provider, threads)
    classes, size = onnx.info.classes, onnx.info.image_size
    fmt = output_format(output, classes, topk, COLUMNS)
    reset_detectors()
    found = make_detector(detector)

    def find(image):
        return keep_faces(detect_scaled(found, image), min_face_score, min_face_size)

    result = VideoResult(output, len(paths), 0, 0, 0)
    curves: dict[str, list[tuple[float, np.ndarray | None]]] = {}
    with atomic_path(output) as tmp, open(tmp, "w", newline="", **ENCODING) as f:
        fmt.start(f, new_file=True)
        for path in map(str, paths):
            say(f"Predicting faces in {path} at {fps:g} frames/s")
            curve = curves.setdefault(path, [])
            try:
                for t, number, image in sampled_frames(path, fps):
                    rows = frame_rows(path, t, number, image, find, onnx, size, topk)
                    result.frames += 1
                    f.write(fmt.text(rows))
                    ok = [r for r in rows if r["status"] == "ok"]
                    result.faces += len(ok)
                    result.no_face += not ok
                    probs = [list(r["probabilities"].values()) for r in ok]
                    curve.append((t, np.mean(probs, axis=0) if ok else None))
            except FercliError:
                raise
            except Exception as exc:  # PyAV's errors: unreadable file, broken stream
                reason = video_reason(exc, path, started=bool(curve))
                if curve:
                    reason += f" (after {curve[-1][0]:.1f} s)"
                row = {"path": path, "status": "error", "error": reason, **dict.fromkeys(COLUMNS)}
                f.write(fmt.text([row]))
                result.errors.append((path, reason))
    if timeline:
        result.timeline = draw_timeline(curves, classes, Path(timeline))
    result.seconds = time.perf_counter() - start
    return result


def video_reason(exc: Exception, path, started: bool = False) -> str:
    """One line for why a video could not be read: predict-dir's reasons for a bad photo
    (fercli.images), or "not a video" where FFmpeg finds none in the file."""
    import av

    if isinstance(exc, ImageError):  # open_regular's: not found, a folder, a pipe...
        return str(exc)
    if isinstance(exc, av.error.InvalidDataError) and not started:
        return (
            "empty file (0 bytes)" if _is_empty(path) else "not a video (or an unsupported format)"
        )
    if isinstance(exc, av.error.FFmpegError):  # its message repeats the path: drop it
        return exc.strerror or type(exc).__name__
    if isinstance(exc, OSError):
        return _reason(exc, path)
    return f"{type(exc).__name__}: {exc}"


def frame_rows(path, t, number, image, find, onnx, size, topk) -> list[dict]:
    """A frame's rows; find(image) gives its faces, left to right."""
    gray = image.convert("L")
    faces = find(image)
    where = {"time": round(float(t), 3), "frame": number}
    if not faces:
        return [
            {"path": path, "status": "no_face", "error": "", **where, **dict.fromkeys(COLUMNS[2:])}
        ]
    probs = onnx.predict_proba(np.stack([align(gray, face, size) for face in faces]))
    rows = make_rows([path] * len(faces), probs, {}, onnx.info.classes, topk)
    for i, (row, face) in enumerate(zip(rows, faces)):
        row.update(where, **face_columns(i, face))
    return rows


def draw_timeline(curves, classes, path: Path) -> Path:
    """One panel per video read: each emotion's probability over time (mean over the faces
    of a frame; gaps where no face was found)."""
    from fercli.plots import _figure, _save

    curves = {name: curve for name, curve in curves.items() if curve} or {"no frames": []}
    fig = _figure(10, 2.6 * len(curves))
    axes = fig.subplots(len(curves), 1, squeeze=False)[:, 0]
    for ax, (name, curve) in zip(axes, curves.items()):
        times = [t for t, _ in curve]
        values = np.array([p if p is not None else [np.nan] * len(classes) for _, p in curve])
        for k, label in enumerate(classes):
            if len(values):
                ax.plot(times, values[:, k], label=label, linewidth=1.5)
        ax.set_title(Path(name).name, fontsize=10)
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(ncol=len(classes), fontsize=8, loc="upper right")
    return _save(fig, path)
