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
from fercli.export.int8 import CALIBRATION_IMAGES, dequantize, quantize_int8
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
        fp32 = check_file(fp32_path)
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
        calibration = calibrate(fp32, ckpt, root)
        temperature = calibration.temperature if calibration else 1.0
        note = (
            {"temperature_note": f"kept T = 1: {calibration.reason}"}
            if calibration and calibration.reason
            else {}
        )

        def baked(meta):
            """meta with the temperature, and why it is 1 where it was kept."""
            return replace(meta, temperature=temperature, extra={**meta.extra, **note})

        if calibration:
            c = calibration
            if c.reason:
                say(
                    f"Temperature kept at 1 (validation hold-out, {c.images} images, "
                    f"{c.source}): {c.reason}"
                )
            else:
                say(
                    f"Temperature {c.temperature:.3f}, fitted on the validation hold-out "
                    f"({c.images} images, {c.source}): expected calibration error "
                    f"{c.ece_before:.3f} -> {c.ece_after:.3f}"
                )
            set_metadata(proto, baked(info))
            fp32_path.write_bytes(proto.SerializeToString())  # only its metadata changed
            fp32.info = baked(fp32.info)
        report = ExportReport(output, precision, opset, fp32_path.stat().st_size, parity)
        report.calibration = calibration

        with atomic_path(output) as tmp:
            if precision == "fp32":
                tmp.write_bytes(fp32_path.read_bytes())
                check_file(tmp)
            elif precision == "fp16":
                half = to_fp16(proto)
                half_info = model_info(ckpts, checkpoints, "fp16", opset)
                set_metadata(half, baked(half_info))
                tmp.write_bytes(half.SerializeToString())
                report.fp16 = check_fp16(model, check_file(tmp), images, source, min_agreement)
            else:
                int8_info = model_info(ckpts, checkpoints, "int8", opset)
                report.quant = write_int8(
                    fp32_path,
                    fp32,
                    tmp,
                    baked(int8_info),
                    root,
                    calibration_images,
                    min_agreement,
                )
            report.size = tmp.stat().st_size
    say(f"Wrote {output} ({report.size / 1e6:.1f} MB, {precision})")
    return report


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
