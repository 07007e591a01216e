"""`fercli evaluate [MODEL] ROOT`: accuracy, F1 and confusion matrix of a model on a split."""

import json

import click

from fercli.defaults import DEVICE, EVALUATE_SPLIT, SPLIT_FILE_FACES, SPLIT_FILE_PART
from fercli.predict.providers import CHOICES


@click.command("evaluate")
@click.argument("model", metavar="[MODEL]", required=False)
@click.argument("data_dir", metavar="ROOT", required=False, type=click.Path(file_okay=False))
@click.option("--split", default=EVALUATE_SPLIT, show_default=True, help="Split of ROOT to score.")
@click.option("--tta", is_flag=True, help="Test-time augmentation: average with the mirror image.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    help="Folder for metrics.json, confusion_matrix.png and reliability.png.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default=DEVICE, show_default=True
)
@click.option(
    "--provider",
    type=click.Choice(CHOICES),
    default=None,
    help="onnxruntime execution provider for an .onnx model (default: --device). `auto` "
    "picks, for a bundled model, only the providers its card verified; -v says why not others.",
)
@click.option(
    "--leak-free",
    is_flag=True,
    help="Also score only the images with no near duplicate in ROOT/train (the hashes and "
    "threshold of `fercli clean`).",
)
@click.option(
    "--split-file",
    type=click.Path(dir_okay=False, exists=True),
    help="A person-level split file (data/splits/wild-faces.json): score the photos of "
    "ROOT/<class>/ in --part through predict-dir's pipeline (--faces) instead of ROOT/<split>.",
)
@click.option(
    "--part", default=SPLIT_FILE_PART, show_default=True, help="With --split-file: the part."
)
@click.option(
    "--faces",
    type=click.Choice(["none", "auto", "detect"]),
    default=SPLIT_FILE_FACES,
    show_default=True,
    help="With --split-file: predict-dir's --faces (auto: detect faces in photos over 96 px).",
)
@click.option(
    "--coverage-plot",
    type=click.Path(dir_okay=False),
    help="Draw the accuracy of the faces answered against their share, as predict-dir "
    "--abstain P trades them, to this PNG (the table is in the text and JSON too).",
)
@click.pass_context
def evaluate_command(ctx, **options):
    """Score MODEL (a bundled model's name, fast or accurate; a checkpoint .pt, a run folder,
    or an .onnx file; default: the default bundled model) on ROOT/<split>.

    Prints accuracy, macro and weighted F1, the expected calibration error (ECE, 15 bins),
    per-class precision/recall/F1 and the confusion matrix (rows: true class, columns:
    predicted). ROOT defaults to data_dir from the config file.
    """
    from pathlib import Path

    from fercli.evaluate.evaluation import EvaluateOptions, run_evaluation, write_outputs

    as_json, out = options.pop("as_json"), options.pop("out")
    options["model"], options["data_dir"] = _model_and_root(
        ctx, options["model"], options["data_dir"]
    )
    given = frozenset(name for name in options if _on_command_line(ctx, name))
    chosen = EvaluateOptions(**options, given=given)
    result = run_evaluation(chosen)
    if chosen.split_file:
        _print_part(result, chosen, as_json)
        return
    written = write_outputs(result, out) if out else []
    written += [Path(chosen.coverage_plot)] if chosen.coverage_plot else []
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_report(result)
    for path in written:
        click.echo(f"Wrote {path}", err=True)


def _on_command_line(ctx, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _model_and_root(ctx, model, data_dir):
    """MODEL and ROOT from the arguments: one argument is ROOT when it is a data folder (not
    a model file or a run folder), so `fercli evaluate ROOT` uses the bundled model."""
    from pathlib import Path

    from fercli.errors import FercliError

    given_root = _on_command_line(ctx, "data_dir")
    if model and not given_root and Path(model).is_dir() and not (Path(model) / "best.pt").exists():
        model, data_dir = None, model
    if data_dir is None and model and not Path(model).exists():
        from fercli.predict.bundled import BUNDLED

        if model not in BUNDLED:  # the one argument names neither a model nor a folder
            raise FercliError(
                f"{model} does not exist: pass a data folder ROOT (`fercli evaluate ROOT` "
                "scores the default bundled model) or `fercli evaluate MODEL ROOT`."
            )
    if data_dir is None:
        raise FercliError(
            "missing ROOT: `fercli evaluate [MODEL] ROOT` (or data_dir in fercli.toml)."
        )
    return model, data_dir


def _print_part(result: dict, chosen, as_json: bool) -> None:
    """--split-file: accuracy, macro recall and per-class recall on one part of the split."""
    if chosen.coverage_plot:
        click.echo(f"Wrote {chosen.coverage_plot}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{result['model']} on {result['root']}, part {chosen.part} of {chosen.split_file} "
        f"({result['count']} photos, --faces {chosen.faces}): accuracy "
        f"{result['accuracy']:.4f}, macro recall {result['macro_recall']:.4f}; "
        f"{result['no_face']} without a face found and {result['errors']} unreadable, counted "
        "as wrong"
    )
    for cls, row in result["per_class"].items():
        click.echo(f"  {cls:<10} recall {row['recall']:.4f} ({row['correct']}/{row['support']})")
    click.echo(coverage_line(result["coverage"]))


def coverage_line(found: dict) -> str:
    """--abstain P: the share answered and its accuracy, for the table's thresholds."""
    cells = [
        f"P={row['abstain']:g}: {row['answered']:.0%}"
        + (f" at {row['accuracy']:.1%}" if row["accuracy"] is not None else "")
        for row in found["table"]
    ]
    return "With --abstain P (answered, their accuracy): " + ", ".join(cells)


def _print_report(result: dict) -> None:
    from rich.console import Console

    from fercli.commands.tables import confusion_table, per_class_table
    from fercli.progress import settings

    console = Console()
    console.print(
        f"{result['model']} on {result['root']}/{result['split']} "
        f"({result['count']} images{', TTA' if result['tta'] else ''}): "
        f"accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f}, "
        f"weighted F1 {result['weighted_f1']:.4f}",
        highlight=False,
    )
    fallback = result.get("provider_fallback")
    console.print(
        f"Ran on: {result['provider']}"
        + (f" ({fallback})" if fallback and settings["verbose"] else ""),
        highlight=False,
    )
    console.print(
        f"Calibration: ECE {result['ece']:.4f} ({result['reliability']['bins']} bins), "
        f"temperature {result['temperature']:g}",
        highlight=False,
    )
    leak_free = result.get("leak_free")
    if leak_free:
        console.print(
            f"Leak-free: the {leak_free['count']} images with no near duplicate in "
            f"{leak_free['reference_split']} ({leak_free['left_out']} left out; "
            f"{leak_free['hash']} within {leak_free['threshold']} bits): accuracy "
            f"{leak_free['accuracy']:.4f}, macro F1 {leak_free['macro_f1']:.4f}, "
            f"weighted F1 {leak_free['weighted_f1']:.4f}, ECE {leak_free['ece']:.4f}",
            highlight=False,
        )
    console.print(per_class_table(result, "Per class"))
    console.print(confusion_table(result))
    console.print(coverage_line(result["coverage"]), highlight=False)
