"""When each phase of one `fercli predict-dir` run happens, seen from its main process:
listing the folder, starting the workers, opening the model, the first and the last chunk
of rows, stopping the workers. Milliseconds from the call, medians of `--repeats` runs
after an untimed one (imports, page cache).

    .venv/bin/python benchmarks/predict_timeline.py --folder ../shared/fer2013/test --model fast

A diagnostic beside benchmarks/bench_predict.py, whose (b)/(a) it explains: the time before
the first chunk and after the last is the fixed cost of a run; between them, the rate the
pipeline keeps up.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default="../shared/fer2013/test", help="images to predict")
    parser.add_argument("--model", default="fast", help="bundled name or .onnx file")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)
    import fercli.predict.folder as predict
    from fercli.predict.output import CsvOut
    from fercli.progress import settings

    settings["quiet"] = True
    marks: dict[str, float] = {}
    start = [0.0]

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - start[0])

    def wrap(owner, attribute: str, before: str | None, after: str | None, seen=None):
        """Mark `before` at the first call and `after` at the end of the last; `seen(*args)`
        at every call."""
        original = getattr(owner, attribute)

        def wrapped(*a, **k):
            if seen:
                seen(*a, **k)
            if before:
                mark(before)
            result = original(*a, **k)
            if after:
                marks[after] = time.perf_counter() - start[0]  # the last call's end
            return result

        setattr(owner, attribute, wrapped)

    wrap(predict, "find_images", None, "folder listed")
    wrap(predict.Workers, "__init__", None, "workers started")
    wrap(predict, "OnnxModel", None, "model opened")
    sizes: list[int] = []  # rows in each chunk

    def chunk_size(fmt, paths, *rest) -> None:
        sizes.append(len(paths))

    wrap(CsvOut, "predicted_text", "first chunk's rows", "last chunk's rows", chunk_size)
    wrap(predict.Workers, "close", "stopping the workers", "workers stopped")
    runs, rows = [], 0
    with tempfile.TemporaryDirectory() as out:
        for i in range(args.repeats + 1):
            marks.clear()
            sizes.clear()
            start[0] = time.perf_counter()
            result = predict.predict_dir(
                args.folder, Path(out) / "p.csv", args.model, workers=args.workers,
                write_summary=False,
            )  # fmt: skip
            marks["returned"] = time.perf_counter() - start[0]
            rows = result.new
            if i:
                runs.append({**marks, "first chunk": sizes[0] if sizes else 0})
    print(f"{rows} files of {args.folder}, model {args.model}; ms from the call, medians of "
          f"{args.repeats}:")  # fmt: skip
    for name in (n for n in runs[0] if n != "first chunk"):
        print(f"  {name:22} {statistics.median(r[name] for r in runs) * 1000:7.1f}")
    steady = [  # the files after the first chunk, from its rows to the last chunk's
        (rows - r["first chunk"]) / (r["last chunk's rows"] - r["first chunk's rows"])
        for r in runs
        if "first chunk's rows" in r and r["last chunk's rows"] > r["first chunk's rows"]
    ]
    if steady:
        print(f"  between the first and the last chunk's rows: "
              f"{statistics.median(steady):,.0f} images/s")  # fmt: skip


if __name__ == "__main__":
    main()
