"""`train()`: a run from start (or resume) to its report: the run set up
(fercli.train.start), its epochs (each trained, validated, checkpointed and logged), early
stopping and --max-minutes, the final report."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fercli.progress import say
from fercli.train.checkpoint import save_checkpoint

from . import distributed, sources
from . import epoch as epoch_module
from .config import NORMALIZATION, TrainConfig
from .data import predict_logits
from .device import hardware
from .epoch import Parts
from .run_files import finish_run, plain, rng_state, write_logs
from .start import Run, start_run


def train(
    config: TrainConfig | None, resume: str | None = None, overwrite: bool = False
) -> dict | None:
    """Train (or resume) a run; returns the final metrics dict. Writes the run folder, which
    must not hold a run already unless `overwrite` (FercliError otherwise). Under torchrun
    (WORLD_SIZE > 1) every process trains its share; rank 0 writes the run folder and returns
    the metrics, the other processes return None."""
    world = distributed.world_from_env()
    try:
        return _train(config, resume, world, overwrite)
    finally:
        distributed.stop(world)


def _train(config: TrainConfig | None, resume: str | None, world, overwrite=False) -> dict | None:
    run = start_run(config, resume, world, overwrite)
    meta = run_meta(run)
    announce(run, meta)
    parts = run.parts()
    t_start = time.monotonic() - run.progress.elapsed_before
    for epoch in range(run.progress.start_epoch, run.last_epoch + 1):
        if not train_and_keep(run, parts, meta, epoch, t_start):
            break
    metrics = None
    if world.main:
        elapsed = time.monotonic() - t_start
        progress = run.progress
        metrics = finish_run(
            run.out, run.data, run.device, run.dtype, progress.best, progress.history, elapsed
        )
    distributed.barrier(world)  # the processes leave together, after rank 0's report
    return metrics


def run_meta(run: Run) -> dict:
    """What every checkpoint and metrics.json say of the run."""
    config, data = run.config, run.data
    # What --amp auto chose here: a rerun elsewhere needs the same to reproduce it.
    return {
        "model": config.model,
        "hardware": hardware(run.device, run.world),
        "autocast": autocast_name(run.dtype),
        "classes": list(data.classes),
        "image_size": config.image_size,
        "input_size": config.image_size,
        "teacher": run.teacher.record,
        "normalization": dict(NORMALIZATION),
        "config": saved_config(config),
        "data": sources.data_record(config, data) if data.sources else root_record(config, data),
    }


def autocast_name(dtype) -> str:
    return str(dtype).split(".")[-1] if dtype else "off"


def root_record(config: TrainConfig, data) -> dict:
    """A single root's `data` record."""
    return {
        "root": str(Path(config.data_dir).resolve()),
        "file_list_hash": data.train.file_list_hash,
        "count": len(data.train),
        "train_images": len(data.y_train),
        "val_images": len(data.y_val),
        "val_source": data.val_source,
    }


def announce(run: Run, meta: dict) -> None:
    """The run's opening line (and one per source)."""
    config, data, world = run.config, run.data, run.world
    teacher = run.teacher
    say(
        f"Training {config.model} on {len(data.y_train)} images ({data.val_source}: "
        f"{len(data.y_val)} for validation), device {run.device}"
        + (f", autocast {meta['autocast']}" if run.dtype else "")
        + (f", {world.size} processes" if world.distributed else "")
        + (
            f", distilling from {Path(config.teacher).name} (weight {config.distill_weight}, "
            f"temperature {config.distill_temperature})"
            if teacher.targets is not None or teacher.batch is not None
            else ""
        )
        + (" on every batch" if teacher.batch is not None else "")
        + (f", starting from {config.init}" if config.init else "")
        + (
            f", keeping the weights' moving average (decay {config.ema})"
            if run.average is not None
            else ""
        )
    )
    for line in sources.describe(data, config.balance) if data.sources else ():
        say(line)


@dataclass
class Verdict:
    """What an epoch decided: a new best, early stopping, out of --max-minutes."""

    improved: bool
    stop: bool
    out_of_time: bool

    @property
    def finished(self) -> bool:
        return self.stop or self.out_of_time


def train_and_keep(run: Run, parts: Parts, meta: dict, epoch: int, t_start: float) -> bool:
    """One epoch trained, validated, checkpointed, logged and reported; whether the run goes
    on to the next."""
    row = epoch_module.train_epoch(parts, run.data, run.config, epoch)
    val_loss, val_acc, columns = validation_row(
        run.kept, run.data, run.device, run.dtype, run.world
    )
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(val_acc)
    row.update(val_loss=round(val_loss, 5), val_acc=round(val_acc, 5))
    if run.average is not None:  # the last step's weights too: what the average gains
        live = validation_row(run.model, run.data, run.device, run.dtype, run.world)[1]
        row["val_acc_live"] = round(live, 5)
    row.update(columns)  # several sources: each one's accuracy and macro recall
    run.progress.history.append(row)
    improved = keep_best(run, meta, epoch, (val_loss, val_acc, columns))
    elapsed = time.monotonic() - t_start
    verdict = Verdict(improved, *stopping(run, elapsed))
    if run.world.main:
        save_last(run, parts, meta, epoch, elapsed, verdict)
    say(
        f"epoch {epoch}/{run.config.num_epochs}  loss {row['train_loss']:.4f}  "
        f"acc {row['train_acc']:.4f}  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  "
        f"{row['images_per_s']:.0f} img/s{'  *best' if improved else ''}"
    )
    return not stopped(run, epoch, verdict)


