"""`fercli plugins`: every plugin, where it came from, and what it registers."""

import click


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def plugins_command(as_json):
    """List plugins with their origin, version and what they register."""
    import json

    from fercli.plugins_report import plugins_report

    report = plugins_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("plugin", "origin", "version", "registers")
    for p in report:
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p["registers"].items())
        table.add_row(p["name"], p["origin"], p["version"], regs or "-")
    Console().print(table)
