"""Export a training checkpoint to one self-describing ONNX file, proven to agree with PyTorch.

The file is built and checked in a temporary file beside the output and renamed only once
every check has passed: `onnx.checker`, fercli's own loader (metadata, input shape), and
onnxruntime against PyTorch on a real batch (max |logit difference| <= 1e-4 for fp32 and the
same top-1). `int8` is static QDQ quantization calibrated on training images and must agree
with the fp32 model on >= 99% of the test split; `fp16` converts the weights to float16 and
keeps float32 input and output.
"""

import contextlib
import importlib.util
import io
import json
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fercli import __version__
from fercli.errors import FercliError
from fercli.onnx_model import ModelInfo, OnnxModel, preprocess
from fercli.progress import say
from fercli.util import atomic_path, first_line

DEFAULT_OPSET = 18  # the lowest opset the torch.export-based exporter writes natively
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # times max(1, largest |logit|)
MIN_AGREEMENT = 0.99  # top-1 agreement required of int8 (test split) and fp16 (reference batch)
REFERENCE_IMAGES = 64
CALIBRATION_IMAGES = 1000
INPUT, OUTPUT = "input", "logits"


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


@dataclass
class ExportReport:
    output: Path
    precision: str
    opset: int
    size: int
    parity: ParityCheck  # the fp32 graph against PyTorch
    fp16: ParityCheck | None = None
    quant: QuantReport | None = None


def default_output(checkpoints, precision: str = "fp32") -> Path:
    """exports/<run folder>.onnx for runs/<run folder>/best.pt; -last, -ens<k> (an ensemble of
    k checkpoints, named after the first), -int8, -fp16 suffixes."""
    checkpoints = _as_list(checkpoints)
    path = Path(checkpoints[0]).resolve()
    if path.stem in ("best", "last"):
        name = path.parent.name + ("-last" if path.stem == "last" else "")
    else:
        name = path.stem
    if len(checkpoints) > 1:
        name += f"-ens{len(checkpoints)}"
    return Path("exports") / f"{name}{'' if precision == 'fp32' else '-' + precision}.onnx"


def _as_list(checkpoints) -> list[Path]:
    if isinstance(checkpoints, (str, os.PathLike)):
        return [Path(checkpoints)]
    return [Path(c) for c in checkpoints]


# What every member of an ensemble must share: they read the same images the same way.
SHARED_KEYS = ("classes", "image_size", "input_size", "normalization")


def load_network(checkpoints: list[Path]):
    """The checkpoints and the network to export: the one model, or the Ensemble of all."""
    from fercli.checkpoint import build_model, load_checkpoint

    ckpts = [load_checkpoint(path) for path in checkpoints]
    for path, ckpt in zip(checkpoints[1:], ckpts[1:]):
        for key in SHARED_KEYS:
            if ckpt.get(key) != ckpts[0].get(key):
                raise FercliError(
                    f"{path} differs from {checkpoints[0]} in {key}: the members of an "
                    "ensemble must be trained on the same classes and image format."
                )
    models = [build_model(ckpt) for ckpt in ckpts]
    if len(models) == 1:
        return ckpts, models[0]
    from fercli.models import Ensemble

    return ckpts, Ensemble(models).eval()


def model_info(ckpts: list[dict], checkpoints: list[Path], precision: str, opset: int):
    """The metadata of the exported file; an ensemble lists its members."""
    info = _single_info(ckpts[0], checkpoints[0], precision, opset)
    if len(ckpts) == 1:
        return info
    members = [
        {
            "model": ckpt["model"],
            "checkpoint": path.name,
            "run": path.resolve().parent.name,
            "epoch": _plain(ckpt.get("epoch")),
            "seed": (ckpt.get("config") or {}).get("seed"),
            "metrics": _plain(ckpt.get("metrics") or {}),
        }
        for ckpt, path in zip(ckpts, checkpoints)
    ]
    names = sorted({m["model"] for m in members})
    return replace(
        info,
        model=f"ensemble of {len(members)} x {', '.join(names)}",
        metrics={"members": [m["metrics"] for m in members]},
        extra={
            **{k: v for k, v in info.extra.items() if k not in ("checkpoint", "run", "epoch")},
            "members": members,
        },
    )