def keep_best(run: Run, meta: dict, epoch: int, scores: tuple) -> bool:
    """Whether this epoch's validation accuracy (`scores`: validation_row's) is the best
    yet: then it is the run's best (best.pt saved), otherwise one more stale epoch."""
    progress = run.progress
    val_loss, val_acc, columns = scores
    if not val_acc > progress.best["val_acc"]:
        progress.stale += 1
        return False
    progress.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch, **columns}
    progress.stale = 0
    if run.world.main:
        save_checkpoint(
            run.out / "best.pt",
            {
                **meta,
                "state_dict": run.kept.state_dict(),
                "epoch": epoch,
                "metrics": dict(progress.best),
            },
        )
    return True


def stopping(run: Run, elapsed: float) -> list[bool]:
    """[early stop (--patience), out of time (--max-minutes)]: rank 0's clock and count
    decide for all, so no process waits for one that left."""
    config = run.config
    stop = bool(config.patience and run.progress.stale >= config.patience)
    out_of_time = bool(config.max_minutes and elapsed >= config.max_minutes * 60)
    return distributed.from_main([stop, out_of_time], run.world, run.device)


def save_last(run: Run, parts: Parts, meta: dict, epoch: int, elapsed: float, verdict) -> None:
    """last.pt, with all --resume needs, and the logs (history.csv, metrics.json)."""
    progress, average = run.progress, run.average
    save_checkpoint(
        run.out / "last.pt",
        {
            **meta,
            "state_dict": run.kept.state_dict(),
            "epoch": epoch,
            "metrics": dict(progress.best),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict() if run.scheduler is not None else {},
            "scaler": run.scaler.state_dict(),
            "ema": (
                {"updates": average.updates, "live": run.raw_model.state_dict()}
                if average is not None
                else None
            ),
            "rng": rng_state(parts.generator, parts.augment_generator),
            "history": progress.history,
            "best": progress.best,
            "stale": progress.stale,
            "elapsed_s": elapsed,
            "finished": verdict.finished or epoch == run.config.num_epochs,
        },
    )
    write_logs(run.out, progress.history, progress.best, meta, elapsed)


def stopped(run: Run, epoch: int, verdict: Verdict) -> bool:
    """Whether the run stops after this epoch, early or out of time (said so)."""
    if verdict.stop:
        say(f"Early stop: no better validation accuracy for {run.progress.stale} epochs.")
    elif verdict.out_of_time:
        say(f"Stopping after epoch {epoch}: --max-minutes {run.config.max_minutes} reached.")
    return verdict.finished


def validation_scores(model, data, device, dtype, world) -> tuple[float, float]:
    """The validation loss and accuracy of `model`."""
    logits = validation_logits(model, data, device, dtype, world)
    accuracy = (logits.argmax(1) == data.y_val).float().mean().item()
    return F.cross_entropy(logits, data.y_val).item(), accuracy


def validation_row(model, data, device, dtype, world) -> tuple[float, float, dict]:
    """The validation loss (over every validation image), the accuracy that picks best.pt
    and the per-source history columns. One source: its accuracy, no columns; several: the
    mean over sources of their accuracy, and each one's accuracy and macro recall
    (fercli.train.sources.source_scores)."""
    logits = validation_logits(model, data, device, dtype, world)
    loss = F.cross_entropy(logits, data.y_val).item()
    if not data.sources:
        return loss, (logits.argmax(1) == data.y_val).float().mean().item(), {}
    accuracy, columns = sources.source_scores(logits, data)
    return loss, accuracy, columns


def saved_config(config: TrainConfig) -> dict:
    """The resolved options as checkpoints keep them; `sources` only where there are several
    (a single-root run's record stays as it was)."""
    values = plain(asdict(config))
    if not values.get("sources"):
        values.pop("sources", None)
    return values


def validation_logits(model, data, device, dtype, world) -> torch.Tensor:
    """Logits of every validation image, in order. Distributed, each process predicts its
    contiguous shard with the same weights (rank 0's batch-norm statistics) and the shards
    are gathered: every image once, none duplicated or dropped."""
    distributed.sync_buffers(model, world)
    part = distributed.shard(len(data.y_val), world)
    # the bare module: DDP's forward would synchronize, and the shards differ in size
    mine = predict_logits(distributed.unwrap(model), data.x_val[part], device, dtype)
    return distributed.gather_rows(mine, len(data.y_val), world, device)
