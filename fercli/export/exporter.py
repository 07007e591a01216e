"""Export a training checkpoint to one self-describing ONNX file, proven to agree with PyTorch.

The file is built and checked in a temporary file beside the output and renamed only once
every check has passed: `onnx.checker`, fercli's own loader (metadata, input shape), and
onnxruntime against PyTorch on a real batch (max |logit difference| <= 1e-4 for fp32 and the
same top-1). `int8` is static QDQ quantization calibrated on training images (fercli.export.int8)
that must agree with the fp32 model on >= 99% of the test split and pass the saturation check
(fercli.export.saturation); `fp16` converts the weights to float16 and keeps float32 input
and output.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from fercli.defaults import CALIBRATION_IMAGES
from fercli.errors import FercliError
from fercli.export.checks import (
    FP32_TOLERANCE,
    MIN_AGREEMENT,
    ParityCheck,
    QuantReport,
    check_file,
    check_fp16,
    check_int8,
    check_parity,
    dataset_root,
    reference_batch,
    sample_images,
)
from fercli.export.convert import DEFAULT_OPSET, to_fp16, torch_to_onnx
from fercli.export.int8 import dequantize, quantize_int8
from fercli.export.metadata import (
    _as_list,
    default_output,
    load_network,
    model_info,
    set_metadata,
)
from fercli.export.saturation import INT16_MAX, check_saturation
from fercli.export.temperature import Calibration, calibrate
from fercli.predict.onnx_model import OnnxModel, preprocess
from fercli.progress import say
from fercli.util import atomic_path


@dataclass
class ExportReport:
    output: Path
    precision: str
    opset: int
    size: int
    parity: ParityCheck | None  # the fp32 graph against PyTorch (None: re-quantized .onnx)
    fp16: ParityCheck | None = None
    quant: QuantReport | None = None
    calibration: Calibration | None = None  # the temperature written, where a hold-out was


@dataclass
class _Job:
    """What the steps of one export_onnx call share: the network and its checkpoints, the
    dataset root, and the reference batch the checks run on."""

    checkpoints: list
    ckpts: list
    model: object
    opset: int
    root: Path | None
    calibration_images: int = CALIBRATION_IMAGES
    min_agreement: float = MIN_AGREEMENT
    images: object = None
    source: str = ""

    def info(self, precision: str):
        return model_info(self.ckpts, self.checkpoints, precision, self.opset)


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
    precision = _precision(quantize, fp16)
    checkpoints = _as_list(checkpoints)
    ckpts, model = load_network(checkpoints)
    ckpt = ckpts[0]
    output = Path(output) if output else default_output(checkpoints, precision)
    root = dataset_root(ckpt, data_root)
    job = _Job(checkpoints, ckpts, model, opset, root, calibration_images, min_agreement)
    info = job.info("fp32")
    if quantize and root is None:
        raise FercliError(
            "int8 calibration and its check need the checkpoint's dataset "
            f"({(ckpt.get('data') or {}).get('root', 'unknown')} is not here): pass --data ROOT."
        )

    origin = checkpoints[0] if len(checkpoints) == 1 else f"{len(checkpoints)} checkpoints"
    say(f"Exporting {info.model} from {origin} to ONNX opset {opset}")
    proto = torch_to_onnx(model, info.input_size, opset)
    set_metadata(proto, info)
    job.images, job.source = reference_batch(root, info)

    with tempfile.TemporaryDirectory(prefix="fercli-export-") as tmpdir:
        fp32_path = Path(tmpdir) / "fp32.onnx"
        fp32_path.write_bytes(proto.SerializeToString())
        fp32 = check_file(fp32_path)
        parity = _check_fp32(job, fp32)
        calibration = calibrate(fp32, ckpt, root)
        baked = _baker(calibration)
        if calibration:
            _say_calibration(calibration)
            set_metadata(proto, baked(info))
            fp32_path.write_bytes(proto.SerializeToString())  # only its metadata changed
            fp32.info = baked(fp32.info)
        report = ExportReport(output, precision, opset, fp32_path.stat().st_size, parity)
        report.calibration = calibration

        with atomic_path(output) as tmp:
            _write_precision(job, report, tmp, proto, fp32_path, fp32, baked)
            report.size = tmp.stat().st_size
    say(f"Wrote {output} ({report.size / 1e6:.1f} MB, {precision})")
    return report


def _precision(quantize: str | None, fp16: bool) -> str:
    """fp32, fp16 or int8, from export_onnx's choices (checked)."""
    if quantize not in (None, "int8"):
        raise FercliError(f"unknown --quantize {quantize!r}: the choice is int8.")
    if quantize and fp16:
        raise FercliError("choose one of --quantize int8 and --fp16, not both.")
    return "int8" if quantize else "fp16" if fp16 else "fp32"


def _check_fp32(job: _Job, fp32) -> ParityCheck:
    """onnxruntime against PyTorch on the reference batch; nothing is written unless they
    agree."""
    parity = check_parity(job.model, fp32, job.images, job.source, FP32_TOLERANCE)
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
    return parity


def _baker(calibration: Calibration | None):
    """A function of metadata: the metadata with the fitted temperature, and why it is 1
    where it was kept."""
    temperature = calibration.temperature if calibration else 1.0
    note = (
        {"temperature_note": f"kept T = 1: {calibration.reason}"}
        if calibration and calibration.reason
        else {}
    )

    def baked(meta):
        return replace(meta, temperature=temperature, extra={**meta.extra, **note})

    return baked


