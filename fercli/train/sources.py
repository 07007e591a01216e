"""Training on several data roots ("sources"): `--data ROOT[:WEIGHT]`, `[[train.data]]`.

A source is a root with a weight, a name and optionally a person-split file (fercli.data.splits):

- without a split file, ROOT is laid out as one dataset (ROOT/train/<class>/, optional
  ROOT/val/<class>/), validated on its val split or a stratified hold-out of its train
  split (--val-fraction, --split-seed), exactly as a single-root run;
- with one, ROOT is a photo folder ROOT/<class>/<image> whose `train` part trains and whose
  `val` part validates (every person in one part).

Classes are mapped by folder name onto fercli.FER_CLASSES (a source may lack classes; a
folder of another name is an error). Each epoch has as many samples as the sources' training
pools hold together (a pool: a source's training images, topped up per source by --balance
oversample); source s gets round(N x w_s / sum w) of them, drawn from its own pool: every
image of the pool as many whole times as fit, the rest a random subset without repeats.
--balance weights weighs the loss by the inverse of each class's expected count in such an
epoch. Validation is per source; the figure that picks best.pt (and early stopping and the
plateau schedule) is the mean over sources of their validation accuracy.

A run of one source without a split file is a plain single-root run: config.sources stays
empty and nothing here is used.
"""

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fercli import FER_CLASSES
from fercli.errors import FercliError

SOURCE_KEYS = ("root", "weight", "name", "split")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED_NAMES = {"live"}  # val_acc_live is --ema's column


@dataclass
class SourceSplit:
    """Where one source's images lie in Data's concatenated tensors."""

    name: str
    weight: float
    train: slice  # rows of x_train / y_train
    val: slice  # rows of x_val / y_val
    record: dict  # what metrics.json says of it


def parse_source(text: str) -> dict:
    """`ROOT` or `ROOT:WEIGHT` (a command line's --data): split on the last ':' only where
    what follows is a number, so a path that itself holds ':' stays whole."""
    root, sep, tail = str(text).rpartition(":")
    if sep and root:
        try:
            weight = float(tail)
        except ValueError:
            return {"root": str(text), "weight": 1.0}
        return source_entry({"root": root, "weight": weight})
    return {"root": str(text), "weight": 1.0}


def source_entry(entry: dict) -> dict:
    """A [[train.data]] table checked and filled in: root, weight (default 1), name, split."""
    if not isinstance(entry, dict) or "root" not in entry:
        raise FercliError(
            f"a [[train.data]] entry needs a root (keys: {', '.join(SOURCE_KEYS)}); got {entry!r}."
        )
    unknown = sorted(set(entry) - set(SOURCE_KEYS))
    if unknown:
        raise FercliError(
            f"unknown key(s) {', '.join(unknown)} in a [[train.data]] entry: "
            f"the keys are {', '.join(SOURCE_KEYS)}."
        )
    weight = entry.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not (math.isfinite(weight) and weight > 0)
    ):
        raise FercliError(
            f"the weight of source {entry['root']} must be a number above 0, not {weight!r}."
        )
    name = entry.get("name")
    if name is not None and (not NAME.match(str(name)) or name in RESERVED_NAMES):
        raise FercliError(
            f"source name {name!r} of {entry['root']}: use letters, digits, '_', '-' and '.', "
            f"starting with a letter or digit (and not {', '.join(sorted(RESERVED_NAMES))})."
        )
    split = entry.get("split")
    return {
        "root": str(entry["root"]),
        "weight": float(weight),
        "name": None if name is None else str(name),
        "split": None if split is None else str(split),
    }


def source_list(data_dir: str | None, entries) -> list[dict]:
    """DATA_DIR (weight 1) then each --data / [[train.data]] entry, checked, named, with no
    root listed twice."""
    given = ([{"root": str(data_dir)}] if data_dir else []) + list(entries or [])
    sources = [source_entry(e) if isinstance(e, dict) else parse_source(e) for e in given]
    sources = [source_entry(s) for s in sources]
    seen, names = set(), set()
    for s in sources:
        key = (str(Path(s["root"]).resolve()), s["split"] and str(Path(s["split"]).resolve()))
        if key in seen:
            raise FercliError(f"data root {s['root']} is listed twice: give each source once.")
        seen.add(key)
    for s in sources:
        if s["name"] in names:
            raise FercliError(f"two sources are named {s['name']!r}: give each its own name.")
        if s["name"]:
            names.add(s["name"])
    for s in sources:
        if not s["name"]:
            s["name"] = _free_name(_default_name(s["root"]), names)
            names.add(s["name"])
    return sources


