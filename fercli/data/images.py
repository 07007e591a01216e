"""One preprocessing for every image fercli reads, in training and in prediction alike.

1. Open with Pillow (decompression-bomb protection on: an image over
   `Image.MAX_IMAGE_PIXELS` is refused), apply the EXIF orientation.
2. 16-bit grayscale is scaled to 8 bits by its full range, round(x * 255 / 65535); 32-bit
   ("I", "F") images the same way when a value exceeds 255, else taken as 8-bit values;
   transparency is flattened onto black; colour becomes luma
   (Pillow's "L": L = R*299/1000 + G*587/1000 + B*114/1000).
3. A non-square image is centre-cropped to a square; the square is resized to
   `size` x `size` with Pillow's bilinear filter (antialiased when shrinking).

The result is a (size, size) uint8 array. `load_image` and `load_with_pixels` are the one
loader that training, evaluation, `predict-dir` and `clean` share. Small plain grayscale
JPEGs (FER-2013's) skip Pillow's Python header parsing (fercli.data.fastjpeg) with the same
pixels; every other file goes through `Image.open`.
"""

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fercli.data import fastjpeg

IMAGE_SIZE = 48
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# Bump when the preprocessing changes: it is part of the dataset cache key.
PREPROCESS_VERSION = 1


class ImageError(Exception):
    """An image that cannot be read; the message is the reason."""


def is_image_name(name: str) -> bool:
    """A file name (no folder) with an image suffix, not hidden. Called for every file of a
    scan: string slicing, three times as fast as os.path.splitext."""
    return not name.startswith(".") and name[name.rfind(".") :].lower() in SUFFIXES


def is_image_path(path: str | Path) -> bool:
    return is_image_name(os.path.basename(path))


def open_raw(path: str | Path) -> Image.Image:
    """Open and fully decode an image exactly as stored (own mode and size, no EXIF turn).

    Refuses decompression bombs; raises ImageError with the decoder's reason."""
    return open_scaled(path, None)[0]


# A DCT-scaled decode (open_scaled) may be this much shorter than asked: a 4000x3000 photo
# is then decoded at 1/4, 1000x750, for a 1024-pixel search, not at 1/2, 2000x1500, only to
# be shrunk to 1024x768 (2% fewer pixels across than that copy).
DRAFT_SLACK = 0.95


