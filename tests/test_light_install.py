"""`pip install fercli` without the `train` extra: no PyTorch. Simulated by a fercli process
in which importing torch, torchvision or onnxscript fails as it does where they are absent.
Predicting, cleaning and evaluating an .onnx model work; the commands that need PyTorch say
so in one line."""

import json
import subprocess
import sys

import pytest

from fercli.cli import TRAINING_MODULES

WITHOUT_TORCH = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {TRAINING_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NotInstalled())
from fercli.cli import main
main(sys.argv[1:])
"""


def fercli_without_torch(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def onnx_model(trained_onnx):
    return trained_onnx


API_WITHOUT_TORCH = WITHOUT_TORCH.replace(
    "from fercli.cli import main\nmain(sys.argv[1:])\n",
    """import fercli, numpy as np
from fercli.data.synth import draw_face
face = draw_face("happy", np.random.default_rng(0))
(found,) = fercli.Predictor().predict(face)
rows = list(fercli.predict_dir(sys.argv[1] + "/test", faces="none", workers=0))
report = fercli.clean_dataset(sys.argv[1], workers=1)
print(found.label, len(rows), len(report["flags"]))
""",
)


def test_the_python_api_works_without_torch(synth_copy):
    proc = subprocess.run(
        [sys.executable, "-c", API_WITHOUT_TORCH, str(synth_copy)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    label, rows, flags = proc.stdout.split()
    assert int(rows) > 10 and int(flags) > 0


def test_the_simulation_blocks_torch():
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH.replace("main(sys.argv[1:])", "import torch")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_predicting_cleaning_and_the_rest_work_without_torch(onnx_model, synth_copy, tmp_path):
    out = tmp_path / "p.csv"
    steps = [
        ("predict-dir", synth_copy / "test", "--model", onnx_model, "-o", out, "--eval"),
        ("predict-dir", synth_copy / "test", "-o", tmp_path / "default.jsonl"),  # bundled
        ("clean", synth_copy, "--report", tmp_path / "clean.json"),
        ("evaluate", onnx_model, synth_copy, "--split", "test", "--out", tmp_path / "eval"),
        ("synth", tmp_path / "drawn", "--per-class", "3"),
        ("models",),
        ("plugins",),
    ]
    for args in steps:
        proc = fercli_without_torch(*args)
        assert proc.returncode == 0, (args, proc.stderr)
    assert out.read_text().count("\n") > 10 and (tmp_path / "clean.json").is_file()


@pytest.mark.parametrize(
    "command",
    [
        ("train", "{data}", "--epochs", "1", "--out", "{tmp}/run"),
        ("export-onnx", "{tmp}/missing.pt"),
    ],
    ids=["train", "export-onnx"],
)
def test_commands_that_need_torch_say_how_to_get_it(command, synth_copy, tmp_path):
    args = [a.format(data=synth_copy, tmp=tmp_path) for a in command]
    proc = fercli_without_torch(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "needs PyTorch" in lines[0] and "pip install 'fercli[train]'" in lines[0]


def test_pytorch_is_only_in_the_train_extra():
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in requires("fercli")]
    heavy = [r for r in reqs if r.name in TRAINING_MODULES]
    assert {r.name for r in heavy} == set(TRAINING_MODULES)
    for r in heavy:  # required with the extra, and only with it
        assert r.marker and r.marker.evaluate({"extra": "train"}), r
        assert not r.marker.evaluate({"extra": ""}), r


def test_models_says_costs_need_pytorch():
    proc = fercli_without_torch("models", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert "PyTorch is not installed" in listing["costs_note"]
    assert all(row["macs"] is None for row in listing["architectures"])
    table = fercli_without_torch("models")
    assert table.returncode == 0 and "PyTorch is not installed" in table.stdout
