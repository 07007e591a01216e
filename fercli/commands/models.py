"""`fercli models`: registered architectures and the bundled default model."""

import click


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def models_command(pattern, as_json):
    """List model architectures matching PATTERN (wildcards allowed) and the default model."""
    import json

    from fercli.model_listing import model_listing

    listing = model_listing(pattern)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(
        "model",
        "plugin",
        "MACs/image",
        "parameters",
        "description",
        title="Architectures (fercli train --model)",
    )
    for col in table.columns[2:4]:
        col.justify = "right"
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
    default = listing["default_model"]
    if default is None:
        console.print("Default model: none bundled with this install.")
        return
    metrics = default["metrics"].get("test", {})
    figures = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    console.print(
        f"Default model: {default['path']} ({default['size_mb']:.1f} MB, {default['model']}, "
        f"{default['precision']}){'; test ' + figures if figures else ''}\n"
        f"Model card: {default['card']}",
        highlight=False,
    )


def _millions(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} M"
