"""The `fercli` command group. Commands live in fercli.commands, one module each; they parse
options and call library functions."""

import os
import sys
import traceback

import click

from fercli import __version__
from fercli.config import default_map, read_config
from fercli.errors import FercliError
from fercli.progress import settings

# What `pip install 'fercli[train]'` adds: training, checkpoints and export need them.
TRAINING_MODULES = ("torch", "torchvision", "onnxscript")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fercli")
@click.option("-v", "--verbose", is_flag=True, help="More detail; full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or status lines.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML file of option defaults (default: ./fercli.toml if present).",
)
@click.option(
    "--plugins-dir",
    type=click.Path(file_okay=False),
    envvar="FERCLI_PLUGINS_DIR",
    help="Folder of drop-in *.py plugins (or FERCLI_PLUGINS_DIR).",
)
@click.pass_context
def cli(ctx, verbose, quiet, config_path, plugins_dir):
    """Facial-expression recognition: clean FER-2013-style data, train, export, predict."""
    settings["verbose"], settings["quiet"] = verbose, quiet
    if plugins_dir:
        from fercli.plugins import load_plugins_dir

        load_plugins_dir(plugins_dir)
    config, path = read_config(config_path)
    if config:  # its tables are checked against every command, as without lazy commands
        _add_builtin_commands()
    ctx.default_map = default_map(config, cli.commands)
    ctx.obj = {"config_path": path}


def _add_commands(args: list[str]) -> None:
    """Register the commands `args` may run: where they name a built-in command (and ask for
    no help), that one alone, its module only imported (a start-up that `fercli predict-dir`
    on a small folder would otherwise pay for); else every built-in command and the
    plugins' commands. click resolves the subcommand before the group callback runs, so
    --plugins-dir is looked for here too."""
    from fercli import commands

    name, helping = _command_name(args), bool({"--help", "-h"} & set(args))
    if name in commands.MODULES and not helping:
        if name not in cli.commands:
            cli.add_command(commands.command(name))
        return
    _add_builtin_commands()
    if name is None and not helping:  # `fercli`, `fercli --version`
        return
    # Commands from plugins: loaded only when the name asked for is not built in.
    from fercli.plugins import load_plugins, pm

    load_plugins(_plugins_dir_arg(args))
    pm.hook.register_commands(cli=cli)


def _add_builtin_commands() -> None:
    from fercli.commands import ALL

    for command in ALL:
        cli.add_command(command)


def _command_name(args: list[str]) -> str | None:
    """The subcommand's name in `args`: the first argument after the group's own options."""
    i, takes_value = 0, _group_options()
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if takes_value.get(args[i].split("=", 1)[0]) and "=" not in args[i] else 1
    return args[i] if i < len(args) and not args[i].startswith("-") else None


def _group_options() -> dict[str, bool]:
    """The group's own options (--version aside), each with whether it takes a value."""
    return {
        opt: not param.is_flag
        for param in cli.params
        if isinstance(param, click.Option) and param.name != "version"
        for opt in param.opts + param.secondary_opts
    }


def _plugins_dir_arg(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--plugins-dir" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--plugins-dir="):
            return arg.split("=", 1)[1]
    return None


def _hoist_group_options(args: list[str]) -> list[str]:
    """`fercli train --config X` means `fercli --config X train`: the group's own options given
    after the subcommand move before it, unless the subcommand has an option of that name."""
    takes_value = _group_options()
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name = args[i].split("=", 1)[0]
        i += 2 if takes_value.get(name) and "=" not in args[i] else 1
    if i >= len(args) or args[i] not in cli.commands:
        return args
    command = cli.commands[args[i]]
    own = {o for p in command.params for o in p.opts + getattr(p, "secondary_opts", [])}
    front, rest, j = args[:i], [args[i]], i + 1
    while j < len(args):
        arg = args[j]
        if arg == "--":
            rest += args[j:]
            break
        name = arg.split("=", 1)[0]
        width = 2 if takes_value.get(name) and "=" not in arg else 1
        if name in takes_value and name not in own:
            front += args[j : j + width]
        else:
            rest.append(arg)
            width = 1
        j += width
    return front + rest


def main(argv=None) -> None:
    """Entry point: user errors become one line and exit 2; tracebacks only with -v."""
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    verbose = "-v" in args or "--verbose" in args
    try:
        _add_commands(args)
        args = _hoist_group_options(args)
        cli.main(args=args, prog_name="fercli", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
    except FercliError as exc:
        _user_error(exc, verbose)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        _unexpected_error(exc, verbose)


def _user_error(exc: FercliError, verbose: bool) -> None:
    """One line and the error's exit status (2 unless it says otherwise); -v: the traceback."""
    if verbose:
        traceback.print_exc()
    # under torchrun every process meets the same bad input: rank 0 says it once
    if os.environ.get("RANK", "0") == "0" or verbose:
        click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _unexpected_error(exc: Exception, verbose: bool) -> None:
    """A missing training extra says what to install (exit 2); anything else is a bug: one
    line, exit 1 (-v: the traceback)."""
    if verbose:
        traceback.print_exc()
    if isinstance(exc, ModuleNotFoundError) and exc.name in TRAINING_MODULES:
        click.echo(
            f"Error: this command needs PyTorch ({exc.name} is not installed): pip install "
            "'fercli[train]'. predict-dir, clean and evaluating an .onnx model work without "
            "it.",
            err=True,
        )
        sys.exit(2)
    click.echo(f"Error: {type(exc).__name__}: {exc} (run with -v for the traceback)", err=True)
    sys.exit(1)
