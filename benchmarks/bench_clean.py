"""`fercli clean` against a plain imagehash loop, side by side in one run.

(a) clean: the whole dry run, `python -m fercli -q clean DATA --json`, in a fresh process
    with a fresh, empty FERCLI_CACHE_DIR (clean keeps no cache: every run decodes every
    file), timed from process start to exit: interpreter start, imports, scanning the
    folders, decoding every image once on all cores, the corrupt/blank/dedup filters (phash,
    near-duplicate search at the default threshold), the summary.
(b) plain loop: `imagehash.phash(Image.open(p))` for every file, in this process, one call
    per image, then a numpy pairwise search for pairs within the same threshold on the
    hashes' bool arrays (`np.count_nonzero(H[i + 1:] != H[i], axis=1)` for each i), the way
    one would write it with imagehash. The same search on hashes packed into uint64 with
    `np.bitwise_count` is timed too, as a stronger baseline.

(c) with --compare TREE: (a) with the fercli of another checkout (PYTHONPATH=TREE), run
    alternately with (a) in the same session, so a change is measured as a ratio under the
    same load.

(d) with --million or --search-only: the near-duplicate search alone, the previous one
    (fercli.data.hashing.near_graph) against fercli.clean.near_search.near_graph, on 250,000 to
    4,000,000 hashes shaped like FER-2013's (`--sizes`), each search in a fresh process
    (seconds, peak RSS), the old one only while it takes under `--old-limit` seconds; the
    pairs must be identical wherever both ran.

(e) with --search-only --engine ray: the same search locally (the thread pool) and with its
    keys as Ray tasks (fercli.clean.ray.near_graph) on a local cluster of `--ray-cpus` CPUs
    (default 2), alternated in the same run, each in a fresh process (Ray's start and a
    warm-up search not timed), `--repeats` times; medians, the ratio Ray/local, the time per
    doubling, and the local search split in two: the key sorts alone (the part that does not
    depend on the pairs: n log n per key) and the rest (candidates, pairs and their merge).
    The pairs must be identical. `--k K` forces the scheme (the same keys at every size).

Every file is read once before timing, so both sides find the files in the OS page cache
(warm); the script says whether the cache was in fact warm (`fincore`, where present).
Each side is repeated `--repeats` times; the medians and their ratio are printed.

    .venv/bin/python benchmarks/bench_clean.py                    # ../shared/fer2013
    .venv/bin/python benchmarks/bench_clean.py --data DIR --repeats 1
    .venv/bin/python benchmarks/bench_clean.py --million          # + near-duplicate search
    .venv/bin/python benchmarks/bench_clean.py --search-only      # only that: 250k to 4M
    .venv/bin/python benchmarks/bench_clean.py --search-only --engine ray --sizes 250000,500000
    .venv/bin/python benchmarks/bench_clean.py --compare ../main    # before/after a change
    .venv/bin/python benchmarks/bench_clean.py --check              # loader vs Pillow, all files

--check compares, for every file, fercli's loader (fercli.data.images, with its JPEG shortcut)
with the reference decode through `Image.open` (the 48x48 array and the stored gray pixels),
and fercli's phash and dhash with imagehash's, and exits 1 on any difference.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
THRESHOLD = 6  # fercli.clean.duplicates.DEFAULT_THRESHOLD_64


def dataset_root(explicit: str | None) -> Path:
    path = Path(explicit or os.environ.get("FERCLI_FER2013") or REPO.parent / "shared/fer2013")
    if not (path / "train").is_dir():
        sys.exit(f"no dataset at {path}: pass --data DIR or set FERCLI_FER2013")
    return path


def image_files(root: Path) -> list[Path]:
    from fercli.data.dataset import class_names, find_splits, scan_split

    splits = find_splits(root)
    classes = class_names(root, splits)
    return [root / s.rel for split in splits for s in scan_split(root, split, classes)]


def warm_page_cache(paths: list[Path]) -> str:
    for p in paths:
        p.read_bytes()
    if not shutil.which("fincore"):
        return "warm (every file read just before; fincore not available to confirm)"
    sample = [str(p) for p in paths[:: max(1, len(paths) // 200)]]
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", *sample],
        capture_output=True,
        text=True,
    ).stdout.split()
    resident = sum(int(r) > 0 for r in out)
    return f"warm: {resident} of {len(sample)} sampled files resident in memory (fincore)"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_clean(root: Path, tree: Path | None = None) -> tuple[float, float, dict]:
    """Wall and CPU seconds (the process and its decoding workers) of one dry run, with this
    checkout's fercli or that of `tree`."""
    tree = Path(tree or REPO).resolve()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FERCLI_CACHE_DIR": cache, "PYTHONPATH": str(tree)}
        cpu = children_cpu()
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "fercli", "-q", "clean", str(root.resolve()), "--json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,  # `python -m` imports from the working folder first
        )
        seconds = time.perf_counter() - start
        cpu = children_cpu() - cpu
    if done.returncode:
        sys.exit(f"fercli clean failed:\n{done.stderr}")
    return seconds, cpu, json.loads(done.stdout)


