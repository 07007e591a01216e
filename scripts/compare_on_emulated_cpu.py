"""Predict the same images with each model on this CPU and on a CPU that qemu emulates, and
count the labels that differ: whether a model gives the same answers on other CPUs.

qemu's user-mode emulation (Debian's qemu-user) runs this Python under another CPU model;
onnxruntime then picks that CPU's kernels. `Haswell` has AVX2 and FMA but no AVX-512 and no
VNNI: its uint8 x int8 kernels add pairs of products in 16 bits, where an int8 file with
full 8-bit weights can saturate (fercli.export.saturation). Emulation is slow (a few images
a second for the bundled ensemble).

    .venv/bin/python scripts/compare_on_emulated_cpu.py \
        fercli/bundled_models/accurate/fercli-accurate.onnx OLD.onnx \
        --data ../shared/fer2013 --images 400
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PREDICT = """
import json, sys
import numpy as np
from fercli.predict.onnx_model import OnnxModel
images = np.load(sys.argv[1])
print(json.dumps({p: OnnxModel(p, "cpu", threads=1).predict_proba(images).tolist()
                  for p in sys.argv[2:]}))
"""


def predict_on(cpu: str | None, images: np.ndarray, models: list[Path]) -> dict:
    """Probabilities from each model, on this CPU (None) or on qemu's emulation of `cpu`."""
    qemu = shutil.which("qemu-x86_64")
    if cpu and qemu is None:
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
    with tempfile.TemporaryDirectory(prefix="fercli-emulated-") as tmp:
        np.save(Path(tmp) / "images.npy", images)
        command = [sys.executable, "-c", PREDICT, str(Path(tmp) / "images.npy")]
        command += [str(m) for m in models]
        if cpu:
            command = [qemu, "-cpu", cpu, *command]
        proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return {Path(k): np.array(v) for k, v in json.loads(proc.stdout).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="fercli .onnx files")
    parser.add_argument("--data", type=Path, required=True, help="dataset root with test/")
    parser.add_argument("--images", type=int, default=400, help="random test images")
    parser.add_argument("--cpu", default="Haswell", help="qemu's CPU model")
    args = parser.parse_args()
    from fercli.data.dataset import load_split
    from fercli.util import cpu_description

    print(cpu_description(), flush=True)
    test = load_split(args.data, "test")
    pick = np.random.default_rng(0).choice(len(test.labels), args.images, replace=False)
    images, labels = test.images[pick], test.labels[pick]
    here = predict_on(None, images, args.models)
    there = predict_on(args.cpu, images, args.models)
    print(f"{args.images} random FER-2013 test images, this CPU against qemu -cpu {args.cpu}:")
    for model in args.models:
        a, b = here[model].argmax(1), there[model].argmax(1)
        print(
            f"  {model}: {(a != b).sum()} labels differ; accuracy {(a == labels).mean():.2%} "
            f"here, {(b == labels).mean():.2%} there; max |probability difference| "
            f"{np.abs(here[model] - there[model]).max():.2e}"
        )


if __name__ == "__main__":
    main()
