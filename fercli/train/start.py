"""What a run starts from: its folder and config (new, or the saved run's for --resume), the
options checked before any data is read, the data and the teacher, the model, optimizer,
schedule, weight average and scaler, and a resumed run's state loaded into them.

The steps run in one fixed order (`start_run`): the random draws of a run (weights, epoch
order, augmentation) depend on it, and --resume repeats it exactly."""

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fercli import registry
from fercli.errors import FercliError
from fercli.progress import say, settings
from fercli.train.checkpoint import load_checkpoint
from fercli.train.models import create_model

from . import distributed, sources
from .config import NORMALIZATION, RUN_FILES, TrainConfig, run_folder
from .data import Data, data_class_weights, data_epoch_indices, load_data
from .device import amp_dtype, default_threads, flush_denormals, resolve_device
from .ema import WeightAverage
from .epoch import Parts, make_augment_generator
from .optim import build_augmenters, make_optimizer, make_scheduler
from .run_files import completed, resume_state, set_rng_state
from .teacher import BatchTeacher, check_options, same_teacher, teacher_targets

BALANCES = ("none", "oversample", "weights")


@dataclass
class Progress:
    """Where the epochs stand: what last.pt keeps and --resume restores."""

    history: list = field(default_factory=list)  # a dict a finished epoch
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "epoch": 0})
    stale: int = 0  # epochs since the best one
    start_epoch: int = 1
    elapsed_before: float = 0.0  # seconds the run trained before this process


@dataclass
class Teacher:
    """--teacher: the cached targets (rank 0 computes them, the others read its cache), or
    the teacher itself on every batch (--teacher-targets batch); `record` is what the run
    keeps of it. All None without a teacher."""

    targets: torch.Tensor | None = None  # (N, C) log-probabilities of x_train, on the CPU
    batch: BatchTeacher | None = None
    record: dict | None = None


@dataclass
class Run:
    """A started run: everything the epochs need, on its device."""

    config: TrainConfig
    world: distributed.World
    out: Path
    state: dict | None  # the last.pt being resumed; None for a new run
    device: torch.device
    data: Data
    augmenters: list
    generator: torch.Generator
    augment_generator: torch.Generator
    teacher: Teacher
    model: torch.nn.Module  # DDP-wrapped in a distributed run
    average: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch LR scheduler, or None
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    weights: torch.Tensor | None  # the loss's class weights (--balance weights)
    progress: Progress = field(default_factory=Progress)

    @property
    def raw_model(self) -> torch.nn.Module:
        return distributed.unwrap(self.model)

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are validated, saved as best.pt and exported."""
        return self.average.module if self.average is not None else self.raw_model

    @property
    def finished_already(self) -> bool:
        """A resumed run with no epoch left: only its report is written again."""
        return bool(self.state) and completed(self.state, self.config)

    @property
    def last_epoch(self) -> int:
        return self.state["epoch"] if self.finished_already else self.config.num_epochs

    def parts(self) -> Parts:
        """What a training step needs, the training images and targets on the device."""
        targets = self.teacher.targets
        return Parts(
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            augmenters=self.augmenters,
            generator=self.generator,
            augment_generator=self.augment_generator,
            device=self.device,
            dtype=self.dtype,
            weights=self.weights,
            x_train=self.data.x_train.to(self.device),
            y_train=self.data.y_train.to(self.device),
            world=self.world,
            teacher=targets.to(self.device) if targets is not None else None,
            batch_teacher=self.teacher.batch,
            average=self.average,
        )


def start_run(config: TrainConfig | None, resume: str | None, world, overwrite: bool) -> Run:
    """The run set up, in the order its random draws need: options checked, processes
    joined, seeds set, data and teacher loaded, model and optimizer built, a resumed run's
    state loaded, the model wrapped for DDP, the run folder made."""
    flush_denormals()
    config, out, state = run_config(config, resume, overwrite)
    device = resolve_device(config.device)
    set_threads(world)
    init, augmenters = checked_options(config, state)
    device, out = join(world, device, out)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    with distributed.main_first(world):
        data = load_data(config)
        teacher = load_teacher(config, data)
    if state:
        teacher.record = same_teacher(state, teacher.record, config, out)
    if device.type == "cuda":  # a few convolution algorithms are tried per shape, the fastest kept
        torch.backends.cudnn.benchmark = True
    augment_generator = make_augment_generator(generator, device, config.seed)
    model = built_model(config, data, init, device)
    average = WeightAverage(model, config.ema) if config.ema else None  # --resume loads it
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, epoch_steps(config, data))
    dtype = amp_dtype(config, device)
    run = Run(
        config=config,
        world=world,
        out=out,
        state=state,
        device=device,
        data=data,
        augmenters=augmenters,
        generator=generator,
        augment_generator=augment_generator,
        teacher=teacher,
        model=model,
        average=average,
        optimizer=optimizer,
        scheduler=scheduler,
        dtype=dtype,
        scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
        weights=class_weights(config, data, device),
    )
    if state:
        resume_into(run, state)
    if world.distributed:  # after loading: DDP starts every process from rank 0's weights
        run.model = distributed.wrap(run.model, world, device)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    return run


def run_config(config: TrainConfig | None, resume: str | None, overwrite: bool):
    """(config, run folder, last.pt state or None): a new run's, or the saved run's for
    --resume (whose data a given config must not change)."""
    if not resume:
        out = run_folder(config)
        if not overwrite:
            refuse_a_used_folder(out)
        return config, out, None
    state, out = resume_state(resume)
    saved = TrainConfig.from_dict(state["config"])
    if config is not None:  # the data it was given must be the run's
        sources.refuse_other_sources(saved, config, out)
    return saved, out, state


def refuse_a_used_folder(out: Path) -> None:
    """A new run never writes over another's files unless asked to (--overwrite)."""
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found:
        raise FercliError(
            f"{out} already holds a run ({', '.join(found)}): `fercli train --resume {out}` "
            "continues it, --overwrite replaces it, or choose another --out."
        )


