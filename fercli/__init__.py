"""fercli: facial-expression recognition from the command line, and from Python.

`fercli.Predictor`, `fercli.Prediction`, `fercli.predict_dir`, `fercli.clean_dataset` and
`fercli.FercliError` come from fercli.api, loaded on first use: `import fercli` alone
loads neither onnxruntime nor numpy (docs/python-api.md)."""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

# FER-2013's seven emotions, in the order every fercli model and report uses.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

__all__ = [
    "FER_CLASSES",
    "__version__",
    "Predictor",
    "Prediction",
    "predict_dir",
    "clean_dataset",
    "FercliError",
]
_API = frozenset(__all__[2:])  # fercli.api's, loaded on first use

if TYPE_CHECKING:
    from fercli.api import FercliError, Prediction, Predictor, clean_dataset, predict_dir


def __getattr__(name: str):
    if name in _API:
        from fercli import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fercli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
