"""Proof, read off an int8 ONNX file, that its integer arithmetic cannot saturate on any CPU.

onnxruntime runs DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear as one integer kernel.
On x86 CPUs without VNNI (AVX2, and AVX-512 without VNNI) its uint8 x int8 kernels multiply
with vpmaddubsw, which adds two neighbouring products a1*w1 + a2*w2 into a signed 16-bit
integer and saturates at 32,767; VNNI, AMX and ARM's dot-product instructions add in 32 bits
and never do. So a file gives the same integers on every CPU when, for every integer product,
2 * max|a| * max|w| <= 32,767, with a over the activation's integer type (uint8: 0..255) and
w over the weight's stored values: 7-bit weights (|w| <= 64) pass, full int8 weights (127)
do not. Other integer type pairs are not proven safe and are refused.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.errors import FercliError

INT16_MAX = 32767
PRODUCTS = {"Conv": (0, 1), "ConvTranspose": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1)}


@dataclass
class IntegerProduct:
    """One node that onnxruntime runs in integers: its activation and weight bounds."""

    node: str
    op: str
    activation_type: str
    weight_type: str
    activation_max: int  # largest |value| the activation's integer type holds
    weight_max: int  # largest |stored weight|

    @property
    def pair_max(self) -> int:
        """The largest two-product sum vpmaddubsw can meet."""
        return 2 * self.activation_max * self.weight_max

    @property
    def safe(self) -> bool:
        kinds = (self.activation_type, self.weight_type)
        return kinds == ("uint8", "int8") and self.pair_max <= INT16_MAX


def integer_products(model) -> list[IntegerProduct]:
    """Every Conv, MatMul and Gemm whose activation and weight both come from integer tensors
    through DequantizeLinear (what onnxruntime fuses into an integer kernel)."""
    from onnx import numpy_helper

    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        if node.op_type not in PRODUCTS:
            continue
        a_index, w_index = PRODUCTS[node.op_type]
        a_dq, w_dq = (producer.get(node.input[i]) for i in (a_index, w_index))
        if not (_is_dq(a_dq) and _is_dq(w_dq) and w_dq.input[0] in init):
            continue  # a float product: no integer kernel
        weights = numpy_helper.to_array(init[w_dq.input[0]])
        a_type = _dq_type(a_dq, init)
        found.append(
            IntegerProduct(
                node=node.name or node.output[0],
                op=node.op_type,
                activation_type=a_type,
                weight_type=weights.dtype.name,
                activation_max=int(max(abs(np.iinfo(a_type).min), np.iinfo(a_type).max)),
                weight_max=int(np.abs(weights.astype(np.int64)).max()) if weights.size else 0,
            )
        )
    return found


def check_saturation(model_or_path) -> list[IntegerProduct]:
    """The integer products of an int8 model, all proven not to saturate; a FercliError in one
    line names the first that is not (and what to do)."""
    import onnx

    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path), load_external_data=False)
    products = integer_products(model)
    bad = [p for p in products if not p.safe]
    if bad:
        p = bad[0]
        raise FercliError(
            f"{len(bad)} of {len(products)} integer products can overflow 16 bits on CPUs "
            f"without VNNI (first: {p.op} {p.node}, {p.activation_type} x {p.weight_type}, "
            f"2 x {p.activation_max} x {p.weight_max} = {p.pair_max} > {INT16_MAX}), so this "
            "int8 file gives different answers on different CPUs: re-quantize it with "
            "`fercli export-onnx MODEL.onnx --quantize int8 --data ROOT` (7-bit weights)."
        )
    return products


def _is_dq(node) -> bool:
    return node is not None and node.op_type == "DequantizeLinear"


def _dq_type(node, init) -> str:
    """The integer type a DequantizeLinear reads: its zero point's, uint8 when it has none
    (the ONNX default)."""
    from onnx import helper

    if len(node.input) > 2 and node.input[2] in init:
        return np.dtype(helper.tensor_dtype_to_np_dtype(init[node.input[2]].data_type)).name
    return "uint8"
