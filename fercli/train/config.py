"""What a training run is asked to do: its options, and where it writes."""

from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

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
    teacher: str | None = None  # an exported .onnx model to distil from
    distill_weight: float = 0.5  # the loss: (1 - w) x labels' + w x KL to the teacher's
    distill_temperature: float = 4.0  # softens both sides' probabilities in the KL term
    teacher_targets: str = "cached"  # cached (unaugmented images, once) or batch (every batch)
    init: str | None = None  # a checkpoint whose weights the model starts from (fine-tuning)
    ema: float = 0.0  # per-step decay of the weights' moving average, which is validated and kept
    augment_options: dict = field(default_factory=dict)
    # several data roots (fercli.train.sources): [{root, weight, name, split}]; empty: data_dir
    sources: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def run_folder(config: TrainConfig) -> Path:
    if config.out:
        return Path(config.out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model}"
