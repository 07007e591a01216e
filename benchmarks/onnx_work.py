"""The work of an ONNX model per image, and where onnxruntime spends its time: the figures
`bench_predict.py` prints beside its rates (multiply-accumulates, GMAC/s per convolution)."""

from pathlib import Path


def layer_work(onnx_path: Path) -> tuple[dict, int]:
    """The graph's convolutions and linear layers at batch 1, from ONNX shape inference:
    {(in_channels, out_channels, out_height, out_width): multiply-accumulates per image of
    each such convolution}, and the total per image (the work that bounds every engine)."""
    import math

    import onnx

    model = onnx.load(str(onnx_path))
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch.ClearField("dim_param")
    batch.dim_value = 1
    graph = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    weights = {t.name: list(t.dims) for t in graph.initializer}
    # in an int8 (QDQ) graph a weight reaches its layer through a DequantizeLinear
    weights |= {
        n.output[0]: weights[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    convs, total = {}, 0
    for node in graph.node:
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "Conv" and w:  # each output value: in_channels/groups x kh x kw
            _, cout, h, width = shapes[node.output[0]]
            convs[(shapes[node.input[0]][1], cout, h, width)] = cout * h * width * math.prod(w[1:])
            total += convs[(shapes[node.input[0]][1], cout, h, width)]
        elif node.op_type in ("Gemm", "MatMul") and w:
            total += math.prod(w)
    return convs, total


def conv_profile(int8_path: Path, convs: dict, x, batch_size: int, folder: Path) -> None:
    """(a) int8 once more under onnxruntime's profiler: the share of time per operator type,
    and the multiply-accumulate rate of each convolution shape (the fastest is a practical
    ceiling for the whole model on this CPU)."""
    import json
    from collections import Counter

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / "ort-profile")
    session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for i in range(0, len(x), batch_size):
        session.run(None, {name: x[i : i + batch_size]})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op, conv_us, conv_macs = Counter(), Counter(), Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op = e["args"]["op_name"]
        by_op[op] += e["dur"]
        if "Conv" in op:  # onnxruntime's layouts: NCHW, or NHWC after its int8 rewrite
            (n, *xs), (_, *out) = (
                next(iter(t[0].values()))
                for t in (e["args"]["input_type_shape"], e["args"]["output_type_shape"])
            )
            nhwc = xs[0] == xs[1] and out[0] == out[1]
            cin, (cout, h, w) = (xs[2], (out[2], *out[:2])) if nhwc else (xs[0], out)
            key = (cin, cout, h, w)
            conv_us[key] += e["dur"]
            conv_macs[key] += n * convs.get(key, 0)
    total = sum(by_op.values())
    shares = ", ".join(f"{op} {us / total:.1%}" for op, us in by_op.most_common(5))
    print(f"  profile of (a) int8, share of operator time: {shares}")
    for key, us in sorted(conv_us.items(), key=lambda kv: -conv_macs[kv[0]] / kv[1]):
        cin, cout, h, w = key
        print(
            f"    conv {cin}->{cout} channels at {h}x{w}: "
            f"{conv_macs[key] / us / 1e3:.0f} GMAC/s, {us / total:.1%} of the time"
        )
