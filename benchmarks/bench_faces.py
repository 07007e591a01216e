"""`fercli predict-dir --faces detect` on a folder of photos: images/s, faces/s, and where the
time goes (decode, detect, align, emotion).

    .venv/bin/python benchmarks/bench_faces.py                      # ../shared/photos
    .venv/bin/python benchmarks/bench_faces.py --photos DIR --repeats 3
    .venv/bin/python benchmarks/bench_faces.py --synthetic 8        # scenes of synthetic faces
    .venv/bin/python benchmarks/bench_faces.py --video              # synthetic videos: 20 s, 5 min
    .venv/bin/python benchmarks/bench_faces.py --video FILE --fps 2

It prints the CPU first (model, cores, instruction sets: fercli.util.cpu_description). Then,
for photos:
(a) the split, one process, one photo at a time: decode (open, EXIF turn, grey and colour
    copies), detect (MTCNN on a copy <= 1024 px, one onnxruntime thread), align (the 48x48
    faces) and emotion (the bundled model on each photo's faces);
(b) end to end: fercli.predict.predict_dir(faces="detect") with its default workers, from
    files to the finished CSV.
Medians over --repeats rounds.

With --video (`fercli predict-video`; needs PyAV), one round per video, shortest first:
without FILE, synthetic videos (--seconds long, --size pixels, 25 frames/s: two synthetic
faces drifting slowly over a smooth background) written with PyAV to a temporary folder.
For each video:
(a) decode only: every frame decoded as predict-video decodes it (a stream, one frame at a
    time), decoded frames/s;
(b) --fps N, one process: fercli.faces.video.sampled_frames, then MTCNN, align and the
    bundled model on each sampled frame, timed apart: decode (of every frame up to the sampled
    one, and its RGB image), detect (MTCNN as predict-video makes it, on a copy <= 1024 px),
    align (grey copy, the 48x48 faces), emotion; sampled and decoded frames/s, real time;
(c) --fps N end to end: fercli.faces.video.predict_video, from the file to the finished CSV,
    models loaded, in a fresh process per video, and that process's peak memory
    (resource.getrusage ru_maxrss; and VmHWM on Linux): frames are decoded as a stream, so a
    5 min video should need no more than a 20 s one;
(d) every frame (on the first video, its first --every-frame-seconds), split as (b).
Real time = the video's own duration / the time taken (above 1: faster than it plays).
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_photos(folder: Path, n: int) -> Path:
    """n 1024x768 scenes of three synthetic faces each (MTCNN finds some of them)."""
    import numpy as np
    from PIL import Image

    from fercli.synth import EXPRESSIONS, draw_face

    folder.mkdir(parents=True, exist_ok=True)
    names = list(EXPRESSIONS)
    for i in range(n):
        rng = np.random.default_rng(i)
        picture = Image.new("L", (1024, 768), int(rng.integers(60, 200)))
        for k in range(3):
            face = Image.fromarray(draw_face(names[(i + k) % 7], rng)).resize((200, 200))
            picture.paste(face, (60 + 320 * k, 200 + 60 * k))
        picture.convert("RGB").save(folder / f"scene{i:03d}.jpg", quality=90)
    return folder


def split(paths, detector, model) -> dict[str, float]:
    from PIL import ImageOps

    from fercli.faces.align import align
    from fercli.faces.detect import detect_scaled
    from fercli.faces.predict_faces import colour
    from fercli.images import open_raw, to_gray

    times = dict.fromkeys(("decode", "detect", "align", "emotion"), 0.0)
    faces_found = 0
    for path in paths:
        t0 = time.perf_counter()
        im = ImageOps.exif_transpose(open_raw(path))
        gray = to_gray(im)
        rgb = colour(im, gray)
        t1 = time.perf_counter()
        faces = detect_scaled(detector, rgb)
        t2 = time.perf_counter()
        crops = [align(gray, f) for f in faces]
        t3 = time.perf_counter()
        if crops:
            import numpy as np

            model.predict_proba(np.stack(crops))
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key] += dt
        faces_found += len(faces)
    return {**times, "faces": faces_found}


VIDEO_RATE = 25  # frames/s of the synthetic videos


def synthetic_video(path: Path, seconds: float, size=(320, 240), rate: int = VIDEO_RATE) -> Path:
    """A video of two synthetic faces drifting slowly over a smooth background, written with
    PyAV frame by frame (MTCNN finds both at 320x240)."""
    import av
    import numpy as np
    from PIL import Image

    from fercli.synth import EXPRESSIONS, draw_face

    width, height = size
    rng = np.random.default_rng(0)
    grid = rng.uniform(60, 200, (3, 4, 3)).astype(np.uint8)
    background = Image.fromarray(grid, "RGB").resize(size, Image.BICUBIC)
    side = round(min(width, height) * 0.42)
    names = list(EXPRESSIONS)
    faces = [
        Image.fromarray(draw_face(names[k], np.random.default_rng(k)))
        .resize((side, side), Image.BICUBIC)
        .convert("RGB")
        for k in (0, 1)  # two that MTCNN finds at this size
    ]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 1_000_000
        for i in range(round(seconds * rate)):
            frame = background.copy()
            for k, face in enumerate(faces):  # a few pixels' drift, each face its own way
                phase = 2 * np.pi * i / (rate * (4 + 3 * k))
                x = width * (0.27 + 0.46 * k) - side / 2 + 0.04 * width * np.sin(phase)
                y = (height - side) / 2 + 0.04 * height * np.cos(phase)
                frame.paste(face, (round(x), round(y)))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def peak_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss: kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def video_facts(path) -> tuple[float, int, float, str]:
    """(frame rate, decoded frames, seconds decoding them, WxH): every frame decoded as
    predict-video decodes a video, without converting the skipped ones to pictures."""
    from fercli.faces.video import import_av

    av = import_av()
    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        frames = sum(1 for _ in container.decode(stream))
        size = f"{stream.codec_context.width}x{stream.codec_context.height}"
    return rate, frames, time.perf_counter() - start, size


def video_split(path, fps: float, detector, model, until: float | None = None) -> dict:
    """predict-video's loop on one video, each stage timed apart: decode (sampled_frames:
    decoding every frame up to the sampled one, and its RGB picture), detect, align,
    emotion. Stops after `until` seconds of video where given."""
    import numpy as np

    from fercli.faces.align import align
    from fercli.faces.detect import detect_scaled
    from fercli.faces.video import sampled_frames

    times = dict.fromkeys(("decode", "detect", "align", "emotion"), 0.0)
    sampled = faces_found = decoded = 0
    frames = sampled_frames(path, fps)
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        try:
            t, number, image = next(frames)
        except StopIteration:
            times["decode"] += time.perf_counter() - t0
            break
        if until is not None and t >= until:
            frames.close()
            break
        t1 = time.perf_counter()
        faces = detect_scaled(detector, image)
        t2 = time.perf_counter()
        gray = image.convert("L")
        crops = [align(gray, f, model.info.image_size) for f in faces]
        t3 = time.perf_counter()
        if crops:
            model.predict_proba(np.stack(crops))
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key] += dt
        sampled, decoded = sampled + 1, number + 1
        faces_found += len(faces)
    return {**times, "total": time.perf_counter() - start, "sampled": sampled,
            "decoded": decoded, "faces": faces_found}  # fmt: skip


def print_split(label: str, r: dict, rate: float, decoded: int) -> None:
    """One pass's throughput against the video's own rate, then its time split."""
    total, sampled = r["total"], max(r["sampled"], 1)
    video_seconds = decoded / rate
    print(
        f"  {label}: {r['sampled']} sampled frames in {total:.2f} s: "
        f"{r['sampled'] / total:.1f} sampled frames/s, {decoded / total:.0f} decoded frames/s, "
        f"{video_seconds / total:.2f}x real time; {r['faces']} faces"
    )
    split_total = sum(r[k] for k in ("decode", "detect", "align", "emotion"))
    for k in ("decode", "detect", "align", "emotion"):
        print(
            f"      {k:8s} {r[k] / sampled * 1000:7.1f} ms/sampled frame  {r[k] / split_total:6.1%}"
        )


def end_to_end(path, fps: float, model: str) -> dict:
    """predict_video on one video, as `fercli predict-video FILE --fps N` runs it (models
    loaded, CSV written), in this process: its figures and the process's peak memory."""
    from fercli.faces.video import predict_video

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = predict_video([path], Path(tmp) / "v.csv", model, fps=fps, provider="cpu")
        seconds = time.perf_counter() - start
    hwm = None
    status = Path("/proc/self/status")
    if status.exists():  # Linux: this process's own peak, VmHWM, in kB
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM"))
        hwm = int(line.split()[1]) / 2**10
    return {"seconds": seconds, "frames": result.frames, "faces": result.faces,
            "errors": len(result.errors), "peak_mb": peak_mb(), "hwm_mb": hwm}  # fmt: skip


