"""What `fercli models` reports: registered architectures and the bundled default model."""

from pathlib import Path

from fercli import registry


def model_listing(pattern: str = "*") -> dict:
    entries = registry.entries("model")
    architectures = [
        {"name": n, "plugin": entries[n].plugin, "description": entries[n].description}
        for n in registry.names("model", pattern)
    ]
    return {"architectures": architectures, "default_model": default_model_summary()}


def default_model_summary() -> dict | None:
    """Path, size and metadata of the bundled ONNX model, or None when there is none."""
    from fercli.errors import FercliError
    from fercli.onnx_model import OnnxModel
    from fercli.predict import default_model_path

    try:
        path = default_model_path()
    except FercliError:
        return None
    info = OnnxModel(path, provider="cpu").info
    return {
        "path": str(path),
        "size_mb": round(path.stat().st_size / 1e6, 2),
        "model": info.model,
        "precision": info.precision,
        "classes": list(info.classes),
        "metrics": info.metrics,
        "card": str(Path(path).parent / "MODEL_CARD.md"),
    }
