"""Verification of near-duplicate candidates: are two images the same photograph?

The hash search (fercli.clean.near_search) finds pairs whose perceptual hashes are within the
threshold; on FER-2013 a few percent of those are different people whose faces happen to
have the same coarse layout. Each candidate pair is checked on its pixels:

1. Both images as 48x48 gray (what fercli decodes every image to), in float32.
2. Alignment, coarse: at half size (24x24, 2x2 means), the second image is warped about
   its centre by each scale in SCALES and each angle in ANGLES, and the normalised
   cross-correlation (NCC) of the first image's central window with the warped image's
   window is computed at every shift of up to COARSE_SHIFT half-size pixels (4 pixels at
   48x48). The transform and shift with the highest NCC win.
3. Alignment, fine: at 48x48, with the winning warp, the shift is refined (the coarse one
   doubled, +-1 pixel).
4. The score, at that alignment: both windows are z-scored and band-passed (a difference of
   Gaussians, DOG: what tells two people apart is in the eyes', mouth's and hair's edges,
   not in the coarse layout both hashes already agree on); the DROP_TILES tiles (of a
   TILES x TILES grid) where they differ most are left out, then the TRIM share of the
   remaining pixels that differ most (a caption, a watermark, a hand: whatever covers part
   of one copy), and the NCC of the rest is the score. Planted edits of FER-2013 faces
   (JPEG re-encoding, blurring, brightness and contrast, shifts, crops, zooms, small
   rotations, captions) that the hash finds score 0.933 or more; different people whose
   hashes are within the threshold score up to about 0.926 (benchmarks/bench_near_verify.py,
   docs/near-duplicates.md).

A pair is verified when its score is at least the threshold (DEFAULT_VERIFY_THRESHOLD).
Everything runs on stacks of pairs (numpy and scipy: FFT and Gaussian filters), in blocks
of BLOCK pairs on a few threads. No torch.
"""

import numpy as np

from fercli.defaults import VERIFY_THRESHOLD as DEFAULT_VERIFY_THRESHOLD

SIZE = 48
SCALES = (0.92, 0.96, 1.0, 1.04, 1.08)
ANGLES = (-4.0, 0.0, 4.0)
COARSE_SHIFT = 2  # half-size pixels (4 at 48x48)
TRIM = 0.1
TILES = 5
DROP_TILES = 5
DOG = (1.2, 3.0)  # Gaussian sigmas of the band-pass, in pixels at 48x48
BLOCK = 1024
TRANSFORMS = [(s, t) for s in SCALES for t in ANGLES]


