"""A small dataset for the `fercli clean` tests: distinct textured images (phash distances
around 32, far from any threshold) with every kind of problem planted, and what was planted.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("angry", "happy", "sad")


def texture(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A smooth random gray image: 6x6 noise blown up, plus fine grain."""
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.float64)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_dirty_dataset(root: Path, per_class: int = 6, seed: int = 0) -> dict:
    """Write ROOT/{train,test}/<class>/*.jpg with planted problems. Returns
    {"clean": [paths], "planted": {path: (filter, what, original or None)}}."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    files: dict[str, bytes] = {}
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", per_class), ("test", max(2, per_class // 3))):
        for label in CLASSES:
            for k in range(n):
                rel = f"{split}/{label}/{label}_{k:03d}.jpg"
                arrays[rel] = texture(rng)
                files[rel] = jpeg(arrays[rel])
    clean = sorted(files)
    planted = {}

    def plant(rel, data, filt, what, of=None):
        files[rel] = data
        planted[rel] = (filt, what, of)

    plant(
        "train/angry/angry_000_copy.jpg",
        files["train/angry/angry_000.jpg"],
        "dedup",
        "exact",
        "train/angry/angry_000.jpg",
    )
    brighter = np.clip(arrays["train/happy/happy_001.jpg"].astype(int) + 6, 0, 255)
    plant(
        "train/happy/happy_001_bright.jpg",
        jpeg(brighter.astype(np.uint8)),
        "dedup",
        "near",
        "train/happy/happy_001.jpg",
    )
    plant(
        "train/sad/sad_002_q50.jpg",
        jpeg(arrays["train/sad/sad_002.jpg"], 50),
        "dedup",
        "near",
        "train/sad/sad_002.jpg",
    )
    # A training face that is also in test: the test copy stays, the train copy goes.
    plant(
        "train/sad/leak.jpg",
        files["test/sad/sad_000.jpg"],
        "dedup",
        "cross-split",
        "test/sad/sad_000.jpg",
    )
    # The same face under two labels.
    plant(
        "train/happy/angry_003_relabelled.jpg",
        files["train/angry/angry_003.jpg"],
        "dedup",
        "label-conflict",
        "train/angry/angry_003.jpg",
    )
    for level, name in ((0, "black"), (255, "white"), (128, "gray")):
        plant(
            f"train/angry/blank_{name}.jpg", jpeg(np.full((48, 48), level, np.uint8)), "blank", name
        )
    whole = files["train/sad/sad_001.jpg"]
    plant("train/sad/truncated.jpg", whole[: len(whole) // 2], "corrupt", "truncated")
    plant("train/happy/empty.jpg", b"", "corrupt", "zero bytes")
    plant("test/angry/notes.jpg", b"these are not pixels\n", "corrupt", "not an image")
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"clean": clean, "planted": planted}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
