"""Training checkpoints: plain dicts of tensors and built-in types, written atomically and
loadable with `torch.load(path, weights_only=True)`.

Keys: format, version, model (registered name), classes, image_size (preprocessing size),
input_size (what the network sees), normalization {mean, std} applied as
(pixel / 255 - mean) / std, state_dict, config (resolved training options), data
{root, file_list_hash, count}, metrics, epoch, fercli_version; `last.pt` adds optimizer,
scheduler, scaler, rng and history for --resume. With `fercli train --ema`, state_dict is the
weights' moving average, and `last.pt`'s ema {updates, live} holds the step's own weights.
"""

from pathlib import Path

import torch

from fercli import __version__
from fercli.errors import FercliError
from fercli.util import atomic_path

FORMAT = "fercli-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, checkpoint: dict) -> None:
    checkpoint = {"format": FORMAT, "version": VERSION, "fercli_version": __version__, **checkpoint}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint; a clear FercliError for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise FercliError(
            f"checkpoint {path} not found: pass a best.pt or last.pt from a run folder."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FercliError(
            f"{path} is not a readable fercli checkpoint ({exc.__class__.__name__})."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FercliError(f"{path} is not a fercli checkpoint: train one with `fercli train`.")
    return ckpt


def build_model(ckpt: dict) -> torch.nn.Module:
    """The checkpoint's network, weights loaded, in eval mode."""
    from fercli.train.models import create_model

    size = int(ckpt.get("input_size") or ckpt.get("image_size", 48))
    model = create_model(ckpt["model"], num_classes=len(ckpt["classes"]), image_size=size)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
