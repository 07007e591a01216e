"""What an exported file says about itself: its name, the network it holds (one checkpoint or
an ensemble of several) and the fercli metadata written into the ONNX file."""

import json
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fercli import __version__
from fercli.errors import FercliError
from fercli.predict.onnx_model import ModelInfo


def default_output(checkpoints, precision: str = "fp32") -> Path:
    """exports/<run folder>.onnx for runs/<run folder>/best.pt; -last, -ens<k> (an ensemble of
    k checkpoints, named after the first), -int8, -fp16 suffixes."""
    checkpoints = _as_list(checkpoints)
    path = Path(checkpoints[0]).resolve()
    if path.stem in ("best", "last"):
        name = path.parent.name + ("-last" if path.stem == "last" else "")
    else:
        name = path.stem
    if len(checkpoints) > 1:
        name += f"-ens{len(checkpoints)}"
    return Path("exports") / f"{name}{'' if precision == 'fp32' else '-' + precision}.onnx"


def _as_list(checkpoints) -> list[Path]:
    if isinstance(checkpoints, (str, os.PathLike)):
        return [Path(checkpoints)]
    return [Path(c) for c in checkpoints]


# What every member of an ensemble must share: they read the same images the same way.
SHARED_KEYS = ("classes", "image_size", "input_size", "normalization")


def load_network(checkpoints: list[Path]):
    """The checkpoints and the network to export: the one model, or the Ensemble of all."""
    from fercli.train.checkpoint import build_model, load_checkpoint

    ckpts = [load_checkpoint(path) for path in checkpoints]
    for path, ckpt in zip(checkpoints[1:], ckpts[1:]):
        for key in SHARED_KEYS:
            if ckpt.get(key) != ckpts[0].get(key):
                raise FercliError(
                    f"{path} differs from {checkpoints[0]} in {key}: the members of an "
                    "ensemble must be trained on the same classes and image format."
                )
    models = [build_model(ckpt) for ckpt in ckpts]
    if len(models) == 1:
        return ckpts, models[0]
    from fercli.train.models import Ensemble

    return ckpts, Ensemble(models).eval()


def model_info(ckpts: list[dict], checkpoints: list[Path], precision: str, opset: int):
    """The metadata of the exported file; an ensemble lists its members."""
    info = _single_info(ckpts[0], checkpoints[0], precision, opset)
    if len(ckpts) == 1:
        return info
    members = [
        {
            "model": ckpt["model"],
            "checkpoint": path.name,
            "run": path.resolve().parent.name,
            "epoch": _plain(ckpt.get("epoch")),
            "seed": (ckpt.get("config") or {}).get("seed"),
            "metrics": _plain(ckpt.get("metrics") or {}),
        }
        for ckpt, path in zip(ckpts, checkpoints)
    ]
    names = sorted({m["model"] for m in members})
    return replace(
        info,
        model=f"ensemble of {len(members)} x {', '.join(names)}",
        metrics={"members": [m["metrics"] for m in members]},
        extra={
            **{k: v for k, v in info.extra.items() if k not in ("checkpoint", "run", "epoch")},
            "members": members,
        },
    )


def _single_info(ckpt: dict, checkpoint: Path, precision: str, opset: int) -> ModelInfo:
    norm = ckpt.get("normalization") or {"mean": 0.5, "std": 0.5}
    data = ckpt.get("data") or {}
    return ModelInfo(
        classes=tuple(ckpt["classes"]),
        image_size=int(ckpt.get("image_size", 48)),
        input_size=int(ckpt.get("input_size") or ckpt.get("image_size", 48)),
        mean=float(np.asarray(norm["mean"]).reshape(-1)[0]),
        std=float(np.asarray(norm["std"]).reshape(-1)[0]),
        model=ckpt["model"],
        precision=precision,
        metrics=_plain(ckpt.get("metrics") or {}),
        fercli_version=__version__,
        extra={
            "checkpoint": checkpoint.name,
            "run": checkpoint.resolve().parent.name,
            "epoch": _plain(ckpt.get("epoch")),
            "trained_with_fercli": ckpt.get("fercli_version", ""),
            "data_file_list_hash": data.get("file_list_hash", ""),
            "opset": opset,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _plain(value):
    """Metrics as JSON-safe built-in types (tensors and numpy values become numbers)."""
    return json.loads(
        json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    )


def set_metadata(proto, info: ModelInfo) -> None:
    """Write fercli's metadata into the file, and drop the exporter's build traces (so no
    path of the machine that exported it ships inside it)."""
    strip_build_traces(proto)
    del proto.metadata_props[:]
    for key, value in info.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def strip_build_traces(proto) -> int:
    """Remove what torch's exporter writes on every node (`metadata_props`: stack traces with
    the exporting machine's file paths, name scopes, FX node text; and `doc_string`s), in the
    graph, its subgraphs and its functions. These never change what the graph computes.
    Returns how many nodes had any."""
    stripped = 0

    def nodes(graph):
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from nodes(attr.g)
                for sub in attr.graphs:
                    yield from nodes(sub)

    every = [*nodes(proto.graph), *(n for f in proto.functions for n in f.node)]
    for node in every:
        if len(node.metadata_props) or node.doc_string:
            stripped += 1
        del node.metadata_props[:]
        node.doc_string = ""
    proto.graph.doc_string = ""
    return stripped