def _single_info(ckpt: dict, checkpoint: Path, precision: str, opset: int) -> ModelInfo:
    norm = ckpt.get("normalization") or {"mean": 0.5, "std": 0.5}
    data = ckpt.get("data") or {}
    return ModelInfo(
        classes=tuple(ckpt["classes"]),
        image_size=int(ckpt.get("image_size", 48)),
        input_size=int(ckpt.get("input_size") or ckpt.get("image_size", 48)),
        mean=float(np.asarray(norm["mean"]).reshape(-1)[0]),
        std=float(np.asarray(norm["std"]).reshape(-1)[0]),
        model=ckpt["model"],
        precision=precision,
        metrics=_plain(ckpt.get("metrics") or {}),
        fercli_version=__version__,
        extra={
            "checkpoint": checkpoint.name,
            "run": checkpoint.resolve().parent.name,
            "epoch": _plain(ckpt.get("epoch")),
            "trained_with_fercli": ckpt.get("fercli_version", ""),
            "data_file_list_hash": data.get("file_list_hash", ""),
            "opset": opset,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _plain(value):
    """Metrics as JSON-safe built-in types (tensors and numpy values become numbers)."""
    return json.loads(
        json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    )


def set_metadata(proto, info: ModelInfo) -> None:
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


# ----------------------------------------------------------------------------- conversion


def torch_to_onnx(model, input_size: int, opset: int):
    """The network as an onnx ModelProto with a dynamic batch axis, weights inside."""
    import onnx
    import torch

    if opset >= DEFAULT_OPSET and importlib.util.find_spec("onnxscript") is None:
        raise FercliError(
            "ONNX export needs onnxscript: pip install 'fercli[train]' (or pass --opset 17 "
            "for PyTorch's older exporter)."
        )
    # A batch of 2: exporters specialise a batch of 1 into the graph.
    x = torch.zeros(2, 1, input_size, input_size)
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            if opset >= DEFAULT_OPSET:
                program = torch.onnx.export(
                    model,
                    (x,),
                    dynamo=True,
                    verbose=False,
                    opset_version=opset,
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                )
                proto = program.model_proto
            else:  # the torch.export exporter cannot write opsets below 18
                buffer = io.BytesIO()
                torch.onnx.export(
                    model,
                    (x,),
                    buffer,
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                )
                proto = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:
        raise FercliError(
            f"PyTorch could not export this model to ONNX opset {opset} "
            f"({type(exc).__name__}: {first_line(str(exc))}): "
            f"try another --opset (default {DEFAULT_OPSET})."
        ) from None
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise FercliError(
            f"the exporter wrote opset {written} instead of {opset}: try another --opset."
        )
    return proto


def to_fp16(proto):
    """float16 weights and compute, float32 input and output (onnxruntime's converter)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel as Graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
    graph = Graph(half)
    graph.topological_sort()  # the converter appends its input casts at the end
    return graph.model


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration: np.ndarray, info: ModelInfo
) -> None:
    """Static QDQ quantization: int8 per-channel weights, uint8 activations with ranges
    calibrated (min/max) on preprocessed training images, and the input quantized exactly
    (`input_on_pixel_grid`). The last layer, which makes the logits, stays fp32 (in an
    ensemble, each member's): it is tiny, and quantizing it flips near-tied predictions."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [{INPUT: calibration[i : i + 64]} for i in range(0, len(calibration), 64)]
            )

        def get_next(self):
            return next(self.batches, None)

    prepared = out_path.with_name("prepared.onnx")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared), load_external_data=False)
        keep, overrides = input_on_pixel_grid(model.graph, info.mean, info.std)
        onnx.save(model, str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=fp32_tail(model.graph) + keep,
            extra_options={"TensorQuantOverrides": overrides},
        )


