"""Knowledge distillation from an exported model (`fercli train --teacher MODEL.onnx`).

`--teacher-targets cached` (the default): the teacher runs with onnxruntime once per
training image, before the first epoch: its targets are the log of its class probabilities
averaged over the image and its mirror image, cached on disk (keyed on the teacher file and
the images) so that --resume and later runs on the same images skip it.

`--teacher-targets batch`: the teacher runs on every augmented batch, on exactly what the
student sees (rotation, crop, jitter, mixup), so its targets follow the augmentation ("function
matching"). On a CPU that costs more than the student's own step (the bundled 5-network
ensemble is 1.32 G multiply-accumulates an image); docs/train.md has the figures.
"""

import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fercli.errors import FercliError
from fercli.progress import bar
from fercli.util import atomic_path, cache_dir

CACHE_VERSION = 1  # bump when the targets are computed differently
TARGET_MODES = ("cached", "batch")


def check_options(config) -> None:
    """Fail before any data is read: the teacher file, the weight and temperature."""
    if config.teacher and not Path(config.teacher).is_file():
        raise FercliError(
            f"teacher {config.teacher} not found: pass a .onnx file made by `fercli export-onnx`."
        )
    if not 0 <= config.distill_weight <= 1:
        raise FercliError("--distill-weight must be between 0 and 1.")
    if config.distill_temperature <= 0:
        raise FercliError("--distill-temperature must be above 0.")
    if config.teacher_targets not in TARGET_MODES:
        raise FercliError(
            f"unknown --teacher-targets {config.teacher_targets!r}: choose "
            f"{' or '.join(TARGET_MODES)}."
        )


def load_teacher(path: str, classes: tuple[str, ...], image_size: int, threads=None):
    """The teacher's OnnxModel; its classes must be the training data's, in the same order,
    and it must read images of the size the run decodes."""
    from fercli.predict.onnx_model import OnnxModel

    teacher = OnnxModel(path, provider="cpu", threads=threads)
    info = teacher.info
    if tuple(info.classes) != tuple(classes):
        raise FercliError(
            f"teacher {path} has classes {', '.join(info.classes)} but the data has "
            f"{', '.join(classes)}: distil from a model trained on the same classes."
        )
    if info.image_size != image_size:
        raise FercliError(
            f"teacher {path} reads {info.image_size}x{info.image_size} images, this run "
            f"{image_size}x{image_size}: pass --image-size {info.image_size}."
        )
    return teacher


def teacher_record(path: str, model_bytes: bytes, teacher, targets: str) -> dict:
    """What the run records of the teacher (its file's sha256 identifies it on --resume)."""
    return {
        "path": str(Path(path).resolve()),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "model": teacher.info.model,
        "precision": teacher.info.precision,
        "targets": targets,
    }


def teacher_targets(path: str, classes, x_uint8: torch.Tensor, threads=None):
    """(N, C) float32 teacher log-probabilities for uint8 images (N, 1, H, W), from the disk
    cache when this teacher has seen these images before; and the run's teacher record."""
    teacher = load_teacher(path, classes, x_uint8.shape[-1], threads)
    images = np.ascontiguousarray(x_uint8.numpy()[:, 0])
    model_bytes = Path(path).read_bytes()  # read once: the record's sha256 and the cache key
    record = teacher_record(
        path,
        model_bytes,
        teacher,
        "mean probabilities of each unaugmented image and its mirror image",
    )
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    h.update(model_bytes)
    h.update(str(images.shape).encode())
    h.update(images.tobytes())
    cached = cache_dir() / f"teacher-{h.hexdigest()[:32]}.npy"
    if cached.exists():
        try:
            targets = np.load(cached)
            if targets.shape == (len(images), len(classes)):
                return torch.from_numpy(targets), record
        except (OSError, ValueError):
            pass  # a damaged cache file is computed again
    t0 = time.perf_counter()
    targets = _compute(teacher, images)
    seconds = time.perf_counter() - t0
    record.update(seconds=round(seconds, 1), images_per_s=round(2 * len(images) / seconds, 1))
    with atomic_path(cached) as tmp, open(tmp, "wb") as f:
        np.save(f, targets)
    return torch.from_numpy(targets), record


class BatchTeacher:
    """`--teacher-targets batch`: the teacher's log-probabilities of each augmented,
    normalized batch the student trains on (the normalizations are checked to agree)."""

    def __init__(self, path: str, classes, image_size: int, normalization: dict, threads=None):
        self.model = load_teacher(path, classes, image_size, threads)
        info = self.model.info
        if (info.mean, info.std) != (normalization["mean"], normalization["std"]):
            raise FercliError(
                f"teacher {path} normalizes pixels with mean {info.mean} and std {info.std}, "
                f"this run with {normalization['mean']} and {normalization['std']}: use "
                "--teacher-targets cached, which reads the teacher's own preprocessing."
            )
        self.crop = (image_size - info.input_size) // 2  # its centre crop, as predict_proba's
        self.temperature = info.temperature
        self.record = teacher_record(
            path,
            Path(path).read_bytes(),
            self.model,
            "probabilities of every augmented batch, as the student sees it",
        )

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        c, size = self.crop, self.model.info.input_size
        x = xb.detach().float()[:, :, c : c + size, c : c + size].cpu()
        logits = torch.from_numpy(self.model.logits(np.ascontiguousarray(x.numpy())))
        return F.log_softmax(logits.float() / self.temperature, dim=1).to(xb.device)


def same_teacher(state: dict, record: dict | None, config, out) -> dict | None:
    """On --resume: the run's teacher must be the file it started with (its sha256). Returns
    the first run's record, which has the time the teacher took (a resume reads the cache)."""
    first = state.get("teacher")
    if (first or {}).get("sha256") != (record or {}).get("sha256"):
        raise FercliError(
            f"{config.teacher} is not the teacher {out} started with "
            f"(sha256 {(first or {}).get('sha256', 'none')[:12]}): put that file back."
        )
    return first


def _compute(teacher, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    from fercli.predict.onnx_model import mirror_averaged

    out = []
    with bar(len(images), f"Teacher {teacher.path.name}", ()) as progress:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            probs = mirror_averaged(teacher.predict_proba, batch)
            out.append(np.log(np.clip(probs, 1e-30, None)).astype(np.float32))
            progress.advance(len(batch))
    return np.concatenate(out)


def distillation_loss(logits, teacher_log_probs, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between probabilities softened by the temperature, times T^2
    so its gradients keep their size as T changes (Hinton et al., 2015)."""
    t = temperature
    soft_teacher = F.log_softmax(teacher_log_probs / t, dim=1)
    soft_student = F.log_softmax(logits / t, dim=1)
    return F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True) * t * t
