"""What `fercli models` reports: registered architectures and the bundled default model."""

from pathlib import Path

from fercli import registry

NO_TORCH = "PyTorch is not installed (pip install 'fercli[train]'): costs not counted"


def model_listing(pattern: str = "*") -> dict:
    entries = registry.entries("model")
    architectures = [
        {"name": n, "plugin": entries[n].plugin, "description": entries[n].description}
        for n in registry.names("model", pattern)
    ]
    costs_note = add_costs(architectures)
    return {
        "architectures": architectures,
        "costs_note": costs_note,
        "default_model": default_model_summary(),
    }


def add_costs(architectures: list[dict], image_size: int = 48) -> str | None:
    """Each architecture's multiply-accumulates per image and parameters (7 classes), built
    and run once on a blank image; None where that fails. Without PyTorch nothing can be
    built: the figures are None and the returned note says why."""
    try:
        from fercli.model_cost import count_macs, count_parameters
    except ImportError:
        for row in architectures:
            row.update(macs=None, parameters=None)
        return NO_TORCH
    for row in architectures:
        try:
            model = registry.create("model", row["name"], num_classes=7)
            row.update(macs=count_macs(model, image_size), parameters=count_parameters(model))
        except Exception:  # a plugin's model may want another input: its costs stay unknown
            row.update(macs=None, parameters=None)
    return None


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
