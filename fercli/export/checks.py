"""The checks an export must pass before anything is written: onnx.checker and fercli's own
loader, onnxruntime against PyTorch (fp32, fp16), and int8 against fp32 on the test split;
and the images they run on."""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.errors import FercliError
from fercli.predict.onnx_model import ModelInfo, OnnxModel, preprocess
from fercli.progress import say

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # times max(1, largest |logit|)
MIN_AGREEMENT = 0.99  # top-1 agreement required of int8 (test split) and fp16 (reference batch)
REFERENCE_IMAGES = 64


@dataclass
class ParityCheck:
    """onnxruntime against PyTorch on one batch."""

    images: int
    source: str  # where the batch came from
    max_abs_diff: float
    tolerance: float
    top1_agreement: float  # fraction of images with the same top-1 class
    scale: float  # largest |logit| from PyTorch

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement == 1.0


@dataclass
class QuantReport:
    """int8 against fp32 on the test split."""

    test_images: int
    calibration_images: int
    agreement: float
    accuracy_fp32: float
    accuracy_int8: float
    size_fp32: int
    size_int8: int
    speed_fp32: float  # images/s, model only, onnxruntime on the CPU
    speed_int8: float


def dataset_root(ckpt: dict, data_root) -> Path | None:
    root = Path(data_root) if data_root else None
    if root is None and (ckpt.get("data") or {}).get("root"):
        root = Path(ckpt["data"]["root"])
    return root if root is not None and root.is_dir() else None


def sample_images(root: Path, split: str, classes, size: int, n: int, seed: int = 0):
    """Up to n images drawn at random from one split, decoded as uint8 (n, size, size)."""
    from fercli.data.dataset import decode, scan_split

    samples = scan_split(root, split, tuple(classes))
    if not samples:
        return np.zeros((0, size, size), np.uint8)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(samples), min(n, len(samples)), replace=False))
    images, errors = decode([root / samples[i].rel for i in pick], size, label=f"Reading {split}")
    bad = {i for i, _ in errors}
    return images[[i for i in range(len(pick)) if i not in bad]]


def reference_batch(root: Path | None, info: ModelInfo, n: int = REFERENCE_IMAGES):
    """Training images for the parity check, or synthetic ones when the data is not here."""
    if root is not None and (root / "train").is_dir():
        images = sample_images(root, "train", info.classes, info.image_size, n)
        if len(images):
            return images, f"{len(images)} training images from {root}"
    rng = np.random.default_rng(0)
    # Smooth random shapes rather than white noise: closer to faces' statistics.
    base = rng.integers(0, 256, (n, 6, 6)).astype(np.float32)
    images = np.kron(base, np.ones((8, 8), np.float32))[:, : info.image_size, : info.image_size]
    images = np.clip(images + rng.normal(0, 12, images.shape), 0, 255).astype(np.uint8)
    return images, f"{n} synthetic images (training data not found)"


def check_parity(
    model, onnx_model: OnnxModel, images: np.ndarray, source: str, tolerance: float
) -> ParityCheck:
    import torch

    x = preprocess(images, onnx_model.info)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).float().numpy()
    got = onnx_model.logits(x).astype(np.float32)
    return ParityCheck(
        images=len(x),
        source=source,
        max_abs_diff=float(np.abs(got - expected).max()),
        tolerance=tolerance,
        top1_agreement=float((got.argmax(1) == expected.argmax(1)).mean()),
        scale=float(np.abs(expected).max()),
    )


def throughput(
    onnx_model: OnnxModel, images: np.ndarray, batch_size: int = 64, repeats: int = 3
) -> float:
    """Median images/s of the model alone on preprocessed batches."""
    x = preprocess(images, onnx_model.info)
    onnx_model.logits(x[:batch_size])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            onnx_model.logits(x[i : i + batch_size])
        rates.append(len(x) / (time.perf_counter() - start))
    return statistics.median(rates)


def check_file(path: Path) -> OnnxModel:
    """onnx.checker, then fercli's own loader (metadata, input and output shapes)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise FercliError(f"the exported model fails onnx.checker: {exc}") from None
    return OnnxModel(path, "cpu")


def check_fp16(model, half: OnnxModel, images, source, min_agreement) -> ParityCheck:
    check = check_parity(model, half, images, source, 0.0)
    check.tolerance = FP16_TOLERANCE * max(1.0, check.scale)
    say(
        f"fp16 check on {source}: max |logit difference| {check.max_abs_diff:.2e} "
        f"(limit {check.tolerance:.1e}), same top-1 on {check.top1_agreement:.1%}"
    )
    if check.max_abs_diff > check.tolerance or check.top1_agreement < min_agreement:
        raise FercliError(
            f"the fp16 model drifts too far from PyTorch (max |logit difference| "
            f"{check.max_abs_diff:.2e}, top-1 agreement {check.top1_agreement:.1%}): "
            "nothing written; use the fp32 model."
        )
    return check


def check_int8(
    fp32: OnnxModel, int8: OnnxModel, root: Path, calibrated: int, min_agreement: float
) -> QuantReport:
    """Top-1 agreement with fp32 and accuracy on the test split, size and speed."""
    from fercli.data.dataset import find_splits, load_split

    splits = find_splits(root)
    split = "test" if "test" in splits else "val" if "val" in splits else None
    if split is None:
        raise FercliError(f"the int8 check needs a test split in {root}: none found.")
    info = fp32.info
    data = load_split(root, split, classes=info.classes, size=info.image_size)
    a, b = fp32.predict_proba(data.images).argmax(1), int8.predict_proba(data.images).argmax(1)
    speed_images = np.resize(data.images, (512, *data.images.shape[1:]))
    report = QuantReport(
        test_images=len(data.labels),
        calibration_images=calibrated,
        agreement=float((a == b).mean()),
        accuracy_fp32=float((a == data.labels).mean()),
        accuracy_int8=float((b == data.labels).mean()),
        size_fp32=fp32.path.stat().st_size,
        size_int8=int8.path.stat().st_size,
        speed_fp32=throughput(fp32, speed_images),
        speed_int8=throughput(int8, speed_images),
    )
    r = report
    say(
        f"int8 vs fp32 on {r.test_images} {split} images: top-1 agreement {r.agreement:.2%} "
        f"(need {min_agreement:.0%})"
    )
    say(
        f"  accuracy {r.accuracy_fp32:.2%} -> {r.accuracy_int8:.2%} "
        f"({(r.accuracy_int8 - r.accuracy_fp32) * 100:+.2f} points)"
    )
    say(
        f"  size {r.size_fp32 / 1e6:.1f} -> {r.size_int8 / 1e6:.1f} MB "
        f"({r.size_int8 / r.size_fp32:.2f}x); speed {r.speed_fp32:.0f} -> {r.speed_int8:.0f} "
        f"images/s ({r.speed_int8 / r.speed_fp32:.2f}x, model only, CPU)"
    )
    if report.agreement < min_agreement:
        raise FercliError(
            f"the int8 model agrees with fp32 on only {report.agreement:.2%} of the {split} "
            f"split (at least {min_agreement:.0%} required): nothing written; use the fp32 model."
        )
    return report
