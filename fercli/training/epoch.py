"""One training epoch: batches gathered from the uint8 images, augmented, stepped."""

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fercli.progress import bar

from .config import NORMALIZATION, TrainConfig
from .data import Data, epoch_indices


@dataclass
class Parts:
    """What one training step needs besides the data and the config."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch LR scheduler, or None
    scaler: torch.amp.GradScaler
    augmenters: list
    generator: torch.Generator  # on the CPU: epoch order, mixup
    augment_generator: torch.Generator  # on the device of the images it augments
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None: full fp32
    weights: torch.Tensor | None  # class weights of the loss (--balance weights)
    x_train: torch.Tensor  # the training images and labels on `device`
    y_train: torch.Tensor


def make_augment_generator(generator: torch.Generator, device, seed: int) -> torch.Generator:
    """The random stream of the augmenters. On a GPU the training images (28,709 x 48 x 48
    bytes for FER-2013) live on the device and are augmented there, with a generator of their
    own; on the CPU the epoch-order generator serves both, so CPU runs repeat those of earlier
    versions exactly."""
    if device.type == "cuda":
        return torch.Generator(device=device).manual_seed(seed)
    return generator


def train_epoch(parts: Parts, data: Data, config: TrainConfig, epoch: int) -> dict:
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    generator, device, dtype, weights = parts.generator, parts.device, parts.dtype, parts.weights
    scaler = parts.scaler
    model.train()
    order = epoch_indices(data.y_train, config.balance, generator).to(device)
    # Running sums stay on the device (float64, so a CPU run's figures are unchanged) and are
    # read for the progress bar every `sync_every` steps: each read waits for the GPU.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = reported = 0
    sync_every = 25 if device.type == "cuda" else 1
    t0 = time.perf_counter()
    batches = range(0, len(order), config.batch_size)
    per_step = isinstance(
        scheduler, (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CosineAnnealingLR)
    )
    with bar(
        len(order), f"epoch {epoch}/{config.num_epochs}", ("loss", "acc", "img_s")
    ) as progress:
        for step, start in enumerate(batches, 1):
            idx = order[start : start + config.batch_size]
            xb = parts.x_train[idx].float().div_(255.0)
            for aug in parts.augmenters:
                xb = aug(xb, parts.augment_generator)
            xb = (xb - NORMALIZATION["mean"]) / NORMALIZATION["std"]
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = parts.y_train[idx]
            mix = None
            if config.mixup > 0:
                lam = float(
                    np.random.default_rng(
                        int(torch.randint(2**31, (1,), generator=generator))
                    ).beta(config.mixup, config.mixup)
                )
                perm = torch.randperm(len(idx), generator=generator).to(device)
                xb = lam * xb + (1 - lam) * xb[perm]
                mix = (perm, lam)
            with torch.autocast(
                device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
            ):
                logits = model(xb)
            logits = logits.float()
            loss = F.cross_entropy(
                logits, yb, weight=weights, label_smoothing=config.label_smoothing
            )
            if mix:
                perm, lam = mix
                loss = lam * loss + (1 - lam) * F.cross_entropy(
                    logits, yb[perm], weight=weights, label_smoothing=config.label_smoothing
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if per_step:
                scheduler.step()
            n = len(idx)
            total_loss += loss.detach().double() * n
            correct += (logits.argmax(1) == yb).sum()
            seen += n
            if step % sync_every == 0 or start + n >= len(order):
                rate = seen / (time.perf_counter() - t0)
                progress.advance(
                    seen - reported,
                    loss=f"{total_loss.item() / seen:.3f}",
                    acc=f"{correct.item() / seen:.3f}",
                    img_s=f"{rate:.0f}",
                )
                reported = seen
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch,
        "train_loss": round(total_loss.item() / seen, 5),
        "train_acc": round(correct.item() / seen, 5),
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": round(seen / seconds, 1),
        "seconds": round(seconds, 2),
    }
