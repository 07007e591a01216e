"""Perceptual hashes bit-identical to `imagehash`, computed for many images at once, and an
exact near-duplicate search over them.

`imagehash` hashes one Pillow image per call: `convert("L")`, a LANCZOS resize, then
- ahash: each pixel of a size x size resize > the mean;
- dhash: each pixel of a (size + 1) x size resize > its left neighbour;
- phash: `scipy.fftpack.dct` along axis 0, then axis 1, of a 4size x 4size resize; the
  top-left size x size coefficients > their median;
- whash: a haar wavelet transform (PyWavelets) of a resize to the largest power of two not
  above the image's shorter side (never below size), with the lowest frequency removed;
  the LL band at size x size > its median.
Here everything runs on whole (n, h, w) stacks of same-sized images: the resize of square
images by fercli.data.resample (Pillow's LANCZOS, bit for bit, as matrix products; other shapes
go through Pillow one by one, see that module), then the same numpy/scipy/pywt calls along
the same axes, so every bit equals `imagehash`'s:
`to_hex(bits)[i] == str(imagehash.phash(Image.open(path_i)))` (tests/test_hashing.py).
"""

from collections import defaultdict

import numpy as np
from PIL import Image

from fercli.data.resample import resize_lanczos
from fercli.errors import FercliError

HASHES = ("phash", "dhash", "ahash", "whash")
LANCZOS = Image.Resampling.LANCZOS
# Images hashed together: the temporaries stay at a few hundred KiB, which malloc reuses;
# those of 512 images came as fresh pages from the OS every time, and their page faults
# cost as much as the arithmetic (measured: 20 against 10 us per phash).
BLOCK = 64


def check_hash(kind: str, hash_size: int) -> None:
    if kind not in HASHES:
        raise FercliError(f"unknown hash {kind!r}: choose one of {', '.join(HASHES)}.")
    if hash_size < 2:
        raise FercliError(f"hash size {hash_size} is too small: use 2 or more (default 8).")
    if kind == "whash" and hash_size & (hash_size - 1):
        raise FercliError(f"whash needs a power-of-two hash size, not {hash_size}: use 4, 8, 16.")


def hash_bits(kind: str, hash_size: int) -> int:
    """Bits per hash: hash_size squared for every kind."""
    return hash_size * hash_size


def input_size(kind: str, hash_size: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) that `imagehash` resizes an image of `image_size` to."""
    if kind == "phash":
        return (4 * hash_size, 4 * hash_size)
    if kind == "dhash":
        return (hash_size + 1, hash_size)
    if kind == "ahash":
        return (hash_size, hash_size)
    scale = max(2 ** int(np.log2(min(image_size))), hash_size)  # whash, as imagehash does
    return (scale, scale)


def preload(kinds) -> None:
    """Import what these hashes need (phash: scipy.fft, about 0.25 s) in this process, once,
    before it forks its decoding workers: else each worker imports it again."""
    if "phash" in kinds:
        import scipy.fftpack  # noqa: F401
    if "whash" in kinds:
        import pywt  # noqa: F401


def hash_images(kind: str, images: list[Image.Image], hash_size: int = 8) -> np.ndarray:
    """Hash decoded Pillow images: bool (n, hash_size**2), one row per image, bits in
    imagehash's order (row-major)."""
    pixels = [np.asarray(im if im.mode == "L" else im.convert("L")) for im in images]
    return hash_arrays(kind, pixels, hash_size)