def _warp_table(size: int, scale: float, angle: float):
    """Bilinear sampling of a size x size image warped about its centre: source indices of
    the 4 neighbours (flat) and their weights, for output pixel order."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    t = np.deg2rad(angle)
    dy, dx = (yy - c) / scale, (xx - c) / scale
    sy = np.clip(c + np.cos(t) * dy - np.sin(t) * dx, 0, size - 1)
    sx = np.clip(c + np.sin(t) * dy + np.cos(t) * dx, 0, size - 1)
    y0 = np.minimum(np.floor(sy).astype(np.int64), size - 2)
    x0 = np.minimum(np.floor(sx).astype(np.int64), size - 2)
    fy, fx = sy - y0, sx - x0
    k = (y0 * size + x0).ravel()
    idx = np.stack([k, k + 1, k + size, k + size + 1])
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]).reshape(4, -1)
    return idx, w.astype(np.float32)


_TABLES: dict = {}


def _table(size, scale, angle):
    key = (size, scale, angle)
    if key not in _TABLES:
        _TABLES[key] = _warp_table(size, scale, angle)
    return _TABLES[key]


def warp(stack: np.ndarray, scale: float, angle: float) -> np.ndarray:
    """Each image of (n, s, s) float32 scaled by `scale` and turned by `angle` degrees about
    its centre (bilinear; the edge pixels repeated outside)."""
    n, size, _ = stack.shape
    if scale == 1.0 and angle == 0.0:
        return stack
    idx, w = _table(size, scale, angle)
    flat = stack.reshape(n, -1)
    out = flat[:, idx[0]] * w[0]
    for q in range(1, 4):
        out += flat[:, idx[q]] * w[q]
    return out.reshape(n, size, size)


def _zscore(x: np.ndarray, axes) -> np.ndarray:
    x = x - x.mean(axis=axes, keepdims=True)
    norm = np.sqrt((x * x).mean(axis=axes, keepdims=True))
    return x / np.maximum(norm, 1e-3)


def _half(x: np.ndarray) -> np.ndarray:
    n, s, _ = x.shape
    return x.reshape(n, s // 2, 2, s // 2, 2).mean(axis=(2, 4))


def _window_sums(x: np.ndarray, w: int) -> np.ndarray:
    """Sums of every w x w window of (n, s, s): (n, s - w + 1, s - w + 1), as band-matrix
    products (M.T @ x @ M)."""
    s = x.shape[1]
    band = _band(s, w)
    return np.matmul(np.matmul(band.T, x), band)


def _band(s: int, w: int) -> np.ndarray:
    key = ("band", s, w)
    if key not in _TABLES:
        band = np.zeros((s, s - w + 1), np.float32)
        for o in range(s - w + 1):
            band[o : o + w, o] = 1
        _TABLES[key] = band
    return _TABLES[key]


def _coarse(a2: np.ndarray, b2: np.ndarray):
    """Best (NCC, transform index, shift index) per pair at half size: the central window
    of a2 against b2 warped by every transform, at every shift of up to COARSE_SHIFT; the
    correlations of all shifts at once by FFT (the window plus the largest shift stays
    inside the image, so the circular correlation equals the plain one)."""
    import scipy.fft

    n, s, _ = a2.shape
    m = COARSE_SHIFT
    w = s - 2 * m
    za = np.zeros_like(a2)
    za[:, m : s - m, m : s - m] = _zscore(a2[:, m : s - m, m : s - m], (1, 2))
    fa = np.conj(scipy.fft.rfft2(za))
    shifts = np.arange(-m, m + 1) % s  # circular offsets of the shifts -m..m
    best = np.full(n, -np.inf)
    best_t = np.zeros(n, np.int64)
    best_s = np.zeros(n, np.int64)
    for k, (scale, angle) in enumerate(TRANSFORMS):
        wb = warp(b2, scale, angle)
        corr = scipy.fft.irfft2(fa * scipy.fft.rfft2(wb), s=(s, s))
        dot = corr[:, shifts[:, None], shifts[None, :]]  # (n, 2m+1, 2m+1)
        s1 = _window_sums(wb, w)
        s2 = _window_sums(wb * wb, w)
        var = np.maximum(s2 / (w * w) - (s1 / (w * w)) ** 2, 1e-6)
        ncc = (dot / (w * w) / np.sqrt(var)).reshape(n, -1)
        arg = ncc.argmax(axis=1)
        top = ncc[np.arange(n), arg]
        better = top > best
        best[better], best_t[better], best_s[better] = top[better], k, arg[better]
    return best, best_t, best_s


def _align(a: np.ndarray, b: np.ndarray):
    n = len(a)
    _, best_t, best_s = _coarse(_half(a), _half(b))
    m = COARSE_SHIFT
    # Fine: at full size, the winning warp, shift 2 * coarse +- 1 (margin 2m + 1).
    fm = 2 * m + 1
    w = SIZE - 2 * fm
    dy = (best_s // (2 * m + 1) - m) * 2
    dx = (best_s % (2 * m + 1) - m) * 2
    warped = np.empty_like(b)
    for k, (scale, angle) in enumerate(TRANSFORMS):
        rows = np.flatnonzero(best_t == k)
        if rows.size:
            warped[rows] = warp(b[rows], scale, angle)
    za = _zscore(a[:, fm : SIZE - fm, fm : SIZE - fm], (1, 2)).reshape(n, -1)
    # One gather of each pair's (w + 2) x (w + 2) region around the coarse shift.
    span = np.arange(w + 2)
    rows = np.arange(n)[:, None, None]
    oy = (fm - 1 + dy)[:, None, None] + span[None, :, None]
    ox = (fm - 1 + dx)[:, None, None] + span[None, None, :]
    region = warped[rows, oy, ox]
    best = np.full(n, -np.inf, np.float32)
    best_zb = np.empty_like(za)
    for ey in range(3):
        for ex in range(3):
            zb = _zscore(region[:, ey : ey + w, ex : ex + w], (1, 2)).reshape(n, -1)
            ncc = np.einsum("ij,ij->i", za, zb) / (w * w)
            better = ncc > best
            best[better] = ncc[better]
            best_zb[better] = zb[better]
    return za.reshape(n, w, w), best_zb.reshape(n, w, w)


def _tile_map(w: int) -> np.ndarray:
    """(w * w, TILES**2) one-hot map of each window pixel's tile (a TILES x TILES grid)."""
    key = ("tiles", w)
    if key not in _TABLES:
        edges = np.linspace(0, w, TILES + 1).round().astype(np.int64)
        band = np.searchsorted(edges, np.arange(w), "right") - 1
        label = (band[:, None] * TILES + band[None, :]).ravel()
        onehot = np.zeros((w * w, TILES * TILES), np.float32)
        onehot[np.arange(w * w), label] = 1
        _TABLES[key] = onehot
    return _TABLES[key]


