"""The options of every command that can run on Ray (`--engine ray`): one definition, so
that clean and predict-dir take the same words in the same way."""

import click


def ray_options(engine_help: str, actors_help: str, address_note: str = ""):
    """--engine, --ray-address and --actors, with the command's own help for what runs where."""

    def decorate(command):
        for option in reversed(
            [
                click.option(
                    "--engine",
                    type=click.Choice(["local", "ray"]),
                    default="local",
                    show_default=True,
                    help=engine_help,
                ),
                click.option(
                    "--ray-address",
                    help="Ray cluster to use (HOST:PORT, ray://HOST:PORT or auto) [default: "
                    f"start a local one].{address_note}",
                ),
                click.option("--actors", type=click.IntRange(1), help=actors_help),
            ]
        ):
            command = option(command)
        return command

    return decorate
