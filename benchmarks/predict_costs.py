"""Where a predict-dir worker's time goes, per image, for one model: reading and decoding the
files, normalizing, onnxruntime, and all of it as a worker does it (decode and predict a
chunk), in this one process, on one onnxruntime thread, medians of `--repeats` passes.

    .venv/bin/python benchmarks/predict_costs.py --model fast --split train --images 10240

A diagnostic beside benchmarks/bench_predict.py: it shows which stage a change should cut.
"""

import argparse
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/fer2013", help="dataset root")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="fast", help="bundled name or .onnx file")
    parser.add_argument("--images", type=int, default=10240)
    parser.add_argument("--chunk", type=int, default=128, help="images a worker takes at once")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)
    from fercli.data import fastjpeg
    from fercli.predict import bundled
    from fercli.predict.folder import find_images
    from fercli.predict.onnx_model import OnnxModel, preprocess
    from fercli.predict.workers import decode_chunk, predict_files

    root = Path(args.data) / args.split
    paths = [os.path.join(root, p) for p in find_images(root)[0][: args.images]]
    model = OnnxModel(bundled.model_path(args.model), "cpu", 1)
    chunks = [paths[i : i + args.chunk] for i in range(0, len(paths), args.chunk)]
    decoded = [decode_chunk(c, model.info.image_size)[0] for c in chunks]
    x = [preprocess(d, model.info) for d in decoded]
    stages = {
        "decode (read + JPEG)": lambda: [decode_chunk(c, model.info.image_size) for c in chunks],
        "normalize": lambda: [preprocess(d, model.info) for d in decoded],
        "onnxruntime, 1 thread": lambda: [model.logits(b) for b in x],
        "a worker's whole chunk": lambda: [
            predict_files(model, c, args.chunk, False) for c in chunks
        ],
    }
    times = {name: [] for name in stages}
    for _ in range(args.repeats):
        for name, run in stages.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    decoder = "simplejpeg" if fastjpeg.simplejpeg else "Pillow's decoder"
    print(
        f"{len(paths)} files of {root} in chunks of {args.chunk}, {model.describe()}; JPEG "
        f"shortcut through {decoder}; microseconds an image, medians of {args.repeats}:"
    )
    for name, t in times.items():
        print(f"  {name:24} {statistics.median(t) / len(paths) * 1e6:7.1f}")


if __name__ == "__main__":
    main()
