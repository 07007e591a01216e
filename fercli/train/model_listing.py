"""What `fercli models` reports: registered architectures and the bundled models."""

from fercli import registry

NO_TORCH = "PyTorch is not installed (pip install 'fercli[train]'): costs not counted"


def model_listing(pattern: str = "*") -> dict:
    """The architectures matching `pattern` (fnmatch wildcards: *, ?, [seq]) with their
    costs, and the bundled models. A pattern that matches none is a FercliError naming the
    choices, rather than an empty listing."""
    entries = registry.entries("model")
    matching = registry.names("model", pattern)
    if not matching:
        from fercli.errors import FercliError

        raise FercliError(
            f"no model matches {pattern!r}: choose from {', '.join(entries) or 'none'} "
            "(wildcards: *, ?, [abc])."
        )
    architectures = [
        {"name": n, "plugin": entries[n].plugin, "description": entries[n].description}
        for n in matching
    ]
    costs_note = add_costs(architectures)
    return {
        "architectures": architectures,
        "costs_note": costs_note,
        "bundled": bundled_summaries(),
    }


def add_costs(architectures: list[dict], image_size: int = 48) -> str | None:
    """Each architecture's multiply-accumulates per image and parameters (7 classes), built
    and run once on a blank image; None where that fails. Without PyTorch nothing can be
    built: the figures are None and the returned note says why."""
    try:
        from fercli.train.model_cost import count_macs, count_parameters
        from fercli.train.models import create_model
    except ImportError:
        for row in architectures:
            row.update(macs=None, parameters=None)
        return NO_TORCH
    for row in architectures:
        try:
            model = create_model(row["name"], num_classes=7, image_size=image_size)
            row.update(macs=count_macs(model, image_size), parameters=count_parameters(model))
        except Exception:  # a plugin's model may want another input: its costs stay unknown
            row.update(macs=None, parameters=None)
    return None


def bundled_summaries() -> list[dict]:
    """Each bundled model this install has: its file, metadata, test accuracy and the speed
    its model card records (`benchmarks/bench_predict.py --record`)."""
    from fercli.errors import FercliError
    from fercli.predict import bundled
    from fercli.predict.onnx_model import OnnxModel

    rows = []
    for name in bundled.BUNDLED:
        try:
            path = bundled.bundled_path(name)
        except FercliError:
            continue
        info = OnnxModel(path, provider="cpu", metadata_only=True).info
        card = bundled.card(name)
        rows.append(
            {
                "name": name,
                "default": name == bundled.DEFAULT,
                "path": str(path),
                "size_mb": round(path.stat().st_size / 1e6, 2),
                "model": info.model,
                "precision": info.precision,
                "classes": list(info.classes),
                "metrics": info.metrics,
                "speed": card.get("speed"),
                "card": str(path.parent / "MODEL_CARD.md"),
            }
        )
    return rows
