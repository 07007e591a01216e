"""The built-in face detectors side by side on a folder of photos: faces found, their scores
and the detection time per photo (median of --repeats runs, one process, one onnxruntime
thread each, as a predict-dir worker runs them), and the process's CPU time per photo, which
other work on a shared machine disturbs less than the wall-clock time.

    python benchmarks/bench_detectors.py ../shared/photos --repeats 5

Each photo is decoded and turned by its EXIF orientation once; the time is that of
fercli.faces.detect.detect_scaled (the copy at most 1024 pixels long, then the detector),
as predict-dir --faces spends it. Faces scoring at least --min-score are counted.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercli import registry  # noqa: E402
from fercli.faces.detect import detect_scaled  # noqa: E402

DETECTORS = {
    "mtcnn": ("mtcnn", {}),
    "yunet": ("yunet", {}),
    "yunet-1pass": ("yunet", {"large_faces": False}),
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    args = parser.parse_args(argv)

    paths = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    photos = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]
    names = args.detectors.split(",")
    detectors = {n: registry.create("detector", DETECTORS[n][0], **DETECTORS[n][1]) for n in names}
    print(f"{len(photos)} photos in {args.folder}; CPU: {cpu_name()}; repeats {args.repeats}")
    totals = {n: [] for n in names}
    cpu = {n: [] for n in names}
    header = f"{'photo':<12} {'size':>10}" + "".join(f" | {n:>28}" for n in names)
    print(header)
    for path, photo in zip(paths, photos):
        cells = []
        for name in names:
            detector = detectors[name]
            detect_scaled(detector, photo)  # warm up
            times, cpus, faces = [], [], []
            for _ in range(args.repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                faces = detect_scaled(detector, photo)
                times.append(time.perf_counter() - start)
                cpus.append(time.process_time() - start_cpu)
            ms = 1000 * statistics.median(times)
            totals[name].append(ms)
            cpu[name].append(1000 * statistics.median(cpus))
            scores = ",".join(f"{f.score:.3f}" for f in faces if f.score >= args.min_score)
            kept = sum(f.score >= args.min_score for f in faces)
            cells.append(f"{kept} [{scores}] {ms:5.0f} ms")
        size = f"{photo.width}x{photo.height}"
        print(f"{path.name:<12} {size:>10}" + "".join(f" | {c:>28}" for c in cells))
    for name in names:
        ms = totals[name]
        print(
            f"{name}: median {statistics.median(ms):.0f} ms per photo, "
            f"mean {statistics.mean(ms):.0f} ms, {1000 * len(ms) / sum(ms):.1f} photos/s; "
            f"CPU time median {statistics.median(cpu[name]):.0f} ms, "
            f"mean {statistics.mean(cpu[name]):.0f} ms per photo"
        )


if __name__ == "__main__":
    main()
