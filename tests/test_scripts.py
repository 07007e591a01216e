"""The scripts behind the documented results (docs/benchmarks/) still run against today's
code, at their smallest: the session's short synthetic run stands in for the FER-2013 runs
(used twice where a script wants an ensemble). Their figures are checked for shape, not for
value."""

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the scripts, run small: `pytest -m 'not slow'` leaves it out


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "recipe.toml"
    path.write_text('[train]\nmodel = "seed-cnn"\nnum_epochs = 1\nbatch_size = 32\n')
    return path


def test_ensemble_scores(trained_run, synth_root, tmp_path, run_script):
    run = trained_run[0]
    out = run_script(
        "scripts/ensemble_scores.py", run, run, "--data", synth_root, "--members", 1,
        "--cache", tmp_path / "cache.npz", cwd=tmp_path,
    )  # fmt: skip
    scores = json.loads(out.strip().splitlines()[-1])
    assert 0 < scores["test/plain"]["alone"][0] <= 1
    assert scores["best_subset"]["runs"] == [str(run)]


def test_bundle_model(trained_run, synth_root, recipe, tmp_path, run_script):
    run = trained_run[0]
    dest = tmp_path / "bundle"
    out = run_script(
        "scripts/bundle_model.py", run, "--data", synth_root, "--recipe", recipe,
        "--name", "fast", "--dest", dest, cwd=tmp_path,
    )  # fmt: skip
    assert "shipped" in out
    card = json.loads((dest / "model_card.json").read_text())
    assert card["name"] == "fercli-fast" and card["training"]["bundle_command"].count("--name fast")
    assert (dest / "fercli-fast.onnx").is_file() and (dest / "MODEL_CARD.md").is_file()
    shipped = card["shipped"]["precision"]
    assert shipped in ("fp32", "int8") and card["metrics"]["test"][shipped]["accuracy"] > 0
    assert "moving average" not in (dest / "MODEL_CARD.md").read_text()  # no --ema


def test_leak_free_scores(trained_run, synth_root, tmp_path, run_script):
    out = run_script(
        "scripts/leak_free_scores.py", trained_run[0] / "best.pt", "--data", synth_root,
        cwd=tmp_path,
    )  # fmt: skip
    scores = json.loads(out.strip().splitlines()[-1])
    (figures,) = scores.values()
    assert figures["images"][0] > figures["images"][1] > 0  # synth plants one leaked image


def test_check_reproduction(trained_run, tmp_path, run_script):
    # The session's run trained on one thread; the same thread count reproduces it exactly.
    out = run_script(
        "scripts/check_reproduction.py", trained_run[0], "--epochs", 1, cwd=tmp_path,
        env={"FERCLI_THREADS": "1"},
    )  # fmt: skip
    assert re.fullmatch(
        r"largest difference \S+ over \d+ epoch\(s\): reproduced", out.strip().splitlines()[-1]
    ), out


def test_ablate(synth_root, recipe, tmp_path, run_script):
    out = run_script(
        "scripts/ablate.py", recipe, "--data", synth_root, "--epochs", 1, "--only", "recipe",
        "--out", tmp_path / "ablate", cwd=tmp_path,
    )  # fmt: skip
    assert "| recipe | the recipe as written |" in out
    assert (tmp_path / "ablate" / "ablation.json").is_file()


def test_measure_fer_framing(synth_root, run_script):
    out = json.loads(run_script("scripts/measure_fer_framing.py", synth_root, "--per-class", 2))
    assert out["images"] == 14 and 0 <= out["detected"] <= 14
    if out["detected"]:
        low, median, high = out["quartiles_25_50_75"]["side_over_face_scale"]
        assert 0 < low <= median <= high


def test_faces_roundtrip_fer(synth_root, run_script):
    out = json.loads(run_script("scripts/faces_roundtrip_fer.py", synth_root, "--per-class", 2))
    assert out["faces"] == 14 and 0 <= out["found"] <= 14
    assert 0 <= out["accuracy_original_all"] <= 1
    assert 0 <= out["found_leak_free"] <= out["found"]  # faces with no near duplicate in train


def test_bundle_model_of_a_fine_tuned_run(trained_run, synth_root, recipe, tmp_path, run_script):
    """Runs made with --init, one from the other, carry their starting runs' logs and figures
    into the card, nearest first; the card says when the weights are a moving average."""
    from fercli.train import TrainConfig, train

    start = trained_run[0]
    options = dict(data_dir=str(synth_root), model="seed-cnn", num_epochs=1, batch_size=32)
    middle, tuned = tmp_path / "middle", tmp_path / "tuned"
    train(TrainConfig(**options, init=str(start / "best.pt"), out=str(middle)))
    train(TrainConfig(**options, init=str(middle / "last.pt"), ema=0.9, out=str(tuned)))
    dest = tmp_path / "bundle"
    run_script(
        "scripts/bundle_model.py", tuned, "--data", synth_root, "--recipe", recipe,
        "--name", "fast", "--dest", dest, cwd=tmp_path,
    )  # fmt: skip
    card = json.loads((dest / "model_card.json").read_text())
    chain = card["training"]["init"]
    assert [(r["checkpoint"], r["run"]) for r in chain] == [
        (str(middle / "last.pt"), "middle"),
        (str(start / "best.pt"), start.name),
    ]
    assert chain[1]["epochs_run"] == json.loads((start / "metrics.json").read_text())["epochs_run"]
    for run in (tuned, middle, start):
        assert (dest / "runs" / run.name / "metrics.json").read_bytes() == (
            run / "metrics.json"
        ).read_bytes()
    text = (dest / "MODEL_CARD.md").read_text()
    assert f"it started from the weights of `{middle / 'last.pt'}`" in text
    assert f"that run started from the weights of `{start / 'best.pt'}`" in text
    assert "moving average of the training steps' weights (`--ema 0.9`)" in text
