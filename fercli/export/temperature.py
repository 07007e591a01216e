"""The temperature an export writes into its file, so that confidences mean what they say:
fitted (fercli.calibration.fit_temperature) on the run's own validation hold-out, rebuilt
from the checkpoint's configuration, never on the test split."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.onnx_model import OnnxModel, preprocess


@dataclass
class Calibration:
    temperature: float
    images: int  # of the hold-out
    source: str  # which hold-out
    ece_before: float  # at temperature 1
    ece_after: float


def holdout(ckpt: dict, root: Path | None):
    """(uint8 images, labels, what they are) of the run's validation hold-out, or None where
    it cannot be rebuilt (no data, or a checkpoint without a training configuration)."""
    if root is None or not (ckpt.get("config") or {}).get("val_fraction"):
        return None
    from fercli.errors import FercliError
    from fercli.training import TrainConfig, load_data

    try:
        data = load_data(TrainConfig.from_dict({**ckpt["config"], "data_dir": str(root)}))
    except (FercliError, TypeError, ValueError):  # data or configuration of another kind
        return None
    if not len(data.y_val):
        return None
    return data.x_val[:, 0].numpy(), data.y_val.numpy(), data.val_source


def calibrate(fp32: OnnxModel, ckpt: dict, root: Path | None) -> Calibration | None:
    """The temperature that minimises the hold-out's negative log-likelihood, with the
    expected calibration error before and after; None where there is no hold-out."""
    from fercli.calibration import fit_temperature, reliability
    from fercli.onnx_model import softmax

    found = holdout(ckpt, root)
    if found is None:
        return None
    images, labels, source = found
    batches = range(0, len(images), 256)
    logits = np.concatenate(
        [fp32.logits(preprocess(images[i : i + 256], fp32.info)) for i in batches]
    )
    t = fit_temperature(logits, labels)
    return Calibration(
        temperature=t,
        images=len(labels),
        source=source,
        ece_before=reliability(softmax(logits), labels)["ece"],
        ece_after=reliability(softmax(logits / t), labels)["ece"],
    )
