"""The training behind `fercli train`, one concept a module:

config     TrainConfig, the run folder's name
sources    several data roots (--data ROOT:WEIGHT, [[train.data]]): weights, hold-outs
device     device, mixed precision, CPU threads, the hardware a run records
data       the uint8 images and labels, an epoch's order, batched prediction
optim      optimizer, schedule, augmenters
epoch      one training epoch
run_files  checkpoint state for --resume, history, metrics, the final report
distributed  several processes under torchrun (DDP)
teacher    distillation: the teacher's cached targets and the tempered KL
ema        the weights' exponential moving average (--ema)
start      a run set up: folder and config (or --resume's), data, teacher, model, optimizer,
           schedule, EMA, the resumed state
loop       train(): a run from start or resume to its report: epochs, stopping, report
models     the network architectures; checkpoint: the checkpoint format
augment    the batch augmentations; model_cost: multiply-accumulates and parameters
model_listing  what `fercli models` reports (no torch unless costs are asked)

Images are decoded once (fercli.data.dataset's cached uint8 array), kept as one uint8 tensor and
augmented as batches, so an epoch does no JPEG decoding and no per-image Python. Checkpoints
are written atomically; `last.pt` carries the optimizer, scheduler and random state, so
`--resume` continues exactly where the run stopped.

The names below load their module (and torch) on first use, so that importing a module of
this package, such as model_listing, loads no torch.
"""

import importlib

_EXPORTS = {  # name -> the module of this package that defines it, imported on first use
    "amp_dtype": "device",
    "build_augmenters": "optim",
    "class_weights": "data",
    "Data": "data",
    "default_threads": "device",
    "epoch_indices": "data",
    "finish_run": "run_files",
    "flush_denormals": "device",
    "hardware": "device",
    "load_data": "data",
    "make_augment_generator": "epoch",
    "make_optimizer": "optim",
    "make_scheduler": "optim",
    "NORMALIZATION": "config",
    "normalize": "data",
    "Parts": "epoch",
    "predict_logits": "data",
    "resolve_device": "device",
    "RUN_FILES": "config",
    "run_folder": "config",
    "train": "loop",
    "train_epoch": "epoch",
    "TrainConfig": "config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fercli.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fercli.train.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
