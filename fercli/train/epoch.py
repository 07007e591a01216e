"""One training epoch: batches gathered from the uint8 images, augmented, stepped."""

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fercli.progress import bar

from . import distributed
from .config import NORMALIZATION, TrainConfig
from .data import Data, data_epoch_indices, data_epoch_pool
from .teacher import distillation_loss


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
    world: distributed.World = distributed.SINGLE  # this process's place in a torchrun job
    teacher: torch.Tensor | None = None  # (N, C) teacher log-probabilities of x_train
    batch_teacher: object = None  # --teacher-targets batch: teacher.BatchTeacher
    average: object = None  # --ema: ema.WeightAverage of the bare model's weights


def make_augment_generator(generator: torch.Generator, device, seed: int) -> torch.Generator:
    """The random stream of the augmenters. On a GPU the training images (28,709 x 48 x 48
    bytes for FER-2013) live on the device and are augmented there, with a generator of their
    own; on the CPU the epoch-order generator serves both, so CPU runs repeat those of earlier
    versions exactly."""
    if device.type == "cuda":
        return torch.Generator(device=device).manual_seed(seed)
    return generator


def epoch_batches(parts: Parts, data: Data, config: TrainConfig, epoch: int) -> list:
    """This process's batches of the epoch: [(image indices on the device, global batch
    size)]. A single process shuffles with the run's generator, as earlier versions did; in a
    distributed run the DistributedSampler shuffles (see distributed.local_batches)."""
    world, device, size = parts.world, parts.device, config.batch_size
    if not world.distributed:
        order = data_epoch_indices(data, config.balance, parts.generator).to(device)
        return [(order[s : s + size], len(order[s : s + size])) for s in range(0, len(order), size)]
    seed = distributed.stream_seed(config.seed, epoch, distributed.POOL)
    pool = data_epoch_pool(data, config.balance, torch.Generator().manual_seed(seed))
    plan = distributed.local_batches(len(pool), size, world, config.seed, epoch)
    return [(pool[positions].to(device), n) for positions, n in plan]


def reseed(parts: Parts, seed: int, epoch: int) -> None:
    """A distributed run's random streams for this epoch and process (distributed.stream_seed):
    augmentation, mixup, dropout."""
    seed = distributed.stream_seed(seed, epoch, parts.world.rank)
    torch.manual_seed(seed)
    parts.generator = torch.Generator().manual_seed(seed)
    parts.augment_generator = make_augment_generator(parts.generator, parts.device, seed)


def mix_distillation(label_loss, logits, teacher, mix, config: TrainConfig):
    """(1 - w) x the labels' loss + w x the KL to the teacher's softened probabilities. With
    mixup, the KL terms of both images weighted as their labels' (the same gradient as a KL
    to the mixed softened probabilities)."""
    t, w = config.distill_temperature, config.distill_weight
    kd = distillation_loss(logits, teacher, t)
    if mix:
        perm, lam = mix
        kd = lam * kd + (1 - lam) * distillation_loss(logits, teacher[perm], t)
    return (1 - w) * label_loss + w * kd


def train_epoch(parts: Parts, data: Data, config: TrainConfig, epoch: int) -> dict:
    world = parts.world
    if world.distributed:
        reseed(parts, config.seed, epoch)
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    generator, device, dtype, weights = parts.generator, parts.device, parts.dtype, parts.weights
    scaler = parts.scaler
    model.train()
    batches = epoch_batches(parts, data, config, epoch)
    # Running sums stay on the device (float64, so a CPU run's figures are unchanged) and are
    # read for the progress bar every `sync_every` steps: each read waits for the GPU.
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = seen_all = reported = 0  # this process's images; all processes' (the bar's)
    sync_every = 25 if device.type == "cuda" else 1
    t0 = time.perf_counter()
    per_step = isinstance(
        scheduler, (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CosineAnnealingLR)
    )
    with bar(
        sum(n for _, n in batches), f"epoch {epoch}/{config.num_epochs}", ("loss", "acc", "img_s")
    ) as progress:
        for step, (idx, n_all) in enumerate(batches, 1):
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
            if parts.batch_teacher is not None:  # it saw the mixed images: no mixing of its terms
                loss = mix_distillation(loss, logits, parts.batch_teacher(xb), None, config)
            elif parts.teacher is not None:
                loss = mix_distillation(loss, logits, parts.teacher[idx], mix, config)
            n = len(idx)
            # DDP averages the processes' gradients; weighting each by its share of the global
            # batch makes that the gradient of the global batch's mean loss.
            scale = n * world.size / n_all if world.distributed else None
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss * scale if scale else loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if parts.average is not None:
                parts.average.update(distributed.unwrap(model))
            if per_step:
                scheduler.step()
            total_loss += loss.detach().double() * n
            correct += (logits.argmax(1) == yb).sum()
            seen += n
            seen_all += n_all
            if step % sync_every == 0 or step == len(batches):
                rate = seen_all / (time.perf_counter() - t0)
                progress.advance(
                    seen_all - reported,
                    loss=f"{total_loss.item() / seen:.3f}",
                    acc=f"{correct.item() / seen:.3f}",
                    img_s=f"{rate:.0f}",
                )
                reported = seen_all
    loss_sum, hits, seen = distributed.sum_all(
        [total_loss.item(), correct.item(), seen], world, device
    )
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch,
        "train_loss": round(loss_sum / seen, 5),
        "train_acc": round(hits / seen, 5),
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": round(seen / seconds, 1),
        "seconds": round(seconds, 2),
    }
