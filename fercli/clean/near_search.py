"""Exact near-duplicate search over perceptual hashes by multi-index hashing.

Two hashes within Hamming distance t differ on at most t of any m = t + k disjoint blocks
of their bits, so they agree exactly on at least k blocks (the pigeonhole principle; k = 1
is the plain "t + 1 blocks" split). Each of the C(m, k) combinations of k blocks is a key:
rows are sorted by it (the bits of those blocks, masked out of the packed hash), and only
rows in a run of equal keys are compared (XOR and popcount). A larger k gives more keys but
longer ones, so far fewer candidates per key: with t = 6 on 64 bits, k = 1 has 7 keys of 9
bits (its candidates grow with the square of the hashes: 1/512 of all pairs per key),
k = 3 has 84 keys of about 21 bits. k is chosen by the cost estimated on a sample of the
rows (sort work per key plus the candidates its bucket sizes imply), and an all-pairs
scan is used where nothing beats it (tiny or very concentrated sets).

A pair that agrees on several keys is kept only on the first one (in
itertools.combinations order) whose blocks it agrees on: on key c it is kept when no block
before c's last one, outside c, agrees as well. So each pair is found once, without a
global deduplication. Keys are searched in a thread pool (numpy's sort, gathers and ufuncs
release the GIL), one key per task.

Who runs the tasks is the caller's choice (`near_pairs(..., runner=)`): a runner is called
once, as `runner(task, items)`, and returns `[task(item) for item in items]` in that order
(the default, `thread_runner`, maps them over the thread pool). The task is a picklable
object holding the packed hashes (`KeySearch`: one item per key; `AllPairs`: one per block
of rows, for the all-pairs scan), so a runner may ship it once and call it elsewhere:
fercli.clean.ray.near_pairs runs the items as Ray tasks. Whatever the runner, the parts are
merged here in items order and sorted by (i, j), so the result is the same; a runner that
raises, or returns another number of parts than items, makes the search raise (never a
partial result).

The result is the same as `fercli.data.hashing.near_pairs` / `near_graph` (same pairs, same
order: by (i, j)), which this module replaces in fercli.clean.duplicates.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import combinations
from math import comb

import numpy as np

from fercli.data.hashing import pack, popcount

EMPTY = np.zeros(0, np.int64)
# The runner for searches that name none, in this context: `fercli clean --engine ray` sets
# Ray's (fercli.clean.ray.ray_runner) for its filters' search (`searching_with`); None: the
# thread pool.
RUNNER: ContextVar = ContextVar("near_search_runner", default=None)
# Runs of equal keys longer than this are compared as blocks of a matrix, not offset by offset.
LONG_RUN = 64
# Cost model (seconds), measured on a 2-core AMD EPYC: per row per key (mask, sort, gathers)
# and per candidate pair; an all-pairs scan per pair.
SORT_COST = 8e-8
PAIR_COST = 3e-8
ALL_PAIRS_COST = 2.5e-9
SAMPLE = 20_000
MAX_K = 4


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


class _Layout:
    """m blocks of contiguous bit columns and their masks over the packed words."""

    def __init__(self, nbits: int, m: int):
        self.nbits, self.m = nbits, m
        self.cols = np.array_split(np.arange(nbits), m)
        words = -(-nbits // 64)
        self.masks = np.zeros((m, words), np.uint64)
        for b, cols in enumerate(self.cols):
            one = np.zeros((1, words * 64), bool)
            one[0, cols] = True
            self.masks[b] = pack(one[:, :nbits])[0]

    def key(self, words: np.ndarray, bits: np.ndarray | None, combo) -> np.ndarray:
        """One sortable value per row: equal exactly where the rows agree on `combo`."""
        mask = np.bitwise_or.reduce(self.masks[list(combo)], axis=0)
        if words.shape[1] == 1:
            return words[:, 0] & mask[0]
        cols = np.concatenate([self.cols[b] for b in combo])
        if len(cols) <= 64:
            return pack(bits[:, cols])[:, 0]
        return np.unique(words & mask, axis=0, return_inverse=True)[1].ravel()


def _choose(words, bits, threshold: int, nbits: int) -> int:
    """k with the lowest estimated cost, or 0 for an all-pairs scan."""
    n = len(words)
    all_pairs = n * (n - 1) / 2
    best, best_cost = 0, all_pairs * ALL_PAIRS_COST
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n, SAMPLE, replace=False)) if n > SAMPLE else np.arange(n)
    s = len(rows)
    sample_pairs = max(1.0, s * (s - 1) / 2)
    for k in range(1, MAX_K + 1):
        m = threshold + k
        if m > nbits:
            break
        layout = _Layout(nbits, m)
        keys = comb(m, k)
        combos = list(combinations(range(m), k))
        probe = combos[:: max(1, len(combos) // 4)][:4]
        collisions = 0.0
        for combo in probe:
            key = layout.key(words[rows], None if bits is None else bits[rows], combo)
            _, counts = np.unique(key, return_counts=True)
            collisions += float((counts * (counts - 1) / 2).sum())
        share = max(collisions / len(probe), 0.5) / sample_pairs
        cost = keys * (n * SORT_COST + share * all_pairs * PAIR_COST)
        if cost < best_cost:
            best, best_cost = k, cost
    return best


def _canonical(x: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Pairs (XOR words x) that differ on every block mask in `before`."""
    keep = np.ones(len(x), bool)
    for mask in before:
        keep &= (x & mask).any(axis=1)
    return keep


