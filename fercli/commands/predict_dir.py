"""`fercli predict-dir DIR`: predict every image in a folder with onnxruntime (no torch)."""

import click

from fercli import defaults
from fercli.commands.face_options import abstain_option, face_filter_options
from fercli.commands.ray_options import ray_options
from fercli.faces.detect import DEFAULT_DETECTOR
from fercli.predict.bundled import model_help


@click.command("predict-dir")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--model", metavar="NAME|FILE", help=model_help())
@click.option(
    "--provider",
    type=click.Choice(defaults.PROVIDERS),
    default=defaults.PROVIDER,
    show_default=True,
    help="onnxruntime execution provider; auto uses CUDA when it is usable, else OpenVINO "
    "when its plugin is installed (fercli[openvino]), else the CPU provider.",
)
@click.option(
    "--batch-size", default=defaults.BATCH_SIZE, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    help="Worker processes that decode (and on the CPU also predict) chunks of images; 0 does "
    "everything in the main process [default: one per CPU core].",
)
@click.option(
    "-o",
    "--output",
    default="predictions.csv",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Output file: .csv, or .jsonl for JSON Lines.",
)
@click.option("--recursive/--no-recursive", default=True, show_default=True)
@click.option(
    "--topk",
    default=defaults.TOPK,
    show_default=True,
    type=click.IntRange(0),
    help="Also write the K most likely classes with their probabilities.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Append to an existing output batch by batch, skipping images already in it.",
)
@click.option(
    "--eval",
    "evaluate",
    is_flag=True,
    help="DIR is DIR/<class>/<image>: print accuracy, F1 and the confusion matrix.",
)
@click.option(
    "--tta",
    is_flag=True,
    help="Test-time augmentation: average each image's probabilities with its mirror image's "
    "(+0.3 points for the bundled model on the FER-2013 test split; twice the model time).",
)
@click.option("--strict", is_flag=True, help="Exit with status 2 if any image cannot be read.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    help="onnxruntime threads, shared out among the workers where they predict (one each "
    "at least) [default: all cores].",
)
@click.option(
    "--faces",
    type=click.Choice(defaults.FACE_MODES),
    default=defaults.FACES,
    help="detect: find the faces in each picture, one row per face (face, box, face_score, "
    "face_size), status=no_face where none; none: each image is one face (centre square); "
    "auto: detect in pictures whose shorter side exceeds 96 pixels, so FER-2013 images are "
    "read as with none [default: auto].",
)
@click.option(
    "--detector",
    default=DEFAULT_DETECTOR,
    show_default=True,
    help="Face detector for --faces, built in or from a plugin (see `fercli plugins`).",
)
@face_filter_options
@abstain_option
@click.option(
    "--annotate",
    type=click.Path(file_okay=False),
    help="Write a copy of each picture searched for faces to this folder, boxes and labels drawn.",
)
@click.option(
    "--crops",
    type=click.Path(file_okay=False),
    help="Write each aligned 48x48 face found as DIR/<label>/<image>_<face>.png.",
)
@ray_options(
    "Where images are decoded (their faces found, --annotate and --crops written) and "
    "predicted: here, or on a Ray cluster with Ray Data (fercli[ray]); the output is the "
    "same, byte for byte, every option alike. On a cluster DIR (and --annotate, --crops) "
    "must be at the same path on every node, and a plugin --detector installed there.",
    "Ray actors, one onnxruntime session each [default: the cluster's CPUs / threads].",
)
@click.option(
    "--threads-per-actor",
    default=defaults.THREADS_PER_ACTOR,
    show_default=True,
    type=click.IntRange(1),
    help="onnxruntime threads (and Ray CPUs) of each actor.",
)
def predict_dir_command(directory, model, output, strict, **options):
    """Predict the emotion of every image under DIRECTORY and write one row per image: path
    (relative to DIRECTORY), status, error, label, confidence and every class probability.

    Unreadable files get status=error with the reason, and the run goes on."""
    from fercli.errors import FercliError
    from fercli.predict.folder import PredictDirOptions, predict_dir

    result = predict_dir(directory, output, model, PredictDirOptions(**options))
    _print_summary(result)
    if strict and result.errors:
        raise FercliError(
            f"{len(result.errors)} of {result.total} images could not be read (status=error rows "
            f"in {result.output}); failing because of --strict."
        )


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from fercli.progress import say

    console = Console()
    ok = result.total - len(result.errors) - result.no_face
    unit = "images" if result.faces == "none" else "faces"
    table = Table("emotion", unit, "share", title=f"Predictions in {result.output}")
    for label, n in result.counts.items():
        table.add_row(label, str(n), f"{n / ok:.1%}" if ok else "-")
    table.add_row("[bold]all[/bold]", str(ok), "")
    if result.errors:
        table.add_row("[red]unreadable[/red]", str(len(result.errors)), "")
    console.print(table)
    for path, reason in result.errors[:5]:
        say(f"  unreadable: {path!r}: {reason}")
    if len(result.errors) > 5:
        say(f"  ... and {len(result.errors) - 5} more (status=error rows in {result.output})")
    if result.no_face:
        say(f"No face found in {result.no_face} picture(s) (status=no_face rows).")
    if result.other_files:
        say(f"Skipped {result.other_files} non-image file(s).")
    if result.eval:
        _print_eval(console, result.eval)
    say(
        f"Wrote {result.total} rows to {result.output} ({result.new} new at "
        f"{result.images_per_s:.0f} images/s, provider {result.provider}"
        + (f", engine {result.engine}" if result.engine != "local" else "")
        + (", flip TTA" if result.tta else "")
        + (f", {result.resumed} from before" if result.resumed else "")
        + ")"
    )


def _print_eval(console, report: dict) -> None:
    from rich.table import Table

    console.print(
        f"Against the folder names ({report['count']} images"
        + (f", {report['excluded']} not evaluated" if report["excluded"] else "")
        + f"): accuracy {report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}, "
        f"weighted F1 {report['weighted_f1']:.4f}",
        highlight=False,
    )
    matrix = Table("true \\ predicted", *report["classes"], title="Confusion matrix")
    for name, row in zip(report["classes"], report["confusion_matrix"]):
        matrix.add_row(name, *(str(v) for v in row))
    console.print(matrix)
