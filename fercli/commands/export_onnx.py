"""`fercli export-onnx CHECKPOINT...`: one verified, self-describing .onnx file; or
`fercli export-onnx MODEL.onnx --quantize int8`: an existing .onnx file quantized again."""

import click

from fercli.defaults import CALIBRATION_IMAGES, OPSET


@click.command("export-onnx")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Output file [default: exports/<run folder>.onnx, -ens<k>/-int8/-fp16 added].",
)
@click.option(
    "--opset", default=OPSET, show_default=True, type=click.IntRange(9), help="ONNX opset."
)
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Static int8 (QDQ) quantization calibrated on training images, 7-bit weights so that "
    "every CPU gives the same answers; must agree with fp32 on >= 99% of the test split.",
)
@click.option("--fp16", is_flag=True, help="float16 weights and compute (for CUDA); fp32 I/O.")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False),
    help="Dataset root for the checks and calibration [default: the checkpoint's].",
)
@click.option(
    "--calibration-images",
    default=CALIBRATION_IMAGES,
    show_default=True,
    type=click.IntRange(16),
    help="Training images that calibrate int8 ranges.",
)
def export_onnx_command(checkpoints, output, opset, quantize, fp16, data_dir, calibration_images):
    """Export CHECKPOINT (best.pt, last.pt or a run folder) to ONNX, with a dynamic batch axis
    and the class names, preprocessing and metrics embedded as metadata. Several checkpoints
    make one ensemble: a single graph that averages their class probabilities.

    The file is written only after onnx.checker passes and onnxruntime matches PyTorch on a
    batch of training images (max |logit difference| <= 1e-4, same top-1).

    MODEL.onnx --quantize int8 --data ROOT quantizes an fp32 or int8 fercli model again
    (an int8 one from its own weights), e.g. an int8 file made before fercli used 7-bit
    weights, which gives other answers on CPUs without VNNI; no PyTorch needed."""
    from pathlib import Path

    from fercli.errors import FercliError
    from fercli.export import export_onnx, requantize_onnx

    if any(str(c).endswith(".onnx") for c in checkpoints):
        if len(checkpoints) > 1 or quantize != "int8" or fp16 or not data_dir:
            raise FercliError(
                "an .onnx source can only be quantized again: pass one MODEL.onnx with "
                "--quantize int8 --data ROOT."
            )
        report = requantize_onnx(
            checkpoints[0], output, data_root=data_dir, calibration_images=calibration_images
        )
        click.echo(f"{report.output}")
        return
    paths = [Path(c) / "best.pt" if Path(c).is_dir() else Path(c) for c in checkpoints]
    report = export_onnx(
        paths,
        output,
        opset=opset,
        quantize=quantize,
        fp16=fp16,
        data_root=data_dir,
        calibration_images=calibration_images,
    )
    click.echo(f"{report.output}")
