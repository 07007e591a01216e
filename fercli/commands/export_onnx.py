"""`fercli export-onnx CHECKPOINT...`: one verified, self-describing .onnx file."""

import click


@click.command("export-onnx")
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Output file [default: exports/<run folder>.onnx, -ens<k>/-int8/-fp16 added].",
)
@click.option("--opset", default=18, show_default=True, type=click.IntRange(9), help="ONNX opset.")
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Static int8 (QDQ) quantization calibrated on training images; must agree with fp32 "
    "on >= 99% of the test split.",
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
    default=1000,
    show_default=True,
    type=click.IntRange(16),
    help="Training images that calibrate int8 ranges.",
)
def export_onnx_command(checkpoints, output, opset, quantize, fp16, data_dir, calibration_images):
    """Export CHECKPOINT (best.pt, last.pt or a run folder) to ONNX, with a dynamic batch axis
    and the class names, preprocessing and metrics embedded as metadata. Several checkpoints
    make one ensemble: a single graph that averages their class probabilities.

    The file is written only after onnx.checker passes and onnxruntime matches PyTorch on a
    batch of training images (max |logit difference| <= 1e-4, same top-1)."""
    from pathlib import Path

    from fercli.onnx_export import export_onnx

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
