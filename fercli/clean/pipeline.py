"""The `fercli clean` engine: scan ROOT, decode every image once, run the filters, summarize.

Every image file of every split (ROOT/<split>/<class>/...) is decoded once, in parallel on
all cores (or by a Ray cluster's actors with engine "ray", fercli.clean.ray); each worker
produces the 48x48 array fercli trains on (fercli.data.images), a digest of the stored pixels and
the perceptual hashes the filters ask for (fercli.data.hashing). The filters (built-in and
plugins', fercli.registry) see the images batch by batch, here. Nothing here touches a
file: quarantine and cleaned copies are fercli.clean.quarantine's job.
"""

import hashlib
import inspect
import os
import stat
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from fercli import registry
from fercli.clean.filters import UNREADABLE, Flag, ImageBatch, is_unreadable
from fercli.clean.near_search import searching_with
from fercli.data.dataset import QUARANTINE_DIR, class_names, find_splits, map_chunks, scan_split
from fercli.data.hashing import preload
from fercli.data.images import IMAGE_SIZE, ImageError, load_with_pixels
from fercli.defaults import HASH, HASH_SIZE
from fercli.errors import FercliError, PluginError

EXAMPLES = 3  # examples per category in the summary
# clean_dataset's options of what to do with the findings (the rest are CleanSettings)
OUTPUT_OPTIONS = ("apply", "quarantine", "output", "report", "contact_sheet")


