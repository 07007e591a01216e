"""`fercli import-csv fer2013.csv DEST`: the challenge CSV to the folder layout."""

import click

SHOWN_PROBLEMS = 20


@click.command("import-csv")
@click.argument("csv_file", type=click.Path(dir_okay=False))
@click.argument("dest", type=click.Path(file_okay=False))
def import_csv_command(csv_file, dest):
    """Convert FER-2013's fer2013.csv (emotion,pixels,Usage) into DEST/<split>/<class>/*.png.

    Training goes to train, PublicTest to val, PrivateTest to test. Malformed rows are
    reported with their line numbers and skipped. Existing files are never overwritten:
    running the import again only adds what is missing.
    """
    from fercli.data.csv_import import import_csv

    report = import_csv(csv_file, dest)
    problems = [f"line {n}: {reason}" for n, reason in report.bad_rows]
    problems += [f"{path} exists with other pixels: left as it is" for path in report.conflicts]
    for line in problems[:SHOWN_PROBLEMS]:
        click.echo(f"Skipped {line}", err=True)
    if len(problems) > SHOWN_PROBLEMS:
        click.echo(f"... and {len(problems) - SHOWN_PROBLEMS} more skipped.", err=True)
    splits = ", ".join(f"{n} {split}" for split, n in report.counts.items())
    click.echo(
        f"Imported {splits} images into {dest}: {report.written} written, "
        f"{report.unchanged} already there; {len(report.bad_rows)} malformed rows and "
        f"{len(report.conflicts)} conflicting files skipped."
    )
