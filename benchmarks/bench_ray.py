"""The per-actor figures behind docs/engines.md's cost model for `--engine ray` on N machines.

(a) cluster start: `ray.init` of a local cluster (no dashboard) until it answers, and its
    shutdown, as `fercli ... --engine ray` without --ray-address does.
(b) one actor, one thread, no Ray: the actor classes (fercli.predict.ray, fercli.clean.ray) called
    directly on batches of files: `Predictor` (the bundled model, batch 256, one onnxruntime
    thread) and `Cleaner` (decode_chunk with 64-bit phash, as `fercli clean` by default).
    This is the rate one CPU of a cluster node gives, with the files in the page cache.
(c) Ray's overhead: `map_files` over the same files with an actor that does
    nothing, at two batch sizes; (seconds - seconds of the larger batches) / extra batches is
    the cost of one more map_batches call, and the larger batches' seconds per file the cost
    of one row going through Ray Data and back to the driver.
(d) the whole path through Ray with one actor: map_files with Predictor and with Cleaner.
(f) the driver's share of clean, with the files decoded beforehand: the filters' `check` on
    every chunk and their `finish` (duplicate search included), as run_clean does on the
    driver with either engine; and the peak of the Python allocations (tracemalloc) of a
    whole in-process `run_clean` (workers=1) over --data, per image: what the driver holds.
(g) the driver's ceilings apart from the work: rows shaped like Cleaner's (a 48x48 array,
    digest, hash, error) made by 2 actors that read no file, over --fake (200,000) made-up
    paths, received in order and regrouped by the driver (map_files and clean_chunks'
    regrouping); and the driver writing predict-dir's CSV rows (CsvOut.predicted_text and
    Tally.add_predicted, as predict_dir's loop) for 200,000 made-up predictions.
(h) the driver's near-duplicate search (fercli.data.hashing.near_graph) on N hashes shaped like
    FER-2013's (bench_clean.py --million's construction), for a few N, with the peak of
    numpy's allocations: how it grows with N.

    .venv/bin/python benchmarks/bench_ray.py                       # ../shared/fer2013
    .venv/bin/python benchmarks/bench_ray.py --data DIR --files 4096 --search 125000,250000
    .venv/bin/python benchmarks/bench_ray.py --data data/synth --files 64 --fake 1024 --search 2000
"""

import argparse
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_clean import planted_hashes  # noqa: E402  (benchmarks/bench_clean.py)

from fercli.clean.ray import Cleaner  # noqa: E402
from fercli.engines.ray import map_files, regroup  # noqa: E402
from fercli.predict.ray import Predictor  # noqa: E402
from fercli.util import cpu_description  # noqa: E402


class FakeCleaner:
    """Rows shaped like Cleaner's, without reading any file."""

    def __call__(self, batch: dict) -> dict:
        n = len(batch["index"])
        return {
            "index": batch["index"],
            "images": np.zeros((n, 48, 48), np.uint8),
            "error": np.array([""] * n, dtype=object),
            "failed": np.zeros(n, bool),
            "digest": np.zeros((n, 16), np.uint8),
            "hash0": np.zeros((n, 64), bool),
        }


class Nothing:
    """An actor that returns its batch's index column and nothing else."""

    def __call__(self, batch: dict) -> dict:
        return {"index": batch["index"]}


def batches(files, size):
    for start in range(0, len(files), size):
        yield {"index": np.arange(start, min(start + size, len(files))),
               "path": np.array(files[start : start + size], dtype=object)}  # fmt: skip


def timed(label: str, n: int, func) -> float:
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s, {n / seconds:,.0f} files/s" if n else
          f"{label}: {seconds:.2f} s", flush=True)  # fmt: skip
    return seconds


def drain(iterator) -> None:
    for _ in iterator:
        pass


def search(sizes: list[int], files: list[str]) -> None:
    from fercli.data.hashing import near_graph

    decoded = Cleaner([("phash", 8)])(next(batches(files, 8000)))
    bits = decoded["hash0"][~decoded["failed"]]
    for n in sizes:
        hashes = planted_hashes(bits, n, n // 50)
        tracemalloc.start()
        start = time.perf_counter()
        _, i, _, _ = near_graph(hashes, 6)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"near_graph on {n:,} hashes: {len(i):,} pairs in {seconds:.1f} s, "
              f"at most {peak / 2**20:.0f} MiB", flush=True)  # fmt: skip


