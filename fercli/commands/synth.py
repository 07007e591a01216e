"""`fercli synth DEST`: draw the synthetic demo dataset."""

import click


@click.command("synth")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--per-class",
    default=100,
    show_default=True,
    type=click.IntRange(min=2),
    help="Training faces per class (test gets a quarter as many).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Random seed: the same seed gives byte-identical files.",
)
def synth_command(dest, per_class, seed):
    """Draw a synthetic 7-class dataset of 48x48 cartoon faces in DEST.

    DEST gets train/ and test/ folders in the FER-2013 layout, with a few planted
    duplicates, blank images and one corrupt file for `fercli clean` to find; DEST/planted.json
    lists them. DEST must be new or empty.
    """
    from collections import Counter

    from fercli.data.synth import MANIFEST, make_synthetic

    summary = make_synthetic(dest, per_class=per_class, seed=seed)
    counts = ", ".join(f"{sum(c.values())} {split}" for split, c in summary["counts"].items())
    if not summary["created"]:
        click.echo(
            f"{dest} already holds a synthetic dataset made with these settings: left as it is."
        )
        return
    kinds = Counter(p["kind"] for p in summary["planted"])
    click.echo(f"Wrote {counts} images of 7 classes to {dest}.")
    if kinds:
        listing = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        click.echo(f"Planted for `fercli clean` (see {dest}/{MANIFEST}): {listing}.")
