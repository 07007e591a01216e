"""The temperature an export writes into its file, so that confidences mean what they say:
fitted on the logits of the run's own validation hold-out, rebuilt from the checkpoint's
configuration, never on the test split; 1.0, with the reason, where the hold-out is too
small or the fitted T would not lower its ECE (fercli.metrics.calibration.choose_temperature)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.predict.onnx_model import OnnxModel, preprocess


@dataclass
class Calibration:
    temperature: float
    images: int  # of the hold-out
    source: str  # which hold-out
    ece_before: float  # at temperature 1
    ece_after: float  # at `temperature`
    fitted: float | None = None  # the NLL fit (None: not fitted, the hold-out too small)
    reason: str = ""  # why T = 1 was kept; empty where the fitted T is written


def holdout(ckpt: dict, root: Path | None):
    """(uint8 images, labels, what they are) of the run's validation hold-out, or None where
    it cannot be rebuilt (no data, or a checkpoint without a training configuration)."""
    if root is None or not (ckpt.get("config") or {}).get("val_fraction"):
        return None
    from fercli.errors import FercliError
    from fercli.train import TrainConfig, load_data

    try:
        data = load_data(TrainConfig.from_dict({**ckpt["config"], "data_dir": str(root)}))
    except (FercliError, TypeError, ValueError):  # data or configuration of another kind
        return None
    if not len(data.y_val):
        return None
    return data.x_val[:, 0].numpy(), data.y_val.numpy(), data.val_source


def calibrate(fp32: OnnxModel, ckpt: dict, root: Path | None) -> Calibration | None:
    """The temperature that minimises the hold-out's negative log-likelihood, or 1.0 and the
    reason (fercli.metrics.calibration.choose_temperature), with the expected calibration error
    before and after; None where there is no hold-out."""
    from fercli.metrics.calibration import choose_temperature

    found = holdout(ckpt, root)
    if found is None:
        return None
    images, labels, source = found
    batches = range(0, len(images), 256)
    logits = np.concatenate(
        [fp32.logits(preprocess(images[i : i + 256], fp32.info)) for i in batches]
    )
    choice = choose_temperature(logits, labels)
    return Calibration(
        temperature=choice.temperature,
        images=choice.images,
        source=source,
        ece_before=choice.ece_before,
        ece_after=choice.ece_after,
        fitted=choice.fitted,
        reason=choice.reason,
    )
