"""fercli.clean.ray.near_pairs / near_graph: the near-duplicate search with its keys as Ray
tasks (a local 2-CPU cluster) finds exactly the pairs of the local search, in the same order,
at several thresholds, sizes and schemes (k, the all-pairs scan among them); a failed task or
a broken runner raises instead of returning part of the pairs. The Ray tests are skipped
without Ray (ray_cluster: needs_ray); the runner tests run everywhere."""

import functools
import operator

import numpy as np
import pytest
from ray_helpers import needs_ray

from fercli.clean import near_search


def fer_like(n, seed):
    """Hashes shaped like bench_clean.py's planted_hashes: rows of a few hundred biased
    hashes with 15% of their bits flipped, the last n/50 near copies (1-3 bits) of others."""
    rng = np.random.default_rng(seed)
    base = rng.random((200, 64)) < rng.random(64)
    bits = base[rng.integers(0, 200, n)] ^ (rng.random((n, 64)) < 0.15)
    planted = n // 50
    if not planted:
        return bits
    copies = bits[rng.integers(0, n - planted, planted)].copy()
    for row in copies:
        row[rng.choice(64, rng.integers(1, 4), replace=False)] ^= True
    bits[n - planted :] = copies
    return bits


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype
        assert x.tolist() == y.tolist()


@pytest.mark.parametrize(
    ("n", "threshold", "k"),
    [
        (3000, 6, None), (3000, 6, 0), (3000, 6, 1), (3000, 6, 2), (3000, 6, 3), (3000, 6, 4),
        (20000, 6, None), (20000, 4, None), (20000, 8, 2), (5000, 0, None), (5000, 10, None),
        (800, 6, None), (2, 6, None), (1, 6, None),
    ],
)  # fmt: skip
def test_same_pairs_in_the_same_order_as_the_local_search(ray_cluster, n, threshold, k):
    from fercli.clean import ray as clean_ray

    bits = fer_like(n, seed=n + threshold)
    local = near_search.near_pairs(bits, threshold, k=k)
    same(clean_ray.near_pairs(bits, threshold, k=k), local)
    same(clean_ray.near_pairs(bits, threshold, k=k, tasks=1), local)  # one task: all keys
    if n >= 800:
        assert len(local[0]) or threshold == 0  # pairs to compare


def test_the_all_pairs_fallback_is_chosen_and_matches(ray_cluster):
    """A very concentrated set (blank-like: all but 8 bits zero) makes the cost model pick the
    all-pairs scan; it runs as Ray tasks over blocks of rows."""
    from fercli.clean import ray as clean_ray

    rng = np.random.default_rng(1)
    bits = np.zeros((3000, 64), bool)
    bits[:, -8:] = rng.random((3000, 8)) < 0.5
    bits[:, :20] = rng.random((3000, 20)) < 0.05
    task, items = near_search.plan(bits, 6)
    assert isinstance(task, near_search.AllPairs) and len(items) > 1
    same(clean_ray.near_pairs(bits, 6), near_search.near_pairs(bits, 6))


@pytest.mark.parametrize(("nbits", "threshold"), [(256, 12), (25, 4)])
def test_other_hash_sizes(ray_cluster, nbits, threshold):
    from fercli.clean import ray as clean_ray

    rng = np.random.default_rng(nbits)
    centres = rng.random((40, nbits)) < 0.5
    bits = centres[rng.integers(0, 40, 2000)] ^ (rng.random((2000, nbits)) < 0.03)
    for k in (None, 1, 2):
        same(
            clean_ray.near_pairs(bits, threshold, k=k), near_search.near_pairs(bits, threshold, k=k)
        )


def test_near_graph_with_identical_hashes(ray_cluster):
    from fercli.clean import ray as clean_ray

    bits = fer_like(6000, seed=5)
    bits = np.vstack([bits, bits[:300], np.zeros((20, 64), bool)])
    for threshold in (0, 3, 6):
        same(clean_ray.near_graph(bits, threshold), near_search.near_graph(bits, threshold))
    assert all(len(x) == 0 for x in clean_ray.near_graph(bits[:0], 6))


def test_a_failed_task_raises(ray_cluster):
    needs_ray()  # (ray_cluster skips too; the tests below need no Ray)
    from fercli.engines.ray import run_tasks

    # a picklable task that fails on one item of the middle group
    with pytest.raises(ZeroDivisionError):
        run_tasks(functools.partial(operator.truediv, 1), [1, 2, 0, 4, 5], tasks=3)
    assert run_tasks(functools.partial(operator.truediv, 1), [1, 2, 4], tasks=2) == [1, 0.5, 0.25]


def test_a_key_that_fails_on_ray_fails_the_search(ray_cluster, monkeypatch):
    """A key task that raises in a Ray worker (here: a key of a block that does not exist)
    fails the search rather than leaving its pairs out."""
    from fercli.clean import ray as clean_ray

    bits = fer_like(3000, seed=2)
    real = near_search.plan

    def broken(bits, threshold, k=None):
        task, items = real(bits, threshold, k)
        return task, [*items[:-1], (99,)]

    monkeypatch.setattr(near_search, "plan", broken)
    with pytest.raises(IndexError):
        clean_ray.near_pairs(bits, 6, k=1)


@pytest.mark.parametrize("drop", ["last", "all", "none"])
def test_a_runner_that_loses_parts_raises(drop):
    """No Ray needed: a runner returning fewer parts than items (or nothing) is an error."""
    bits = fer_like(2000, seed=3)

    def runner(task, items):
        parts = [task(item) for item in items]
        return {"last": parts[:-1], "all": [], "none": None}[drop]

    with pytest.raises(RuntimeError, match="runner returned"):
        near_search.near_pairs(bits, 6, runner=runner)


def test_a_runner_that_raises_raises():
    bits = fer_like(2000, seed=4)

    def runner(task, items):
        raise OSError("lost")

    with pytest.raises(OSError, match="lost"):
        near_search.near_pairs(bits, 6, runner=runner)


def test_the_tasks_are_picklable_and_give_the_same_parts():
    """What Ray ships: a KeySearch or AllPairs pickled and unpickled (its block values made
    again) gives the same parts."""
    import pickle

    bits = fer_like(3000, seed=6)
    for k in (0, 2):
        task, items = near_search.plan(bits, 6, k=k)
        again = pickle.loads(pickle.dumps(task))
        for item in items[:5]:
            for a, b in zip(task(item), again(item)):
                assert a.tolist() == b.tolist()