def set_threads(world) -> None:
    """FERCLI_THREADS's torch threads, else a distributed process's share of the cores."""
    if os.environ.get("FERCLI_THREADS"):
        torch.set_num_threads(default_threads())
    elif world.distributed:
        torch.set_num_threads(distributed.threads_per_process(world))


def checked_options(config: TrainConfig, state: dict | None):
    """(the --init checkpoint or None, the augmenters), every option that can fail checked
    before any data is read."""
    registry.get("model", config.model)  # unknown names fail before any data is read
    check_options(config)
    init = load_checkpoint(config.init) if config.init and not state else None  # fail early
    augmenters = build_augmenters(config)
    if config.balance not in BALANCES:
        raise FercliError(
            f"unknown --balance {config.balance!r}: choose none, oversample or weights."
        )
    return init, augmenters


def join(world, device: torch.device, out: Path) -> tuple[torch.device, Path]:
    """A distributed run's process group started: this process's device and the run folder
    rank 0 named (one timestamp for all); only rank 0 speaks."""
    if not world.distributed:
        return device, out
    device = distributed.start(world, device)
    if not world.main:  # one process speaks and writes for the job
        settings["quiet"] = True
    return device, Path(distributed.object_from_main(str(out), world))


def load_teacher(config: TrainConfig, data: Data) -> Teacher:
    """--teacher's targets: of every batch (each process runs its own teacher), or cached
    (rank 0 runs the teacher, the others read its cache)."""
    if config.teacher and config.teacher_targets == "batch":
        batch = BatchTeacher(
            config.teacher, data.classes, config.image_size, NORMALIZATION,
            torch.get_num_threads(),
        )  # fmt: skip
        return Teacher(batch=batch, record=batch.record)
    if config.teacher:
        targets, record = teacher_targets(
            config.teacher, data.classes, data.x_train, torch.get_num_threads()
        )
        return Teacher(targets=targets, record=record)
    return Teacher()


def built_model(config: TrainConfig, data: Data, init: dict | None, device) -> torch.nn.Module:
    """The model, from --init's weights where given, on the device in channels-last."""
    model = create_model(config.model, num_classes=len(data.classes), image_size=config.image_size)
    if init:
        start_from(model, init, config, data.classes)
    return model.to(device).to(memory_format=torch.channels_last)


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


def epoch_steps(config: TrainConfig, data: Data) -> int:
    """Optimizer steps an epoch (a single process's count; the schedule's length)."""
    return math.ceil(
        len(data_epoch_indices(data, config.balance, torch.Generator())) / config.batch_size
    )


def class_weights(config: TrainConfig, data: Data, device) -> torch.Tensor | None:
    """--balance weights: the loss's class weights on the device; otherwise None."""
    if config.balance != "weights":
        return None
    return data_class_weights(data, len(data.classes)).to(device)


def resume_into(run: Run, state: dict) -> None:
    """A resumed run's weights, optimizer, schedule, scaler, random state and progress."""
    if run.average is not None:  # state_dict is the average, the step's own weights beside it
        run.model.load_state_dict(state["ema"]["live"])
        run.average.load(state["state_dict"], state["ema"]["updates"])
    else:
        run.model.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state.get("scheduler"):
        run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.generator, run.augment_generator)
    run.progress = Progress(
        history=state["history"],
        best=state["best"],
        stale=state["stale"],
        start_epoch=state["epoch"] + 1,
        elapsed_before=state.get("elapsed_s", 0.0),
    )
    if run.finished_already:
        say(f"{run.out} already finished at epoch {state['epoch']}: writing its report again.")
    else:
        say(f"Resuming {run.out} at epoch {run.progress.start_epoch}/{run.config.num_epochs}")
