"""PyTorch to ONNX, and fp32 to fp16."""

import contextlib
import importlib.util
import io
import warnings

from fercli.defaults import OPSET
from fercli.errors import FercliError
from fercli.util import first_line

DEFAULT_OPSET = OPSET  # the lowest opset the torch.export-based exporter writes natively
INPUT, OUTPUT = "input", "logits"


def torch_to_onnx(model, input_size: int, opset: int):
    """The network as an onnx ModelProto with a dynamic batch axis, weights inside."""
    import onnx
    import torch

    if opset >= DEFAULT_OPSET and importlib.util.find_spec("onnxscript") is None:
        raise FercliError(
            "ONNX export needs onnxscript: pip install 'fercli[train]' (or pass --opset 17 "
            "for PyTorch's older exporter)."
        )
    # A batch of 2: exporters specialise a batch of 1 into the graph.
    x = torch.zeros(2, 1, input_size, input_size)
    quiet = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            if opset >= DEFAULT_OPSET:
                program = torch.onnx.export(
                    model,
                    (x,),
                    dynamo=True,
                    verbose=False,
                    opset_version=opset,
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                )
                proto = program.model_proto
            else:  # the torch.export exporter cannot write opsets below 18
                buffer = io.BytesIO()
                torch.onnx.export(
                    model,
                    (x,),
                    buffer,
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT],
                    output_names=[OUTPUT],
                    dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                )
                proto = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:
        raise FercliError(
            f"PyTorch could not export this model to ONNX opset {opset} "
            f"({type(exc).__name__}: {first_line(str(exc))}): "
            f"try another --opset (default {DEFAULT_OPSET})."
        ) from None
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise FercliError(
            f"the exporter wrote opset {written} instead of {opset}: try another --opset."
        )
    return proto


def to_fp16(proto):
    """float16 weights and compute, float32 input and output (onnxruntime's converter)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel as Graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
    graph = Graph(half)
    graph.topological_sort()  # the converter appends its input casts at the end
    return graph.model
