"""The plugin manager: built-in plugins, entry points (group "fercli") and a plugins folder.

Built-in plugins are registered exactly like external ones. Loading is lazy and idempotent:
`load_plugins()` runs once, whatever calls it first.
"""

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pluggy

from fercli import __version__, hookspecs

DEFAULT_PLUGINS = (
    "fercli.builtin.filters",
    "fercli.builtin.augmenters",
    "fercli.builtin.models",
    "fercli.builtin.detectors",
)


@dataclass(frozen=True)
class PluginInfo:
    name: str
    origin: str  # "built-in", "entry point" or "plugins dir"
    version: str
    source: str  # module name, distribution name or file path


pm = pluggy.PluginManager("fercli")
pm.add_hookspecs(hookspecs)
plugin_info: dict[str, PluginInfo] = {}
_loaded_dirs: set[Path] = set()
_loaded = False


def warn(message: str) -> None:
    from fercli import progress

    if progress.to_log():  # fercli's Python API: the `fercli` logger, not stderr
        progress.log.warning(message)
        return
    print(f"Warning: {message}", file=sys.stderr)


def _register(module, info: PluginInfo) -> None:
    if pm.is_registered(module) or pm.has_plugin(info.name):
        return
    try:
        pm.register(module, name=info.name)
    except pluggy.PluginValidationError as exc:  # a broken plugin must not break fercli
        warn(f"plugin {info.name!r} ({info.source}) is skipped: {_validation_problem(exc)}")
        return
    plugin_info[info.name] = info


def _validation_problem(exc: pluggy.PluginValidationError) -> str:
    """pluggy's several-line complaint about a hook implementation, in one line."""
    first, *rest = str(exc).splitlines() or [""]
    hook = re.search(r"hook '(\w+)'", first)
    where = f"its {hook.group(1)} hook" if hook else "a hook"
    return f"{where} does not match fercli's hookspec: " + "; ".join(rest or [first])


def load_plugins(plugins_dir: str | os.PathLike | None = None) -> None:
    """Register built-in, entry-point and plugins-dir plugins (each only once)."""
    global _loaded
    if not _loaded:
        _loaded = True
        if os.environ.get("FERCLI_TRACE_PLUGINS"):
            pm.add_hookcall_monitoring(_trace_before, _trace_after)
        for name in DEFAULT_PLUGINS:
            _register(
                importlib.import_module(name), PluginInfo(name, "built-in", __version__, name)
            )
        if not os.environ.get("FERCLI_NO_ENTRY_POINTS"):
            _load_entry_points()
    for folder in (plugins_dir, os.environ.get("FERCLI_PLUGINS_DIR")):
        if folder:
            load_plugins_dir(folder)


def _load_entry_points() -> None:
    for ep in importlib.metadata.entry_points(group="fercli"):
        dist = getattr(ep, "dist", None)
        version = dist.version if dist else "?"
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break fercli
            warn(f"plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {exc!r}")
            continue
        _register(
            module, PluginInfo(ep.name, "entry point", version, dist.name if dist else ep.value)
        )


def load_plugins_dir(folder: str | os.PathLike) -> None:
    """Import every `*.py` file in `folder` as a plugin."""
    folder = Path(folder).resolve()
    if folder in _loaded_dirs:
        return
    if not folder.is_dir():
        from fercli.errors import PluginError

        raise PluginError(f"plugins folder {folder} does not exist: pass an existing folder.")
    _loaded_dirs.add(folder)
    for path in sorted(folder.glob("*.py")):
        name = f"fercli_plugin_{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        except Exception as exc:
            warn(f"plugin file {path} failed to load and is skipped: {exc!r}")
            continue
        version = str(getattr(module, "__version__", "-"))
        _register(module, PluginInfo(path.stem, "plugins dir", version, str(path)))


def _trace_before(hook_name, hook_impls, kwargs):
    names = ", ".join(impl.plugin_name for impl in hook_impls)
    print(f"[fercli trace] {hook_name} -> {names}", file=sys.stderr)


def _trace_after(outcome, hook_name, hook_impls, kwargs):
    print(f"[fercli trace] {hook_name} done", file=sys.stderr)
