"""The models bundled with fercli, chosen by name: `--model NAME` or `--model FILE.onnx`.

Each lives in fercli/bundled_models/NAME/ with its model card (MODEL_CARD.md, model_card.json:
how it was trained, its test figures, and the images/s `benchmarks/bench_predict.py` measured)
and its training runs' logs. A name wins over a file of that name in the working folder:
pass ./NAME for the file."""

from pathlib import Path

from fercli.errors import FercliError

BUNDLED = {
    "fast": "bundled_models/fast/fercli-fast.onnx",
    "accurate": "bundled_models/accurate/fercli-accurate.onnx",
}
DEFAULT = "fast"  # beats the `fer` package on accuracy and speed; `accurate` is one flag away


def model_help() -> str:
    """--model's help, the same for every command that predicts."""
    names = ", ".join(f"{n}{' (default)' if n == DEFAULT else ''}" for n in BUNDLED)
    return f"A bundled model ({names}; `fercli models`) or a .onnx file from `fercli export-onnx`."


def bundled_path(name: str = DEFAULT) -> Path:
    """A bundled model's file; a clear error when this install lacks it."""
    if name not in BUNDLED:
        raise FercliError(f"no bundled model {name!r}: choose {' or '.join(BUNDLED)}.")
    path = Path(__file__).parent.parent / BUNDLED[name]  # importlib.resources' path, on a disk
    if not path.is_file():  # perhaps elsewhere (a zip, a custom loader)
        from importlib import resources

        path = Path(str(resources.files("fercli") / BUNDLED[name]))
    if not path.is_file():
        raise FercliError(
            f"the bundled model {name!r} is not in this install of fercli: pass --model "
            "FILE.onnx, or train one with `fercli train` and export it with `fercli export-onnx`."
        )
    return path


def model_path(model: str | Path | None) -> Path:
    """What --model names: a bundled model (None: the default) or a file, unchecked."""
    if model is None:
        return bundled_path()
    if str(model) in BUNDLED:
        return bundled_path(str(model))
    return Path(model)


def card(name: str) -> dict:
    """A bundled model's model_card.json ({} where there is none)."""
    import json

    path = bundled_path(name).parent / "model_card.json"
    return json.loads(path.read_text()) if path.is_file() else {}