def _fields(layout: "_Layout", combo) -> list[tuple[int, int]]:
    """(shift, width) of each stretch of consecutive blocks of `combo` in a 64-bit word
    (bit column c of the hash is bit 63 - c of the packed word)."""
    out = []
    for b in combo:
        lo, hi = int(layout.cols[b][0]), int(layout.cols[b][-1]) + 1
        if out and out[-1][2] == lo:
            out[-1][2] = hi
        else:
            out.append([lo, lo, hi])
    return [(64 - hi, hi - lo) for _, lo, hi in out]


class KeySearch:
    """The search on one key, as a task for a runner: `task(combo)` is the (i, j, distance)
    of the pairs within `threshold` that agree on `combo` and on no earlier combination
    (i < j, in no particular order). Picklable: the block values (one-word hashes) are not
    pickled but made again where it is unpickled."""

    def __init__(self, words, bits, layout: "_Layout", threshold: int):
        self.words, self.bits, self.layout, self.threshold = words, bits, layout, threshold
        self.blocks = None if words.shape[1] > 1 else block_values(words, layout)

    def __getstate__(self):
        return {**self.__dict__, "blocks": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.words.shape[1] == 1:
            self.blocks = block_values(self.words, self.layout)

    def __call__(self, combo):
        return _key_pairs(self.words, self.bits, self.layout, combo, self.threshold, self.blocks)


def _key_pairs(words, bits, layout: _Layout, combo, threshold: int, blocks=None):
    """Pairs within the threshold that agree on `combo` and on no earlier combination."""
    n = len(words)
    index_bits = max(1, (n - 1).bit_length())
    key_bits = sum(len(layout.cols[b]) for b in combo)
    if blocks is not None and key_bits + index_bits <= 64:
        i, j = _packed_key_pairs(words, layout, combo, threshold, blocks, index_bits)
    else:
        i, j = _sorted_key_pairs(words, bits, layout, combo, threshold)
    if not len(i):
        return EMPTY, EMPTY, EMPTY[:0].astype(np.uint8)
    x = words[i] ^ words[j]
    d = popcount(x)
    near = d <= threshold
    before = [layout.masks[b] for b in range(max(combo)) if b not in combo]
    keep = near & _canonical(x, before)
    i, j = i[keep], j[keep]
    return np.minimum(i, j), np.maximum(i, j), d[keep]


def block_values(words: np.ndarray, layout: _Layout) -> list[np.ndarray]:
    """Each block's bits of one-word hashes, as a number (uint64) per row."""
    w0 = words[:, 0]
    out = []
    for cols in layout.cols:
        shift, width = 64 - int(cols[-1]) - 1, len(cols)
        out.append((w0 >> np.uint64(shift)) & np.uint64((1 << width) - 1))
    return out


def packed_keys(words, layout, combo, blocks, index_bits) -> tuple[np.ndarray, int]:
    """The sorted uint64 values (key | extra | row) of one key, and the bits of "extra"
    (see _packed_key_pairs): the part of a key's search that does not depend on the pairs."""
    n = len(words)
    widths = [len(c) for c in layout.cols]
    room = 64 - index_bits - sum(widths[b] for b in combo)
    fields = [(b, widths[b]) for b in combo]  # (block, bits taken from its top)
    extra = 0
    for b in range(layout.m):
        if b in combo or room - extra <= 0:
            continue
        take = min(widths[b], room - extra)
        fields.append((b, take))
        extra += take
    v = np.arange(n, dtype=np.uint64)
    tmp = np.empty(n, np.uint64)
    at = index_bits + sum(take for _, take in fields)
    for b, take in fields:
        at -= take
        np.right_shift(blocks[b], np.uint64(widths[b] - take), out=tmp)
        np.left_shift(tmp, np.uint64(at), out=tmp)
        np.bitwise_or(v, tmp, out=v)
    del tmp
    v.sort()
    return v, extra


def _packed_key_pairs(words, layout, combo, threshold, blocks, index_bits):
    """Candidate pairs from one np.sort of uint64 values (key | extra | row), key on top,
    then as many bits of the other blocks as fit ("extra": a first, cheap filter, since
    those bits alone must already be within the threshold), the row number at the bottom.
    Neighbours in sorted order, then those 2, 3, ... apart, are compared while they share
    the key; runs longer than LONG_RUN are finished as blocks of a matrix."""
    n = len(words)
    v, extra = packed_keys(words, layout, combo, blocks, index_bits)
    same_below = np.uint64(1 << (extra + index_bits))  # xor below this: same key
    extra_mask = np.uint64(((1 << extra) - 1) << index_bits)
    rows = np.uint64((1 << index_bits) - 1)
    x = v[1:] ^ v[:-1]
    positions = np.flatnonzero(x < same_below)
    x = x[positions]
    found_a, found_b = [], []
    offset = 1
    while True:
        cand = popcount((x & extra_mask)[:, None]) <= threshold
        hit = positions[cand]
        found_a.append(hit)
        found_b.append(hit + offset)
        offset += 1
        positions = positions[positions < n - offset]
        if not positions.size or offset > LONG_RUN:
            break
        x = v[positions] ^ v[positions + offset]
        same = x < same_below
        positions, x = positions[same], x[same]
        if not positions.size:
            break
    a = np.concatenate(found_a)
    i = (v[a] & rows).astype(np.int64)
    j = (v[np.concatenate(found_b)] & rows).astype(np.int64)
    if offset > LONG_RUN and positions.size:
        key = v >> np.uint64(extra + index_bits)
        li, lj = _long_runs(words, key, (v & rows).astype(np.int64), positions, threshold)
        i, j = np.r_[i, li], np.r_[j, lj]
    return i, j


def _long_runs(words, sorted_key, order, positions, threshold):
    """Pairs more than LONG_RUN apart in the runs of equal keys that hold `positions`."""
    n = len(sorted_key)
    starts = np.r_[0, np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1]
    ends = np.r_[starts[1:], n]
    runs = np.unique(np.searchsorted(starts, positions, "right") - 1)
    found_i, found_j = [EMPTY], [EMPTY]
    for start, end in zip(starts[runs].tolist(), ends[runs].tolist()):
        run = order[start:end]
        w = words[run]
        length = end - start
        step = max(1, (1 << 20) // length)
        for a in range(0, length, step):
            d = popcount(w[a : a + step, None, :] ^ w[None, a:, :])
            ii, jj = np.divmod(np.flatnonzero(d <= threshold), d.shape[1])
            later = jj > ii + LONG_RUN
            found_i.append(run[ii[later] + a])
            found_j.append(run[jj[later] + a])
    return np.concatenate(found_i), np.concatenate(found_j)


def _sorted_key_pairs(words, bits, layout, combo, threshold):
    """Candidate pairs by an argsort of the key (hashes of more than 64 bits, keys too long
    to share a word with the row number)."""
    n = len(words)
    sk = layout.key(words, bits, combo)
    order = np.argsort(sk)
    sk = sk[order]
    positions = np.flatnonzero(sk[1:] == sk[:-1])
    found_i, found_j = [EMPTY], [EMPTY]
    if positions.size:
        ordered = words[order]
        offset = 1
        while positions.size and offset <= LONG_RUN:
            d = popcount(ordered[positions] ^ ordered[positions + offset])
            hits = positions[d <= threshold]
            found_i.append(order[hits])
            found_j.append(order[hits + offset])
            offset += 1
            positions = positions[positions + offset < n]
            positions = positions[sk[positions] == sk[positions + offset]]
        if positions.size:
            li, lj = _long_runs(words, sk, order, positions, threshold)
            found_i.append(li)
            found_j.append(lj)
    return np.concatenate(found_i), np.concatenate(found_j)


class AllPairs:
    """The all-pairs scan as tasks for a runner: `task(start)` is the (i, j, distance) of the
    pairs within `threshold` with i in rows [start, start + rows) and j > i; `starts()` are
    the items that cover every row."""

    def __init__(self, words, threshold: int, cells: int = 1 << 20):
        self.words, self.threshold = words, threshold
        self.rows = max(1, cells // len(words))

    def starts(self) -> list[int]:
        return list(range(0, len(self.words), self.rows))

    def __call__(self, start: int):
        words = self.words
        block = words[start : start + self.rows]
        d = popcount(block[:, None, :] ^ words[None, start:, :])
        ii, jj = np.divmod(np.flatnonzero(d <= self.threshold), d.shape[1])
        later = jj > ii
        ii, jj = ii[later], jj[later]
        return (ii + start).astype(np.int64), (jj + start).astype(np.int64), d[ii, jj]


def thread_runner(workers: int | None = None):
    """The local runner: `run(task, items)` maps the task over the items in a thread pool of
    `workers` threads (default: the usable cores, at most 8; 1: in this thread)."""
    workers = workers or _workers()

    def run(task, items):
        if workers == 1 or len(items) <= 1:
            return [task(item) for item in items]
        with ThreadPoolExecutor(min(workers, len(items))) as pool:
            return list(pool.map(task, items))

    return run


def plan(bits: np.ndarray, threshold: int, k: int | None = None):
    """(task, items) of the search of `near_pairs` (see the module docstring): one KeySearch
    item per key, or AllPairs over blocks of rows where k is 0 (or no scheme fits)."""
    nbits = bits.shape[1]
    words = pack(bits)
    big = words.shape[1] > 1
    if k is None:
        k = _choose(words, bits if big else None, threshold, nbits)
    if k == 0 or threshold + k > nbits:
        task = AllPairs(words, threshold)
        return task, task.starts()
    m = threshold + k
    layout = _Layout(nbits, m)
    task = KeySearch(words, bits if big else None, layout, threshold)
    return task, list(combinations(range(m), k))


def near_pairs(
    bits: np.ndarray,
    threshold: int,
    k: int | None = None,
    workers: int | None = None,
    runner=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of rows (i < j) of bool hashes `bits` (n, nbits) at Hamming distance <=
    threshold: (i, j, distance), sorted by (i, j). `k` forces the scheme (0: all pairs;
    default: chosen by estimated cost); `workers`: threads (default: the usable cores, at
    most 8); `runner`: who runs the tasks, `runner(task, items)` -> `[task(item) for item
    in items]` (default: thread_runner(workers); fercli.clean.ray.near_pairs passes Ray's).
    The same pairs in the same order whatever the runner; it raising, or returning another
    number of parts than items, raises here."""
    n = len(bits)
    if n < 2:
        return EMPTY, EMPTY, EMPTY[:0].astype(np.uint8)
    task, items = plan(bits, threshold, k)
    parts = (runner or RUNNER.get() or thread_runner(workers))(task, items)
    if parts is None or len(parts) != len(items):
        got = "nothing" if parts is None else f"{len(parts)} parts"
        raise RuntimeError(f"the near-duplicate search's runner returned {got} for {len(items)}")
    i, j, d = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(i * n + j, kind="stable")
    return i[order], j[order], d[order]


def near_graph(bits: np.ndarray, threshold: int, **options):
    """Identical hashes collapsed first (the distinct hashes in sorted order, each standing
    for the rows that carry it), then every pair of distinct hashes within `threshold`:
    (hash id of each row, i, j, distance) with i < j indexing the distinct hashes. The same
    as `fercli.data.hashing.near_graph`. `options`: near_pairs' (k, workers, runner)."""
    if len(bits) == 0:
        return (EMPTY,) * 4
    if bits.shape[1] <= 64:  # one word per hash: sorted words order as the packed bytes do
        _, first, inverse = np.unique(pack(bits)[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(
            np.packbits(bits, axis=1), axis=0, return_index=True, return_inverse=True
        )
    i, j, d = near_pairs(bits[first], threshold, **options)
    return inverse.ravel().astype(np.int64), i, j, d


@contextmanager
def searching_with(runner):
    """Within the block, searches that name no runner use `runner` (None: the thread pool)."""
    token = RUNNER.set(runner)
    try:
        yield
    finally:
        RUNNER.reset(token)