def end_to_end_in_child(path, fps: float, model: str) -> dict:
    """end_to_end in a fresh Python process: each video's peak memory its own. (A child's
    ru_maxrss starts at least at this process's size when it was started: this process holds
    no model yet, far less than the child's peak; VmHWM, where Linux has it, counts only the
    child.)"""
    import json
    import subprocess

    proc = subprocess.run(
        [sys.executable, __file__, "--end-to-end", str(path), "--fps", str(fps), "--model", model],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"the end-to-end run on {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def bench_video(args) -> None:
    from fercli.bundled import bundled_path
    from fercli.faces.predict_faces import detector as make_detector
    from fercli.faces.predict_faces import reset_detectors
    from fercli.faces.video import import_av
    from fercli.onnx_model import OnnxModel

    import_av()
    with tempfile.TemporaryDirectory() as tmp:
        if args.video != "synthetic":
            videos = [Path(args.video)]
            print(f"video {args.video}")
        else:
            width, height = (int(v) for v in args.size.lower().split("x"))
            lengths = sorted(float(s) for s in args.seconds.split(","))
            print(
                f"synthetic videos, {width}x{height} at {VIDEO_RATE} frames/s, two faces "
                f"drifting: {', '.join(f'{s:g} s' for s in lengths)} (mpeg4, written in {tmp})",
                flush=True,
            )
            videos = [
                synthetic_video(Path(tmp) / f"synthetic_{s:g}s.mp4", s, (width, height))
                for s in lengths
            ]
        # (c) first, each video in a fresh process, while this one holds no model
        ends = [end_to_end_in_child(path, args.fps, args.model) for path in videos]
        reset_detectors()
        detector, model = make_detector("mtcnn"), OnnxModel(bundled_path(args.model), "cpu")
        video_split(videos[0], args.fps, detector, model, until=1.0)  # warm-up: first second
        print(
            "one round per video; real time = the video's duration / the time taken; "
            "decode = every frame decoded up to each sampled one"
        )
        for i, (path, end) in enumerate(zip(videos, ends)):
            rate, frames, decode_s, size = video_facts(path)
            duration = frames / rate
            print(f"[{path.name}: {duration:.1f} s, {frames} frames at {rate:g} frames/s, {size}]")
            print(
                f"  (a) decode only: {frames / decode_s:.0f} decoded frames/s, "
                f"{duration / decode_s:.1f}x real time"
            )
            r = video_split(path, args.fps, detector, model)
            print_split(f"(b) --fps {args.fps:g}, one process", r, rate, frames)
            seconds = end["seconds"]
            print(
                f"  (c) --fps {args.fps:g} end to end (predict_video in a fresh process, "
                f"loading the models, default threads): "
                f"{end['frames'] / seconds:.1f} sampled frames/s, "
                f"{frames / seconds:.0f} decoded frames/s, {duration / seconds:.2f}x real time "
                f"({seconds:.2f} s, {end['faces']} faces, {end['errors']} errors)"
            )
            hwm = f", VmHWM {end['hwm_mb']:.1f} MB" if end["hwm_mb"] is not None else ""
            grew = (
                f" ({end['peak_mb'] - ends[0]['peak_mb']:+.1f} MB against the first)" if i else ""
            )
            print(
                f"      peak memory of that process: ru_maxrss {end['peak_mb']:.1f} MB{hwm}{grew}"
            )
            if i == 0 and args.every_frame_seconds > 0:
                until = min(args.every_frame_seconds, duration)
                r = video_split(path, 1000.0, detector, model, until=until)
                print_split(f"(d) every frame, first {until:g} s", r, rate, r["decoded"])
            sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos")
    parser.add_argument("--synthetic", type=int, default=0, help="use N synthetic scenes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model",
        default="accurate",
        help="bundled model (fast, accurate) [accurate: the documented figures]",
    )
    parser.add_argument(
        "--video", nargs="?", const="synthetic", metavar="FILE",
        help="measure predict-video on FILE (without FILE: synthetic videos, see --seconds)",
    )  # fmt: skip
    parser.add_argument(
        "--seconds", default="20,300", help="lengths of the synthetic videos [20,300]"
    )
    parser.add_argument("--size", default="320x240", help="size of the synthetic videos")
    parser.add_argument("--fps", type=float, default=2.0, help="frames/s sampled [2]")
    parser.add_argument(
        "--every-frame-seconds", type=float, default=20.0,
        help="(d): every frame of the first video's first N seconds [20]; 0: skip",
    )  # fmt: skip
    parser.add_argument("--end-to-end", type=Path, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.end_to_end:
        import json

        from fercli.progress import settings

        settings["quiet"] = True
        return print(json.dumps(end_to_end(args.end_to_end, args.fps, args.model)))
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU
    if args.video:
        from fercli.progress import settings

        settings["quiet"] = True
        return bench_video(args)

    from fercli.bundled import bundled_path
    from fercli.faces.mtcnn import MTCNN
    from fercli.images import is_image_path
    from fercli.onnx_model import OnnxModel
    from fercli.predict import predict_dir
    from fercli.progress import settings

    settings["quiet"] = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.photos
        if args.synthetic or not folder.is_dir():
            folder = synthetic_photos(Path(tmp) / "photos", args.synthetic or 8)
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
        print(f"{len(paths)} photos in {folder}, {args.repeats} round(s), medians")
        detector, model = MTCNN(threads=1), OnnxModel(bundled_path(args.model), "cpu")
        rounds, ends = [], []
        for _ in range(args.repeats):
            rounds.append(split(paths, detector, model))
            start = time.perf_counter()
            result = predict_dir(
                folder, Path(tmp) / "p.csv", args.model, faces="detect", write_summary=False
            )
            ends.append((time.perf_counter() - start, result.total - result.no_face))
    keys = ("decode", "detect", "align", "emotion")
    med = {k: statistics.median(r[k] for r in rounds) for k in keys}
    total = sum(med.values())
    faces = rounds[0]["faces"]
    print(
        f"(a) one process: {len(paths) / total:.1f} images/s, {faces / total:.1f} faces/s "
        f"({faces} faces)"
    )
    for k in keys:
        print(f"    {k:8s} {med[k] / len(paths) * 1000:7.1f} ms/image  {med[k] / total:6.1%}")
    seconds = statistics.median(s for s, _ in ends)
    print(
        f"(b) predict_dir --faces detect, default workers: {len(paths) / seconds:.1f} images/s, "
        f"{ends[0][1] / seconds:.1f} faces/s ({seconds:.2f} s)"
    )


if __name__ == "__main__":
    main()
