"""A deterministic synthetic FER-style dataset: 48x48 grayscale cartoon faces, 7 classes.

Each expression has its own eyes, brows and mouth (happy: upturned mouth; sad: downturned
mouth, inner brows raised; surprise: round open mouth, raised brows; angry: V brows, tight
mouth; disgust: wrinkled lopsided mouth, wrinkled nose; fear: wide eyes, raised brows,
small open mouth; neutral: straight mouth). Every face gets a random pose (rotation, shift),
scale, brightness, contrast, line width and noise, so a classifier has to learn the
features, not the pixels.

A few problems are planted in the data so that `fercli clean` has something to find:
exact duplicates, near duplicates, a train face copied into test, a duplicate under another
label, blank images and one truncated JPEG. `planted.json` in the dataset root lists them.

The same seed gives byte-identical files.
"""

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fercli import FER_CLASSES
from fercli.errors import FercliError

SIZE = 48
CANVAS = 96  # faces are drawn at twice the size and shrunk: smooth, antialiased lines
JPEG_QUALITY = 92
MANIFEST = "planted.json"
# Faces closer than this under a 64-bit phash are redrawn (`fercli clean` groups faces
# within 6 bits by default; the margin covers what JPEG changes).
MIN_PHASH_DISTANCE = 10
MAX_REDRAWS = 20
SYNTH_VERSION = 2

# Per expression, in face units (face half-width = 1, y grows downwards):
# eye_h: eye height; brow: (inner dy, outer dy) from the resting brow line;
# mouth: (kind, width, curve or height).
EXPRESSIONS = {
    "angry": {"eye_h": 0.07, "brow": (0.14, -0.10), "mouth": ("line", 0.36, -0.04)},
    "disgust": {"eye_h": 0.05, "brow": (0.08, 0.02), "mouth": ("wrinkle", 0.50, 0.10)},
    "fear": {"eye_h": 0.18, "brow": (-0.16, -0.08), "mouth": ("oval", 0.34, 0.10)},
    "happy": {"eye_h": 0.06, "brow": (-0.03, -0.03), "mouth": ("curve", 0.62, 0.20)},
    "neutral": {"eye_h": 0.10, "brow": (0.0, 0.0), "mouth": ("line", 0.50, 0.0)},
    "sad": {"eye_h": 0.08, "brow": (-0.14, 0.08), "mouth": ("curve", 0.50, -0.16)},
    "surprise": {"eye_h": 0.15, "brow": (-0.20, -0.20), "mouth": ("oval", 0.26, 0.32)},
}


def default_splits(per_class: int) -> dict[str, int]:
    """Faces per class and split: test is about a quarter of train, as in FER-2013."""
    return {"train": per_class, "test": max(2, round(per_class / 4))}


def draw_face(expression: str, rng: np.random.Generator) -> np.ndarray:
    """One (48, 48) uint8 face of the given expression, with random pose and appearance."""
    spec = EXPRESSIONS[expression]
    skin, background, ink = _colours(rng)
    im = _backdrop(rng, background)
    draw = ImageDraw.Draw(im)
    pen = _Pen(rng)
    _draw_head(draw, pen, rng, skin)
    _draw_eyes(draw, pen, rng, spec, skin, ink)
    _draw_mouth(draw, pen, rng, spec, ink)
    return _photograph(im, rng, background)


def _jitter(rng: np.random.Generator, scale: float) -> float:
    return float(rng.normal(0.0, scale))


def _colours(rng: np.random.Generator) -> tuple[int, int, int]:
    """The gray levels of skin, background and ink (eyes, brows, mouth)."""
    skin = int(rng.integers(110, 236))
    if skin <= 190 and rng.random() < 0.4:  # backlit: a backdrop brighter than the face
        background = int(rng.integers(skin + 45, 256))
    else:
        background = int(rng.integers(max(0, skin - 150), skin - 55))
    ink = int(rng.integers(0, skin - 90))
    return skin, background, ink


