"""Datasets laid out as ROOT/<split>/<class>/<image>, loaded into one cached uint8 array.

Splits are `train` and `test`, with an optional `val`. A split decodes once: the array is
cached on disk, keyed on the file list, sizes and modification times, so the next command
over the same data reads it back in a fraction of a second.
"""

import hashlib
import itertools
import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercli import FER_CLASSES
from fercli.data.images import IMAGE_SIZE, PREPROCESS_VERSION, is_image_name, load_many
from fercli.engines.local import start_pool
from fercli.errors import FercliError
from fercli.progress import bar
from fercli.util import atomic_path, cache_dir

SPLITS = ("train", "val", "test")
QUARANTINE_DIR = ".fercli-quarantine"
FER2013_URL = "https://www.kaggle.com/datasets/msambare/fer2013"


@dataclass
class Sample:
    rel: str  # path relative to the dataset root, with "/" separators
    label: int


@dataclass
class SplitData:
    root: Path
    split: str
    classes: tuple[str, ...]
    images: np.ndarray  # (N, size, size) uint8
    labels: np.ndarray  # (N,) int64
    paths: list[str]  # relative to root, one per image
    errors: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    file_list_hash: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        per = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, per)}


def missing_dataset_message(root) -> str:
    return (
        f"no dataset at {root}: expected {root}/train/<class>/<image> "
        f"(splits train and test, optional val; classes {', '.join(FER_CLASSES)}). "
        f"Download FER-2013 from {FER2013_URL} and unpack it there, "
        f"or make a synthetic one with `fercli synth {root}`."
    )


def find_splits(root: str | os.PathLike) -> list[str]:
    """The splits present under root; a clear error where there is no dataset."""
    root = Path(root)
    if not root.is_dir():
        raise FercliError(missing_dataset_message(root))
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise FercliError(missing_dataset_message(root))
    return splits


def class_names(root: str | os.PathLike, splits=None) -> tuple[str, ...]:
    """Classes from the folder names: FER-2013's seven in their order, else sorted names."""
    root = Path(root)
    found = set()
    for split in splits or find_splits(root):
        found |= {p.name for p in (root / split).iterdir() if p.is_dir() and _visible(p.name)}
    if not found:
        raise FercliError(
            f"no class folders in {root}: expected {root}/<split>/<class>/<image>. "
            f"Run `fercli synth DEST` for an example of the layout."
        )
    if found <= set(FER_CLASSES):
        return FER_CLASSES
    return tuple(sorted(found))


def _visible(name: str) -> bool:
    return not name.startswith(".")


def scan_split(root, split: str, classes: tuple[str, ...]) -> list[Sample]:
    """Every image file of one split, sorted by path. Hidden files and folders are skipped."""
    root = Path(root)
    samples = []
    for label, name in enumerate(classes):
        folder = root / split / name
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            samples += [
                Sample(f"{rel_dir}/{f}", label) for f in sorted(filenames) if is_image_name(f)
            ]
    return samples


def file_list_hash(samples: list[Sample]) -> str:
    """Hash of the relative paths and labels: the same data on any machine gives the same hash."""
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.rel}\t{s.label}\n".encode())
    return h.hexdigest()


def _cache_key(root: Path, split, samples, classes, size) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps([str(root.resolve()), split, list(classes), size, PREPROCESS_VERSION]).encode()
    )
    for s in samples:
        st = os.stat(root / s.rel)
        h.update(f"{s.rel}\t{s.label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


CHUNK = 512  # items per map_chunks call


def map_chunks(func, items: list, *args, workers: int | None = None, label="Decoding", chunk=CHUNK):
    """Run `func(items[i : i + chunk], *args)` for every chunk, on every core, and yield
    `(i, result)` in order with a progress bar. Only a few chunks are in flight at a time,
    so memory stays flat however many items there are."""
    n = len(items)
    workers = workers or os.cpu_count() or 1
    starts = range(0, n, chunk)
    with bar(n, label) as progress:
        if workers == 1 or n < 2 * chunk:
            for start in starts:
                result = func(items[start : start + chunk], *args)
                progress.advance(min(chunk, n - start))
                yield start, result
            return
        pool = start_pool(workers, one_thread)
        try:
            todo = iter(starts)
            pending = deque(
                (s, pool.submit(func, items[s : s + chunk], *args))
                for s in itertools.islice(todo, 3 * workers)
            )
            while pending:
                start, future = pending.popleft()
                result = future.result()
                for s in itertools.islice(todo, 1):
                    pending.append((s, pool.submit(func, items[s : s + chunk], *args)))
                progress.advance(min(chunk, n - start))
                yield start, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def one_thread() -> None:
    """A worker is one core's: a native thread pool (OpenBLAS, under fercli.data.resample's
    matrix products) in each would only fight the other workers for the cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # installed with scikit-learn; without it, the pools keep their size
        return
    threadpool_limits(1)


def decode(paths: list, size: int = IMAGE_SIZE, workers: int | None = None, label="Decoding"):
    """Decode many files on every core: (uint8 array, [(index, reason), ...])."""
    images = np.zeros((len(paths), size, size), np.uint8)
    errors: list[tuple[int, str]] = []
    for start, (arr, errs) in map_chunks(load_many, paths, size, workers=workers, label=label):
        images[start : start + len(arr)] = arr
        errors += [(start + i, reason) for i, reason in errs]
    return images, errors


def load_split(
    root,
    split: str,
    *,
    classes=None,
    size: int = IMAGE_SIZE,
    use_cache: bool = True,
    workers: int | None = None,
) -> SplitData:
    """Load one split as a SplitData; unreadable files are left out and listed in `errors`."""
    root = Path(root)
    splits = find_splits(root)
    if split not in splits:
        raise FercliError(
            f"no {split!r} split in {root}: found {', '.join(splits)}. "
            f"Expected {root}/{split}/<class>/<image>."
        )
    classes = tuple(classes or class_names(root, splits))
    samples = scan_split(root, split, classes)
    if not samples:
        raise FercliError(
            f"the {split!r} split in {root} has no images: put images in {root}/{split}/<class>/."
        )
    key = _cache_key(root, split, samples, classes, size) if use_cache else None
    cached = cache_dir() / f"{split}-{key}.npz" if key else None
    if cached and cached.exists():
        try:
            return _read_cache(cached, root, split, classes)
        except Exception:
            pass  # a damaged cache file is rebuilt below
    images, errs = decode([root / s.rel for s in samples], size, workers, f"Decoding {split}")
    bad = {i for i, _ in errs}
    keep = [i for i in range(len(samples)) if i not in bad]
    data = SplitData(
        root=root,
        split=split,
        classes=classes,
        images=images[keep] if bad else images,
        labels=np.array([samples[i].label for i in keep], np.int64),
        paths=[samples[i].rel for i in keep],
        errors=[(samples[i].rel, reason) for i, reason in errs],
        file_list_hash=file_list_hash([samples[i] for i in keep]),
    )
    if cached:
        _write_cache(cached, data)
    return data


def _write_cache(path: Path, data: SplitData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"errors": data.errors, "file_list_hash": data.file_list_hash}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            images=data.images,
            labels=data.labels,
            paths=np.array(data.paths, dtype=object).astype(str),
            meta=json.dumps(meta),
        )


def _read_cache(path: Path, root, split, classes) -> SplitData:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return SplitData(
            root=root,
            split=split,
            classes=classes,
            images=z["images"],
            labels=z["labels"],
            paths=[str(p) for p in z["paths"]],
            errors=[tuple(e) for e in meta["errors"]],
            file_list_hash=meta["file_list_hash"],
        )
