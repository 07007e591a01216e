"""Pillow's LANCZOS resize of 8-bit gray images, bit for bit, for a whole stack at once.

imagehash resizes every image with `Image.resize(size, LANCZOS)`; for FER-2013's 48x48
files that call cost more than the rest of a hash. Pillow's resampling (libImaging
Resample.c) is integer arithmetic that numpy can repeat exactly:
- per output pixel, filter weights from the Lanczos-3 kernel in double precision
  (`precompute_coeffs`: centre, support, bounds rounded as in C, weights normalized to sum
  1), then made 22-bit fixed point (`normalize_coeffs_8bpc`, rounded away from zero);
- a horizontal pass, then a vertical one, each sum starting at 1 << 21, shifted right by 22
  and clipped to 0..255 (`clip8`), the intermediate image stored as uint8.
The weights are computed here with Python floats (C doubles, the same libm `sin`), and each
pass is a matrix product in which every product and partial sum is an integer that the
float type holds exactly (float64 below 2**53; float32 below 2**24, with the weights split
in two halves of 11 bits), so the sums are exact whatever order BLAS adds them in.

Only square images: for other shapes Pillow 13 was measured to take the vertical pass first
in some cases (rounding then differs), so fercli.data.hashing resizes those with Pillow itself.
tests/test_resample.py checks it against Pillow on random images of many sizes.
"""

import math
from functools import lru_cache

import numpy as np

PRECISION_BITS = 32 - 8 - 2
_SUPPORT = 3.0  # Lanczos-3


def _lanczos(x: float) -> float:
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


@lru_cache(maxsize=64)
def weights(in_size: int, out_size: int) -> np.ndarray:
    """float64 (in_size, out_size): the fixed-point weights of each output pixel's inputs,
    zero elsewhere (Pillow's precompute_coeffs and normalize_coeffs_8bpc)."""
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ss = 1.0 / filterscale
    matrix = np.zeros((in_size, out_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in k:
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        for x, w in enumerate(k):
            fixed = w * (1 << PRECISION_BITS)
            matrix[xmin + x, xx] = int(fixed - 0.5) if w < 0 else int(fixed + 0.5)
    matrix.setflags(write=False)
    return matrix


@lru_cache(maxsize=64)
def _split(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The weights as hi * 2048 + lo in two float32 matrices, where every sum a pass makes
    with them stays below 2**24 in magnitude (so float32 holds it exactly, as float64 does
    the whole one): twice the products, each at about a third of float64's cost. None where
    a column's weights are too many for that (strong reductions)."""
    w = weights(in_size, out_size)
    hi = np.floor(w / 2048)
    lo = w - hi * 2048
    bound = 255 * max(np.abs(hi).sum(0).max(), np.abs(lo).sum(0).max())
    if bound >= 2**24:
        return None
    return hi.astype(np.float32), lo.astype(np.float32)


def _pass(rows: np.ndarray, in_size: int, out_size: int) -> np.ndarray:
    """One pass over the last axis of uint8 rows (m, in_size) -> uint8 (m, out_size):
    Pillow's sums (exact integers), + 1 << 21, >> 22, clipped to 0..255 (its clip8)."""
    split = _split(in_size, out_size)
    if split is None:
        sums = (rows.astype(np.float64) @ weights(in_size, out_size)).astype(np.int32)
    else:
        pixels = rows.astype(np.float32)
        sums = (pixels @ split[0]).astype(np.int32)
        sums <<= 11
        sums += (pixels @ split[1]).astype(np.int32)
    sums += 1 << (PRECISION_BITS - 1)
    sums >>= PRECISION_BITS
    return np.clip(sums, 0, 255, out=sums).astype(np.uint8)


def resize_lanczos(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (n, h, w) -> uint8 (n, size[1], size[0]): each image exactly as
    `Image.fromarray(image).resize(size, Image.LANCZOS)` gives it."""
    width, height = size
    n, h, w = pixels.shape
    out = pixels
    if width != w:  # Pillow skips a pass whose size does not change
        out = _pass(out.reshape(n * h, w), w, width).reshape(n, h, width)
    if height != h:  # the same pass on the transposed images: one matrix product
        cols = out.transpose(0, 2, 1).reshape(-1, h)
        out = _pass(cols, h, height).reshape(n, -1, height).transpose(0, 2, 1)
    return np.ascontiguousarray(out)