def _default_name(root: str) -> str:
    name = Path(root).name or Path(root).resolve().name or "data"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", name).lstrip("_.-") or "data"
    return "data" if name in RESERVED_NAMES else name


def _free_name(name: str, taken: set) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def is_multi(sources: list[dict]) -> bool:
    """Whether these sources need the several-source machinery: a single root without a
    split file trains as a plain run (its weight means nothing alone)."""
    return len(sources) > 1 or any(s.get("split") for s in sources)


def config_sources(config) -> list[dict]:
    """A config's sources: config.sources, else its data_dir alone."""
    return list(config.sources) if config.sources else source_list(config.data_dir, [])


def same_sources_key(sources: list[dict]) -> list:
    return [
        (
            str(Path(s["root"]).resolve()),
            float(s.get("weight", 1.0)),
            s.get("split") and str(Path(s["split"]).resolve()),
        )
        for s in sources
    ]


def refuse_other_sources(saved, given, out) -> None:
    """--resume continues on the saved run's data: another list of sources is refused."""
    if same_sources_key(config_sources(saved)) != same_sources_key(config_sources(given)):
        shown = ", ".join(_shown(s) for s in config_sources(saved))
        raise FercliError(
            f"{out} trained on {shown}: --resume continues on the same data; drop the data "
            "arguments or start a new run."
        )


def _shown(source: dict) -> str:
    split = f" (split {source['split']})" if source.get("split") else ""
    return f"{source['root']}:{source.get('weight', 1.0):g}{split}"