@dataclass
class CleanSettings:
    filters: list[str] | None = None  # None: every registered filter
    hash: str = HASH
    hash_size: int = HASH_SIZE
    threshold: int | None = None  # None: the default for the hash size
    blank_std: float | None = None  # None: the blank filter's default
    drop_conflicts: bool = False
    # Near duplicates checked on their pixels (fercli.clean.near_verify); None: its default
    verify: bool = True
    verify_threshold: float | None = None
    workers: int | None = None
    engine: str = "local"  # local, or ray (fercli.clean.ray): where files are decoded
    ray_address: str | None = None  # None: a new local Ray cluster
    actors: int | None = None  # Ray actors; None: one per CPU of the cluster

    @classmethod
    def from_options(cls, options: dict) -> "CleanSettings":
        """The settings among `fercli clean`'s options (keyed by its parameter names, the
        others left out); filters may be comma-separated names, as --filters gives them."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in options.items() if k in names}
        filters = values.get("filters")
        if isinstance(filters, str):  # "": every filter
            values["filters"] = (
                [f.strip() for f in filters.split(",") if f.strip()] if filters else None
            )
        return cls(**values)

    def check(self) -> None:
        """Refuse settings no run can take."""
        if self.engine not in ("local", "ray"):
            raise FercliError(f"unknown engine {self.engine!r}: choose local or ray.")

    def filter_options(self) -> dict:
        options = {
            "hash": self.hash,
            "hash_size": self.hash_size,
            "threshold": self.threshold,
            "blank_std": self.blank_std,
            "drop_conflicts": self.drop_conflicts,
            "verify": self.verify,
            "verify_threshold": self.verify_threshold,
        }
        return {k: v for k, v in options.items() if v is not None}


@dataclass
class CleanResult:
    root: Path
    classes: tuple[str, ...]
    splits: list[str]
    paths: list[str]  # every image file, relative to root
    file_splits: list[str]
    file_labels: list[str]
    filters: list[str]
    flags: list[Flag]
    groups: list = field(default_factory=list)  # fercli.clean.duplicates.DuplicateGroup
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0
    # path -> reason, for files that could not be opened or read: never flagged, never moved
    unreadable: dict[str, str] = field(default_factory=dict)
    # the near-duplicate verification's counts (pairs_checked, pairs_rejected), if it ran
    verification: dict = field(default_factory=dict)

    def flagged(self) -> dict[str, list[Flag]]:
        """Flags by path, in scan order."""
        by_path: dict[str, list[Flag]] = {}
        for flag in self.flags:
            by_path.setdefault(flag.path, []).append(flag)
        order = {p: i for i, p in enumerate(self.paths)}
        return dict(sorted(by_path.items(), key=lambda item: order.get(item[0], -1)))

    def kept_paths(self) -> list[str]:
        """What a cleaned copy holds: neither flagged nor unreadable files."""
        flagged = {f.path for f in self.flags}
        return [p for p in self.paths if p not in flagged and p not in self.unreadable]

    def summary(self) -> dict:
        return build_summary(self)

    def report(self) -> dict:
        report = {
            "summary": self.summary(),
            "flags": [flag_dict(f) for f in self.flags],
            "groups": [g.as_dict() for g in self.groups],
        }
        if self.unreadable:  # only then: reports of readable datasets stay as they were
            report["unreadable"] = unreadable_list(self.unreadable)
        return report


def unreadable_list(unreadable: dict[str, str]) -> list[dict]:
    return [{"path": path, "reason": reason} for path, reason in unreadable.items()]


def flag_dict(flag: Flag) -> dict:
    return {
        "path": flag.path,
        "filter": flag.filter,
        "reason": flag.reason,
        "group": flag.group,
        "kept": flag.kept,
    }


def make_filters(names: list[str] | None, options: dict) -> list[tuple[str, object]]:
    """Build the chosen filters (all registered ones by default). Each factory receives the
    options it names as parameters."""
    entries = registry.entries("filter")
    if names is None:
        names = list(entries)
    built = []
    for name in dict.fromkeys(names):
        entry = registry.get("filter", name)  # unknown name: error listing the choices
        try:
            params = inspect.signature(entry.factory).parameters
        except (TypeError, ValueError):
            params = {}
        accepted = {
            k: v
            for k, v in options.items()
            if k in params and params[k].kind is not inspect.Parameter.VAR_KEYWORD
        }
        try:
            built.append((name, entry.factory(**accepted)))
        except FercliError:
            raise
        except Exception as exc:
            raise PluginError(f"filter {name!r} could not be built: {exc!r}") from exc
    return built


def scan(root: Path):
    """Every image file under root's splits: (classes, splits, rel paths, splits, labels).
    The quarantine is never data: the default one, ROOT/.fercli-quarantine, is not a split
    and `check_output_place` refuses one inside a split."""
    splits = find_splits(root)
    classes = class_names(root, splits)
    paths, file_splits, labels = [], [], []
    for split in splits:
        for sample in scan_split(root, split, classes):
            paths.append(sample.rel)
            file_splits.append(split)
            labels.append(classes[sample.label])
    return classes, splits, paths, file_splits, labels


def decode_chunk(paths: list, hash_specs: list[tuple[str, int]]):
    """Worker: decode each file once into (48x48 arrays, errors, pixel digests, hashes)."""
    from fercli.data.hashing import hash_arrays

    n = len(paths)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    errors: list[str | None] = [None] * n
    digests: list[bytes | None] = [None] * n
    grays, readable = [], []
    for i, path in enumerate(paths):
        try:
            images[i], pixels = load_with_pixels(path)  # pixels: what imagehash hashes
        except (ImageError, OSError, ValueError) as exc:
            failure = read_failure(path)  # None: read, and failed to decode (corrupt)
            if failure is not None:
                errors[i] = UNREADABLE + failure
            elif isinstance(exc, ImageError):
                errors[i] = str(exc)
            else:
                errors[i] = str(exc) or type(exc).__name__
            continue
        height, width = pixels.shape
        digest = hashlib.blake2b(f"{width}x{height}:".encode(), digest_size=16)
        digest.update(np.ascontiguousarray(pixels))
        digests[i] = digest.digest()
        grays.append(pixels)
        readable.append(i)
    hashes = {}
    for kind, hash_size in hash_specs:
        bits = np.zeros((n, hash_size * hash_size), bool)
        if readable:
            bits[readable] = hash_arrays(kind, grays, hash_size)
        hashes[(kind, hash_size)] = bits
    return images, errors, digests, hashes


def read_failure(path) -> str | None:
    """Why the file at path cannot be opened or read to its end (an OSError: permission
    denied, an I/O error, a file gone), or None where it can be: then a failed decoding is
    the file's own fault. Asked only of files that failed to decode; a pipe or a device is
    not read (that could block) and counts as read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return _os_reason(exc)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            while os.read(fd, 1 << 20):
                pass
    except OSError as exc:
        return _os_reason(exc)
    finally:
        os.close(fd)
    return None


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def run_clean(root, settings: CleanSettings | None = None) -> CleanResult:
    """Scan root, run the filters over every image, and return what they flag."""
    start = time.perf_counter()
    settings = settings or CleanSettings()
    root = Path(root)
    settings.check()
    if settings.engine == "ray":
        from fercli.clean import ray as ray_engine

        ray_engine.refuse_local_sizes("set --actors", workers=settings.workers)
        ray_engine.import_ray()  # a missing extra is said before any work
    filters = make_filters(settings.filters, {**settings.filter_options(), "root": root})
    classes, splits, paths, file_splits, labels = scan(root)
    specs = sorted({f.hash_spec for _, f in filters if getattr(f, "hash_spec", None)})
    flags: list[Flag] = []
    base = str(root) + os.sep
    full = [base + p for p in paths]
    with ExitStack() as stack:
        if settings.engine == "ray":
            stack.enter_context(ray_engine.cluster(settings.ray_address))
            # the near-duplicate search's keys become Ray tasks too; the driver merges pairs
            stack.enter_context(searching_with(ray_engine.ray_runner()))
            chunks = _scan_on_ray(full, specs, settings.actors)
        else:
            preload([kind for kind, _ in specs])
            chunks = map_chunks(
                decode_chunk, full, specs, workers=settings.workers, label="Scanning"
            )
        unreadable: dict[str, str] = {}
        for first, decoded in chunks:
            for i, error in enumerate(decoded[1]):
                if error is not None and is_unreadable(error):
                    unreadable[paths[first + i]] = error[len(UNREADABLE) :]
            flags += _check_chunk(filters, first, decoded, paths, file_splits, labels)
        groups, verification = [], {}
        for name, flt in filters:  # on the cluster still, with --engine ray
            flags += [replace(f, filter=name) for f in _call(name, flt.finish)]
            groups += getattr(flt, "groups", [])
            verification.update(getattr(flt, "verification", None) or {})
    if unreadable:  # no filter's flag moves a file that could not be read (a plugin's neither)
        flags = [f for f in flags if f.path not in unreadable]
    used = {name: _describe(flt) for name, flt in filters}
    return CleanResult(
        root=root,
        classes=classes,
        splits=splits,
        paths=paths,
        file_splits=file_splits,
        file_labels=labels,
        filters=[name for name, _ in filters],
        flags=flags,
        groups=groups,
        settings=used,
        seconds=time.perf_counter() - start,
        unreadable=unreadable,
        verification=verification,
    )