def hash_arrays(kind: str, pixels: list[np.ndarray], hash_size: int = 8) -> np.ndarray:
    """`hash_images` of gray images given as 2-D uint8 arrays (Pillow's "L" pixels)."""
    check_hash(kind, hash_size)
    out = np.zeros((len(pixels), hash_bits(kind, hash_size)), bool)
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, p in enumerate(pixels):
        by_shape[p.shape].append(i)
    for (h, w), same in by_shape.items():
        size = input_size(kind, hash_size, (w, h))
        for start in range(0, len(same), BLOCK):
            rows = same[start : start + BLOCK]
            stack = np.stack([pixels[i] for i in rows])
            if h == w:
                small = resize_lanczos(stack, size)
            else:  # Pillow may resize these in another order than fercli.data.resample
                small = np.stack(
                    [np.asarray(Image.fromarray(p).resize(size, LANCZOS)) for p in stack]
                )
            out[rows] = _HASHERS[kind](small, hash_size).reshape(len(rows), -1)
    return out


def _ahash(pixels, hash_size):
    return pixels > pixels.mean(axis=(1, 2), keepdims=True)


def _dhash(pixels, hash_size):
    return pixels[:, :, 1:] > pixels[:, :, :-1]


def _phash(pixels, hash_size):
    import scipy.fftpack

    # imagehash: dct(dct(pixels, axis=0), axis=1)[:size, :size]. Only the first `size` rows
    # of the first pass feed those coefficients, and each row's transform is independent.
    rows = scipy.fftpack.dct(pixels, axis=1)[:, :hash_size]
    low = scipy.fftpack.dct(rows, axis=2)[:, :, :hash_size].reshape(len(pixels), -1)
    return low > np.median(low, axis=1, keepdims=True)


def _whash(pixels, hash_size):
    import pywt

    scale = pixels.shape[-1]
    ll_max_level = int(np.log2(scale))
    level = int(np.log2(hash_size))
    data = pixels / 255.0
    axes = (-2, -1)
    coeffs = list(pywt.wavedec2(data, "haar", level=ll_max_level, axes=axes))
    coeffs[0] *= 0  # imagehash's remove_max_haar_ll
    data = pywt.waverec2(coeffs, "haar", axes=axes)
    low = pywt.wavedec2(data, "haar", level=ll_max_level - level, axes=axes)[0]
    low = low.reshape(len(pixels), -1)
    return low > np.median(low, axis=1, keepdims=True)


_HASHERS = {"ahash": _ahash, "dhash": _dhash, "phash": _phash, "whash": _whash}


