"""`fercli predict-dir --faces detect` on a folder of photos: images/s, faces/s, and where the
time goes (decode, detect, align, emotion).

    .venv/bin/python benchmarks/bench_faces.py                      # ../shared/photos
    .venv/bin/python benchmarks/bench_faces.py --photos DIR --repeats 3
    .venv/bin/python benchmarks/bench_faces.py --synthetic 8        # scenes of synthetic faces

It prints the CPU first (model, cores, instruction sets: fercli.util.cpu_description). Then:
(a) the split, one process, one photo at a time: decode (open, EXIF turn, grey and colour
    copies), detect (MTCNN on a copy <= 1024 px, one onnxruntime thread), align (the 48x48
    faces) and emotion (the bundled model on each photo's faces);
(b) end to end: fercli.predict.predict_dir(faces="detect") with its default workers, from
    files to the finished CSV.
Medians over --repeats rounds.
"""

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos")
    parser.add_argument("--synthetic", type=int, default=0, help="use N synthetic scenes")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU

    from fercli.faces.mtcnn import MTCNN
    from fercli.images import is_image_path
    from fercli.onnx_model import OnnxModel
    from fercli.predict import default_model_path, predict_dir
    from fercli.progress import settings

    settings["quiet"] = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.photos
        if args.synthetic or not folder.is_dir():
            folder = synthetic_photos(Path(tmp) / "photos", args.synthetic or 8)
        paths = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
        print(f"{len(paths)} photos in {folder}, {args.repeats} round(s), medians")
        detector, model = MTCNN(threads=1), OnnxModel(default_model_path(), "cpu")
        rounds, ends = [], []
        for _ in range(args.repeats):
            rounds.append(split(paths, detector, model))
            start = time.perf_counter()
            result = predict_dir(folder, Path(tmp) / "p.csv", faces="detect", write_summary=False)
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