def _backdrop(rng: np.random.Generator, background: int) -> Image.Image:
    """A smooth random backdrop (a 4x4 grid of levels, blown up): like the varied backgrounds
    of real photos, it keeps unrelated faces apart under perceptual hashing."""
    grid = background + rng.uniform(-60, 60, (4, 4)).astype(np.float32)
    backdrop = Image.fromarray(grid, "F").resize((CANVAS, CANVAS), Image.BICUBIC)
    return Image.fromarray(np.clip(np.asarray(backdrop), 0, 255).astype(np.uint8), "L")


class _Pen:
    """Face units to canvas pixels, for a face of random size and position; and the width
    of its lines."""

    def __init__(self, rng: np.random.Generator):
        self.scale = CANVAS * 0.42 * float(rng.uniform(0.85, 1.1))
        self.cx = CANVAS / 2 + _jitter(rng, 4.0)
        self.cy = CANVAS / 2 + _jitter(rng, 4.0)
        self.width = max(2, int(round(self.scale * float(rng.uniform(0.07, 0.11)))))

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return (self.cx + x * self.scale, self.cy + y * self.scale)

    def box(self, x: float, y: float, rx: float, ry: float) -> list[tuple[float, float]]:
        return [self.pt(x - rx, y - ry), self.pt(x + rx, y + ry)]


def _draw_head(draw: ImageDraw.ImageDraw, pen: _Pen, rng: np.random.Generator, skin: int):
    face_w, face_h = float(rng.uniform(0.9, 1.08)), 1.22 * float(rng.uniform(0.92, 1.08))
    if rng.random() < 0.75:  # hair: a bigger ellipse behind the face, showing on top
        hair = int(rng.integers(0, 256))
        lift = float(rng.uniform(0.05, 0.35))
        draw.ellipse(pen.box(_jitter(rng, 0.08), 0.05 - lift, face_w * 1.1, face_h), fill=hair)
    draw.ellipse(pen.box(0, 0.05, face_w, face_h), fill=skin)


def _draw_eyes(draw, pen: _Pen, rng: np.random.Generator, spec: dict, skin: int, ink: int):
    """Eyes and brows."""
    eye_y = -0.18 + _jitter(rng, 0.03)
    eye_h = spec["eye_h"] * float(rng.uniform(0.8, 1.2))
    for side in (-1, 1):
        ex = side * 0.38
        draw.ellipse(pen.box(ex, eye_y, 0.17, max(eye_h, 0.035)), fill=min(255, skin + 60))
        pupil = pen.box(ex + _jitter(rng, 0.02), eye_y, 0.07, min(0.07, max(eye_h, 0.03)))
        draw.ellipse(pupil, fill=ink)

        inner_dy, outer_dy = (d + _jitter(rng, 0.025) for d in spec["brow"])
        brow_y = eye_y - 0.24 - max(0.0, eye_h - 0.1)
        inner, outer = pen.pt(side * 0.14, brow_y + inner_dy), pen.pt(side * 0.6, brow_y + outer_dy)
        draw.line([inner, outer], fill=ink, width=pen.width + 1)


