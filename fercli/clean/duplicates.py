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
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from fercli.clean.filters import Flag
from fercli.clean.near_search import near_graph
from fercli.data.hashing import connected, pack, popcount
from fercli.defaults import NEAR_THRESHOLD_64

SPLIT_ORDER = ("test", "val", "train")
DEFAULT_THRESHOLD_64 = NEAR_THRESHOLD_64  # fercli.defaults says why 6


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


@dataclass(frozen=True)
class DuplicateSearch:
    """What makes two copies duplicates: hashes at most `threshold` bits apart and, with
    `scores` (a callable giving the pixel score of pairs of rows,
    fercli.clean.near_verify.PixelScorer), a pixel score of at least `verify_threshold`
    (None: fercli.clean.near_verify.DEFAULT_VERIFY_THRESHOLD); with `drop_conflicts` every
    copy of a group whose labels disagree is flagged."""

    threshold: int
    drop_conflicts: bool = False
    scores: Callable | None = None
    verify_threshold: float | None = None

    def verify_limit(self) -> float:
        """The lowest pixel score of a verified pair."""
        from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD

        return DEFAULT_VERIFY_THRESHOLD if self.verify_threshold is None else self.verify_threshold


def find_duplicates(
    paths: list[str],
    splits: list[str],
    labels: list[str],
    bits: np.ndarray,
    digests: list[bytes],
    search: DuplicateSearch | int,
    *,
    scores=None,
    stats: dict | None = None,
) -> tuple[list[DuplicateGroup], list[Flag]]:
    """Group near-duplicate images (hashes: bool rows of `bits`) and flag every copy but the
    kept one. `digests` identify pixel-identical images. `search` says what counts as a
    duplicate (a bare threshold: the hashes alone, conflicts kept); `scores`, where given,
    stands for search.scores: near duplicates are then verified on their pixels. `stats`,
    where given, receives the counts of candidate pairs checked and rejected."""
    if not isinstance(search, DuplicateSearch):
        search = DuplicateSearch(int(search))
    if scores is not None:
        search = replace(search, scores=scores)
    rows = _Rows(paths, splits, labels, bits, digests)
    found, checked = _search(rows, search)
    if stats is not None and search.scores is not None:
        limit = search.verify_limit()
        stats["pairs_checked"] = len(checked)
        stats["pairs_rejected"] = sum(v < limit for v in checked.values())
    found.sort(key=lambda group: min(paths[i] for i in group))
    groups, flags = [], []
    for gid, group in enumerate(found, 1):
        k, others = group[0], sorted(group[1:], key=lambda i: paths[i])
        groups.append(rows.group(gid, [k, *others], search.drop_conflicts))
        flags += rows.flags(groups[-1], k, others, checked)
    return groups, flags


def _search(rows: "_Rows", search: DuplicateSearch) -> tuple[list[list[int]], dict]:
    """The groups of row indices (the kept copy first) and, with verification, the scores of
    the candidate pairs checked."""
    if search.scores is None:
        found = group_around_kept(rows.paths, rows.splits, rows.labels, rows.bits, search.threshold)
        return found, {}
    return group_verified(
        rows.paths,
        rows.splits,
        rows.labels,
        rows.bits,
        search.threshold,
        rows.digests,
        search.scores,
        search.verify_limit(),
    )


class _Rows:
    """The copies find_duplicates groups: their paths, splits, labels, hashes and digests."""

    def __init__(self, paths, splits, labels, bits, digests):
        self.paths, self.splits, self.labels = paths, splits, labels
        self.bits, self.digests = bits, digests
        self.words = pack(bits)
        self.rep: dict[bytes, int] = {}  # the first row of each set of identical pixels
        for r, d in enumerate(digests):
            self.rep.setdefault(d, r)

    def group(self, gid: int, rows: list[int], drop_conflicts: bool) -> DuplicateGroup:
        """Group `gid` of `rows`, the kept copy first; none kept where drop_conflicts drops
        a label conflict."""
        labels = [self.labels[i] for i in rows]
        same = Counter(self.digests[i] for i in rows)
        drop_all = len(set(labels)) > 1 and drop_conflicts
        return DuplicateGroup(
            id=gid,
            paths=[self.paths[i] for i in rows],
            splits=[self.splits[i] for i in rows],
            labels=labels,
            kept=None if drop_all else self.paths[rows[0]],
            exact=len(same) == 1,
            exact_sets=sum(n > 1 for n in same.values()),
        )

    def flags(self, group: DuplicateGroup, k: int, others: list[int], checked) -> list[Flag]:
        """The flags of a group: every copy but the kept one k (all of them where none is
        kept), each with its reason."""
        conflict_reason = f"label conflict: copies labelled {', '.join(sorted(set(group.labels)))}"
        if group.kept is None:
            return [Flag(p, "dedup", conflict_reason, group.id, None) for p in group.paths]
        flags = []
        for i in others:
            reason = self.reason(i, k, checked)
            if self.splits[i] != self.splits[k]:
                reason += f"; cross-split: the {self.splits[k]} copy is kept"
            if group.label_conflict:
                reason += f"; {conflict_reason}"
            flags.append(Flag(self.paths[i], "dedup", reason, group.id, self.paths[k]))
        return flags

    def reason(self, i: int, k: int, checked: dict) -> str:
        """Why copy i is a duplicate of the kept copy k."""
        if self.digests[i] == self.digests[k]:
            return f"exact duplicate of {self.paths[k]}"
        distance = int(popcount(self.words[i] ^ self.words[k]))
        reason = f"near duplicate of {self.paths[k]} (hash distance {distance}"
        a, b = self.rep[self.digests[k]], self.rep[self.digests[i]]
        score = checked.get((a, b), checked.get((b, a)))
        return reason + (")" if score is None else f", pixel score {score:.3f})")