def time_plain_loop(paths: list[Path]) -> dict:
    import imagehash
    from PIL import Image

    start, cpu = time.perf_counter(), time.process_time()
    hashes = []
    for p in paths:
        try:
            hashes.append(imagehash.phash(Image.open(p)))
        except OSError:  # a corrupt file (the synthetic set has one): skipped, as clean flags it
            pass
    hashing = time.perf_counter() - start

    start = time.perf_counter()
    bits = np.array([h.hash.ravel() for h in hashes])
    pairs = 0
    for i in range(len(bits) - 1):
        pairs += int((np.count_nonzero(bits[i + 1 :] != bits[i], axis=1) <= THRESHOLD).sum())
    search_bool = time.perf_counter() - start
    cpu = time.process_time() - cpu

    start = time.perf_counter()
    words = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)
    packed_pairs = 0
    for i in range(len(words) - 1):
        packed_pairs += int((np.bitwise_count(words[i + 1 :] ^ words[i]) <= THRESHOLD).sum())
    search_packed = time.perf_counter() - start
    assert packed_pairs == pairs
    return {"hashing": hashing, "search_bool": search_bool, "search_packed": search_packed,
            "pairs": pairs, "cpu": cpu}  # fmt: skip


def check(paths: list[Path]) -> int:
    """Files where fercli's loader or hashes differ from the reference (Pillow, imagehash)."""
    import imagehash
    from PIL import Image

    from fercli.data.hashing import hash_arrays, to_hex
    from fercli.data.images import ImageError, load_with_pixels, open_raw, to_array, upright_gray

    start, differ, unreadable = time.perf_counter(), 0, 0
    for first in range(0, len(paths), 512):
        chunk, pixels = paths[first : first + 512], []
        for p in chunk:
            try:
                array, gray = load_with_pixels(p)
                raw = open_raw(p)
            except ImageError:
                unreadable += 1
                continue
            ref_gray = np.asarray(raw if raw.mode == "L" else raw.convert("L"))
            ref_array = to_array(upright_gray(raw))
            if not (np.array_equal(array, ref_array) and np.array_equal(gray, ref_gray)):
                differ += 1
                print(f"  pixels differ: {p}")
            pixels.append((p, gray))
        for kind, reference in (("phash", imagehash.phash), ("dhash", imagehash.dhash)):
            ours = to_hex(hash_arrays(kind, [g for _, g in pixels]))
            for (p, _), mine in zip(pixels, ours):
                if mine != str(reference(Image.open(p))):
                    differ += 1
                    print(f"  {kind} differs: {p}")
    print(f"check: {len(paths):,} files, {unreadable} unreadable, {differ} differences from "
          f"Pillow's decode and imagehash ({time.perf_counter() - start:.0f} s)")  # fmt: skip
    return differ


def planted_hashes(bits, n: int, planted: int):
    """n hashes shaped like real ones: each a row of `bits` with 15% of its bits flipped at
    random, the last `planted` of them near copies (1-3 bits off) of earlier ones. The flips
    are drawn in chunks (the same random stream as one (n, 64) draw, without its 8 bytes per
    bit)."""
    rng = np.random.default_rng(0)
    hashes = bits[rng.integers(0, len(bits), n)]
    for start in range(0, n, 1 << 16):
        rows = hashes[start : start + (1 << 16)]
        rows ^= rng.random(rows.shape) < 0.15
    src = rng.integers(0, n - planted, planted)
    copies = hashes[src].copy()
    for row in copies:
        row[rng.choice(64, rng.integers(1, 4), replace=False)] ^= True
    hashes[n - planted :] = copies
    return hashes


def fer_like_bits(root: Path) -> np.ndarray:
    """The phashes of every fourth image of the dataset: the rows planted_hashes varies."""
    from PIL import Image

    from fercli.data.hashing import hash_images

    paths = image_files(root)[::4]
    return hash_images("phash", [Image.open(p) for p in paths], 8)


