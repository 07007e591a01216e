"""What 7-bit int8 weights cost against full 8-bit ones: accuracy, agreement with fp32 and
model-only speed, measured in one run on this CPU.

fercli quantizes weights to 7 bits so that onnxruntime's uint8 x int8 kernels cannot
saturate on CPUs without VNNI (fercli.export.int8). This quantizes one fp32 model both ways
with the same calibration images, checks each file with the saturation proof, scores both
on the test split, and times them interleaved (medians). The fp32 model is an .onnx file,
or the bundled int8 model dequantized when none is given.

    .venv/bin/python benchmarks/bench_int8_weights.py --data ../shared/fer2013
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root (train, test)")
    parser.add_argument("--fp32", type=Path, help="an fp32 fercli .onnx [default: see above]")
    parser.add_argument("--calibration-images", type=int, default=1000)
    parser.add_argument(
        "--model",
        default="accurate",
        help="bundled model (fast, accurate) [accurate: the documented figures]",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU

    import onnx

    from fercli.data.dataset import load_split
    from fercli.errors import FercliError
    from fercli.export.checks import sample_images
    from fercli.export.int8 import dequantize, quantize_int8
    from fercli.export.metadata import set_metadata
    from fercli.export.saturation import check_saturation
    from fercli.predict.bundled import bundled_path
    from fercli.predict.onnx_model import OnnxModel, preprocess
    from fercli.progress import settings

    settings["quiet"] = True
    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    fp32_path = args.fp32
    if fp32_path is None:
        fp32_path = tmp / "fp32.onnx"
        source = bundled_path(args.model)
        info = OnnxModel(source, "cpu").info
        model = dequantize(onnx.load(str(source)))
        set_metadata(model, replace(info, precision="fp32"))
        onnx.save(model, str(fp32_path))
        print(f"fp32 model: {source} dequantized")
    info = OnnxModel(fp32_path, "cpu").info
    calibration = sample_images(
        args.data, "train", info.classes, info.image_size, args.calibration_images, seed=1
    )
    files = {"fp32": fp32_path}
    for name, seven in (("int8, 7-bit weights", True), ("int8, 8-bit weights", False)):
        files[name] = tmp / f"{name.split()[-2]}.onnx"
        quantize_int8(fp32_path, files[name], preprocess(calibration, info), info, seven)
        quantized = onnx.load(str(files[name]))
        set_metadata(quantized, replace(info, precision="int8"))
        onnx.save(quantized, str(files[name]))

    test = load_split(args.data, "test", classes=info.classes, size=info.image_size)
    models = {name: OnnxModel(path, "cpu") for name, path in files.items()}
    labels = {name: m.predict_proba(test.images).argmax(1) for name, m in models.items()}
    x = preprocess(np.resize(test.images, (1024, *test.images.shape[1:])), info)
    rates = {name: [] for name in models}
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits all alike
        for name, model in models.items():
            model.logits(x[: args.batch_size])
            start = time.perf_counter()
            for i in range(0, len(x), args.batch_size):
                model.logits(x[i : i + args.batch_size])
            rates[name].append(len(x) / (time.perf_counter() - start))

    print(f"{len(test.labels)} test images, medians of {args.repeats} rounds, model only:")
    base = statistics.median(rates["fp32"])
    for name in models:
        try:
            products = check_saturation(files[name]) if name != "fp32" else []
            check = f"max pair sum {max(p.pair_max for p in products)}: safe" if products else "-"
        except FercliError:
            check = "can saturate without VNNI"
        rate = statistics.median(rates[name])
        print(
            f"  {name:22s} accuracy {(labels[name] == test.labels).mean():.2%}  "
            f"agreement with fp32 {(labels[name] == labels['fp32']).mean():.2%}  "
            f"{rate:7.0f} images/s ({rate / base:.2f}x fp32)  saturation check: {check}"
        )


if __name__ == "__main__":
    main()
