"""`fercli clean --engine ray`: each actor does what a local decoding process does
(fercli.clean.pipeline.decode_chunk: 48x48 arrays, digests, hashes) over fercli.engines.ray's
`map_files`; the driver gets them back in path order and runs the filters. The near-duplicate
search runs on the cluster too (`near_graph`, `near_pairs`: each group of keys of
fercli.clean.near_search is a Ray task), the driver only merging the pairs."""

import numpy as np

from fercli.clean import near_search
from fercli.engines.ray import (
    cluster,
    import_ray,
    map_files,
    refuse_local_sizes,
    regroup,
    run_tasks,
)

__all__ = [
    "DIGEST_SIZE",
    "Cleaner",
    "clean_chunks",
    "cluster",
    "import_ray",
    "near_graph",
    "near_pairs",
    "ray_runner",
    "refuse_local_sizes",
]


class Cleaner:
    """A Ray Data actor for `fercli clean --engine ray`: fercli.clean.pipeline.decode_chunk on a
    batch of files per call (48x48 arrays, pixel digests, perceptual hashes, errors)."""

    def __init__(self, hash_specs: list[tuple[str, int]]):
        from fercli.data.dataset import one_thread
        from fercli.data.hashing import preload

        one_thread()  # one CPU per actor, as one local decoding process
        preload([kind for kind, _ in hash_specs])
        self.hash_specs = [tuple(spec) for spec in hash_specs]

    def __call__(self, batch: dict) -> dict:
        from fercli.clean.pipeline import decode_chunk

        paths = [str(p) for p in batch["path"]]
        images, errors, digests, hashes = decode_chunk(paths, self.hash_specs)
        failed = np.array([e is not None for e in errors])
        digest_bytes = np.zeros((len(paths), DIGEST_SIZE), np.uint8)
        for i, digest in enumerate(digests):
            if digest is not None:
                digest_bytes[i] = np.frombuffer(digest, np.uint8)
        columns = {
            "index": batch["index"],
            "images": images,
            "error": np.array([e or "" for e in errors], dtype=object),
            "failed": failed,
            "digest": digest_bytes,
        }
        for number, spec in enumerate(self.hash_specs):
            columns[f"hash{number}"] = hashes[spec]
        return columns


DIGEST_SIZE = 16  # fercli.clean.pipeline.decode_chunk's blake2b digests


def clean_chunks(files: list[str], hash_specs: list[tuple[str, int]], *, chunk: int,
                 actors: int | None):  # fmt: skip
    """(first index, decode_chunk's result) for every `chunk` files, in order, as
    fercli.data.dataset.map_chunks yields them for decode_chunk locally."""
    batches = map_files(
        files, Cleaner, dict(hash_specs=hash_specs), batch_size=chunk, actors=actors
    )
    sizes = [min(chunk, len(files) - s) for s in range(0, len(files), chunk)]
    first = 0
    for part in regroup(batches, sizes):
        failed = part["failed"]
        errors = [str(e) if bad else None for e, bad in zip(part["error"], failed)]
        digests = [None if bad else bytes(d) for d, bad in zip(part["digest"], failed)]
        hashes = {
            spec: np.asarray(part[f"hash{number}"], bool) for number, spec in enumerate(hash_specs)
        }
        images = np.asarray(part["images"], np.uint8)
        yield first, (images, errors, digests, hashes)
        first += len(images)


def ray_runner(tasks: int | None = None):
    """A runner for fercli.clean.near_search (`runner(task, items)`) that runs the items as
    Ray tasks (fercli.engines.ray.run_tasks: the packed hashes put into the object store
    once, `tasks` groups of keys, default 4 per CPU of the cluster)."""

    def run(task, items):
        return run_tasks(task, items, tasks=tasks)

    return run


def near_pairs(bits: np.ndarray, threshold: int, k: int | None = None, tasks: int | None = None):
    """fercli.clean.near_search.near_pairs with its keys (groups of keys; or blocks of rows
    of the all-pairs scan) searched by Ray tasks on the cluster joined with `cluster()`; the
    driver chooses the scheme (on a sample) and merges the pairs. The same (i, j, distance),
    in the same (i, j) order, as the local search; a failed task raises, never a partial
    result."""
    return near_search.near_pairs(bits, threshold, k=k, runner=ray_runner(tasks))


def near_graph(bits: np.ndarray, threshold: int, k: int | None = None, tasks: int | None = None):
    """fercli.clean.near_search.near_graph (hash id of each row, i, j, distance) with the
    search on Ray (see near_pairs): the same result as the local one, on the cluster joined
    with `cluster()`. `fercli clean --engine ray` gets the same through ray_runner, which the
    pipeline sets for its filters' searches (fercli.clean.near_search.searching_with)."""
    return near_search.near_graph(bits, threshold, k=k, runner=ray_runner(tasks))
