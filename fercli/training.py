"""The training loop behind `fercli train`.

Images are decoded once (fercli.dataset's cached uint8 array), kept as one uint8 tensor and
augmented as batches, so an epoch does no JPEG decoding and no per-image Python. Checkpoints
are written atomically; `last.pt` carries the optimizer, scheduler and random state, so
`--resume` continues exactly where the run stopped.
"""

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fercli import registry
from fercli.checkpoint import load_checkpoint, save_checkpoint
from fercli.dataset import SplitData, load_split
from fercli.errors import FercliError
from fercli.progress import bar, say
from fercli.util import atomic_write_text, cpu_name, cpuinfo

NORMALIZATION = {"mean": 0.5, "std": 0.5}  # pixels to [-1, 1], as the seed does
RUN_FILES = ("best.pt", "last.pt", "metrics.json", "history.csv")


@dataclass
class TrainConfig:
    data_dir: str
    model: str = "vgg"
    num_epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.05
    optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9) or adamw
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle, cosine, plateau or none
    augment: str = "flip,rotate,crop,jitter"
    balance: str = "none"  # none, oversample or weights
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 turns it off
    val_fraction: float = 0.1
    patience: int = 0  # epochs without a better val accuracy before stopping; 0: never
    seed: int = 0  # weights, shuffling and augmentation
    split_seed: int = 0  # the validation hold-out, kept apart so runs of other seeds share it
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CPUs that have it, fp16 on CUDA), on, off
    image_size: int = 48
    out: str | None = None
    max_minutes: float = 0.0  # stop after the epoch that passes this wall time; 0: no limit
    augment_options: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Data:
    train: SplitData
    x_train: torch.Tensor  # (N, 1, H, W) uint8
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: tuple[str, ...]
    val_source: str


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FercliError("--device cuda: no CUDA GPU is usable here; use --device cpu or auto.")
    if name not in ("cpu", "cuda"):
        raise FercliError(f"unknown device {name!r}: choose auto, cpu or cuda.")
    return torch.device(name)


def amp_dtype(config: TrainConfig, device: torch.device):
    """The autocast dtype, or None for full fp32."""
    if config.amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if config.amp == "on" or (torch.backends.mkldnn.is_available() and _cpu_has_amx()):
        return torch.bfloat16
    return None


def _cpu_has_amx() -> bool:
    """bf16 autocast pays on CPUs with AMX tiles; with AVX-512 bf16 alone it is slower than
    fp32 (vgg at 0.77x on a 2-core Xeon without AMX, `benchmarks/bench_train.py --model vgg
    --steps 10 --compare-amp`), so `--amp auto` uses it only with AMX."""
    return "amx_bf16" in cpuinfo()


def load_data(config: TrainConfig) -> Data:
    """Train split, and val (the `val` split, else a stratified hold-out of train)."""
    from fercli.dataset import find_splits

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
    """A shuffled epoch. With oversample, every class smaller than half the median class
    gets random repeats up to that size (augmentation makes each repeat a new image)."""
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
    return idx[torch.randperm(len(idx), generator=generator)]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


def build_augmenters(config: TrainConfig):
    names = [n.strip() for n in config.augment.split(",") if n.strip() and n.strip() != "none"]
    return [registry.create("augmenter", n, **config.augment_options.get(n, {})) for n in names]


def normalize(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255.0 - NORMALIZATION["mean"]) / NORMALIZATION["std"]


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


def run_folder(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model}"


def make_augment_generator(generator: torch.Generator, device, seed: int) -> torch.Generator:
    """The random stream of the augmenters. On a GPU the training images (28,709 x 48 x 48
    bytes for FER-2013) live on the device and are augmented there, with a generator of their
    own; on the CPU the epoch-order generator serves both, so CPU runs repeat those of earlier
    versions exactly."""
    if device.type == "cuda":
        return torch.Generator(device=device).manual_seed(seed)
    return generator


