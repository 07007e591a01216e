"""TOML configuration: `--config FILE`, else `fercli.toml` in the current folder.

Top-level keys apply to every command that has an option of that name; a table named after
a command (`[train]`, `[clean]`, ...) applies to that command only and wins over top-level
keys. Command-line flags win over both. Keys are option names with underscores, e.g.
data_dir, batch_size, num_epochs, learning_rate, image_size.
"""

import sys
from pathlib import Path

from fercli.errors import FercliError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG = "fercli.toml"


def read_config(path: str | Path | None) -> tuple[dict, Path | None]:
    """The parsed config and its path; ({}, None) when there is none."""
    if path is None:
        path = Path(DEFAULT_CONFIG)
        if not path.is_file():
            return {}, None
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f), path
    except FileNotFoundError:
        raise FercliError(f"config file {path} not found: check the --config path.") from None
    except tomllib.TOMLDecodeError as exc:
        raise FercliError(f"config file {path} is not valid TOML: {exc}.") from None


def default_map(config: dict, commands: dict) -> dict:
    """click's default_map: for each command, the config keys that name one of its parameters."""
    result = {}
    for name, command in commands.items():
        params = {p.name for p in command.params}
        section = config.get(name, {}) if isinstance(config.get(name), dict) else {}
        values = {k: v for k, v in config.items() if k in params and not isinstance(v, dict)}
        values.update({k: v for k, v in section.items() if k in params})
        unknown = set(section) - params
        if unknown:
            raise FercliError(
                f"unknown key(s) {', '.join(sorted(unknown))} in the [{name}] config table: "
                f"`fercli {name} --help` lists the options."
            )
        if values:
            result[name] = values
    return result