def _say_calibration(c: Calibration) -> None:
    if c.reason:
        say(
            f"Temperature kept at 1 (validation hold-out, {c.images} images, {c.source}): "
            f"{c.reason}"
        )
    else:
        say(
            f"Temperature {c.temperature:.3f}, fitted on the validation hold-out "
            f"({c.images} images, {c.source}): expected calibration error "
            f"{c.ece_before:.3f} -> {c.ece_after:.3f}"
        )


def _write_precision(
    job: _Job, report: ExportReport, tmp: Path, proto, fp32_path: Path, fp32, baked
) -> None:
    """The file of report.precision to tmp, checked: the fp32 graph (proto, written to
    fp32_path and checked as fp32) as it is, converted to fp16, or quantized to int8."""
    if report.precision == "fp32":
        tmp.write_bytes(fp32_path.read_bytes())
        check_file(tmp)
    elif report.precision == "fp16":
        half = to_fp16(proto)
        set_metadata(half, baked(job.info("fp16")))
        tmp.write_bytes(half.SerializeToString())
        report.fp16 = check_fp16(
            job.model, check_file(tmp), job.images, job.source, job.min_agreement
        )
    else:
        report.quant = write_int8(
            fp32_path,
            fp32,
            tmp,
            baked(job.info("int8")),
            job.root,
            job.calibration_images,
            job.min_agreement,
        )


def write_int8(
    fp32_path: Path,
    fp32,
    target: Path,
    int8_info,
    root: Path,
    calibration_images: int,
    min_agreement: float,
) -> QuantReport:
    """Quantize the checked fp32 graph at fp32_path (calibrated on training images of root),
    prove it cannot saturate, write it to target with int8_info as its metadata and check it
    against fp32 on the test split: the int8 step of export_onnx and requantize_onnx."""
    info = fp32.info
    calibration = sample_images(
        root, "train", info.classes, info.image_size, calibration_images, seed=1
    )
    if not len(calibration):
        raise FercliError(f"no readable training images in {root}/train to calibrate.")
    say(
        f"Quantizing to int8 (static QDQ, 7-bit weights, calibrated on {len(calibration)} "
        "training images)"
    )
    int8_path = fp32_path.with_name("int8.onnx")
    quantize_int8(fp32_path, int8_path, preprocess(calibration, info), info)
    quantized = _load_proto(int8_path)
    set_metadata(quantized, int8_info)
    report_saturation(quantized)
    target.write_bytes(quantized.SerializeToString())
    return check_int8(fp32, check_file(target), root, len(calibration), min_agreement)


def _load_proto(path: Path):
    import onnx

    return onnx.load(str(path))


def report_saturation(proto) -> None:
    """The saturation proof (fercli.export.saturation) on the graph about to be written."""
    products = check_saturation(proto)
    worst = max((p.pair_max for p in products), default=0)
    say(
        f"Saturation check: {len(products)} integer products, largest pair sum {worst} "
        f"<= {INT16_MAX}: the same integers on every CPU"
    )


def requantize_onnx(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike,
    calibration_images: int = CALIBRATION_IMAGES,
    min_agreement: float = MIN_AGREEMENT,
    fp32_output: str | os.PathLike | None = None,
) -> ExportReport:
    """Quantize a fercli .onnx file to int8 without its checkpoints: an fp32 file as it is, an
    int8 file (one quantized before 7-bit weights, say) from its own weights dequantized
    (`int8.dequantize`). Calibrated and checked as `export_onnx` does; `fp32_output` keeps
    the fp32 graph it started from."""
    import onnx

    source = Path(source)
    loaded = OnnxModel(source, "cpu")  # a fercli model: metadata, input and output checked
    info = loaded.info
    if info.precision not in ("fp32", "int8"):
        raise FercliError(
            f"{source} is {info.precision}: re-quantizing starts from an fp32 or int8 file."
        )
    root = Path(data_root)
    if not (root / "train").is_dir():
        raise FercliError(f"{root} has no train folder to calibrate on: pass --data ROOT.")
    output = Path(output) if output else Path("exports") / f"{source.stem}-requantized.onnx"
    if output.resolve() == source.resolve():
        raise FercliError(f"{output} is the source file: choose another -o (never in place).")
    proto = onnx.load(str(source))
    if info.precision == "int8":
        proto = dequantize(proto)
    fp32_info = replace(info, precision="fp32")
    set_metadata(proto, fp32_info)
    say(f"Re-quantizing {source} ({info.precision}) to int8")
    with tempfile.TemporaryDirectory(prefix="fercli-export-") as tmpdir:
        fp32_path = Path(tmpdir) / "fp32.onnx"
        onnx.save(proto, str(fp32_path))
        fp32 = check_file(fp32_path)
        if fp32_output:
            shutil.copyfile(fp32_path, fp32_output)
        extra = {**info.extra, "requantized_from": f"{source.name} ({info.precision})"}
        int8_info = replace(info, precision="int8", extra=extra)
        with atomic_path(output) as tmp:
            quant = write_int8(
                fp32_path, fp32, tmp, int8_info, root, calibration_images, min_agreement
            )
            size = tmp.stat().st_size
    say(f"Wrote {output} ({size / 1e6:.1f} MB, int8)")
    return ExportReport(output, "int8", _opset(proto), size, None, quant=quant)


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
