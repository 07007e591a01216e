"""Model-only images/s of registered architectures in fp32 and int8, measured in one run:
what a network's shape costs on this CPU beside its multiply-accumulates.

Each architecture is built with random weights (speed does not depend on them), exported to
ONNX and quantized the way `fercli export-onnx --quantize int8` does (static QDQ, 7-bit
per-channel weights; calibrated here on random inputs, since only speed is measured). All
files are timed interleaved over `--repeats` rounds on one batch (`--batch-size`), medians
compared as ratios to the first architecture.

    .venv/bin/python benchmarks/bench_architectures.py resnet-narrow resnet-s2
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def export(name: str, folder: Path) -> dict[str, Path]:
    """fp32 and int8 .onnx files of the architecture with random weights."""
    import torch

    from fercli import FER_CLASSES, registry
    from fercli.export.convert import INPUT, OUTPUT
    from fercli.export.int8 import quantize_int8
    from fercli.predict.onnx_model import ModelInfo

    torch.manual_seed(0)
    model = registry.create("model", name, num_classes=len(FER_CLASSES)).eval()
    fp32 = folder / f"{name}-fp32.onnx"
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 48, 48),
        str(fp32),
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_axes={INPUT: {0: "batch"}},
        dynamo=False,
    )
    info = ModelInfo(tuple(FER_CLASSES), image_size=48, input_size=48, mean=0.5, std=0.5)
    calibration = np.random.default_rng(0).uniform(-1, 1, (256, 1, 48, 48)).astype(np.float32)
    int8 = folder / f"{name}-int8.onnx"
    quantize_int8(fp32, int8, calibration, info)
    return {"fp32": fp32, "int8": int8}


def images_per_s(session, x: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    session.run(None, {name: x})
    return len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="registered architectures (`fercli models`)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads [all]")
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU

    import onnxruntime as ort

    from fercli import registry
    from fercli.train.model_cost import count_macs, count_parameters

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    x = np.random.default_rng(1).uniform(-1, 1, (args.batch_size, 1, 48, 48)).astype(np.float32)
    sessions, work = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-arch-") as tmp:
        for name in args.models:
            network = registry.create("model", name, num_classes=7)
            work[name] = (count_macs(network, 48), count_parameters(network))
            for precision, path in export(name, Path(tmp)).items():
                session = ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
                images_per_s(session, x)  # warm-up
                sessions[(name, precision)] = session
        rates = {key: [] for key in sessions}
        for _ in range(args.repeats):
            for key, session in sessions.items():
                rates[key].append(images_per_s(session, x))
    m = {key: statistics.median(v) for key, v in rates.items()}
    first = args.models[0]
    print(f"model-only images/s, batch {args.batch_size}, medians of {args.repeats} rounds:")
    for name in args.models:
        macs, params = work[name]
        print(
            f"  {name}: {macs / 1e6:.1f} M MACs, {params / 1e6:.2f} M parameters; fp32 "
            f"{m[(name, 'fp32')]:.0f}, int8 {m[(name, 'int8')]:.0f} (int8/fp32 "
            f"{m[(name, 'int8')] / m[(name, 'fp32')]:.2f}); int8 against {first}: "
            f"{m[(name, 'int8')] / m[(first, 'int8')]:.2f}x"
        )


if __name__ == "__main__":
    main()