def _scan_on_ray(full: list[str], specs, actors: int | None):
    """What map_chunks yields for decode_chunk, computed by Ray actors (fercli.clean.ray),
    with the same progress bar."""
    from fercli.clean import ray as ray_engine
    from fercli.data.dataset import CHUNK
    from fercli.progress import bar

    with bar(len(full), "Scanning") as progress:
        for first, decoded in ray_engine.clean_chunks(full, specs, chunk=CHUNK, actors=actors):
            progress.advance(len(decoded[0]))
            yield first, decoded


def _check_chunk(filters, first, decoded, paths, file_splits, labels) -> list[Flag]:
    """The filters' flags for one chunk of decode_chunk's results, from file `first` on."""
    images, errors, digests, hashes = decoded
    part = slice(first, first + len(images))
    batch = ImageBatch(
        paths=paths[part],
        splits=file_splits[part],
        labels=labels[part],
        images=images,
        errors=errors,
        hashes=hashes,
        digests=digests,
    )
    flags = []
    for name, flt in filters:
        for i, reason in _call(name, flt.check, batch):
            flags.append(Flag(batch.paths[i], name, str(reason)))
    return flags


def _call(name, method, *args) -> list:
    try:
        return list(method(*args) or ())
    except FercliError:
        raise
    except Exception as exc:
        raise PluginError(f"filter {name!r} failed: {exc!r}") from exc


def _describe(flt) -> dict:
    keys = ("blank_std", "threshold", "hash_spec", "drop_conflicts", "verify", "verify_threshold")
    found = {k: getattr(flt, k) for k in keys if getattr(flt, k, None) is not None}
    if "hash_spec" in found:
        found["hash"], found["hash_size"] = found.pop("hash_spec")
    return found


def build_summary(result: CleanResult) -> dict:
    """Counts before and after, per filter, duplicate groups, leaks, conflicts, examples."""
    flagged = result.flagged()
    before = _counts(result, result.paths)
    after = _counts(result, [p for p in result.paths if p not in flagged])
    per_filter = {name: 0 for name in result.filters}
    for name in result.filters:
        per_filter[name] = len({f.path for f in result.flags if f.filter == name})
    examples = {
        name: [{"path": f.path, "reason": f.reason} for f in result.flags if f.filter == name][
            :EXAMPLES
        ]
        for name in result.filters
    }
    groups = result.groups
    cross = [g for g in groups if g.cross_split]
    conflicts = [g for g in groups if g.label_conflict]
    examples["cross_split"] = [_group_example(g) for g in cross[:EXAMPLES]]
    examples["label_conflict"] = [_group_example(g) for g in conflicts[:EXAMPLES]]
    summary = {
        "root": str(result.root),
        "filters": result.filters,
        "settings": result.settings,
        "images": {
            "before": before,
            "after": after,
            "total_before": len(result.paths),
            "total_after": len(result.paths) - len(flagged),
        },
        "flagged": {"files": len(flagged), "per_filter": per_filter},
        "duplicates": {
            "groups": len(groups),
            "exact_groups": _exact_sets(result),
            "near_groups": sum(not g.exact for g in groups),
            "files_in_groups": sum(len(g.paths) for g in groups),
            "cross_split_groups": len(cross),
            "label_conflict_groups": len(conflicts),
            **_verification_counts(result),
        },
        "examples": examples,
        "seconds": round(result.seconds, 3),
    }
    if result.unreadable:  # only then: summaries of readable datasets stay as they were
        first = dict(list(result.unreadable.items())[:EXAMPLES])
        summary["unreadable"] = {
            "files": len(result.unreadable),
            "examples": unreadable_list(first),
        }
    return summary


