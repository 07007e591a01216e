"""The run folder: checkpoint state for --resume, history.csv, metrics.json, the final
report and plots."""

import csv
import io
import json
from pathlib import Path

import torch

from fercli.errors import FercliError
from fercli.train.checkpoint import load_checkpoint
from fercli.util import atomic_write_text

from .config import RUN_FILES, TrainConfig
from .data import Data, predict_logits


def rng_state(generator, augment_generator):
    state = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if augment_generator is not generator:
        state["augment_generator"] = augment_generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state, generator, augment_generator):
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if augment_generator is not generator and "augment_generator" in state:
        augment_generator.set_state(state["augment_generator"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def completed(state: dict, config: TrainConfig) -> bool:
    """Whether a resumed run has nothing left to train: every epoch done, or stopped early.
    (A run stopped by --max-minutes goes on.)"""
    early = bool(config.patience and state["stale"] >= config.patience)
    return state["epoch"] >= config.num_epochs or early


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of writes that a killed run left behind (the targets are intact)."""
    from fercli.metrics import plots

    for name in RUN_FILES + plots.RUN_PLOTS:
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def resume_state(resume: str):
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


def plain(value):
    """Config values as TOML/JSON-friendly builtins (what weights_only loading accepts)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_logs(out: Path, history, best, meta, elapsed) -> None:
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
        "teacher": meta.get("teacher"),
        "last": history[-1],
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))


def finish_run(out: Path, data: Data, device, dtype, best, history, elapsed) -> dict:
    """Final validation report of the best checkpoint, plots, metrics.json."""
    from fercli.metrics.classification import classification_report
    from fercli.train.checkpoint import build_model

    ckpt = load_checkpoint(out / "best.pt")
    model = build_model(ckpt).to(device).to(memory_format=torch.channels_last)
    logits = predict_logits(model, data.x_val, device, dtype)
    truth, predicted = data.y_val.numpy(), logits.argmax(1).numpy()
    report = classification_report(truth, predicted, data.classes)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(val_report=report, elapsed_s=round(elapsed, 1))
    if data.sources:  # several sources: each one's hold-out on its own too
        from .sources import source_report

        metrics["val_sources"] = {
            s.name: source_report(truth[s.val], predicted[s.val], data.classes)
            for s in data.sources
        }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    try:
        from fercli.metrics import plots

        plots.training_plots(out, history, report, data)
    except ImportError:
        pass
    metrics["out"] = str(out)
    return metrics