def input_on_pixel_grid(graph, mean: float, std: float) -> tuple[list[str], dict]:
    """Make the uint8 quantization of the network input exact, in place.

    The input is (p / 255 - mean) / std for grey levels p: 256 values a step s = 1 / (255 std)
    apart. With mean 0.5 they lie halfway between two points of any uint8 grid that holds 0.0,
    so calibrated quantization rounds each pixel half a level, up or down by the parity of p.
    That cost the default ensemble 0.44 points of agreement with fp32 (99.11% against 99.55%),
    and engines that round halves differently (OpenVINO) disagreed with onnxruntime on 1.1% of
    FER-2013 test. So the input is shifted by that fraction of a step before it is quantized
    (fp32 Add, kept out of quantization) and pinned to the grid (scale s, zero point
    round(255 mean): grey level p becomes the uint8 value p), and each first convolution's
    bias takes the shift back: conv(x) = W * (x + d) + b - d * sum(W).
    Only the zero padding at the border moves, by half a grey level.

    Returns the nodes to keep in fp32 and the quantization overrides; nothing where the input
    already lies on the grid or feeds anything but convolutions with constant weights."""
    from onnx import helper, numpy_helper

    level = 255 * mean
    d = (level - round(level)) / (255 * std)
    init = {t.name: t for t in graph.initializer}
    readers = [node for node in graph.node if INPUT in node.input]
    usable = all(
        node.op_type == "Conv" and list(node.input).index(INPUT) == 0 and node.input[1] in init
        for node in readers
    )
    if abs(d) < 1e-9 or not readers or not usable:
        return [], {}
    shifted = f"{INPUT}_on_pixel_grid"
    replaced = {node.input[2] for node in readers if len(node.input) > 2 and node.input[2]}
    for i, node in enumerate(readers):
        weight = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(init[node.input[2]]).astype(np.float64)
        else:
            bias = np.zeros(weight.shape[0])
        name = f"{node.name or 'conv'}_{i}_bias_on_pixel_grid"
        bias = bias - d * weight.reshape(weight.shape[0], -1).sum(axis=1)
        graph.initializer.append(numpy_helper.from_array(bias.astype(np.float32), name))
        del node.input[2:]
        node.input[0] = shifted
        node.input.append(name)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name in replaced - used]:
        graph.initializer.remove(tensor)  # an old bias no other node reads
    graph.initializer.append(numpy_helper.from_array(np.array(d, np.float32), f"{shifted}_shift"))
    add = helper.make_node("Add", [INPUT, f"{shifted}_shift"], [shifted], name=shifted)
    graph.node.insert(0, add)
    scale = np.array(1 / (255 * std), np.float32)
    zero_point = np.array(round(level), np.uint8)
    return [add.name], {shifted: [{"scale": scale, "zero_point": zero_point}]}


def fp32_tail(graph) -> list[str]:
    """The nodes int8 quantization leaves alone: the one that makes the graph's output and,
    in an ensemble, every node that feeds a Softmax (each member's last layer) or follows
    one (the averaging)."""
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    tail = {node.name for node in graph.node if outputs & set(node.output)}
    softmaxes = [node for node in graph.node if node.op_type == "Softmax"]
    tail |= {producer[i].name for node in softmaxes for i in node.input if i in producer}
    downstream = {out for node in softmaxes for out in node.output}
    for node in graph.node:  # graph nodes are in topological order
        if node.op_type == "Softmax" or downstream & set(node.input):
            tail.add(node.name)
            downstream |= set(node.output)
    return sorted(tail)


# ----------------------------------------------------------------------------- data


def dataset_root(ckpt: dict, data_root) -> Path | None:
    root = Path(data_root) if data_root else None
    if root is None and (ckpt.get("data") or {}).get("root"):
        root = Path(ckpt["data"]["root"])
    return root if root is not None and root.is_dir() else None


def sample_images(root: Path, split: str, classes, size: int, n: int, seed: int = 0):
    """Up to n images drawn at random from one split, decoded as uint8 (n, size, size)."""
    from fercli.dataset import decode, scan_split

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


# ----------------------------------------------------------------------------- checks


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