def check_class_folders(folder: Path) -> None:
    """Every class folder of `folder` names a FER class."""
    if not folder.is_dir():
        return
    for p in sorted(folder.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and p.name not in FER_CLASSES:
            raise FercliError(
                f"unknown class folder {p.name!r} in {folder}: with several sources the class "
                f"folders are named after fercli's classes ({', '.join(FER_CLASSES)})."
            )


def check_sources(sources: list[dict]) -> None:
    """Every source's class folders name FER classes (ROOT/train and ROOT/val, or ROOT
    itself for a source with a split file)."""
    for s in sources:
        root = Path(s["root"])
        folders = [root] if s.get("split") else [root / "train", root / "val"]
        for folder in folders:
            check_class_folders(folder)


def load_split_source(source: dict, size: int):
    """A source with a person-split file: (train images, labels, val images, labels,
    record) from its `train` and `val` parts."""
    from fercli.data.dataset import Sample, decode, file_list_hash
    from fercli.data.splits import load_split, part_files
    from fercli.progress import say

    root, path = Path(source["root"]), source["split"]
    if not root.is_dir():
        raise FercliError(f"no photo folder at {root}: expected {root}/<class>/<image>.")
    split = load_split(path)
    parts = set(split["persons"].values())
    if not {"train", "val"} <= parts:
        raise FercliError(f"the split file {path} needs a train and a val part; it has "
                          f"{', '.join(sorted(parts)) or 'none'}.")  # fmt: skip
    arrays, hashes = [], []
    for part in ("train", "val"):
        chosen = part_files(split, root, part, classes=FER_CLASSES)
        if chosen.unknown and part == "train":
            say(chosen.unknown_line())
        if not chosen.files:
            raise FercliError(f"no photos of part {part} of {path} in {root}/<class>/.")
        images, errors = decode([p for _, p in chosen.files], size, label=f"Decoding {part}")
        bad = {i for i, _ in errors}
        for i, reason in errors:
            say(f"Warning: skipped unreadable {chosen.files[i][1]}: {reason}")
        keep = [i for i in range(len(chosen.files)) if i not in bad]
        labels = np.array([FER_CLASSES.index(chosen.files[i][0]) for i in keep], np.int64)
        rels = [f"{chosen.files[i][0]}/{chosen.files[i][1].name}" for i in keep]
        hashes.append(file_list_hash([Sample(r, int(y)) for r, y in zip(rels, labels)]))
        arrays += [images[keep], labels]
    record = {"file_list_hash": hashes[0], "count": len(arrays[1]) + len(arrays[3])}
    record["val_source"] = f"val part of the person split {path}"
    return (*arrays, record)


def quotas(sizes: list[int], weights: list[float]) -> list[int]:
    """Each source's samples of an epoch of sum(sizes): proportional to its weight, rounded
    by largest remainder so that they add up."""
    total, whole = sum(sizes), sum(weights)
    exact = [total * w / whole for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def weighted_pool(data, balance: str, generator: torch.Generator) -> torch.Tensor:
    """An epoch's image indices, unshuffled, over several sources: each source's pool (its
    training images; with oversample, topped up per source as data.epoch_pool does) drawn to
    its quota: the whole pool as many times as fit, the rest a random subset of it."""
    from .data import epoch_pool

    pools = []
    for s in data.sources:
        rows = torch.arange(s.train.start, s.train.stop)
        pools.append(rows[epoch_pool(data.y_train[s.train], balance, generator)])
    out = []
    for pool, n in zip(pools, quotas([len(p) for p in pools], [s.weight for s in data.sources])):
        whole, rest = divmod(n, len(pool))
        out += [pool] * whole + [pool[torch.randperm(len(pool), generator=generator)[:rest]]]
    return torch.cat(out)


def epoch_class_counts(data, num_classes: int) -> torch.Tensor:
    """Each class's expected count in an epoch of several sources (without oversample)."""
    sizes = [s.train.stop - s.train.start for s in data.sources]
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for s, n in zip(data.sources, quotas(sizes, [s.weight for s in data.sources])):
        per = torch.bincount(data.y_train[s.train], minlength=num_classes).double()
        counts += per * (n / per.sum())
    return counts


def source_scores(logits: torch.Tensor, data) -> tuple[float, dict]:
    """Per source: validation accuracy and macro recall (over the classes it has validation
    images of) as history columns; and the combined accuracy, their mean over sources."""
    columns, accuracies = {}, []
    predicted = logits.argmax(1)
    for s in data.sources:
        truth, guess = data.y_val[s.val], predicted[s.val]
        hits = guess == truth
        accuracy = hits.float().mean().item() if len(truth) else 0.0
        recalls = [hits[truth == c].float().mean().item() for c in truth.unique().tolist()]
        columns[f"val_acc_{s.name}"] = round(accuracy, 5)
        columns[f"val_recall_{s.name}"] = round(sum(recalls) / len(recalls), 5) if recalls else 0.0
        accuracies.append(accuracy)
    return sum(accuracies) / len(accuracies), columns


def data_record(config, data) -> dict:
    """metrics.json's and the checkpoints' `data`: as a single root's, plus `sources`."""
    records = [s.record for s in data.sources]
    combined = hashlib.sha256("".join(r["file_list_hash"] for r in records).encode())
    return {
        "root": records[0]["root"],
        "file_list_hash": combined.hexdigest(),
        "count": sum(r["count"] for r in records),
        "train_images": len(data.y_train),
        "val_images": len(data.y_val),
        "val_source": data.val_source,
        "sources": records,
    }


def describe(data, balance: str) -> list[str]:
    """One line per source for the start of a run."""
    sizes = [s.train.stop - s.train.start for s in data.sources]
    shares = quotas(sizes, [s.weight for s in data.sources])
    total = sum(shares)
    return [
        f"  source {s.name}: {s.record['train_images']} training images, weight {s.weight:g} "
        f"({n / total:.0%} of each epoch's samples), {s.record['val_images']} for validation "
        f"({s.record['val_source']})"
        for s, n in zip(data.sources, shares)
    ]


def source_report(truth, predicted, classes) -> dict:
    """One source's classification report, with its macro recall (over the classes it has
    validation images of), as history.csv's val_recall_<name>."""
    from fercli.metrics.classification import classification_report

    report = classification_report(truth, predicted, classes)
    recalls = [c["recall"] for c in report["per_class"].values() if c["support"]]
    report["macro_recall"] = sum(recalls) / len(recalls) if recalls else 0.0
    return report
