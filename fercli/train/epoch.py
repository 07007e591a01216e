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
    """One epoch of steps over this process's batches; its history row (the training loss
    and accuracy over all processes, the learning rate, the speed)."""
    if parts.world.distributed:
        reseed(parts, config.seed, epoch)
    parts.model.train()
    batches = epoch_batches(parts, data, config, epoch)
    tally = Tally(parts.device)
    per_step = isinstance(
        parts.scheduler,
        (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CosineAnnealingLR),
    )
    with bar(
        sum(n for _, n in batches), f"epoch {epoch}/{config.num_epochs}", ("loss", "acc", "img_s")
    ) as progress:
        for step, (idx, n_all) in enumerate(batches, 1):
            loss, logits, yb = train_step(parts, config, idx, n_all, per_step)
            tally.add(loss, logits, yb, len(idx), n_all)
            if step % tally.sync_every == 0 or step == len(batches):
                tally.show(progress)
    return tally.row(parts, epoch)


class Tally:
    """An epoch's running loss, hits and image counts. The sums stay on the device (float64,
    so a CPU run's figures are unchanged) and are read for the progress bar every
    `sync_every` steps: each read waits for the GPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.total_loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = self.seen_all = self.reported = 0  # this process's images; all processes'
        self.sync_every = 25 if device.type == "cuda" else 1
        self.t0 = time.perf_counter()

    def add(self, loss, logits, yb, n: int, n_all: int) -> None:
        self.total_loss += loss.detach().double() * n
        self.correct += (logits.argmax(1) == yb).sum()
        self.seen += n
        self.seen_all += n_all

    def show(self, progress) -> None:
        """The bar advanced to all processes' images so far (this process's running loss
        and accuracy)."""
        rate = self.seen_all / (time.perf_counter() - self.t0)
        progress.advance(
            self.seen_all - self.reported,
            loss=f"{self.total_loss.item() / self.seen:.3f}",
            acc=f"{self.correct.item() / self.seen:.3f}",
            img_s=f"{rate:.0f}",
        )
        self.reported = self.seen_all

    def row(self, parts: Parts, epoch: int) -> dict:
        """The epoch's history row, its sums over all processes."""
        loss_sum, hits, seen = distributed.sum_all(
            [self.total_loss.item(), self.correct.item(), self.seen], parts.world, self.device
        )
        seconds = time.perf_counter() - self.t0
        return {
            "epoch": epoch,
            "train_loss": round(loss_sum / seen, 5),
            "train_acc": round(hits / seen, 5),
            "lr": parts.optimizer.param_groups[0]["lr"],
            "images_per_s": round(seen / seconds, 1),
            "seconds": round(seconds, 2),
        }


def train_step(parts: Parts, config: TrainConfig, idx, n_all: int, per_step: bool):
    """One optimizer step on the images `idx` (of a global batch of `n_all`): (loss, logits,
    labels)."""
    xb = batch_images(parts, idx)
    yb = parts.y_train[idx]
    xb, mix = mixup(parts, config, xb)
    with torch.autocast(
        parts.device.type, dtype=parts.dtype or torch.bfloat16, enabled=parts.dtype is not None
    ):
        logits = parts.model(xb)
    logits = logits.float()
    loss = batch_loss(parts, config, logits, yb, mix)
    if parts.batch_teacher is not None:  # it saw the mixed images: no mixing of its terms
        loss = mix_distillation(loss, logits, parts.batch_teacher(xb), None, config)
    elif parts.teacher is not None:
        loss = mix_distillation(loss, logits, parts.teacher[idx], mix, config)
    step(parts, loss, len(idx), n_all, per_step)
    return loss, logits, yb


def batch_images(parts: Parts, idx) -> torch.Tensor:
    """The images `idx` as float, augmented, normalized, channels-last."""
    xb = parts.x_train[idx].float().div_(255.0)
    for aug in parts.augmenters:
        xb = aug(xb, parts.augment_generator)
    xb = (xb - NORMALIZATION["mean"]) / NORMALIZATION["std"]
    return xb.contiguous(memory_format=torch.channels_last)


def mixup(parts: Parts, config: TrainConfig, xb: torch.Tensor):
    """--mixup: (the batch mixed with a permutation of itself, (permutation, lambda)); the
    batch as it is and None when off."""
    if not config.mixup > 0:
        return xb, None
    generator = parts.generator
    lam = float(
        np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator))).beta(
            config.mixup, config.mixup
        )
    )
    perm = torch.randperm(len(xb), generator=generator).to(parts.device)
    return lam * xb + (1 - lam) * xb[perm], (perm, lam)


def batch_loss(parts: Parts, config: TrainConfig, logits, yb, mix) -> torch.Tensor:
    """The labels' cross-entropy (class weights, label smoothing); with mixup, both labels'
    weighted by lambda."""
    loss = F.cross_entropy(logits, yb, weight=parts.weights, label_smoothing=config.label_smoothing)
    if mix:
        perm, lam = mix
        loss = lam * loss + (1 - lam) * F.cross_entropy(
            logits, yb[perm], weight=parts.weights, label_smoothing=config.label_smoothing
        )
    return loss


def step(parts: Parts, loss, n: int, n_all: int, per_step: bool) -> None:
    """Backward and optimizer step (through the scaler), the weight average's update and a
    per-step schedule's step."""
    world = parts.world
    # DDP averages the processes' gradients; weighting each by its share of the global
    # batch makes that the gradient of the global batch's mean loss.
    scale = n * world.size / n_all if world.distributed else None
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(loss * scale if scale else loss).backward()
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    if parts.average is not None:
        parts.average.update(distributed.unwrap(parts.model))
    if per_step:
        parts.scheduler.step()