def _verification_counts(result: CleanResult) -> dict:
    """Near-duplicate candidate pairs (of different pixels, hashes within the threshold)
    checked on their pixels, and those rejected as different photos; only where it ran."""
    v = result.verification
    if "pairs_checked" not in v:
        return {}
    return {"near_pairs_checked": v["pairs_checked"], "near_pairs_rejected": v["pairs_rejected"]}


def _exact_sets(result: CleanResult) -> int:
    """Sets of two or more pixel-identical files among the duplicate groups."""
    return sum(getattr(g, "exact_sets", 0) for g in result.groups)


def _counts(result: CleanResult, paths: list[str]) -> dict:
    index = {p: i for i, p in enumerate(result.paths)}
    counts = {s: {c: 0 for c in result.classes} for s in result.splits}
    for p in paths:
        i = index[p]
        counts[result.file_splits[i]][result.file_labels[i]] += 1
    return counts


def _group_example(group, most: int = 5) -> dict:
    copies = [f"{p} ({c})" for p, c in zip(group.paths, group.labels)]
    return {"group": group.id, "kept": group.kept, "size": len(copies), "copies": copies[:most]}


def check_output_place(root: Path, target: Path, what: str) -> None:
    """Refuse a quarantine or output folder inside a split folder: it would become data."""
    target = Path(os.path.abspath(target))
    for split in find_splits(root):
        folder = Path(os.path.abspath(root / split))
        if target == folder or target.is_relative_to(folder):
            raise FercliError(
                f"{what} {target} is inside the {split} split of {root}: choose a folder "
                f"outside ROOT/<split>/ (the default quarantine is ROOT/{QUARANTINE_DIR})."
            )


def clean_dataset(
    root,
    settings: CleanSettings | None = None,
    *,
    apply: bool = False,
    quarantine=None,
    output=None,
    report=None,
    contact_sheet=None,
    sheet_limit: int = 200,
) -> dict:
    """`fercli clean` without the printing: find the problems, write the report and contact
    sheet, then quarantine (`apply`) or write a cleaned copy (`output`). Returns the summary.
    """
    from fercli.clean import quarantine as q

    root = Path(root)
    if apply and output:
        raise FercliError("--apply and --output exclude each other: choose one.")
    find_splits(root)  # a clear error where there is no dataset
    if quarantine is not None:
        check_output_place(root, quarantine, "quarantine folder")
    if output is not None:
        check_output_place(root, output, "output folder")
        if Path(os.path.abspath(output)) == Path(os.path.abspath(root)):
            raise FercliError("--output must be a new folder, not ROOT itself.")
    result = run_clean(root, settings)
    summary = result.summary()
    summary["mode"] = "apply" if apply else "output" if output else "dry-run"
    if contact_sheet:
        from fercli.clean.contact_sheet import draw_contact_sheet

        draw_contact_sheet(root, result.flags, contact_sheet, sheet_limit)
        summary["contact_sheet"] = str(contact_sheet)
    if apply and result.flags:
        files = [(path, [flag_dict(f) for f in flags]) for path, flags in result.flagged().items()]
        manifest = q.apply(root, files, quarantine, summary=summary)
        run_dir = Path(manifest["quarantine"])
        summary["quarantine"] = {
            "run_id": run_dir.name,
            "folder": str(run_dir),
            "moved": len(manifest["files"]),
            "manifest": str(run_dir / q.MANIFEST),
            "undo": f"fercli clean {root} --undo {run_dir.name}"
            + (f" --quarantine {quarantine}" if quarantine else ""),
        }
    elif output:
        summary["output"] = q.write_clean_copy(root, result.kept_paths(), output)
    if report:
        from fercli.clean.report import write_report

        summary["report"] = str(report)
        write_report(report, {**result.report(), "summary": summary})
    return summary