def search_once(base: str, n: int, impl: str, out: str) -> None:
    """In a fresh process (--search-once): one search over n planted hashes, the pairs saved
    to `out` (.npz) with the seconds and the process's peak memory. impl: "old", "new" (the
    local search), "sorts" (the local search, then its key sorts alone, timed apart) or
    "ray:CPUS" (on a new local Ray cluster of CPUS CPUs, started and warmed up before the
    timing)."""
    extra = {}
    impl, _, forced = impl.partition("@")  # "@K": the scheme forced (near_search's k)
    options = {"k": int(forced)} if forced else {}
    if impl == "old":
        from fercli.data.hashing import near_graph
    elif impl.startswith("ray:"):
        near_graph = ray_search(int(impl[4:]))
    else:
        from fercli.clean.near_search import near_graph
    hashes = planted_hashes(np.load(base), n, n // 50)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    load = os.getloadavg()[0]
    start = time.perf_counter()
    uid, i, j, d = near_graph(hashes, THRESHOLD, **options)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if impl == "sorts":
        extra = key_sorts(hashes, options.get("k"))
    np.savez(out, uid=uid, i=i, j=j, d=d, seconds=seconds, peak=peak, before=before,
             load=load, **extra)  # fmt: skip


def ray_search(cpus: int):
    """fercli.clean.ray.near_graph on a new local cluster of `cpus` CPUs, its workers started
    by a small search first."""
    import ray

    from fercli.clean import ray as clean_ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", object_store_memory=500 * 2**20)  # fmt: skip
    clean_ray.near_graph(np.random.default_rng(0).random((5000, 64)) < 0.5, THRESHOLD)
    return clean_ray.near_graph


def key_sorts(hashes, k: int | None = None) -> dict:
    """The local search's key sorts alone (fercli.clean.near_search.packed_keys for every key,
    on the same thread pool), on the distinct hashes as near_graph searches them: the seconds
    and the number of keys."""
    from fercli.clean import near_search

    distinct = hashes[np.unique(near_search.pack(hashes)[:, 0], return_index=True)[1]]
    task, items = near_search.plan(distinct, THRESHOLD, k)
    if not isinstance(task, near_search.KeySearch):
        return {"keys": 0, "sort_seconds": 0.0}
    index_bits = max(1, (len(distinct) - 1).bit_length())

    def sort(combo):
        near_search.packed_keys(task.words, task.layout, combo, task.blocks, index_bits)

    start = time.perf_counter()
    near_search.thread_runner()(sort, items)
    return {"keys": len(items), "sort_seconds": time.perf_counter() - start}


def million(root: Path, sizes: list[int], old_limit: float) -> None:
    """Near-duplicate search, the previous one (fercli.data.hashing.near_graph) against
    fercli.clean.near_search.near_graph, over n 64-bit hashes shaped like FER-2013's phashes: each
    a real image's phash with bits flipped at random (15%), plus n/50 planted near copies
    (1-3 bits). Each search runs in its own process (its peak RSS is its own); the old one
    stops at the first size where it took over `old_limit` seconds. Where both ran, their
    pairs (and hash ids) must be identical."""
    with tempfile.TemporaryDirectory() as tmp:
        base = f"{tmp}/base.npy"
        np.save(base, fer_like_bits(root))
        rows, old_on, same = [], True, True
        load = os.getloadavg()[0]
        print(f"\nnear-duplicate search, threshold {THRESHOLD}, FER-like hashes "
              f"({os.cpu_count()} CPU cores; load average {load:.2f} at start):")  # fmt: skip
        print(
            "| hashes | pairs | old s | old peak MiB | new s | new peak MiB | new x per "
            "doubling | speed-up |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in sizes:
            result = {}
            for impl in ("old", "new") if old_on else ("new",):
                out = f"{tmp}/{impl}-{n}.npz"
                subprocess.run([sys.executable, __file__, "--search-once", base, str(n), impl,
                                out], check=True, cwd=REPO)  # fmt: skip
                result[impl] = dict(np.load(out))
            new = result["new"]
            old = result.get("old")
            if old is not None:
                identical = all(np.array_equal(old[k], new[k]) for k in ("uid", "i", "j", "d"))
                same &= identical
                if not identical:
                    print(f"  MISMATCH at {n:,}: the two searches found different pairs")
                old_on = float(old["seconds"]) < old_limit
            growth = ""
            if rows and rows[-1][0] * 2 == n:
                growth = f"{float(new['seconds']) / rows[-1][1]:.2f}x"
            rows.append((n, float(new["seconds"])))
            mib = 2**20
            print(
                f"| {n:,} | {len(new['i']):,} | "
                + (f"{float(old['seconds']):.1f} | {int(old['peak']) / mib:,.0f} | "
                   if old is not None else "- | - | ")
                + f"{float(new['seconds']):.1f} | {int(new['peak']) / mib:,.0f} | {growth} | "
                + (f"{float(old['seconds']) / float(new['seconds']):.1f}x |"
                   if old is not None else "- |"),
                flush=True,
            )  # fmt: skip
        print(f"pairs identical wherever both ran: {'yes' if same else 'NO'}; load average "
              f"{os.getloadavg()[0]:.2f} at the end")  # fmt: skip
        if not same:
            sys.exit(1)


def run_search(base: str, n: int, impl: str, out: str) -> dict:
    subprocess.run([sys.executable, __file__, "--search-once", base, str(n), impl, out],
                   check=True, cwd=REPO)  # fmt: skip
    return dict(np.load(out))


def per_doubling(values: list[tuple[int, float]]) -> str:
    """The last value's ratio to the one before, where that one was at half the size."""
    if len(values) < 2 or values[-2][0] * 2 != values[-1][0] or not values[-2][1]:
        return ""
    return f"{values[-1][1] / values[-2][1]:.2f}x"


def search_on_ray(root: Path, sizes: list[int], repeats: int, cpus: int, k: int | None) -> None:
    """(e): the search, local against Ray, alternated in one run (see the docstring); `k`
    forces the scheme (default: the cost model's choice)."""
    from fercli.util import cpu_description

    median = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        base = f"{tmp}/base.npy"
        np.save(base, fer_like_bits(root))
        scheme = "the cost model's k" if k is None else f"k = {k} forced"
        print(f"\nnear-duplicate search, threshold {THRESHOLD}, FER-like hashes, {scheme}, local "
              f"(thread pool) against Ray ({cpus}-CPU local cluster); {cpu_description()}; "
              f"medians of {repeats}; load average {os.getloadavg()[0]:.2f} at start:")  # fmt: skip
        print("| hashes | pairs | pairs x | keys | local s | x per doubling | Ray s | "
              "x per doubling | Ray/local | key sorts s | x per doubling | rest s | "
              "x per doubling | load |")  # fmt: skip
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: | ---: |")  # fmt: skip
        series = {name: [] for name in ("pairs", "local", "ray", "sorts", "rest")}
        same = True
        for n in sizes:
            local, ray, loads = [], [], []
            for r in range(repeats):
                forced = "" if k is None else f"@{k}"
                order = ("sorts", f"ray:{cpus}") if r % 2 == 0 else (f"ray:{cpus}", "sorts")
                for impl in order:
                    result = run_search(base, n, impl + forced, f"{tmp}/{impl[:3]}-{n}-{r}.npz")
                    (local if impl == "sorts" else ray).append(result)
                    loads.append(float(result["load"]))
                same &= all(np.array_equal(local[-1][k], ray[-1][k]) for k in "uid i j d".split())
            sorts = median(float(x["sort_seconds"]) for x in local)
            figures = {
                "pairs": len(local[0]["i"]),
                "local": median(float(x["seconds"]) for x in local),
                "ray": median(float(x["seconds"]) for x in ray),
                "sorts": sorts,
                "rest": median(float(x["seconds"]) - float(x["sort_seconds"]) for x in local),
            }
            growth = {}
            for name, value in figures.items():
                series[name].append((n, value))
                growth[name] = per_doubling(series[name])
            print(f"| {n:,} | {figures['pairs']:,} | {growth['pairs']} | {int(local[0]['keys'])} "
                  f"| {figures['local']:.2f} | {growth['local']} | {figures['ray']:.2f} | "
                  f"{growth['ray']} | {figures['ray'] / figures['local']:.2f} | {sorts:.2f} | "
                  f"{growth['sorts']} | {figures['rest']:.2f} | {growth['rest']} | "
                  f"{min(loads):.1f}-{max(loads):.1f} |", flush=True)  # fmt: skip
        print(f"pairs identical, local and Ray: {'yes' if same else 'NO'}; load average "
              f"{os.getloadavg()[0]:.2f} at the end")  # fmt: skip
        if not same:
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="dataset root [default: ../shared/fer2013]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--million", action="store_true", help="also time the near-duplicate search, old vs new"
    )
    parser.add_argument(
        "--search-only", action="store_true", help="only the near-duplicate search (--million)"
    )
    parser.add_argument(
        "--sizes",
        default="250000,500000,1000000,2000000,4000000",
        help="hash counts for --million [default: 250k to 4M, doubling]",
    )
    parser.add_argument(
        "--old-limit",
        type=float,
        default=60.0,
        help="stop timing the old search after a size where it took longer [default: 60 s]",
    )
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="with --search-only: ray times the search local against Ray [default: local]",
    )
    parser.add_argument(
        "--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster [default: 2]"
    )
    parser.add_argument(
        "--k", type=int, help="with --engine ray: force near_search's scheme (0: all pairs)"
    )
    parser.add_argument("--search-once", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--compare", type=Path, metavar="TREE", help="another fercli checkout")
    parser.add_argument("--check", action="store_true", help="only compare with the reference")
    args = parser.parse_args()
    if args.search_once:
        base, n, impl, out = args.search_once
        return search_once(base, int(n), impl, out)
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU
    root = dataset_root(args.data)
    paths = image_files(root)
    if args.check:
        sys.exit(1 if check(paths) else 0)
    sizes = [int(n) for n in args.sizes.split(",")]
    if args.search_only and args.engine == "ray":
        return search_on_ray(root, sizes, args.repeats, args.ray_cpus, args.k)
    if args.search_only:
        return million(root, sizes, args.old_limit)
    print(f"{len(paths):,} images in {root}; {os.cpu_count()} CPU cores; "
          f"load average {os.getloadavg()[0]:.2f} at start")  # fmt: skip
    print(f"OS page cache: {warm_page_cache(paths)}")

    clean_times, clean_cpu, plain, other = [], [], [], []
    for r in range(args.repeats):
        seconds, cpu, summary = time_clean(root)
        clean_times.append(seconds)
        clean_cpu.append(cpu)
        print(f"  repeat {r + 1}: clean {seconds:.2f} s (CPU {cpu:.2f} s)", end="", flush=True)
        if args.compare:
            other.append(time_clean(root, args.compare))
            print(f"; --compare clean {other[-1][0]:.2f} s (CPU {other[-1][1]:.2f} s)", end="")
        result = time_plain_loop(paths)
        plain.append(result)
        print(
            f"; plain loop: phash {result['hashing']:.2f} s + bool search "
            f"{result['search_bool']:.2f} s (CPU {result['cpu']:.2f} s; packed search "
            f"{result['search_packed']:.2f} s)"
        )
    clean_s = statistics.median(clean_times)
    hashing = statistics.median(p["hashing"] for p in plain)
    bool_s = statistics.median(p["hashing"] + p["search_bool"] for p in plain)
    packed_s = statistics.median(p["hashing"] + p["search_packed"] for p in plain)
    dups = summary["duplicates"]
    print(f"\nmedians of {args.repeats} (load average {os.getloadavg()[0]:.2f} at the end):")
    print(f"  fercli clean dry run    {clean_s:6.2f} s  {len(paths) / clean_s:8,.0f} images/s "
          f"(CPU {statistics.median(clean_cpu):.2f} s, all processes)")  # fmt: skip
    print(f"  plain imagehash loop    {bool_s:6.2f} s  {len(paths) / bool_s:8,.0f} images/s "
          f"(phash {hashing:.2f} s + bool pairwise search; "
          f"CPU {statistics.median(p['cpu'] for p in plain):.2f} s)")  # fmt: skip
    if other:
        other_s = statistics.median(o[0] for o in other)
        other_cpu = statistics.median(o[1] for o in other)
        print(f"  clean with {args.compare}  {other_s:6.2f} s  "
              f"{len(paths) / other_s:8,.0f} images/s (CPU {other_cpu:.2f} s): this checkout "
              f"takes {clean_s / other_s:.2f}x its time, "
              f"{statistics.median(clean_cpu) / other_cpu:.2f}x its CPU")  # fmt: skip
        if other[0][2]["flagged"] != summary["flagged"]:
            print("  WARNING: the two checkouts flag different files")
    print(f"  loop, packed search     {packed_s:6.2f} s  {len(paths) / packed_s:8,.0f} images/s")
    print(f"  speed-up: {bool_s / clean_s:.1f}x over the plain loop, "
          f"{packed_s / clean_s:.1f}x over the loop with the packed search")  # fmt: skip
    print(f"  clean found {summary['flagged']['files']:,} files to flag; {dups['groups']:,} "
          f"duplicate groups; the plain search found {plain[0]['pairs']:,} pairs within "
          f"{THRESHOLD}")  # fmt: skip
    if args.million:
        million(root, sizes, args.old_limit)


if __name__ == "__main__":
    main()
