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
    train: SplitData
    x_train: torch.Tensor  # (N, 1, H, W) uint8
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: tuple[str, ...]
    val_source: str


def load_data(config: TrainConfig) -> Data:
    """Train split, and val (the `val` split, else a stratified hold-out of train)."""
    from fercli.data.dataset import find_splits

    root = Path(config.data_dir)
    splits = find_splits(root)
    train = load_split(root, "train", size=config.image_size)
    for path, reason in train.errors:
        say(f"Warning: skipped unreadable {path}: {reason} (run `fercli clean {root}` to find all)")
    counts = np.bincount(train.labels, minlength=len(train.classes))
    empty = [c for c, n in zip(train.classes, counts) if n == 0]
    if empty:
        raise FercliError(
            f"class(es) {', '.join(empty)} have no training images in {root}/train: "
            "add images or remove the empty class folders."
        )
    images, labels = train.images, train.labels
    if "val" in splits:
        val = load_split(root, "val", classes=train.classes, size=config.image_size)
        x_val, y_val, source = val.images, val.labels, "val split"
        x_tr, y_tr = images, labels
    else:
        from sklearn.model_selection import train_test_split

        if not 0 < config.val_fraction < 1:
            raise FercliError("--val-fraction must be between 0 and 1 when there is no val split.")
        idx = np.arange(len(labels))
        tr_idx, va_idx = train_test_split(
            idx, test_size=config.val_fraction, stratify=labels, random_state=config.split_seed
        )
        tr_idx.sort()
        va_idx.sort()
        x_tr, y_tr, x_val, y_val = images[tr_idx], labels[tr_idx], images[va_idx], labels[va_idx]
        source = f"{config.val_fraction:.0%} stratified hold-out of train"

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)

    return Data(
        train,
        tensor(x_tr),
        torch.from_numpy(y_tr),
        tensor(x_val),
        torch.from_numpy(y_val),
        train.classes,
        source,
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
        floor = int(counts.float().median().item() // 2)
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