def to_hex(bits: np.ndarray) -> list[str]:
    """Hex strings exactly as `str(imagehash.ImageHash)` prints them."""
    n, nbits = bits.shape
    pad = -nbits % 8
    packed = np.packbits(bits, axis=1)
    width = -(-nbits // 4)
    return [f"{int.from_bytes(row.tobytes(), 'big') >> pad:0{width}x}" for row in packed]


def pack(bits: np.ndarray) -> np.ndarray:
    """Bool (n, nbits) to uint64 words (n, ceil(nbits / 64)); padding bits are zero."""
    n, nbits = bits.shape
    padded = np.zeros((n, -(-nbits // 64) * 64), bool)
    padded[:, :nbits] = bits
    return np.packbits(padded, axis=1).view(">u8").astype(np.uint64)


_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of uint64 words (..., W) -> (...,)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        counts = np.bitwise_count(words)
    else:
        counts = _POP8[words.view(np.uint8)].reshape(*words.shape, 8).sum(-1, dtype=np.uint8)
    if counts.shape[-1] == 1:
        return counts[..., 0]
    return counts.sum(-1, dtype=np.int16)


def distances(words: np.ndarray, i, j) -> np.ndarray:
    """Hamming distances between rows i and rows j of packed hashes."""
    return popcount(words[i] ^ words[j])


def near_pairs(bits: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows (i < j) at Hamming distance <= threshold: (i, j, distance).

    Exact, with memory that grows with the number of rows and of pairs found, never with its
    square. Candidates come from the pigeonhole principle: split the bits into threshold + 1
    segments; two hashes within the threshold agree on at least one whole segment, so only
    rows sharing a segment value are compared (XOR and popcount, a vector op per offset
    within runs of equal segment values). Where the segment values are so concentrated that
    this would compare more than a quarter of all pairs, a blocked all-pairs XOR/popcount
    scan is used instead."""
    n, nbits = bits.shape
    words = pack(bits)
    empty = (np.zeros(0, np.int64),) * 3
    if n < 2:
        return empty
    segments = threshold + 1
    if segments > nbits:
        return _all_pairs(words, threshold)
    keys, budget = [], n * (n - 1) // 8
    for seg in np.array_split(np.arange(nbits), segments):
        key = _segment_key(bits[:, seg])
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
        lengths = np.diff(np.r_[starts, n])
        budget -= int((lengths * (lengths - 1) // 2).sum())
        if budget < 0:
            return _all_pairs(words, threshold)
        keys.append((order, np.repeat(starts + lengths, lengths)))
    found = [_run_pairs(words, threshold, order, end) for order, end in keys]
    i, j, d = (np.concatenate(parts) for parts in zip(*found))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    # A pair that agrees on several segments is found once per segment: keep one.
    _, first = np.unique(lo * n + hi, return_index=True)
    return lo[first], hi[first], d[first]


def _segment_key(seg_bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(seg_bits, axis=1)
    if packed.shape[1] <= 8:
        wide = np.zeros((len(packed), 8), np.uint8)
        wide[:, : packed.shape[1]] = packed
        return wide.view(">u8").ravel()
    return np.unique(packed, axis=0, return_inverse=True)[1].ravel()


def _run_pairs(words, threshold, order, end):
    """Compare each sorted position with the one `offset` further on in the same run, for
    offset 1, 2, ... while any run is that long (words sorted first: sequential reads)."""
    found_i, found_j, found_d = [], [], []
    ordered = words[order]
    positions = np.flatnonzero(end - np.arange(len(order)) > 1)
    offset = 1
    while positions.size:
        d = popcount(ordered[positions] ^ ordered[positions + offset])
        near = d <= threshold
        if near.any():
            hits = positions[near]
            found_i.append(order[hits])
            found_j.append(order[hits + offset])
            found_d.append(d[near])
        offset += 1
        positions = positions[end[positions] - positions > offset]
    if not found_i:
        return (np.zeros(0, np.int64),) * 3
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def _all_pairs(words, threshold, cells: int = 1 << 20):
    """Blocked scan of every pair: each block of rows against all later rows."""
    n = len(words)
    found_i, found_j, found_d = [], [], []
    rows = max(1, cells // n)
    for start in range(0, n, rows):
        block = words[start : start + rows]
        d = popcount(block[:, None, :] ^ words[None, start:, :])
        ii, jj = np.divmod(np.flatnonzero(d <= threshold), d.shape[1])  # faster than nonzero
        later = jj > ii
        ii, jj = ii[later], jj[later]
        found_i.append(ii + start)
        found_j.append(jj + start)
        found_d.append(d[ii, jj])
    return (
        np.concatenate(found_i).astype(np.int64),
        np.concatenate(found_j).astype(np.int64),
        np.concatenate(found_d).astype(np.int64),
    )


def near_graph(bits: np.ndarray, threshold: int):
    """Identical hashes collapsed, then every pair of distinct hashes within `threshold`:
    (hash id of each row, i, j, distance) with i < j indexing the distinct hashes."""
    if len(bits) == 0:
        return (np.zeros(0, np.int64),) * 4
    _, first, inverse = np.unique(
        np.packbits(bits, axis=1), axis=0, return_index=True, return_inverse=True
    )
    i, j, d = near_pairs(bits[first], threshold)
    return inverse.ravel(), i, j, d


def connected(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of n nodes and edges (i, j): each node's label is the smallest
    node of its component. Vectorized hooking and pointer jumping, no Python per edge."""
    parent = np.arange(n)
    while True:
        pi, pj = parent[i], parent[j]
        if np.array_equal(pi, pj):
            return parent
        low = np.minimum(pi, pj)
        np.minimum.at(parent, pi, low)
        np.minimum.at(parent, pj, low)
        while True:  # point every node at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
