"""The images a run learns from and validates on, as uint8 tensors, and the order of an
epoch."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fercli.data.dataset import SplitData, load_split
from fercli.errors import FercliError
from fercli.progress import say

from .config import NORMALIZATION, TrainConfig


@dataclass
class Data:
    train: SplitData | None  # None with several sources (see `sources`)
    x_train: torch.Tensor  # (N, 1, H, W) uint8
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: tuple[str, ...]
    val_source: str
    sources: tuple = ()  # several sources: sources.SourceSplit each, in order; else empty


def load_data(config: TrainConfig) -> Data:
    """Train split, and val (the `val` split, else a stratified hold-out of train); with
    several sources (config.sources), each source's, concatenated (fercli.train.sources)."""
    if config.sources:
        return load_sources(config)
    train, x_tr, y_tr, x_val, y_val, source = load_root(Path(config.data_dir), config)
    return Data(
        train,
        tensor(x_tr),
        torch.from_numpy(y_tr),
        tensor(x_val),
        torch.from_numpy(y_val),
        train.classes,
        source,
    )


def tensor(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)


def load_root(root: Path, config: TrainConfig, classes=None, check_empty=True):
    """One root's (train SplitData, x_train, y_train, x_val, y_val, validation source), as
    numpy arrays; classes: the class order (default: found from the folders)."""
    from fercli.data.dataset import find_splits

    splits = find_splits(root)
    train = load_split(root, "train", classes=classes, size=config.image_size)
    for path, reason in train.errors:
        say(f"Warning: skipped unreadable {path}: {reason} (run `fercli clean {root}` to find all)")
    counts = np.bincount(train.labels, minlength=len(train.classes))
    empty = [c for c, n in zip(train.classes, counts) if n == 0]
    if empty and check_empty:
        raise FercliError(
            f"class(es) {', '.join(empty)} have no training images in {root}/train: "
            "add images or remove the empty class folders."
        )
    images, labels = train.images, train.labels
    if "val" in splits:
        val = load_split(root, "val", classes=train.classes, size=config.image_size)
        return train, images, labels, val.images, val.labels, "val split"
    from sklearn.model_selection import train_test_split

    if not 0 < config.val_fraction < 1:
        raise FercliError("--val-fraction must be between 0 and 1 when there is no val split.")
    idx = np.arange(len(labels))
    tr_idx, va_idx = train_test_split(
        idx, test_size=config.val_fraction, stratify=labels, random_state=config.split_seed
    )
    tr_idx.sort()
    va_idx.sort()
    source = f"{config.val_fraction:.0%} stratified hold-out of train"
    return train, images[tr_idx], labels[tr_idx], images[va_idx], labels[va_idx], source


def load_sources(config: TrainConfig) -> Data:
    """Every source of config.sources, classes mapped by folder name onto FER_CLASSES, the
    training and validation images concatenated in source order."""
    from fercli import FER_CLASSES

    from .sources import SourceSplit, check_sources, load_split_source

    check_sources(config.sources)  # every source's folders before any decoding
    parts, splits, at_train, at_val = [], [], 0, 0
    for s in config.sources:
        root = Path(s["root"])
        if s.get("split"):
            x_tr, y_tr, x_va, y_va, record = load_split_source(s, config.image_size)
        else:
            train, x_tr, y_tr, x_va, y_va, where = load_root(root, config, FER_CLASSES, False)
            record = {"file_list_hash": train.file_list_hash, "count": len(train)}
            record["val_source"] = where
        record = {
            "name": s["name"],
            "root": str(root.resolve()),
            "weight": s["weight"],
            "split": s.get("split"),
            **record,
            "train_images": len(y_tr),
            "val_images": len(y_va),
        }
        train_rows = slice(at_train, at_train + len(y_tr))
        val_rows = slice(at_val, at_val + len(y_va))
        splits.append(SourceSplit(s["name"], s["weight"], train_rows, val_rows, record))
        parts.append((x_tr, y_tr, x_va, y_va))
        at_train, at_val = at_train + len(y_tr), at_val + len(y_va)
    y_train = np.concatenate([p[1] for p in parts])
    empty = [c for i, c in enumerate(FER_CLASSES) if not (y_train == i).any()]
    if empty:
        raise FercliError(
            f"class(es) {', '.join(empty)} have no training images in any source: "
            "add a source that has them."
        )
    return Data(
        None,
        tensor(np.concatenate([p[0] for p in parts])),
        torch.from_numpy(y_train),
        tensor(np.concatenate([p[2] for p in parts])),
        torch.from_numpy(np.concatenate([p[3] for p in parts])),
        FER_CLASSES,
        "per-source hold-outs",
        tuple(splits),
    )


def epoch_indices(labels: torch.Tensor, balance: str, generator: torch.Generator) -> torch.Tensor:
    """A shuffled epoch (see epoch_pool)."""
    idx = epoch_pool(labels, balance, generator)
    return idx[torch.randperm(len(idx), generator=generator)]


def epoch_pool(labels: torch.Tensor, balance: str, generator: torch.Generator) -> torch.Tensor:
    """An epoch's images, unshuffled. With oversample, every class smaller than half the
    median class gets random repeats up to that size (augmentation makes each repeat a new
    image)."""
    idx = torch.arange(len(labels))
    if balance == "oversample":
        counts = torch.bincount(labels)
        floor = int(counts[counts > 0].float().median().item() // 2)  # of the classes it has
        extra = []
        for c, n in enumerate(counts.tolist()):
            if 0 < n < floor:
                members = idx[labels == c]
                extra.append(members[torch.randint(n, (floor - n,), generator=generator)])
        idx = torch.cat([idx, *extra])
    return idx


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255.0 - NORMALIZATION["mean"]) / NORMALIZATION["std"]


@torch.no_grad()
def predict_logits(model, x_uint8, device, dtype=None, batch_size=512, tta=False):
    """Logits for a uint8 tensor (N, 1, H, W), batched; with tta, averaged with the flip."""
    model.eval()
    out = []
    for start in range(0, len(x_uint8), batch_size):
        xb = normalize(x_uint8[start : start + batch_size]).to(device)
        xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(xb).float()
            if tta:
                logits = (logits + model(xb.flip(-1)).float()) / 2
        out.append(logits.cpu())
    return torch.cat(out) if out else torch.empty(0)


def data_epoch_indices(data: Data, balance: str, generator: torch.Generator) -> torch.Tensor:
    """A shuffled epoch of `data`: epoch_indices, or over several sources their weighted
    pool (fercli.train.sources.weighted_pool)."""
    if not data.sources:
        return epoch_indices(data.y_train, balance, generator)
    idx = data_epoch_pool(data, balance, generator)
    return idx[torch.randperm(len(idx), generator=generator)]


def data_epoch_pool(data: Data, balance: str, generator: torch.Generator) -> torch.Tensor:
    """An epoch's images of `data`, unshuffled (epoch_pool, or the sources' weighted pool)."""
    if not data.sources:
        return epoch_pool(data.y_train, balance, generator)
    from .sources import weighted_pool

    return weighted_pool(data, balance, generator)


def data_class_weights(data: Data, num_classes: int) -> torch.Tensor:
    """--balance weights: class_weights of the training labels, or over several sources of
    each class's expected count in an epoch."""
    if not data.sources:
        return class_weights(data.y_train, num_classes)
    from .sources import epoch_class_counts

    counts = epoch_class_counts(data, num_classes).clamp(min=1)
    return (counts.sum() / (num_classes * counts)).float()
