"""A short way through Pillow for the commonest file fercli reads: a small 8-bit grayscale
JPEG whose header holds nothing Pillow acts on (every FER-2013 image).

`Image.open` parses the JPEG header in Python (a loop of 1-byte reads and a handler per
segment) and `load` then hands the whole file to libjpeg, which parses it again. Most of the
time per 48x48 file went to that Python parsing, not to decoding. Here the header is only
checked, with the same acceptance rules as Pillow's parser, and the bytes go straight to
libjpeg-turbo, into a numpy array's memory: through simplejpeg (libjpeg-turbo with the same
settings as Pillow's decoder: the accurate integer DCT, no scaling; 2.6 times as fast as the
Pillow call below on a 48x48 file, since it sets up less around libjpeg), or where simplejpeg
is not installed, through Pillow's own decoder with `ImageFile.load`'s arguments
(`Image.frombytes(..., "jpeg", ("L", ""))`, one call, as `load` does for a file of at most
64 KiB). Either way the pixels are those of `Image.open(path).load()`, bit for bit
(tests/data/test_fastjpeg.py runs both ways, and benchmarks/bench_clean.py --check a whole
dataset). simplejpeg is strict: a file with anything libjpeg warns about (corrupt data, a
premature end) is left to Pillow, which decides as it always did.

Anything else (EXIF or XMP in APP1, where an orientation may be; ICC or MPO in APP2; Adobe's
APP14; colour; 12-bit or lossless or arithmetic coding; padding or junk between segments; a
file over 64 KiB; a header Pillow would refuse; a decoding error) returns None, and the
caller takes Pillow's full path, which then gives the usual result or error message.
"""

import numpy as np
from PIL import Image, ImageFile

try:
    import simplejpeg
except ImportError:  # a platform without its wheel: Pillow's decoder, the same pixels
    simplejpeg = None

# Segments passed over as Pillow's parser does, with no effect on the image: APP0 (JFIF),
# DQT, DHT, DRI, COM.
_PLAIN = frozenset({0xE0, 0xDB, 0xC4, 0xDD, 0xFE})
_SOF = frozenset({0xC0, 0xC1, 0xC2})  # baseline, extended and progressive Huffman DCT
_SOS = 0xDA
# ImageFile.load feeds the decoder blocks of this size: a file within it goes in one call.
MAX_BYTES = ImageFile.MAXBLOCK


def gray_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when `data` is a JPEG this module decodes (see the module docstring),
    else None."""
    if len(data) > MAX_BYTES or not data.startswith(b"\xff\xd8\xff"):
        return None
    n, pos, size = len(data), 2, None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        end = pos + 2 + length
        if length < 2 or end > n:
            return None  # Pillow reads on from a different place, or finds the file truncated
        segment = data[pos + 4 : end]
        if marker == _SOS:
            return size
        if marker in _SOF:
            if size is not None:
                return None
            size = _sof_size(segment)
            if size is None:
                return None
        elif marker not in _PLAIN or not _accepted(marker, segment):
            return None
        pos = end
    return None


def _sof_size(s: bytes) -> tuple[int, int] | None:
    # Pillow's SOF handler: 8 bits; one layer is "L"; component triples must be whole.
    if len(s) < 6 or (len(s) - 6) % 3 or s[0] != 8 or s[5] != 1:
        return None
    width, height = (s[3] << 8) | s[4], (s[1] << 8) | s[2]
    if width == 0 or height == 0:
        return None
    limit = Image.MAX_IMAGE_PIXELS  # Image.open's decompression-bomb check
    if limit is not None and width * height > limit:
        return None
    return width, height


def _accepted(marker: int, s: bytes) -> bool:
    """Whether Pillow's handler for a plain segment would accept it."""
    if marker == 0xE0:
        return not s.startswith(b"JFIF") or len(s) >= 7  # it reads the version at 5
    if marker == 0xDB:  # quantization tables: each 1 + 64 or 1 + 128 bytes, none cut short
        pos = 0
        while pos < len(s):
            pos += 1 + (64 if s[pos] < 16 else 128)
            if pos > len(s):
                return False
    return True


def decode(data: bytes, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The (height, width) uint8 pixels of a JPEG `gray_size` accepts (`size`: what it
    returned, where the caller has it), decoded by libjpeg-turbo; None for any other file or
    any decoding error or warning (the caller then opens it with Pillow)."""
    size = size or gray_size(data)
    if size is None:
        return None
    pixels = np.empty(size[::-1], np.uint8)
    if simplejpeg is not None:
        try:  # strict: anything libjpeg warns about raises
            simplejpeg.decode_jpeg(data, "GRAY", buffer=pixels, strict=True)
        except ValueError:
            return None
        return pixels
    # An "L" image over the array's memory (Pillow maps a raw "L" buffer, marking the image
    # read-only): the decoder writes straight into the array, no copy out of Pillow.
    im = Image.frombuffer("L", size, pixels, "raw", "L", 0, 1)
    try:
        im.frombytes(data, "jpeg", ("L", ""))
    except (ValueError, OSError):
        return None
    # Still mapped: the pixels are in the array. A Pillow that copied the buffer instead
    # (readonly 0) holds them itself.
    return pixels if im.readonly else np.asarray(im)
