"""Duplicate groups from perceptual hashes, and which copy of each group is kept.

Two images are near duplicates when their hashes differ in at most `threshold` bits;
identical pixels always give identical hashes (exact duplicates). Groups are formed around
kept copies, by this deterministic rule:

1. All copies that have a near duplicate are ranked: first by split (`test`, then `val`,
   then `train`, so training never sees a face that is also in an evaluation split), then
   by label (the label most copies of their cluster carry first: a majority vote), then by
   relative path (plain string order).
2. Going down that ranking, a copy that is not in a group yet is kept, and every copy not
   in a group yet within the threshold of it joins its group.

So every flagged copy is within the threshold of the copy kept for it (no chains of
"similar to something similar"), and the same data always gives the same groups.

With verification (`scores`, fercli.clean.near_verify; on by default in `fercli clean`), "within
the threshold" also asks the pixels: two copies with different pixels count as near
duplicates only when their hashes are within the threshold (identical hashes included) and
the pixel score of the pair is at least `verify_threshold` (the same photograph). Then the
rule above runs on sets of pixel-identical copies instead of hashes; without verification
it is the hash-only rule, unchanged. A group
whose copies carry different labels is a label conflict; with `drop_conflicts` every copy of
such a group is flagged. A cluster is a set of copies linked by chains of near duplicates.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from fercli.clean.filters import Flag
from fercli.clean.near_search import near_graph
from fercli.data.hashing import connected, pack, popcount

SPLIT_ORDER = ("test", "val", "train")
# Measured on FER-2013 with 64-bit phash (docs/clean.md, "Near duplicates"): pairs at distance 6
# or less are the same photograph; at 8 about half are different people.
DEFAULT_THRESHOLD_64 = 6


def default_threshold(bits: int) -> int:
    """The default Hamming threshold, scaled from 64-bit hashes to `bits`."""
    return round(DEFAULT_THRESHOLD_64 * bits / 64)


def split_rank(split: str) -> int:
    return SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER)


@dataclass
class DuplicateGroup:
    id: int
    paths: list[str]  # the kept copy first, then the others by path
    splits: list[str]
    labels: list[str]
    kept: str | None  # None when every copy is dropped (label conflict with drop_conflicts)
    exact: bool  # every copy has identical pixels
    exact_sets: int = 0  # sets of two or more pixel-identical copies in the group

    @property
    def cross_split(self) -> bool:
        return len(set(self.splits)) > 1

    @property
    def label_conflict(self) -> bool:
        return len(set(self.labels)) > 1

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "kept": self.kept,
            "kind": "exact" if self.exact else "near",
            "cross_split": self.cross_split,
            "label_conflict": self.label_conflict,
            "members": [
                {"path": p, "split": s, "label": c}
                for p, s, c in zip(self.paths, self.splits, self.labels)
            ],
        }


def group_around_kept(
    paths: list[str], splits: list[str], labels: list[str], bits: np.ndarray, threshold: int
) -> list[list[int]]:
    """Row indices of each group, the kept copy first (see the module docstring)."""
    uid, ei, ej, _ = near_graph(bits, threshold)
    if len(uid) == 0:
        return []
    cluster = connected(int(uid.max()) + 1, ei, ej)[uid]
    candidates = np.flatnonzero(np.bincount(cluster)[cluster] > 1).tolist()
    votes = Counter((cluster[i], labels[i]) for i in candidates)
    ranked = sorted(
        candidates,
        key=lambda i: (split_rank(splits[i]), -votes[cluster[i], labels[i]], paths[i]),
    )
    return _group(ranked, uid, ei.tolist(), ej.tolist())


def _group(ranked, node, a_side, b_side) -> list[list[int]]:
    """Groups of rows, each led by its best-ranked row: that row, every row sharing its node
    (a hash id, a set of pixel-identical files) and every row of the nodes the edges
    (a_side[k], b_side[k]) join to that node; rows in rank order, no row in two groups."""
    neighbours = defaultdict(list)
    for a, b in zip(a_side, b_side):
        neighbours[a].append(b)
        neighbours[b].append(a)
    holders = defaultdict(list)  # node -> its rows, in rank order
    for i in ranked:
        holders[node[i]].append(i)
    grouped: set[int] = set()
    groups = []
    for i in ranked:
        if i in grouped:
            continue
        group = [i]
        grouped.add(i)
        for n in [node[i], *neighbours[node[i]]]:
            for other in holders[n]:
                if other not in grouped:
                    grouped.add(other)
                    group.append(other)
        if len(group) > 1:
            groups.append(group)
    return groups


def group_verified(
    paths: list[str],
    splits: list[str],
    labels: list[str],
    bits: np.ndarray,
    threshold: int,
    digests: list[bytes],
    scores,
    verify_threshold: float,
):
    """`group_around_kept` with verification: (groups of row indices, the kept copy first;
    {(row a, row b): score} of the candidate pairs checked, one representative row per set
    of pixel-identical copies). `scores(rows_a, rows_b)` gives the pixel score of each pair
    of rows."""
    uid, ei, ej, _ = near_graph(bits, threshold)
    if len(uid) == 0:
        return [], {}
    ids: dict[bytes, int] = {}
    pix = np.array([ids.setdefault(d, len(ids)) for d in digests], np.int64)
    nodes = len(ids)
    rep = np.unique(pix, return_index=True)[1]  # the first row of each pixel set
    node_hash = uid[rep]
    by_hash = defaultdict(list)  # hash id -> pixel sets with that hash
    for node, h in enumerate(node_hash.tolist()):
        by_hash[h].append(node)
    na, nb = [], []
    for same in by_hash.values():  # different pixels, identical hashes
        for x in range(len(same)):
            for y in range(x + 1, len(same)):
                na.append(same[x])
                nb.append(same[y])
    for a, b in zip(ei.tolist(), ej.tolist()):
        for x in by_hash.get(a, ()):
            for y in by_hash.get(b, ()):
                na.append(x)
                nb.append(y)
    na, nb = np.array(na, np.int64), np.array(nb, np.int64)
    pair_score = scores(rep[na], rep[nb]) if len(na) else np.zeros(0, np.float32)
    ok = pair_score >= verify_threshold
    checked = {
        (int(x), int(y)): float(v)
        for x, y, v in zip(rep[na].tolist(), rep[nb].tolist(), pair_score.tolist())
    }
    cluster = connected(nodes, na[ok], nb[ok])[pix]
    candidates = np.flatnonzero(np.bincount(cluster)[cluster] > 1).tolist()
    votes = Counter((cluster[i], labels[i]) for i in candidates)
    ranked = sorted(
        candidates,
        key=lambda i: (split_rank(splits[i]), -votes[cluster[i], labels[i]], paths[i]),
    )
    return _group(ranked, pix, na[ok].tolist(), nb[ok].tolist()), checked


def find_duplicates(
    paths: list[str],
    splits: list[str],
    labels: list[str],
    bits: np.ndarray,
    digests: list[bytes],
    threshold: int,
    drop_conflicts: bool = False,
    scores=None,
    verify_threshold: float | None = None,
    stats: dict | None = None,
) -> tuple[list[DuplicateGroup], list[Flag]]:
    """Group near-duplicate images (hashes: bool rows of `bits`) and flag every copy but the
    kept one. `digests` identify pixel-identical images. With `scores` (a callable giving
    the pixel score of pairs of rows, fercli.clean.near_verify.PixelScorer), near duplicates are
    verified: a pair counts only when its score is at least `verify_threshold` (default
    fercli.clean.near_verify.DEFAULT_VERIFY_THRESHOLD). `stats`, where given, receives the counts
    of candidate pairs checked and rejected."""
    checked: dict = {}
    if scores is None:
        found = group_around_kept(paths, splits, labels, bits, threshold)
    else:
        from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD

        if verify_threshold is None:
            verify_threshold = DEFAULT_VERIFY_THRESHOLD
        found, checked = group_verified(
            paths, splits, labels, bits, threshold, digests, scores, verify_threshold
        )
    if stats is not None and scores is not None:
        stats["pairs_checked"] = len(checked)
        stats["pairs_rejected"] = sum(v < verify_threshold for v in checked.values())
    rep: dict[bytes, int] = {}
    for r, d in enumerate(digests):
        rep.setdefault(d, r)
    found.sort(key=lambda rows: min(paths[i] for i in rows))
    words = pack(bits)
    groups, flags = [], []
    for gid, rows in enumerate(found, 1):
        k, others = rows[0], sorted(rows[1:], key=lambda i: paths[i])
        rows = [k, *others]
        g_labels = [labels[i] for i in rows]
        conflict = len(set(g_labels)) > 1
        drop_all = conflict and drop_conflicts
        same = Counter(digests[i] for i in rows)
        groups.append(
            DuplicateGroup(
                id=gid,
                paths=[paths[i] for i in rows],
                splits=[splits[i] for i in rows],
                labels=g_labels,
                kept=None if drop_all else paths[k],
                exact=len(same) == 1,
                exact_sets=sum(n > 1 for n in same.values()),
            )
        )
        conflict_reason = f"label conflict: copies labelled {', '.join(sorted(set(g_labels)))}"
        if drop_all:
            flags += [Flag(paths[i], "dedup", conflict_reason, gid, None) for i in rows]
            continue
        for i in others:
            if digests[i] == digests[k]:
                reason = f"exact duplicate of {paths[k]}"
            else:
                distance = int(popcount(words[i] ^ words[k]))
                reason = f"near duplicate of {paths[k]} (hash distance {distance}"
                a, b = rep[digests[k]], rep[digests[i]]
                score = checked.get((a, b), checked.get((b, a)))
                reason += ")" if score is None else f", pixel score {score:.3f})"
            if splits[i] != splits[k]:
                reason += f"; cross-split: the {splits[k]} copy is kept"
            if conflict:
                reason += f"; {conflict_reason}"
            flags.append(Flag(paths[i], "dedup", reason, gid, paths[k]))
    return groups, flags
