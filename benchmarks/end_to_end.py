"""(b) of benchmarks/bench_predict.py: `fercli.predict.folder.predict_dir` timed from the files to
the finished CSV, in a process of its own that has imported what `fercli predict-dir` imports
(no torch, no TFLite): the benchmark's own process holds both, and forking workers from it
costs more than from the command's. Interpreter start-up and imports are not timed: one
untimed call first (imports, page cache), then the timed one. Prints the images/s as JSON.

    .venv/bin/python benchmarks/end_to_end.py MODEL.onnx FOLDER OUT.csv --batch-size 256
"""

import argparse
import json
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--provider", default="cpu")
    args = parser.parse_args()
    from fercli.predict.folder import predict_dir
    from fercli.progress import settings

    settings["quiet"] = True
    run = dict(provider=args.provider, batch_size=args.batch_size)
    predict_dir(args.folder, args.out, args.model, **run)  # untimed: imports, page cache
    start = time.perf_counter()
    result = predict_dir(args.folder, args.out, args.model, **run)
    seconds = time.perf_counter() - start
    light = not {"torch", "ai_edge_litert", "tensorflow"} & set(sys.modules)
    rate = result.total / seconds
    print(json.dumps({"images_per_s": rate, "errors": len(result.errors), "light": light}))


if __name__ == "__main__":
    main()
