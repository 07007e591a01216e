"""`fercli clean`: find corrupt, blank and duplicate images (and leaks between splits),
report them, and quarantine them safely (or write a cleaned copy). Never imports torch."""

from pathlib import Path

import click

from fercli.commands.ray_options import ray_options
from fercli.defaults import BLANK_STD, HASH, HASH_SIZE, NEAR_THRESHOLD_64

HASHES = ("phash", "dhash", "ahash", "whash")  # fercli.data.hashing.HASHES, without importing it


@click.command("clean")
@click.argument("data_dir", metavar="ROOT", required=False, type=click.Path(path_type=Path))
@click.option(
    "--apply", is_flag=True, help="Move flagged files into the quarantine (default: dry run)."
)
@click.option(
    "--undo",
    "undo_run",
    metavar="RUN_ID",
    help="Put back every file of an --apply run: its id, `latest`, or its manifest.json path.",
)
@click.option(
    "--quarantine",
    type=click.Path(file_okay=False, path_type=Path),
    help="Quarantine folder [default: ROOT/.fercli-quarantine]; each run in <run-id>/.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a cleaned copy to this new folder (hard links where possible); ROOT untouched.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every flagged file (filter, reason, group, kept copy): CSV if FILE ends in "
    ".csv, else JSON.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--contact-sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw the flagged images with their reasons into this PNG.",
)
@click.option(
    "--filters",
    metavar="A,B",
    help="Filters to run, comma-separated [default: all; `fercli plugins` lists them].",
)
@click.option(
    "--hash",
    type=click.Choice(HASHES),
    default=HASH,
    show_default=True,
    help="Perceptual hash (imagehash algorithm).",
)
@click.option(
    "--hash-size",
    type=click.IntRange(2, 32),
    default=HASH_SIZE,
    show_default=True,
    help="Hash side: hash-size**2 bits.",
)
@click.option(
    "--threshold",
    type=click.IntRange(0),
    help="Largest Hamming distance between near duplicates [default: "
    f"{NEAR_THRESHOLD_64} for 64-bit hashes, scaled to other sizes].",
)
@click.option(
    "--blank-std",
    type=click.FloatRange(0),
    default=BLANK_STD,
    show_default=True,
    help="Images whose pixel standard deviation (0-255) is below this are blank.",
)
@click.option(
    "--drop-conflicts",
    is_flag=True,
    help="Flag every copy of a duplicate group whose labels disagree (default: keep one).",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Check each near-duplicate pair on its pixels (aligned, band-pass correlation) and "
    "keep only pairs that are the same photo; --no-verify: the hash alone decides.",
)
@click.option(
    "--verify-threshold",
    type=click.FloatRange(-1, 1),
    help="Lowest pixel score (a correlation, -1 to 1) of a verified pair [default: "
    "DEFAULT_VERIFY_THRESHOLD of fercli/clean/near_verify.py; the summary's settings show the "
    "value used; docs/near-duplicates.md].",
)
@click.option("--workers", type=click.IntRange(1), help="Decoding processes [default: all cores].")
@ray_options(
    "Where images are decoded and hashed: here, or on a Ray cluster with Ray Data "
    "(fercli[ray]); the duplicate search runs here either way, and the report is the same.",
    "Ray actors decoding, one CPU each [default: the cluster's CPUs].",
    " ROOT must be at the same path on every node.",
)
def clean_command(**options):
    """Find corrupt, blank and duplicate images in ROOT (all splits), leaks between splits
    and label conflicts; report them, and with --apply move them to a quarantine that
    --undo puts back. ROOT is laid out as ROOT/<split>/<class>/<image>."""
    from fercli.errors import FercliError

    as_json = options.pop("as_json")
    if options["undo_run"]:
        _undo(options, as_json)
        return
    if options["data_dir"] is None:
        raise FercliError("missing ROOT: `fercli clean ROOT` (or set data_dir in fercli.toml).")
    from fercli.clean.pipeline import OUTPUT_OPTIONS, CleanSettings, clean_dataset

    settings = CleanSettings.from_options(options)
    outputs = {name: options[name] for name in OUTPUT_OPTIONS}
    summary = clean_dataset(options["data_dir"], settings, **outputs)
    _print_summary(summary, as_json)


def _undo(options: dict, as_json: bool) -> None:
    """--undo RUN_ID: put back the files of an --apply run."""
    from fercli.clean.quarantine import find_run, undo
    from fercli.errors import FercliError

    if any(options[name] for name in ("apply", "output", "report", "contact_sheet")):
        raise FercliError("--undo takes no --apply, --output, --report or --contact-sheet.")
    result = undo(find_run(options["undo_run"], options["data_dir"], options["quarantine"]))
    _print_undo(result, as_json)
    if result["problems"]:
        raise FercliError(
            f"{len(result['problems'])} file(s) could not be put back (listed above); "
            f"the quarantine run folder is kept."
        )


def _print_summary(summary: dict, as_json: bool) -> None:
    import json

    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console

    from fercli.clean.report import render_summary

    render_summary(summary, Console())


def _print_undo(result: dict, as_json: bool) -> None:
    import json

    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"Run {result['run_id']}: put back {result['restored']} file(s) into {result['root']}"
        + (
            f" ({result['already_in_place']} were still in place)"
            if result["already_in_place"]
            else ""
        )
        + "."
    )
    for problem in result["problems"]:
        click.echo(f"  {problem}", err=True)