def write_rows(n: int) -> None:
    import io

    from fercli.predict.folder import Tally
    from fercli.predict.output import output_format

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    fmt = output_format(Path("out.csv"), classes, 0)
    tally = Tally(classes, False)
    probs = np.random.default_rng(0).dirichlet(np.ones(7), 256).astype(np.float32)
    paths = [f"class/{k:07d}.jpg" for k in range(256)]
    out = io.StringIO(newline="")
    fmt.start(out, new_file=True)

    def write():
        for _ in range(n // 256):
            out.write(fmt.predicted_text(paths, probs, {}))
            tally.add_predicted(paths, probs, {})

    timed("(g) driver writing predict-dir CSV rows", n // 256 * 256, write)
    print(f"    {len(out.getvalue()) / (n // 256 * 256):.0f} bytes per row", flush=True)


def driver_share(files: list[str], root: Path) -> None:
    from fercli.clean.pipeline import CleanSettings, _check_chunk, make_filters, run_clean, scan

    classes, splits, paths, file_splits, labels = scan(root)
    keep = set(files)
    rows = [k for k, p in enumerate(paths) if str(root / p) in keep]
    paths, file_splits, labels = ([x[k] for k in rows] for x in (paths, file_splits, labels))
    full = [str(root / p) for p in paths]
    cleaner = Cleaner([("phash", 8)])
    decoded = [(s, cleaner(b)) for s, b in zip(range(0, len(full), 512), batches(full, 512))]
    chunks = []
    for first, c in decoded:
        bad = c["failed"]
        chunks.append((first, (c["images"], [e or None for e in c["error"]],
                               [None if f else bytes(d) for d, f in zip(c["digest"], bad)],
                               {("phash", 8): c["hash0"]})))  # fmt: skip
    filters = make_filters(None, CleanSettings().filter_options())

    def check():
        for first, chunk in chunks:
            _check_chunk(filters, first, chunk, paths, file_splits, labels)
        for _, flt in filters:
            flt.finish()

    timed("(f) driver: filters' check and finish, files decoded beforehand", len(full), check)
    tracemalloc.start()
    start = time.perf_counter()
    result = run_clean(root, CleanSettings(workers=1))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"(f) run_clean of all {len(result.paths):,} files of {root}, in-process, traced: "
          f"{seconds:.1f} s, peak {peak / 2**20:.0f} MiB, {peak / len(result.paths):,.0f} "
          f"bytes per image", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "fer2013"))
    parser.add_argument("--files", type=int, default=4096)
    parser.add_argument(
        "--model",
        default="accurate",
        help="bundled model (fast, accurate) [accurate: the documented figures]",
    )
    parser.add_argument("--search", default="125000,250000,500000")
    parser.add_argument("--fake", type=int, default=200_000, help="rows for (g)")
    args = parser.parse_args()

    files = sorted(str(p) for p in Path(args.data).rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.files]  # fmt: skip
    for path in files:  # into the page cache
        Path(path).read_bytes()
    n = len(files)
    print(cpu_description())
    print(f"{n} files from {args.data}; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip

    from fercli.predict.bundled import bundled_path

    model = Path(bundled_path(args.model)).read_bytes()
    predictor = Predictor(model, "cpu", 1, 256, False)
    cleaner = Cleaner([("phash", 8)])
    predictor(next(batches(files, 64)))  # warm up
    cleaner(next(batches(files, 64)))
    timed("(b) Predictor, one thread, no Ray", n,
          lambda: [predictor(b) for b in batches(files, 256)])  # fmt: skip
    timed("(b) Cleaner, one thread, no Ray", n, lambda: [cleaner(b) for b in batches(files, 512)])

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.get(ray.remote(lambda: 1).remote())
    print(f"(a) local cluster start, first task done: {time.perf_counter() - start:.2f} s")
    try:
        small = timed("(c) nothing, batches of 32", n,
                      lambda: drain(map_files(files, Nothing, {}, batch_size=32,
                                                         actors=1)))  # fmt: skip
        large = timed("(c) nothing, batches of 1024", n,
                      lambda: drain(map_files(files, Nothing, {}, batch_size=1024,
                                                         actors=1)))  # fmt: skip
        extra = -(-n // 32) - -(-n // 1024)
        print(
            f"(c) one more map_batches call: {(small - large) / extra * 1000:.1f} ms; "
            f"a whole run of {n} files, batches of 1024: {large:.2f} s",
            flush=True,
        )
        timed("(d) Predictor through Ray, 1 actor, batch 256", n,
              lambda: drain(map_files(
                  files, Predictor,
                  dict(model=ray.put(model), provider="cpu", threads=1, batch_size=256,
                       tta=False), batch_size=256, actors=1)))  # fmt: skip
        fake = [f"/made/up/{k:07d}.jpg" for k in range(-(-args.fake // 512) * 512)]
        timed("(g) driver receiving Cleaner-shaped rows, 2 actors, batch 512", len(fake),
              lambda: drain(regroup(map_files(
                  fake, FakeCleaner, {}, batch_size=512, actors=2), [512] * (len(fake) // 512)
              )))  # fmt: skip
        timed("(d) Cleaner through Ray, 1 actor, batch 512", n,
              lambda: drain(map_files(
                  files, Cleaner, dict(hash_specs=[("phash", 8)]),
                  batch_size=512, actors=1)))  # fmt: skip
    finally:
        start = time.perf_counter()
        ray.shutdown()
        print(f"(a) shutdown: {time.perf_counter() - start:.2f} s", flush=True)
    driver_share(files, Path(args.data))
    write_rows(200_000)
    search([int(s) for s in args.search.split(",") if s], files)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
