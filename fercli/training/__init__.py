"""The training behind `fercli train`, one concept a module:

config     TrainConfig, the run folder's name
device     device, mixed precision, CPU threads, the hardware a run records
data       the uint8 images and labels, an epoch's order, batched prediction
optim      optimizer, schedule, augmenters
epoch      one training epoch
run_files  checkpoint state for --resume, history, metrics, the final report
distributed  several processes under torchrun (DDP)
teacher    distillation: the teacher's cached targets and the tempered KL
loop       train(): a run from start or resume to its report

Images are decoded once (fercli.dataset's cached uint8 array), kept as one uint8 tensor and
augmented as batches, so an epoch does no JPEG decoding and no per-image Python. Checkpoints
are written atomically; `last.pt` carries the optimizer, scheduler and random state, so
`--resume` continues exactly where the run stopped.
"""

from .config import NORMALIZATION, RUN_FILES, TrainConfig, run_folder
from .data import Data, class_weights, epoch_indices, load_data, normalize, predict_logits
from .device import (
    amp_dtype,
    default_threads,
    flush_denormals,
    hardware,
    resolve_device,
)
from .epoch import Parts, make_augment_generator, train_epoch
from .loop import train
from .optim import build_augmenters, make_optimizer, make_scheduler
from .run_files import finish_run

__all__ = [
    "NORMALIZATION",
    "RUN_FILES",
    "Data",
    "Parts",
    "TrainConfig",
    "amp_dtype",
    "build_augmenters",
    "class_weights",
    "default_threads",
    "epoch_indices",
    "finish_run",
    "flush_denormals",
    "hardware",
    "load_data",
    "make_augment_generator",
    "make_optimizer",
    "make_scheduler",
    "normalize",
    "predict_logits",
    "resolve_device",
    "run_folder",
    "train",
    "train_epoch",
]