def _rng_state(generator, augment_generator):
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if augment_generator is not generator:
        state["augment_generator"] = augment_generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state, generator, augment_generator):
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if augment_generator is not generator and "augment_generator" in state:
        augment_generator.set_state(state["augment_generator"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def train(config: TrainConfig | None, resume: str | None = None) -> dict:
    """Train (or resume) a run; returns the final metrics dict. Writes the run folder."""
    flush_denormals()
    state = None
    if resume:
        state, out = _resume_state(resume)
        config = TrainConfig.from_dict(state["config"])
    else:
        out = run_folder(config)
    device = resolve_device(config.device)
    if os.environ.get("FERCLI_THREADS"):
        torch.set_num_threads(default_threads())
    registry.get("model", config.model)  # unknown names fail before any data is read
    augmenters = build_augmenters(config)
    if config.balance not in ("none", "oversample", "weights"):
        raise FercliError(
            f"unknown --balance {config.balance!r}: choose none, oversample or weights."
        )
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = load_data(config)
    if device.type == "cuda":  # a few convolution algorithms are tried per shape, the fastest kept
        torch.backends.cudnn.benchmark = True
    augment_generator = make_augment_generator(generator, device, config.seed)
    num_classes = len(data.classes)
    model = registry.create("model", config.model, num_classes=num_classes)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model)
    steps = math.ceil(
        len(epoch_indices(data.y_train, config.balance, torch.Generator())) / config.batch_size
    )
    scheduler = make_scheduler(config, optimizer, steps)
    dtype = amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    weights = (
        class_weights(data.y_train, num_classes).to(device) if config.balance == "weights" else None
    )
    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": 0}
    start_epoch, stale, elapsed_before = 1, 0, 0.0
    if state:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], generator, augment_generator)
        history, best, stale = state["history"], state["best"], state["stale"]
        start_epoch = state["epoch"] + 1
        elapsed_before = state.get("elapsed_s", 0.0)
        if _completed(state, config):
            say(f"{out} already finished at epoch {state['epoch']}: writing its report again.")
        else:
            say(f"Resuming {out} at epoch {start_epoch}/{config.num_epochs}")
    out.mkdir(parents=True, exist_ok=True)
    # What --amp auto chose here: a rerun elsewhere needs the same to reproduce it.
    autocast = str(dtype).split(".")[-1] if dtype else "off"
    meta = {
        "model": config.model,
        "hardware": hardware(device),
        "autocast": autocast,
        "classes": list(data.classes),
        "image_size": config.image_size,
        "input_size": config.image_size,
        "normalization": dict(NORMALIZATION),
        "config": _plain(asdict(config)),
        "data": {
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
    )
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
    )
    t_start = time.monotonic() - elapsed_before
    last_epoch = state["epoch"] if state and _completed(state, config) else config.num_epochs
    for epoch in range(start_epoch, last_epoch + 1):
        row = _train_epoch(parts, data, config, epoch)
        logits = predict_logits(model, data.x_val, device, dtype)
        val_loss = F.cross_entropy(logits, data.y_val).item()
        val_acc = (logits.argmax(1) == data.y_val).float().mean().item()
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_acc)
        row.update(val_loss=round(val_loss, 5), val_acc=round(val_acc, 5))
        history.append(row)
        improved = val_acc > best["val_acc"]
        if improved:
            best, stale = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}, 0
            save_checkpoint(
                out / "best.pt",
                {**meta, "state_dict": model.state_dict(), "epoch": epoch, "metrics": dict(best)},
            )
        else:
            stale += 1
        elapsed = time.monotonic() - t_start
        stop = bool(config.patience and stale >= config.patience)
        out_of_time = bool(config.max_minutes and elapsed >= config.max_minutes * 60)
        save_checkpoint(
            out / "last.pt",
            {
                **meta,
                "state_dict": model.state_dict(),
                "epoch": epoch,
                "metrics": dict(best),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "scaler": scaler.state_dict(),
                "rng": _rng_state(generator, augment_generator),
                "history": history,
                "best": best,
                "stale": stale,
                "elapsed_s": elapsed,
                "finished": stop or out_of_time or epoch == config.num_epochs,
            },
        )
        _write_logs(out, history, best, meta, elapsed)
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
    return finish_run(out, data, device, dtype, best, history, time.monotonic() - t_start)


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


def _train_epoch(parts: Parts, data: Data, config: TrainConfig, epoch: int) -> dict:
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


def _completed(state: dict, config: TrainConfig) -> bool:
    """Whether a resumed run has nothing left to train: every epoch done, or stopped early.
    (A run stopped by --max-minutes goes on.)"""
    early = bool(config.patience and state["stale"] >= config.patience)
    return state["epoch"] >= config.num_epochs or early


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of writes that a killed run left behind (the targets are intact)."""
    from fercli import plots

    for name in RUN_FILES + plots.RUN_PLOTS:
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _resume_state(resume: str):
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise FercliError(f"nothing to resume at {resume}: pass a run folder that has last.pt.")
    state = load_checkpoint(path)
    if "optimizer" not in state:
        raise FercliError(f"{path} has no optimizer state: resume from a run's last.pt.")
    _remove_stale_temporaries(path.parent)
    return state, path.parent


def _plain(value):
    """Config values as TOML/JSON-friendly builtins (what weights_only loading accepts)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_logs(out: Path, history, best, meta, elapsed) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "history.csv", buf.getvalue())
    metrics = {
        "model": meta["model"],
        "hardware": meta["hardware"],
        "autocast": meta["autocast"],
        "best": best,
        "epochs_run": len(history),
        "elapsed_s": round(elapsed, 1),
        "classes": meta["classes"],
        "data": meta["data"],
        "config": meta["config"],
        "last": history[-1],
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))


def finish_run(out: Path, data: Data, device, dtype, best, history, elapsed) -> dict:
    """Final validation report of the best checkpoint, plots, metrics.json."""
    from fercli.checkpoint import build_model
    from fercli.metrics import classification_report

    ckpt = load_checkpoint(out / "best.pt")
    model = build_model(ckpt).to(device).to(memory_format=torch.channels_last)
    logits = predict_logits(model, data.x_val, device, dtype)
    report = classification_report(data.y_val.numpy(), logits.argmax(1).numpy(), data.classes)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(val_report=report, elapsed_s=round(elapsed, 1))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    try:
        from fercli import plots

        plots.training_plots(out, history, report, data)
    except ImportError:
        pass
    metrics["out"] = str(out)
    return metrics


def hardware(device: torch.device) -> str:
    """What a run trains on, for its metrics and the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, no GPU"


def flush_denormals() -> None:
    """Compute with denormal floats as zero on the CPU. On real faces some batch-norm gradients
    become denormal, which x86 CPUs process many times slower: vgg trains about 1.5x faster
    with this. Call it before torch's first parallel operation: its worker threads copy the
    setting when they start."""
    torch.set_flush_denormal(True)


def default_threads() -> int:
    """CPU threads: FERCLI_THREADS when set (the trainer then uses it), else one per core."""
    value = os.environ.get("FERCLI_THREADS", "0")
    if not value.isdigit():
        raise FercliError(f"FERCLI_THREADS={value!r}: set it to a whole number of threads.")
    return int(value) or os.cpu_count() or 1
