"""Which evaluation images have a near duplicate in the training split (a face the model may
have seen), found exactly as `fercli clean` finds duplicates.

Same decoding and hashes (fercli.clean.pipeline.decode_chunk: imagehash-identical phash of each
file's own pixels), same default threshold (fercli.clean.duplicates.default_threshold: 6 of 64
bits), and, as in clean's dedup filter, blank and unreadable images take no part (a blank
image's hash says nothing). An image is leaked when some training image's hash lies within
the threshold of its own, directly (not through a chain of similar images), and, with
verification (`verify`, on by default as in clean: fercli.clean.near_verify), the two have the
same pixels or their pixel score is at least the verify threshold (the same photograph).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.clean.filters import ImageBatch
from fercli.defaults import BLANK_STD as DEFAULT_BLANK_STD
from fercli.defaults import HASH, HASH_SIZE
from fercli.errors import FercliError


@dataclass(frozen=True)
class LeakCheck:
    hash: str = HASH
    hash_size: int = HASH_SIZE
    threshold: int | None = None  # None: clean's default for the hash size
    reference: str = "train"  # the split whose faces count as seen
    verify: bool = True  # near duplicates checked on their pixels, as clean does
    verify_threshold: float | None = None  # None: fercli.clean.near_verify's default

    def resolved_threshold(self) -> int:
        from fercli.clean.duplicates import default_threshold
        from fercli.data.hashing import check_hash, hash_bits

        check_hash(self.hash, self.hash_size)
        if self.threshold is not None:
            return self.threshold
        return default_threshold(hash_bits(self.hash, self.hash_size))

    def resolved_verify_threshold(self) -> float | None:
        from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD, check_threshold

        if not self.verify:
            return None
        if self.verify_threshold is None:
            return DEFAULT_VERIFY_THRESHOLD
        return check_threshold(self.verify_threshold)

    def describe(self) -> dict:
        return {
            "reference_split": self.reference,
            "hash": self.hash,
            "hash_size": self.hash_size,
            "threshold": self.resolved_threshold(),
            "verify": self.verify,
            "verify_threshold": self.resolved_verify_threshold(),
        }


def leaked_paths(
    root, split: str = "test", check: LeakCheck | None = None, workers: int | None = None
) -> set[str]:
    """Paths (relative to root, as fercli.data.dataset gives them) of the images of ROOT/<split>
    with a near duplicate in ROOT/<check.reference>."""
    from fercli.data.dataset import class_names, scan_split

    check = check or LeakCheck()
    if split == check.reference:
        raise FercliError(f"{split} cannot leak into itself: compare another split with it.")
    root = Path(root)
    threshold = check.resolved_threshold()
    rels, in_reference = [], []
    for name, is_ref in ((split, False), (check.reference, True)):
        if not (root / name).is_dir():
            continue
        found = [s.rel for s in scan_split(root, name, class_names(root, [name]))]
        rels += found
        in_reference += [is_ref] * len(found)
    bits, usable, digests = _hashes(root, rels, (check.hash, check.hash_size), workers)
    scores = None
    if check.verify:
        from fercli.clean.near_verify import PixelScorer

        scores = PixelScorer(
            files=[str(root / r) for r in rels],
            workers=workers,
            enough=check.resolved_verify_threshold(),
        )
    leaked = near_reference(
        bits,
        usable,
        np.array(in_reference, bool),
        threshold,
        scores=scores,
        digests=digests,
        verify_threshold=check.resolved_verify_threshold(),
    )
    return {rels[i] for i in np.flatnonzero(leaked)}


def near_reference(
    bits: np.ndarray,
    usable: np.ndarray,
    reference: np.ndarray,
    threshold: int,
    scores=None,
    digests=None,
    verify_threshold: float | None = None,
):
    """Bool per row: a usable row outside `reference` whose hash is within `threshold` bits
    of some usable reference row's. With `scores` (pixel scores of pairs of rows,
    fercli.clean.near_verify.PixelScorer), such a pair counts only when the two rows have equal
    `digests` (identical pixels) or a score of at least `verify_threshold`."""
    from fercli.clean.near_search import near_graph

    rows = np.flatnonzero(usable)
    out = np.zeros(len(bits), bool)
    if not rows.size:
        return out
    uid, i, j, _ = near_graph(bits[rows], threshold)
    if scores is not None:
        return _verified_reference(rows, uid, i, j, reference, scores, digests, verify_threshold)
    ref_hash = np.zeros(int(uid.max()) + 1, bool)
    ref_hash[uid[reference[rows]]] = True
    near = ref_hash.copy()  # hash ids equal to a reference hash, or within the threshold
    near[i[ref_hash[j]]] = True
    near[j[ref_hash[i]]] = True
    out[rows] = near[uid] & ~reference[rows]
    return out


def _verified_reference(rows, uid, i, j, reference, scores, digests, verify_threshold):
    """near_reference with verification: every (row, reference row) pair whose hashes are
    equal or linked is a candidate; identical pixels count, other pairs are scored."""
    from collections import defaultdict

    from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD

    if verify_threshold is None:
        verify_threshold = DEFAULT_VERIFY_THRESHOLD
    out = np.zeros(len(reference), bool)
    refs, others = defaultdict(list), defaultdict(list)  # hash id -> rows
    for r, h in zip(rows.tolist(), uid.tolist()):
        (refs if reference[r] else others)[h].append(r)
    linked = defaultdict(list)
    for a, b in zip(i.tolist(), j.tolist()):
        linked[a].append(b)
        linked[b].append(a)
    pa, pb = [], []
    for h, mine in others.items():
        for r in mine:
            for hh in (h, *linked[h]):
                for q in refs.get(hh, ()):
                    if digests is not None and digests[r] is not None and digests[r] == digests[q]:
                        out[r] = True
                    else:
                        pa.append(r)
                        pb.append(q)
    if pa:
        pa, pb = np.array(pa, np.int64), np.array(pb, np.int64)
        todo = ~out[pa]
        good = scores(pa[todo], pb[todo]) >= verify_threshold
        out[pa[todo][good]] = True
    return out


def _hashes(root: Path, rels: list[str], spec: tuple[str, int], workers):
    """(bool hashes, usable: readable and not blank, pixel digests) of the files, decoded by
    clean's workers."""
    from fercli.clean.pipeline import decode_chunk
    from fercli.data.dataset import map_chunks
    from fercli.data.hashing import preload

    preload([spec[0]])
    bits = np.zeros((len(rels), spec[1] ** 2), bool)
    usable = np.zeros(len(rels), bool)
    digests: list[bytes | None] = [None] * len(rels)
    full = [str(root / r) for r in rels]
    for first, (images, errors, chunk_digests, hashes) in map_chunks(
        decode_chunk, full, [spec], workers=workers, label="Hashing"
    ):
        part = slice(first, first + len(images))
        n = len(images)
        batch = ImageBatch(rels[part], [""] * n, [""] * n, images, errors)
        bits[part] = hashes[spec]
        usable[part] = np.array([e is None for e in errors]) & (
            batch.pixel_std() >= DEFAULT_BLANK_STD
        )
        digests[part] = chunk_digests
    return bits, usable, digests
