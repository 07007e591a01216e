"""fercli.clean.near_search: the multi-index search gives exactly the pairs of a brute-force scan
and of the previous search (fercli.data.hashing.near_pairs / near_graph, kept as the reference)."""

import numpy as np
import pytest

from fercli.clean import near_search
from fercli.data import hashing


def brute(bits, threshold):
    """Every pair (i < j) within the threshold, in (i, j) order, by an O(n^2) scan."""
    words = hashing.pack(bits)
    out = []
    for i in range(len(bits) - 1):
        d = hashing.popcount(words[i + 1 :] ^ words[i])
        for j in np.flatnonzero(d <= threshold).tolist():
            out.append((i, i + 1 + j, int(d[j])))
    return out


def as_list(found):
    i, j, d = found
    return list(zip(i.tolist(), j.tolist(), d.tolist()))


def planted(rng, n, nbits, threshold):
    """Random hashes plus clusters at every distance 0 .. threshold + 2 from a centre, and a
    big bucket: many distinct hashes that share all but a few bits (blank-like images)."""
    bits = rng.random((n, nbits)) < 0.5
    rows = [bits]
    for distance in range(threshold + 3):
        centre = rng.random(nbits) < 0.5
        for _ in range(3):
            copy = centre.copy()
            copy[rng.choice(nbits, min(distance, nbits), replace=False)] ^= True
            rows.append(np.vstack([centre, copy]))
    blank = np.zeros((150, nbits), bool)
    blank[:, -min(6, nbits) :] = rng.random((150, min(6, nbits))) < 0.5
    blank[:60, : nbits // 2] = rng.random((60, nbits // 2)) < 0.04
    rows.append(blank)
    out = np.vstack(rows)
    return out[rng.permutation(len(out))]


@pytest.mark.parametrize("threshold", range(11))
def test_same_pairs_as_brute_force_and_the_old_search(threshold):
    rng = np.random.default_rng(threshold)
    bits = planted(rng, 300, 64, threshold)
    expected = brute(bits, threshold)
    assert as_list(hashing.near_pairs(bits, threshold)) == expected
    assert as_list(near_search.near_pairs(bits, threshold)) == expected
    for k in range(0, 5):  # every scheme, whichever the cost model picks
        assert as_list(near_search.near_pairs(bits, threshold, k=k, workers=2)) == expected
    assert as_list(near_search.near_pairs(bits, threshold, k=2, workers=1)) == expected


@pytest.mark.parametrize(("nbits", "threshold"), [(25, 4), (16, 20), (256, 12), (64, 0)])
def test_other_hash_sizes(nbits, threshold):
    rng = np.random.default_rng(nbits)
    bits = planted(rng, 120, nbits, min(threshold, 8))
    expected = brute(bits, threshold)
    for k in (None, 1, 2, 3):
        assert as_list(near_search.near_pairs(bits, threshold, k=k)) == expected


def test_near_graph_equals_the_old_one_with_identical_hashes():
    rng = np.random.default_rng(7)
    bits = planted(rng, 400, 64, 6)
    bits = np.vstack([bits, bits[:50], np.zeros((30, 64), bool)])  # exact copies, blanks
    bits = bits[rng.permutation(len(bits))]
    for threshold in (0, 3, 6, 9):
        old = hashing.near_graph(bits, threshold)
        new = near_search.near_graph(bits, threshold)
        for a, b in zip(old, new):
            assert a.tolist() == b.tolist()
    assert all(len(x) == 0 for x in near_search.near_graph(bits[:0], 6))


def test_fer_like_hashes_match_the_old_search():
    """Hashes shaped like the benchmark's: biased bits, long runs of equal keys."""
    rng = np.random.default_rng(3)
    base = rng.random((200, 64)) < rng.random(64)
    bits = base[rng.integers(0, 200, 6000)] ^ (rng.random((6000, 64)) < 0.15)
    old = hashing.near_graph(bits, 6)
    for k in (None, 2, 3):
        new = near_search.near_graph(bits, 6, k=k)
        for a, b in zip(old, new):
            assert a.tolist() == b.tolist()