def _draw_mouth(draw, pen: _Pen, rng: np.random.Generator, spec: dict, ink: int):
    mouth_kind, mouth_w, shape = spec["mouth"]
    mouth_w *= float(rng.uniform(0.85, 1.15))
    shape *= float(rng.uniform(0.8, 1.2))
    my = 0.58 + _jitter(rng, 0.03)
    pt, width = pen.pt, pen.width
    if mouth_kind == "line":
        # a straight mouth, or slightly down at the corners (angry: pressed lips)
        draw.line(
            [pt(-mouth_w, my - shape), pt(0, my), pt(mouth_w, my - shape)],
            fill=ink,
            width=width,
            joint="curve",
        )
    elif mouth_kind == "curve":
        xs = np.linspace(-mouth_w, mouth_w, 13)
        ys = my - shape * (xs / mouth_w) ** 2  # corners up when shape > 0 (y grows down)
        draw.line(
            [pt(x, y) for x, y in zip(xs, ys, strict=True)], fill=ink, width=width, joint="curve"
        )
    elif mouth_kind == "oval":
        draw.ellipse(pen.box(0, my, mouth_w, shape), fill=ink)
    else:  # wrinkle: a zigzag mouth, one corner raised, and wrinkles on the nose
        side = 1 if rng.random() < 0.5 else -1
        xs = np.linspace(-mouth_w, mouth_w, 7)
        ys = my + np.array([0, 1, -1, 1, -1, 1, 0]) * 0.04 - side * (xs / mouth_w) * shape
        draw.line(
            [pt(x, y) for x, y in zip(xs, ys, strict=True)], fill=ink, width=width, joint="curve"
        )
        for dy in (0.08, 0.16):
            draw.line(
                [pt(-0.12, 0.12 + dy), pt(0.12, 0.12 + dy)], fill=ink, width=max(1, width - 1)
            )


def _photograph(im: Image.Image, rng: np.random.Generator, background: int) -> np.ndarray:
    """The drawing as a 48x48 photo: turned, shrunk, lit from a random side, with random
    contrast, brightness and noise."""
    im = im.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR, fillcolor=background)
    im = im.resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, np.float32)
    # light from a random side
    angle, strength = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.05, 0.3))
    ramp = np.linspace(-1, 1, SIZE, dtype=np.float32)
    arr *= 1 + strength * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    contrast = float(rng.uniform(0.7, 1.2))
    arr = (arr - arr.mean()) * contrast + arr.mean() + float(rng.uniform(-25, 25))
    arr += rng.normal(0.0, float(rng.uniform(2, 9)), arr.shape)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


class _Spread:
    """Keeps the drawn faces apart under perceptual hashing, as distinct photos are: a face
    within MIN_PHASH_DISTANCE bits of an earlier one is drawn again from the next seed, so
    that `fercli clean` finds the planted duplicates and only those."""

    def __init__(self, total: int):
        self.words = np.zeros((total, 1), np.uint64)
        self.count = 0

    def draw(self, expression: str, key: list[int]) -> np.ndarray:
        from fercli.data.hashing import hash_images, pack, popcount

        for attempt in range(MAX_REDRAWS + 1):
            face = draw_face(expression, np.random.default_rng(key + [attempt] * bool(attempt)))
            word = pack(hash_images("phash", [Image.fromarray(face, "L")]))[0]
            seen = self.words[: self.count]
            if not len(seen) or popcount(seen ^ word).min() > MIN_PHASH_DISTANCE:
                break
        self.words[self.count] = word
        self.count += 1
        return face


