"""`fercli models`: registered architectures and the bundled models."""

from pathlib import Path

import click


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def models_command(pattern, as_json):
    """List model architectures matching PATTERN (wildcards allowed) and the bundled models."""
    import json

    from fercli.train.model_listing import model_listing

    listing = model_listing(pattern)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    from rich.console import Console

    console = Console()
    table = _table(
        "Architectures (fercli train --model)",
        ["model", "plugin", "MACs/image", "parameters", "description"],
        numbers=("MACs/image", "parameters"),
    )
    for row in listing["architectures"]:
        table.add_row(
            row["name"],
            row["plugin"],
            _millions(row["macs"]),
            _millions(row["parameters"]),
            row["description"],
        )
    console.print(table)
    if listing["costs_note"]:
        console.print(f"MACs and parameters: {listing['costs_note']}.", highlight=False)
    else:
        console.print(
            "MACs: multiply-accumulates of convolutions and linear layers for one "
            "48x48 image, 7 classes.",
            highlight=False,
        )
    _print_bundled(console, listing["bundled"])


def _table(title: str, headers: list[str], numbers: tuple[str, ...]):
    """A rich table with these headers, the columns of numbers right-aligned."""
    from rich.table import Table

    table = Table(*headers, title=title)
    for col in table.columns:
        if col.header in numbers:
            col.justify = "right"
    return table


def _print_bundled(console, bundled: list[dict]) -> None:
    if not bundled:
        console.print("Bundled models: none in this install (pass --model FILE.onnx).")
        return
    table = _table(
        "Bundled models (--model NAME)",
        ["name", "model", "precision", "MB", "test accuracy", "images/s"],
        numbers=("MB", "test accuracy", "images/s"),
    )
    measured = set()
    for row in bundled:
        accuracy = row["metrics"].get("test", {}).get("accuracy")
        speed = row["speed"] or {}
        if speed:
            measured.add(f"{speed['measured_on']} ({speed['command']})")
        table.add_row(
            row["name"] + (" (default)" if row["default"] else ""),
            row["model"],
            row["precision"],
            f"{row['size_mb']:.1f}",
            "-" if accuracy is None else f"{accuracy:.2%}",
            f"{speed['images_per_s']:,.0f}" if speed else "-",
        )
    console.print(table)
    console.print(
        "Test accuracy: FER-2013 test (PublicTest, 3,589 images), one pass. images/s: "
        "predict-dir end to end, files to CSV"
        + (f", measured on {'; '.join(sorted(measured))}" if measured else "")
        + f". Files and model cards (MODEL_CARD.md): {Path(bundled[0]['path']).parent.parent}.",
        highlight=False,
    )


def _millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} M"
