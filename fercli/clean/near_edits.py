"""Planted edits of a face, the kind that make a near duplicate of the same photo: for
measuring the near-duplicate search and its verification (tests/clean/test_near_verify.py,
benchmarks/bench_near_verify.py). Each edit takes a (48, 48) uint8 image and a
numpy Generator and returns a new (48, 48) uint8 image; JPEG re-encoding happens where the
edit says so (every planted copy is stored as a JPEG by the callers that write files)."""

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 48
BICUBIC = Image.Resampling.BICUBIC


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(arr))


def jpeg_roundtrip(arr: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    _pil(arr).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"))


def crop(arr, rng):
    """A crop of 1 to 4 pixels off each side (independently), resized back to 48x48."""
    left, top, right, bottom = rng.integers(1, 5, 4)
    box = (int(left), int(top), SIZE - int(right), SIZE - int(bottom))
    return np.asarray(_pil(arr).crop(box).resize((SIZE, SIZE), BICUBIC))


def shift(arr, rng):
    """The photo moved by 1 to 3 pixels (each axis), the edge pixels repeated."""
    dy, dx = rng.integers(-3, 4, 2)
    if dy == dx == 0:
        dx = 2
    padded = np.pad(arr, 3, mode="edge")
    return padded[3 - dy : 3 - dy + SIZE, 3 - dx : 3 - dx + SIZE].copy()


def rescale(arr, rng):
    """Scaled down to 24 to 40 pixels and back up (a blurred copy)."""
    side = int(rng.integers(24, 41))
    small = _pil(arr).resize((side, side), BICUBIC)
    return np.asarray(small.resize((SIZE, SIZE), BICUBIC))


def zoom(arr, rng):
    """Zoomed in or out by 3 to 8% about the centre (edges repeated when zooming out)."""
    factor = float(rng.uniform(1.03, 1.08)) ** (1 if rng.random() < 0.5 else -1)
    pad = 8
    side = SIZE / factor
    lo = pad + (SIZE - side) / 2
    box = (lo, lo, lo + side, lo + side)
    padded = _pil(np.pad(arr, pad, mode="edge"))
    return np.asarray(padded.resize((SIZE, SIZE), BICUBIC, box=box))


def recompress(arr, rng):
    """JPEG re-encoded at quality 20 to 70."""
    return jpeg_roundtrip(arr, int(rng.integers(20, 71)))


def brightness(arr, rng):
    """Brightness moved by 10 to 30 levels and contrast scaled by 0.85 to 1.15."""
    delta = float(rng.uniform(10, 30)) * (1 if rng.random() < 0.5 else -1)
    gain = float(rng.uniform(0.85, 1.15))
    out = (arr.astype(np.float64) - 128) * gain + 128 + delta
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rotate(arr, rng):
    """Rotated by 2 to 5 degrees either way (edges repeated as Pillow fills them: no fill;
    the rotated image is cut from a larger padded copy)."""
    angle = float(rng.uniform(2, 5)) * (1 if rng.random() < 0.5 else -1)
    padded = _pil(np.pad(arr, 8, mode="edge"))
    turned = padded.rotate(angle, Image.Resampling.BICUBIC)
    return np.asarray(turned)[8 : 8 + SIZE, 8 : 8 + SIZE].copy()


def text(arr, rng):
    """A short caption (3 to 6 characters, Pillow's default font) written in white or black
    near the top or bottom edge, as watermarks are."""
    im = _pil(arr).copy()
    draw = ImageDraw.Draw(im)
    letters = "ABCDEFGHKMNPRSTWXYZ0123456789"
    caption = "".join(rng.choice(list(letters), int(rng.integers(3, 7))))
    y = int(rng.integers(0, 4)) if rng.random() < 0.5 else int(rng.integers(36, 40))
    x = int(rng.integers(0, 12))
    fill = 255 if rng.random() < 0.5 else 0
    draw.text((x, y), caption, fill=fill, font=ImageFont.load_default())
    return np.asarray(im)


EDITS = {
    "crop": crop,
    "shift": shift,
    "rescale": rescale,
    "zoom": zoom,
    "jpeg": recompress,
    "brightness": brightness,
    "rotate": rotate,
    "text": text,
}


def plant(arr: np.ndarray, edit: str, rng: np.random.Generator) -> np.ndarray:
    """The edit `edit` (a key of EDITS) of `arr`, then stored as a JPEG at quality 90 as
    FER-2013's files are."""
    return jpeg_roundtrip(EDITS[edit](arr, rng), 90)