def draft_scale(size: tuple[int, int], min_side: int | None) -> tuple[int, int] | None:
    """The size to ask Pillow's JPEG draft mode for so that the picture is decoded at the
    smallest DCT scale (1/2, 1/4 or 1/8) whose longer side is still at least min_side
    (less DRAFT_SLACK); None where no such scale reduces it (min_side None, or the picture
    under twice that)."""
    if not min_side:
        return None
    side = -(-min_side * round(DRAFT_SLACK * 100) // 100)
    w, h = size
    longer = max(w, h)
    if longer < 2 * side:
        return None
    return (max(1, -(-w * side // longer)), max(1, -(-h * side // longer)))


def open_scaled(path: str | Path, min_side) -> tuple[Image.Image, int]:
    """(picture, scale): open_raw's picture, except that a colour or grey JPEG at least twice
    min_side on its longer side is decoded at 1/scale of its size by libjpeg's DCT scaling
    (Pillow's Image.draft: scale 2, 4 or 8, the largest that keeps the longer side at least
    min_side less DRAFT_SLACK: draft_scale), which costs a fraction of a full decode; pixel
    (x, y) of the result covers the stored pixels scale*x to scale*x + scale - 1.
    min_side: an int, None (never scaled: open_raw), or a callable given the stored
    (width, height) that returns one of those (to decide only once the size is known)."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path) as f, Image.open(f) as im:
                scale = 1
                if min_side is not None and im.format == "JPEG" and im.mode in ("L", "RGB"):
                    side = min_side(im.size) if callable(min_side) else min_side
                    ask = draft_scale(im.size, side)
                    if ask is not None:
                        stored = im.size
                        im.draft(im.mode, ask)
                        scale = round(stored[0] / im.size[0])
                im.load()
                return im, scale
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ImageError(read_error_reason(exc, path)) from None


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image as Pillow "L" at its own size, EXIF orientation applied."""
    return upright_gray(open_raw(path))


# Where Pillow's getexif() finds an orientation (ImageOps.exif_transpose reads it there).
_ORIENTATION_SOURCES = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def upright(im: Image.Image) -> Image.Image:
    """A decoded image turned by its EXIF orientation: the image itself (no copy) where it
    has no orientation anywhere; raises ImageError for a broken EXIF block."""
    if not hasattr(im, "tag_v2") and not any(k in im.info for k in _ORIENTATION_SOURCES):
        return im
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(read_error_reason(exc)) from None


def upright_gray(im: Image.Image) -> Image.Image:
    """A decoded image turned by its EXIF orientation and converted by `to_gray`."""
    if not hasattr(im, "tag_v2") and not any(k in im.info for k in _ORIENTATION_SOURCES):
        return to_gray(im)  # no orientation anywhere: skip exif_transpose's copy
    try:
        return to_gray(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(read_error_reason(exc)) from None


# What a name with an image suffix may be besides a file; reading a pipe or a device would
# block or never end, so these are refused before the first read.
_NOT_FILES = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a pipe (FIFO), not a file"),
    (stat.S_ISSOCK, "is a socket, not a file"),
    (stat.S_ISCHR, "is a device, not a file"),
    (stat.S_ISBLK, "is a device, not a file"),
)


def open_regular(path: str | Path):
    """The file at path, opened for binary reading, if it is a regular file (a symlink to
    one counts); else ImageError."""
    fd, _ = _regular_fd(path)
    try:
        return open(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_small(path: str | Path, limit: int) -> bytes | None:
    """The bytes of the regular file at path if it has at most `limit` of them, else None;
    ImageError where it is no regular file. Plain os calls: a Python file object costs more
    than reading a small file."""
    fd, size = _regular_fd(path)
    try:
        return os.read(fd, size) if size <= limit else None
    except OSError as exc:
        raise ImageError(read_error_reason(exc, path)) from None
    finally:
        os.close(fd)


def _regular_fd(path) -> tuple[int, int]:
    """(descriptor, size) of a regular file. O_NONBLOCK: opening a pipe with no writer
    returns at once (it changes nothing for a regular file), and fstat then refuses it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ImageError(read_error_reason(exc, path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((r for is_kind, r in _NOT_FILES if is_kind(st.st_mode)), "not a file")
            raise ImageError(kind)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_error_reason(exc: Exception, path=None) -> str:
    """The one-line reason a file could not be read, as every command reports it."""
    if isinstance(exc, FileNotFoundError):
        return (
            "broken symbolic link"
            if path is not None and os.path.islink(path)
            else "file not found"
        )
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    message = str(exc) or type(exc).__name__
    if "cannot identify image file" in message:
        if path is not None and is_empty_file(path):
            return "empty file (0 bytes)"
        return "not an image (or an unsupported format)"
    return message


def is_empty_file(path) -> bool:
    try:
        return os.path.getsize(path) == 0
    except (OSError, TypeError):
        return False


def to_gray(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit "L" (see the module docstring)."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa") and (
        im.mode != "P" or "transparency" in im.info
    ):
        im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im.convert("RGBA"))
    return im if im.mode == "L" else im.convert("L")


def to_array(im: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Centre-crop a gray image to a square and resize it to (size, size) uint8."""
    w, h = im.size
    if w != h:
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side))
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def load_image(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Read any common image file as a (size, size) uint8 array; raises ImageError."""
    return _load(path, size, False)[0]


def load_with_pixels(path: str | Path, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`load_image`'s array, and the file's own pixels as Pillow's convert("L") gives them, at
    their stored size and orientation (what imagehash hashes; 16-bit and alpha as Pillow
    converts them, not as `to_gray` does). The two may be one array: do not write to them."""
    return _load(path, size, True)


def load_shortcut(path: str | Path, size: int = IMAGE_SIZE, max_side: int | None = None):
    """`load_with_pixels` for a plain gray JPEG that fercli.data.fastjpeg decodes (and whose
    shorter side is at most `max_side`, where given); None for any other file, which is not
    decoded: read it with `load_with_pixels` or `open_raw`."""
    data = read_small(path, fastjpeg.MAX_BYTES)
    dims = fastjpeg.gray_size(data) if data else None
    if dims is None or (max_side is not None and min(dims) > max_side):
        return None
    pixels = fastjpeg.decode(data, dims)
    if pixels is None:
        return None
    # "L" with no orientation: upright_gray would return it as it is.
    if pixels.shape == (size, size):
        return pixels, pixels
    return to_array(Image.fromarray(pixels), size), pixels


def _load(path, size: int, want_pixels: bool):
    quick = load_shortcut(path, size)
    if quick is not None:
        return quick
    raw = open_raw(path)
    array = to_array(upright_gray(raw), size)
    if not want_pixels:
        return array, None
    return array, np.asarray(raw if raw.mode == "L" else raw.convert("L"))


def load_many(paths, size: int = IMAGE_SIZE):
    """Decode a chunk of paths: (uint8 array (n, size, size), [(index, reason), ...])."""
    out = np.zeros((len(paths), size, size), np.uint8)
    errors = []
    for i, path in enumerate(paths):
        try:
            out[i] = load_image(path, size)
        except ImageError as exc:
            errors.append((i, str(exc)))
    return out, errors