def jpeg_bytes(arr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_synthetic(
    dest: str | os.PathLike,
    per_class: int = 60,
    seed: int = 0,
    splits: dict[str, int] | None = None,
    plant: bool = True,
) -> dict:
    """Write the dataset to dest/<split>/<class>/<name>.jpg and return its summary.

    `splits` maps split names to faces per class (default: `default_splits(per_class)`).
    dest must not exist or be empty; the dataset appears there all at once. If dest already
    holds a synthetic dataset made with the same parameters, it is left as it is.
    Returns {"dest", "seed", "per_class", "splits", "counts", "planted", "created"}.
    """
    if per_class < 2:
        raise FercliError(f"--per-class must be at least 2, not {per_class}.")
    dest = Path(dest)
    splits = dict(splits or default_splits(per_class))
    params = {
        "version": SYNTH_VERSION,
        "seed": seed,
        "per_class": per_class,
        "splits": splits,
        "plant": plant,
    }
    existing = _existing(dest, params)
    if existing is not None:
        return {**existing, "dest": str(dest), "created": False}

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        files: dict[str, bytes] = {}  # relative path -> content, in creation order
        faces: dict[str, np.ndarray] = {}
        spread = _Spread(len(FER_CLASSES) * sum(splits.values()))
        for split_index, (split, count) in enumerate(splits.items()):
            for class_index, name in enumerate(FER_CLASSES):
                for i in range(count):
                    rel = f"{split}/{name}/{name}_{i:05d}.jpg"
                    faces[rel] = spread.draw(name, [seed, split_index, class_index, i])
                    files[rel] = jpeg_bytes(faces[rel])
        planted = _plant(files, faces, splits, seed) if plant else []
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        counts = {
            split: {
                name: sum(1 for r in files if r.startswith(f"{split}/{name}/"))
                for name in FER_CLASSES
            }
            for split in splits
        }
        summary = {**params, "counts": counts, "planted": planted}
        (tmp / MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
        if dest.exists():
            dest.rmdir()  # empty, checked by _existing
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**summary, "dest": str(dest), "created": True}


def _existing(dest: Path, params: dict) -> dict | None:
    """The manifest of an identical earlier run; None for a missing or empty dest."""
    if not dest.exists():
        return None
    if not dest.is_dir():
        raise FercliError(f"{dest} is a file: give a folder for the synthetic dataset.")
    if not any(dest.iterdir()):
        return None
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if manifest and all(manifest.get(k) == v for k, v in params.items()):
        return manifest
    raise FercliError(
        f"{dest} is not empty: choose a new folder (fercli never overwrites existing files)."
    )


def _plant(files: dict, faces: dict, splits: dict, seed: int) -> list[dict]:
    """Add the planted problems to `files` (in train, and one copy into test)."""
    rng = np.random.default_rng([seed, 99])
    train = [r for r in files if r.startswith("train/")]
    picks = iter(rng.permutation(len(train)).tolist())
    planted = []

    def source() -> str:
        return train[next(picks)]

    def add(rel: str, data: bytes, kind: str, of: str | None = None, note: str = "") -> None:
        files[rel] = data
        entry = {"path": rel, "kind": kind}
        if of:
            entry["of"] = of
        if note:
            entry["note"] = note
        planted.append(entry)

    def copy_name(rel: str, suffix: str, folder: str | None = None) -> str:
        split, name, stem = rel.split("/")[0], rel.split("/")[1], Path(rel).stem
        return f"{split}/{folder or name}/{stem}_{suffix}.jpg"

    for _ in range(3):
        src = source()
        add(copy_name(src, "copy"), files[src], "exact-duplicate", src, "byte-identical copy")

    near = {
        "brightened": lambda a: np.clip(a.astype(np.int16) + 12, 0, 255).astype(np.uint8),
        "noised": lambda a: np.clip(a + rng.normal(0, 3, a.shape) + 0.5, 0, 255).astype(np.uint8),
        "recompressed": lambda a: a,
    }
    for how, change in near.items():
        src = source()
        quality = 60 if how == "recompressed" else JPEG_QUALITY
        add(
            copy_name(src, how),
            jpeg_bytes(change(faces[src]), quality),
            "near-duplicate",
            src,
            f"{how} copy",
        )

    if "test" in splits:
        src = source()
        rel = "test/" + copy_name(src, "leak").split("/", 1)[1]
        add(rel, files[src], "cross-split-duplicate", src, "train face copied into test")

    src = source()
    label = src.split("/")[1]
    other = FER_CLASSES[(FER_CLASSES.index(label) + 1) % len(FER_CLASSES)]
    add(
        copy_name(src, "relabelled", other),
        files[src],
        "label-conflict",
        src,
        f"{label} face filed under {other}",
    )

    for level, what in ((0, "black"), (255, "white"), (128, "gray")):
        name = FER_CLASSES[int(rng.integers(len(FER_CLASSES)))]
        blank = np.full((SIZE, SIZE), level, np.uint8)
        add(f"train/{name}/blank_{what}.jpg", jpeg_bytes(blank), "blank", note=f"all {what}")

    src = source()
    data = files[src]
    add(copy_name(src, "truncated"), data[: len(data) // 2], "corrupt", note="truncated JPEG")
    return planted
