"""Named filters, augmenters, models and face detectors, gathered from every plugin's register hook.

One way to build a thing by name (`create`), a listing with wildcards (`names`), and a
clear error naming the available choices.
"""

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from fercli.errors import PluginError
from fercli.plugins import load_plugins, pm

HOOKS = {
    "filter": "register_filters",
    "augmenter": "register_augmenters",
    "model": "register_models",
    "detector": "register_detectors",
}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable
    description: str
    plugin: str


def entries(kind: str) -> dict[str, Entry]:
    """Every registered entry of one kind, by name, in registration order."""
    load_plugins()
    hook = HOOKS[kind]
    found: dict[str, Entry] = {}
    plugins = pm.get_plugins()
    for plugin in plugins:
        plugin_name = pm.get_name(plugin)

        def register(name, factory, description="", _plugin=plugin_name):
            if name in found:
                raise PluginError(
                    f"{kind} {name!r} is registered by both plugin {found[name].plugin!r} and "
                    f"plugin {_plugin!r}: uninstall or rename one of them."
                )
            found[name] = Entry(kind, name, factory, description.strip(), _plugin)

        others = [p for p in plugins if p is not plugin]
        pm.subset_hook_caller(hook, remove_plugins=others)(register=register)
    return found


def names(kind: str, pattern: str = "*") -> list[str]:
    """Registered names of one kind matching a wildcard, e.g. `names("model", "vgg*")`."""
    return [n for n in entries(kind) if fnmatch.fnmatchcase(n, pattern)]


def get(kind: str, name: str) -> Entry:
    found = entries(kind)
    if name not in found:
        choices = ", ".join(found) or "none"
        raise PluginError(f"unknown {kind} {name!r}: choose one of {choices}.")
    return found[name]


def create(kind: str, name: str, **options):
    """Build the named filter, augmenter, model or face detector: its factory called with
    `options`. (Models are built through fercli.train.models.create_model, which passes the
    input size to the factories that take it.)"""
    return get(kind, name).factory(**options)


def takes(factory: Callable, parameter: str) -> bool:
    """Whether `factory` accepts a keyword argument `parameter` (named or through **kwargs)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read: assume the old interface
        return False
    return any(p.name == parameter or p.kind is p.VAR_KEYWORD for p in params)