def _robust_ncc(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """The score of aligned z-scored windows (n, w, w): NCC of their band-pass (difference
    of Gaussians) images, leaving out the DROP_TILES tiles where they differ most and then
    the TRIM share of the remaining pixels that differ most."""
    from scipy.ndimage import gaussian_filter

    n, w, _ = za.shape

    def band(x):
        return gaussian_filter(x, (0, DOG[0], DOG[0])) - gaussian_filter(x, (0, DOG[1], DOG[1]))

    x = _zscore(band(za), (1, 2)).reshape(n, -1)
    y = _zscore(band(zb), (1, 2)).reshape(n, -1)
    onehot = _tile_map(w)
    diff = np.abs(x - y)
    err = (diff * diff) @ onehot  # per tile
    worst = np.argpartition(-err, DROP_TILES - 1, axis=1)[:, :DROP_TILES]
    keep_tile = np.ones(err.shape, bool)
    np.put_along_axis(keep_tile, worst, False, axis=1)
    inside = (keep_tile.astype(np.float32) @ onehot.T) > 0.5
    masked = np.where(inside, diff, np.inf)
    keep = (inside.sum(axis=1) * (1 - TRIM)).astype(np.int64)  # tiles differ in size
    cut = np.take_along_axis(np.sort(masked, axis=1), keep[:, None] - 1, axis=1)
    return _masked_ncc(x, y, masked <= cut)


def _masked_ncc(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.float32)
    count = mask.sum(axis=1)
    mx = (x * mask).sum(axis=1) / count
    my = (y * mask).sum(axis=1) / count
    xc, yc = (x - mx[:, None]) * mask, (y - my[:, None]) * mask
    num = (xc * yc).sum(axis=1)
    den = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    return (num / np.maximum(den, 1e-6)).astype(np.float32)


def pair_scores(images, i, j, workers: int | None = None, enough: float | None = None):
    """The score (see the module docstring) of each pair (images[i[k]], images[j[k]]);
    images: (n, 48, 48) gray, any numeric dtype. The alignment moves the second image only,
    so the score is the higher of the two directions, (i, j) and (j, i). With `enough`, the
    reverse direction is computed only for pairs whose first score is below it: a decision
    `score >= enough` is the same, at about half the cost, but scores at or above `enough`
    may be those of the first direction only. Blocks of BLOCK pairs run in `workers`
    threads (default: the usable cores, at most 8; numpy and scipy release the GIL)."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    out = _one_way(images, i, j, workers)
    again = np.flatnonzero(out < enough) if enough is not None else np.arange(len(i))
    if again.size:
        out[again] = np.maximum(out[again], _one_way(images, j[again], i[again], workers))
    return out


def _one_way(images, i, j, workers):
    from concurrent.futures import ThreadPoolExecutor

    from fercli.clean.near_search import _workers

    out = np.empty(len(i), np.float32)
    starts = range(0, len(i), BLOCK)

    def one(start):
        part = slice(start, start + BLOCK)
        a = np.asarray(images[i[part]], np.float32)
        b = np.asarray(images[j[part]], np.float32)
        out[part] = _robust_ncc(*_align(a, b))

    workers = min(workers or _workers(), len(starts))
    if workers <= 1:
        for start in starts:
            one(start)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, starts))
    return out


def verify_pairs(images, i, j, threshold: float = DEFAULT_VERIFY_THRESHOLD) -> np.ndarray:
    """Bool per pair: the two images are the same photograph (score >= threshold)."""
    return pair_scores(images, i, j, enough=threshold) >= threshold


def check_threshold(threshold: float) -> float:
    from fercli.errors import FercliError

    if not -1.0 <= threshold <= 1.0:
        raise FercliError(
            f"verify threshold {threshold:g} is out of range: a correlation, use -1 to 1 "
            f"(default {DEFAULT_VERIFY_THRESHOLD:g})."
        )
    return float(threshold)


def _load_chunk(paths: list[str]):
    from fercli.data.images import ImageError, load_image

    out = np.zeros((len(paths), SIZE, SIZE), np.uint8)
    ok = np.zeros(len(paths), bool)
    for k, path in enumerate(paths):
        try:
            out[k] = load_image(path, SIZE)
            ok[k] = True
        except (ImageError, OSError, ValueError):
            pass
    return out, ok


def load_images(files: list[str], workers: int | None = None):
    """The 48x48 arrays fercli decodes the files to (fercli.data.images.load_image), decoded
    again for verification (clean keeps no pixels, only hashes): (uint8 (n, 48, 48), bool
    per file: decoded). A file that fails now (moved, changed) gives ok False."""
    from fercli.data.dataset import map_chunks

    images = np.zeros((len(files), SIZE, SIZE), np.uint8)
    ok = np.zeros(len(files), bool)
    for first, (part, good) in map_chunks(_load_chunk, files, workers=workers, label="Verifying"):
        images[first : first + len(part)] = part
        ok[first : first + len(part)] = good
    return images, ok


class PixelScorer:
    """Scores of pairs of rows of a table of images, decoding each needed image once: from
    `files` (paths), or from `images` (a stack already in memory). Rows whose image cannot
    be decoded score -inf (never verified). `enough`: as in `pair_scores`."""

    def __init__(self, files=None, images=None, workers=None, enough: float | None = None):
        self.files, self.images, self.workers, self.enough = files, images, workers, enough

    def __call__(self, a, b) -> np.ndarray:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        if not len(a):
            return np.zeros(0, np.float32)
        rows, inverse = np.unique(np.r_[a, b], return_inverse=True)
        if self.images is not None:
            pixels, ok = np.asarray(self.images)[rows], np.ones(len(rows), bool)
        else:
            pixels, ok = load_images([self.files[r] for r in rows.tolist()], self.workers)
        ia, ib = inverse[: len(a)], inverse[len(a) :]
        scores = pair_scores(pixels, ia, ib, self.workers, self.enough)
        scores[~(ok[ia] & ok[ib])] = -np.inf
        return scores
