"""The optimizer, learning-rate schedule and augmenters a run is configured with."""

import torch

from fercli import registry
from fercli.errors import FercliError

from .config import TrainConfig


def make_optimizer(config: TrainConfig, model):
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=0.9, nesterov=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.learning_rate)
    raise FercliError(f"unknown optimizer {config.optimizer!r}: choose sgd or adamw.")


def make_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    total = config.num_epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.learning_rate,
            total_steps=total,
            pct_start=0.15,
            div_factor=20,
            final_div_factor=200,
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=0.5, patience=3
        )
    if config.schedule == "none":
        return None
    raise FercliError(
        f"unknown schedule {config.schedule!r}: choose onecycle, cosine, plateau or none."
    )


def build_augmenters(config: TrainConfig):
    names = [n.strip() for n in config.augment.split(",") if n.strip() and n.strip() != "none"]
    return [registry.create("augmenter", n, **config.augment_options.get(n, {})) for n in names]
