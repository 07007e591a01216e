"""One module per command; each defines a click command that calls library code.

`MODULES` names each built-in command's module and object without importing it: `fercli
predict-dir` imports predict-dir's module only (fercli.cli). `ALL`, every command in
listing order, imports them all on first use."""

import importlib

# command name -> (module under fercli.commands, the click command's name in it), in the
# order `fercli --help` registers them
MODULES = {
    "plugins": ("plugins_cmd", "plugins_command"),
    "synth": ("synth", "synth_command"),
    "import-csv": ("import_csv", "import_csv_command"),
    "clean": ("clean", "clean_command"),
    "train": ("train", "train_command"),
    "evaluate": ("evaluate", "evaluate_command"),
    "export-onnx": ("export_onnx", "export_onnx_command"),
    "predict-dir": ("predict_dir", "predict_dir_command"),
    "predict-video": ("predict_video", "predict_video_command"),
    "models": ("models", "models_command"),
}
_OBJECTS = {attr: (module, attr) for module, attr in MODULES.values()}


def command(name: str):
    """The built-in command `name` (a key of MODULES), its module imported now."""
    module, attr = MODULES[name]
    return getattr(importlib.import_module(f"fercli.commands.{module}"), attr)


def __getattr__(name: str):
    if name == "ALL":
        value = [command(n) for n in MODULES]
    elif name in _OBJECTS:
        module, attr = _OBJECTS[name]
        value = getattr(importlib.import_module(f"fercli.commands.{module}"), attr)
    else:
        raise AttributeError(f"module 'fercli.commands' has no attribute {name!r}")
    globals()[name] = value
    return value
