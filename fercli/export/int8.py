"""int8 quantization that gives the same integers on every CPU.

Static QDQ quantization: uint8 activations with ranges calibrated on training images, int8
per-channel weights, and the input quantized exactly (`input_on_pixel_grid`). The weights use
7 bits (|q| <= 64): onnxruntime's uint8 x int8 kernels on CPUs without VNNI (AVX2, AVX-512
without VNNI) add pairs of products in 16-bit integers with saturation (vpmaddubsw), so
255 * 127 * 2 = 64,770 overflows there while VNNI and AMX, which add in 32 bits, do not, and
one file gave different labels on different CPUs. 255 * 64 * 2 = 32,640 fits;
`fercli.export.saturation` proves that on the written file.
"""

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from fercli.export.convert import INPUT
from fercli.predict.onnx_model import ModelInfo


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    info: ModelInfo,
    reduce_range: bool = True,
) -> None:
    """Static QDQ quantization: 7-bit per-channel weights (`reduce_range`: see the module's
    docstring), uint8 activations with ranges calibrated (min/max) on preprocessed training
    images, and the input quantized exactly (`input_on_pixel_grid`). The last layer, which
    makes the logits, stays fp32 (in an ensemble, each member's): it is tiny, and quantizing
    it flips near-tied predictions. `reduce_range=False` (full int8 weights) is there to
    build the files the saturation check refuses."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                [{INPUT: calibration[i : i + 64]} for i in range(0, len(calibration), 64)]
            )

        def get_next(self):
            return next(self.batches, None)

    prepared = out_path.with_name("prepared.onnx")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared), load_external_data=False)
        keep, overrides = input_on_pixel_grid(model.graph, info.mean, info.std)
        onnx.save(model, str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,  # weights in [-64, 64]: no 16-bit overflow anywhere
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=fp32_tail(model.graph) + keep,
            extra_options={"TensorQuantOverrides": overrides},
        )


def input_on_pixel_grid(graph, mean: float, std: float) -> tuple[list[str], dict]:
    """Make the uint8 quantization of the network input exact, in place.

    The input is (p / 255 - mean) / std for grey levels p: 256 values a step s = 1 / (255 std)
    apart. With mean 0.5 they lie halfway between two points of any uint8 grid that holds 0.0,
    so calibrated quantization rounds each pixel half a level, up or down by the parity of p.
    That cost the default ensemble 0.44 points of agreement with fp32 (99.11% against 99.55%),
    and engines that round halves differently (OpenVINO) disagreed with onnxruntime on 1.1% of
    FER-2013 test. So the input is shifted by that fraction of a step before it is quantized
    (fp32 Add, kept out of quantization) and pinned to the grid (scale s, zero point
    round(255 mean): grey level p becomes the uint8 value p), and each first convolution's
    bias takes the shift back: conv(x) = W * (x + d) + b - d * sum(W).
    Only the zero padding at the border moves, by half a grey level.

    Returns the nodes to keep in fp32 and the quantization overrides; nothing where the input
    already lies on the grid or feeds anything but convolutions with constant weights."""
    from onnx import helper, numpy_helper

    level = 255 * mean
    d = (level - round(level)) / (255 * std)
    init = {t.name: t for t in graph.initializer}
    readers = [node for node in graph.node if INPUT in node.input]
    usable = all(
        node.op_type == "Conv" and list(node.input).index(INPUT) == 0 and node.input[1] in init
        for node in readers
    )
    if abs(d) < 1e-9 or not readers or not usable:
        return [], {}
    shifted = f"{INPUT}_on_pixel_grid"
    replaced = {node.input[2] for node in readers if len(node.input) > 2 and node.input[2]}
    biases = []
    for i, node in enumerate(readers):
        weight = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(init[node.input[2]]).astype(np.float64)
        else:
            bias = np.zeros(weight.shape[0])
        name = f"{node.name or 'conv'}_{i}_bias_on_pixel_grid"
        bias = bias - d * weight.reshape(weight.shape[0], -1).sum(axis=1)
        biases.append(numpy_helper.from_array(bias.astype(np.float32), name))
        del node.input[2:]
        node.input[0] = shifted
        node.input.append(name)
    used = {name for node in graph.node for name in node.input} - {b.name for b in biases}
    for tensor in [t for t in graph.initializer if t.name in replaced - used]:
        graph.initializer.remove(
            tensor
        )  # an old bias no other node reads (the new may share its name)
    graph.initializer.extend(biases)
    graph.initializer.append(numpy_helper.from_array(np.array(d, np.float32), f"{shifted}_shift"))
    add = helper.make_node("Add", [INPUT, f"{shifted}_shift"], [shifted], name=shifted)
    graph.node.insert(0, add)
    scale = np.array(1 / (255 * std), np.float32)
    zero_point = np.array(round(level), np.uint8)
    return [add.name], {shifted: [{"scale": scale, "zero_point": zero_point}]}


def fp32_tail(graph) -> list[str]:
    """The nodes int8 quantization leaves alone: the one that makes the graph's output and,
    in an ensemble, every node that feeds a Softmax (each member's last layer) or follows
    one (the averaging)."""
    outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}
    tail = {node.name for node in graph.node if outputs & set(node.output)}
    softmaxes = [node for node in graph.node if node.op_type == "Softmax"]
    tail |= {producer[i].name for node in softmaxes for i in node.input if i in producer}
    downstream = {out for node in softmaxes for out in node.output}
    for node in graph.node:  # graph nodes are in topological order
        if node.op_type == "Softmax" or downstream & set(node.input):
            tail.add(node.name)
            downstream |= set(node.output)
    return sorted(tail)


def dequantize(model):
    """An fp32 graph from a QDQ int8 one, in place: each quantized initializer becomes its
    float value, each activation's QuantizeLinear -> DequantizeLinear pair goes, and the
    input's pixel-grid shift is taken back out of the first convolutions' biases. The result
    computes with the int8 file's own weights: a starting point to quantize again where the
    checkpoints are gone (an int8 file quantized before 7-bit weights)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    quantize = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    rename, floats, kept = {}, [], []
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            floats.append(numpy_helper.from_array(_dequantized(node, init), node.output[0]))
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in quantize:
            source = quantize[node.input[0]].input[0]
            if _clamps_at_zero(quantize[node.input[0]], init):
                # the quantizer folded a Relu into this pair (uint8, zero point 0): put it back
                kept.append(helper.make_node("Relu", [source], [node.output[0]], node.name))
            else:
                rename[node.output[0]] = source
            continue
        kept.append(node)
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(floats)
    _off_pixel_grid(graph)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    del graph.value_info[:]  # shapes and types of tensors that are gone or changed
    return model


def _clamps_at_zero(node, init) -> bool:
    """Whether a QuantizeLinear maps every negative value to 0: uint8 with zero point 0."""
    from onnx import numpy_helper

    if len(node.input) < 3 or node.input[2] not in init:
        return False  # no zero point: 0, but of no declared type
    zero = numpy_helper.to_array(init[node.input[2]])
    return zero.dtype == np.uint8 and not zero.any()


def _dequantized(node, init) -> np.ndarray:
    """(q - zero point) * scale, per channel along the node's axis where the scale is a vector."""
    from onnx import numpy_helper

    q = numpy_helper.to_array(init[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
    zero = (
        numpy_helper.to_array(init[node.input[2]]).astype(np.float64)
        if len(node.input) > 2 and node.input[2]
        else np.zeros_like(scale)
    )
    if scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((q - zero) * scale).astype(np.float32)


def _off_pixel_grid(graph) -> None:
    """Undo `input_on_pixel_grid`: the convolutions read the input again, with their biases
    plus the shift times the sum of their weights."""
    from onnx import numpy_helper

    shifted = f"{INPUT}_on_pixel_grid"
    add = next((n for n in graph.node if n.op_type == "Add" and shifted in n.output), None)
    if add is None:
        return
    init = {t.name: t for t in graph.initializer}
    d = float(numpy_helper.to_array(init[add.input[1]]))
    for node in graph.node:
        if shifted in node.input and node.op_type == "Conv":
            weight = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
            bias = numpy_helper.to_array(init[node.input[2]]).astype(np.float64)
            bias = bias + d * weight.reshape(weight.shape[0], -1).sum(axis=1)
            init[node.input[2]].CopyFrom(
                numpy_helper.from_array(bias.astype(np.float32), node.input[2])
            )
            node.input[0] = INPUT
    graph.node.remove(add)
