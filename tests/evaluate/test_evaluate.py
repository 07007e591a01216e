"""`fercli evaluate` on checkpoints and ONNX files."""

import json
import shutil

import numpy as np
import pytest

from fercli.errors import FercliError
from fercli.evaluate.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_checkpoint_on_the_test_split_beats_chance(trained_run, synth_root):
    out, _ = trained_run
    result = evaluate(out / "best.pt", synth_root, split="test", device="cpu")
    assert result["model_format"] == "checkpoint" and result["split"] == "test"
    assert result["count"] == 71  # 10 faces per class and the planted cross-split copy
    assert result["accuracy"] > 0.4  # chance is 1/7
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (7, 7) and matrix.sum() == result["count"]
    assert np.trace(matrix) == round(result["accuracy"] * result["count"])
    per_class = result["per_class"]
    assert [per_class[c]["support"] for c in result["classes"]] == matrix.sum(1).tolist()
    assert 0 < result["macro_f1"] <= 1 and 0 < result["weighted_f1"] <= 1


def test_tta_averages_with_the_mirror_image(trained_run, synth_root, monkeypatch):
    from fercli.evaluate import evaluation

    out, _ = trained_run
    seen = []
    real = evaluation.CheckpointScorer.predict_proba

    def spy(self, images):
        seen.append(images.copy())
        return real(self, images)

    monkeypatch.setattr(evaluation.CheckpointScorer, "predict_proba", spy)
    result = evaluate(out, synth_root, tta=True, device="cpu")  # a run folder means its best.pt
    assert result["tta"] and result["model"].endswith("best.pt")
    assert len(seen) == 2 and np.array_equal(seen[1], seen[0][..., ::-1])
    assert result["accuracy"] > 0.4


def test_onnx_gives_the_same_results_as_its_checkpoint(trained_run, synth_root, tmp_path):
    export = pytest.importorskip("fercli.export")
    out, _ = trained_run
    onnx_path = tmp_path / "model.onnx"
    export.export_onnx(out / "best.pt", onnx_path)
    from_onnx = evaluate(onnx_path, synth_root, device="cpu")
    from_checkpoint = evaluate(out / "best.pt", synth_root, device="cpu")
    assert from_onnx["model_format"] == "onnx"
    for key in ("count", "classes", "confusion_matrix"):
        assert from_onnx[key] == from_checkpoint[key]


def test_command_prints_tables_json_and_writes_files(trained_run, synth_root, tmp_path, run_cli):
    out, _ = trained_run
    result = run_cli("evaluate", out / "best.pt", synth_root, "--device", "cpu")
    assert result.exit_code == 0, result.output
    for text in (
        "accuracy",
        "macro F1",
        "weighted F1",
        "Per class",
        "Confusion matrix",
        "surprise",
    ):
        assert text in result.stdout

    report = tmp_path / "report"
    result = run_cli("evaluate", out / "best.pt", synth_root, "--json", "-o", report)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads((report / "metrics.json").read_text())
    assert set(printed["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
    assert (report / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_data_dir_serves_as_root(trained_run, synth_root, tmp_path, run_cli):
    out, _ = trained_run
    config = tmp_path / "fercli.toml"
    config.write_text(f'data_dir = "{synth_root.as_posix()}"\n')
    result = run_cli("evaluate", out, "--config", config, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["root"] == str(synth_root)


def test_unknown_class_folder_is_a_clear_error(trained_run, synth_root, tmp_path, run_cli):
    out, _ = trained_run
    data = tmp_path / "data"
    shutil.copytree(synth_root / "test", data / "test")
    shutil.copytree(data / "test" / "happy", data / "test" / "contempt")
    result = run_cli("evaluate", out / "best.pt", data)
    assert result.exit_code == 2
    assert "class folder(s) contempt that the model does not know" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.pt", "DATA"], "model missing.pt not found"),
        (["RUN/history.csv", "DATA"], "is not a readable fercli checkpoint"),
        (["RUN/best.pt", "DATA", "--split", "val"], "no 'val' split"),
        (["RUN/best.pt"], "missing ROOT"),
    ],
)
def test_bad_input_is_one_clear_line(trained_run, synth_root, run_cli, args, message):
    out, _ = trained_run
    args = [a.replace("RUN", str(out)).replace("DATA", str(synth_root)) for a in args]
    result = run_cli("evaluate", *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_default_model_is_used_when_model_is_left_out(synth_root, run_cli):
    from fercli.predict.bundled import bundled_path

    try:
        bundled_path()
    except FercliError:
        result = run_cli("evaluate", synth_root)
        assert result.exit_code == 2
        assert "is not in this install of fercli" in result.stderr
    else:
        result = run_cli("evaluate", synth_root, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["model"] == str(bundled_path())


def test_the_provider_that_ran_is_named_and_can_be_chosen(trained_run, synth_root, run_cli):
    """fast's card verifies the CPU provider alone, so `auto` scores it there on every machine
    (on Intel with OpenVINO its card's figure, not OpenVINO's); --provider names another."""
    from fercli.predict.bundled import bundled_path

    path = bundled_path("fast")
    result = run_cli("evaluate", path, synth_root, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["provider"] == "cpu"
    text = run_cli("evaluate", path, synth_root, "--provider", "cpu")
    assert text.exit_code == 0 and "Ran on: cpu" in text.stdout
    assert (
        json.loads(run_cli("evaluate", path, synth_root, "--json", "--provider", "cpu").stdout)[
            "provider_fallback"
        ]
        is None
    )
    out, _ = trained_run
    refused = run_cli("evaluate", out / "best.pt", synth_root, "--provider", "cpu")
    assert refused.exit_code == 2 and "--provider is for .onnx models" in refused.stderr
    torch_run = json.loads(run_cli("evaluate", out, synth_root, "--json", "--device", "cpu").stdout)
    assert torch_run["provider"] == "torch-cpu"
