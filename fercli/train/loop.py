"""`train()`: a run from start (or resume) to its report."""

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from fercli import registry
from fercli.errors import FercliError
from fercli.progress import say, settings
from fercli.train.checkpoint import load_checkpoint, save_checkpoint
from fercli.train.models import create_model

from . import distributed, sources
from . import epoch as epoch_module
from .config import NORMALIZATION, RUN_FILES, TrainConfig, run_folder
from .data import data_class_weights, data_epoch_indices, load_data, predict_logits
from .device import amp_dtype, default_threads, flush_denormals, hardware, resolve_device
from .ema import WeightAverage
from .epoch import Parts, make_augment_generator
from .optim import build_augmenters, make_optimizer, make_scheduler
from .run_files import (
    completed,
    finish_run,
    plain,
    resume_state,
    rng_state,
    set_rng_state,
    write_logs,
)
from .teacher import BatchTeacher, check_options, same_teacher, teacher_targets


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
    flush_denormals()
    state = None
    if resume:
        state, out = resume_state(resume)
        saved = TrainConfig.from_dict(state["config"])
        if config is not None:  # the data it was given must be the run's
            sources.refuse_other_sources(saved, config, out)
        config = saved
    else:
        out = run_folder(config)
        if not overwrite:
            refuse_a_used_folder(out)
    device = resolve_device(config.device)
    if os.environ.get("FERCLI_THREADS"):
        torch.set_num_threads(default_threads())
    elif world.distributed:
        torch.set_num_threads(distributed.threads_per_process(world))
    registry.get("model", config.model)  # unknown names fail before any data is read
    check_options(config)
    init = load_checkpoint(config.init) if config.init and not state else None  # fail early
    augmenters = build_augmenters(config)
    if config.balance not in ("none", "oversample", "weights"):
        raise FercliError(
            f"unknown --balance {config.balance!r}: choose none, oversample or weights."
        )
    if world.distributed:
        device = distributed.start(world, device)
        if not world.main:  # one process speaks and writes for the job
            settings["quiet"] = True
        out = Path(distributed.object_from_main(str(out), world))  # one timestamp for all
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    with distributed.main_first(world):
        data = load_data(config)
        teacher, teacher_record, batch_teacher = None, None, None
        if config.teacher and config.teacher_targets == "batch":  # every process runs its own
            batch_teacher = BatchTeacher(
                config.teacher, data.classes, config.image_size, NORMALIZATION,
                torch.get_num_threads(),
            )  # fmt: skip
            teacher_record = batch_teacher.record
        elif config.teacher:  # rank 0 runs the teacher, the others read its cache
            teacher, teacher_record = teacher_targets(
                config.teacher, data.classes, data.x_train, torch.get_num_threads()
            )
    if state:
        teacher_record = same_teacher(state, teacher_record, config, out)
    if device.type == "cuda":  # a few convolution algorithms are tried per shape, the fastest kept
        torch.backends.cudnn.benchmark = True
    augment_generator = make_augment_generator(generator, device, config.seed)
    num_classes = len(data.classes)
    model = create_model(config.model, num_classes=num_classes, image_size=config.image_size)
    if init:
        start_from(model, init, config, data.classes)
    model = model.to(device).to(memory_format=torch.channels_last)
    average = WeightAverage(model, config.ema) if config.ema else None  # --resume loads it
    optimizer = make_optimizer(config, model)
    steps = math.ceil(
        len(data_epoch_indices(data, config.balance, torch.Generator())) / config.batch_size
    )
    scheduler = make_scheduler(config, optimizer, steps)
    dtype = amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    weights = (
        data_class_weights(data, num_classes).to(device) if config.balance == "weights" else None
    )
    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": 0}
    start_epoch, stale, elapsed_before = 1, 0, 0.0
    if state:
        if average is not None:  # state_dict is the average, the step's own weights beside it
            model.load_state_dict(state["ema"]["live"])
            average.load(state["state_dict"], state["ema"]["updates"])
        else:
            model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], generator, augment_generator)
        history, best, stale = state["history"], state["best"], state["stale"]
        start_epoch = state["epoch"] + 1
        elapsed_before = state.get("elapsed_s", 0.0)
        if completed(state, config):
            say(f"{out} already finished at epoch {state['epoch']}: writing its report again.")
        else:
            say(f"Resuming {out} at epoch {start_epoch}/{config.num_epochs}")
    if world.distributed:  # after loading: DDP starts every process from rank 0's weights
        model = distributed.wrap(model, world, device)
    raw_model = distributed.unwrap(model)
    kept = average.module if average is not None else raw_model  # validated, best.pt, exported
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    # What --amp auto chose here: a rerun elsewhere needs the same to reproduce it.
    autocast = str(dtype).split(".")[-1] if dtype else "off"
    meta = {
        "model": config.model,
        "hardware": hardware(device, world),
        "autocast": autocast,
        "classes": list(data.classes),
        "image_size": config.image_size,
        "input_size": config.image_size,
        "teacher": teacher_record,
        "normalization": dict(NORMALIZATION),
        "config": saved_config(config),
        "data": sources.data_record(config, data)
        if data.sources
        else {
            "root": str(Path(config.data_dir).resolve()),
            "file_list_hash": data.train.file_list_hash,
            "count": len(data.train),
            "train_images": len(data.y_train),
            "val_images": len(data.y_val),
            "val_source": data.val_source,
        },
    }
    say(
        f"Training {config.model} on {len(data.y_train)} images ({data.val_source}: "
        f"{len(data.y_val)} for validation), device {device}"
        + (f", autocast {autocast}" if dtype else "")
        + (f", {world.size} processes" if world.distributed else "")
        + (
            f", distilling from {Path(config.teacher).name} (weight {config.distill_weight}, "
            f"temperature {config.distill_temperature})"
            if teacher is not None or batch_teacher is not None
            else ""
        )
        + (" on every batch" if batch_teacher is not None else "")
        + (f", starting from {config.init}" if config.init else "")
        + (
            f", keeping the weights' moving average (decay {config.ema})"
            if average is not None
            else ""
        )
    )
    for line in sources.describe(data, config.balance) if data.sources else ():
        say(line)
    parts = Parts(
        model,
        optimizer,
        scheduler,
        scaler,
        augmenters,
        generator,
        augment_generator,
        device,
        dtype,
        weights,
        data.x_train.to(device),
        data.y_train.to(device),
        world,
        teacher.to(device) if teacher is not None else None,
        batch_teacher,
        average,
    )
    t_start = time.monotonic() - elapsed_before
    last_epoch = state["epoch"] if state and completed(state, config) else config.num_epochs
    for epoch in range(start_epoch, last_epoch + 1):
        row = epoch_module.train_epoch(parts, data, config, epoch)
        val_loss, val_acc, columns = validation_row(kept, data, device, dtype, world)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_acc)
        row.update(val_loss=round(val_loss, 5), val_acc=round(val_acc, 5))
        if average is not None:  # the last step's weights too: what the average gains
            row["val_acc_live"] = round(validation_row(model, data, device, dtype, world)[1], 5)
        row.update(columns)  # several sources: each one's accuracy and macro recall
        history.append(row)
        improved = val_acc > best["val_acc"]
        if improved:
            best, stale = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch, **columns}, 0
            if world.main:
                save_checkpoint(
                    out / "best.pt",
                    {
                        **meta,
                        "state_dict": kept.state_dict(),
                        "epoch": epoch,
                        "metrics": dict(best),
                    },
                )
        else:
            stale += 1
        elapsed = time.monotonic() - t_start
        stop = bool(config.patience and stale >= config.patience)
        out_of_time = bool(config.max_minutes and elapsed >= config.max_minutes * 60)
        # rank 0's clock and count decide for all, so no process waits for one that left
        stop, out_of_time = distributed.from_main([stop, out_of_time], world, device)
        if world.main:
            save_checkpoint(
                out / "last.pt",
                {
                    **meta,
                    "state_dict": kept.state_dict(),
                    "epoch": epoch,
                    "metrics": dict(best),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else {},
                    "scaler": scaler.state_dict(),
                    "ema": (
                        {"updates": average.updates, "live": raw_model.state_dict()}
                        if average is not None
                        else None
                    ),
                    "rng": rng_state(parts.generator, parts.augment_generator),
                    "history": history,
                    "best": best,
                    "stale": stale,
                    "elapsed_s": elapsed,
                    "finished": stop or out_of_time or epoch == config.num_epochs,
                },
            )
            write_logs(out, history, best, meta, elapsed)
        say(
            f"epoch {epoch}/{config.num_epochs}  loss {row['train_loss']:.4f}  "
            f"acc {row['train_acc']:.4f}  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  "
            f"{row['images_per_s']:.0f} img/s{'  *best' if improved else ''}"
        )
        if stop:
            say(f"Early stop: no better validation accuracy for {stale} epochs.")
            break
        if out_of_time:
            say(f"Stopping after epoch {epoch}: --max-minutes {config.max_minutes} reached.")
            break
    metrics = None
    if world.main:
        metrics = finish_run(out, data, device, dtype, best, history, time.monotonic() - t_start)
    distributed.barrier(world)  # the processes leave together, after rank 0's report
    return metrics


def refuse_a_used_folder(out: Path) -> None:
    """A new run never writes over another's files unless asked to (--overwrite)."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found:
        raise FercliError(
            f"{out} already holds a run ({', '.join(found)}): `fercli train --resume {out}` "
            "continues it, --overwrite replaces it, or choose another --out."
        )


def start_from(model, ckpt: dict, config: TrainConfig, classes) -> None:
    """--init: the weights of an earlier run's checkpoint, of the same model and classes."""
    path, name = config.init, config.model
    if ckpt.get("model") != name or tuple(ckpt.get("classes", ())) != tuple(classes):
        raise FercliError(
            f"--init {path} is a {ckpt.get('model')} of classes "
            f"{', '.join(ckpt.get('classes', ()))}; this run trains a {name} of "
            f"{', '.join(classes)}: start from a checkpoint of the same model and data."
        )
    model.load_state_dict(ckpt["state_dict"])


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