def _check_file(path: Path) -> OnnxModel:
    """onnx.checker, then fercli's own loader (metadata, input and output shapes)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise FercliError(f"the exported model fails onnx.checker: {exc}") from None
    return OnnxModel(path, "cpu")


# ----------------------------------------------------------------------------- export


def export_onnx(
    checkpoints: str | os.PathLike | list,
    output: str | os.PathLike | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    quantize: str | None = None,
    fp16: bool = False,
    data_root: str | os.PathLike | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    min_agreement: float = MIN_AGREEMENT,
) -> ExportReport:
    """Export one checkpoint, or several as one ensemble (the mean of their class
    probabilities); verify, and only then write `output`. Raises FercliError when a check
    fails."""
    if quantize not in (None, "int8"):
        raise FercliError(f"unknown --quantize {quantize!r}: the choice is int8.")
    if quantize and fp16:
        raise FercliError("choose one of --quantize int8 and --fp16, not both.")
    precision = "int8" if quantize else "fp16" if fp16 else "fp32"
    checkpoints = _as_list(checkpoints)
    ckpts, model = load_network(checkpoints)
    ckpt = ckpts[0]
    output = Path(output) if output else default_output(checkpoints, precision)
    root = dataset_root(ckpt, data_root)
    info = model_info(ckpts, checkpoints, "fp32", opset)
    if quantize and root is None:
        raise FercliError(
            "int8 calibration and its check need the checkpoint's dataset "
            f"({(ckpt.get('data') or {}).get('root', 'unknown')} is not here): pass --data ROOT."
        )

    origin = checkpoints[0] if len(checkpoints) == 1 else f"{len(checkpoints)} checkpoints"
    say(f"Exporting {info.model} from {origin} to ONNX opset {opset}")
    proto = torch_to_onnx(model, info.input_size, opset)
    set_metadata(proto, info)
    images, source = reference_batch(root, info)

    with tempfile.TemporaryDirectory(prefix="fercli-export-") as tmpdir:
        fp32_path = Path(tmpdir) / "fp32.onnx"
        fp32_path.write_bytes(proto.SerializeToString())
        fp32 = _check_file(fp32_path)
        parity = check_parity(model, fp32, images, source, FP32_TOLERANCE)
        say(
            f"fp32 check on {parity.source}: max |logit difference| {parity.max_abs_diff:.2e} "
            f"(limit {FP32_TOLERANCE:.0e}), same top-1 on {parity.top1_agreement:.1%}"
        )
        if not parity.passed:
            raise FercliError(
                f"onnxruntime disagrees with PyTorch (max |logit difference| "
                f"{parity.max_abs_diff:.2e} > {FP32_TOLERANCE:.0e} or top-1 differs): "
                "nothing written; try another --opset."
            )
        report = ExportReport(output, precision, opset, fp32_path.stat().st_size, parity)

        with atomic_path(output) as tmp:
            if precision == "fp32":
                tmp.write_bytes(fp32_path.read_bytes())
                _check_file(tmp)
            elif precision == "fp16":
                half = to_fp16(proto)
                set_metadata(half, model_info(ckpts, checkpoints, "fp16", opset))
                tmp.write_bytes(half.SerializeToString())
                report.fp16 = check_fp16(model, _check_file(tmp), images, source, min_agreement)
            else:
                int8_path = Path(tmpdir) / "int8.onnx"
                calibration = sample_images(
                    root, "train", info.classes, info.image_size, calibration_images, seed=1
                )
                if not len(calibration):
                    raise FercliError(f"no readable training images in {root}/train to calibrate.")
                say(
                    f"Quantizing to int8 (static QDQ, calibrated on {len(calibration)} "
                    "training images)"
                )
                quantize_int8(fp32_path, int8_path, preprocess(calibration, info), info)
                quantized = _load_proto(int8_path)
                set_metadata(quantized, model_info(ckpts, checkpoints, "int8", opset))
                tmp.write_bytes(quantized.SerializeToString())
                report.quant = check_int8(
                    fp32, _check_file(tmp), root, len(calibration), min_agreement
                )
            report.size = tmp.stat().st_size
    say(f"Wrote {output} ({report.size / 1e6:.1f} MB, {precision})")
    return report


def _load_proto(path: Path):
    import onnx

    return onnx.load(str(path))


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
    from fercli.dataset import find_splits, load_split

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
