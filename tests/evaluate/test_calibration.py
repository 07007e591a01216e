"""fercli.metrics.calibration (temperature fitting, ECE) and where it is applied: the ONNX
metadata's temperature in OnnxModel.predict_proba (predict-dir, evaluate), ECE and the reliability
diagram in `fercli evaluate`."""

import csv
import json

import numpy as np
import onnx
import pytest
from PIL import Image

from fercli.errors import FercliError
from fercli.metrics import calibration
from fercli.predict.bundled import bundled_path
from fercli.predict.folder import predict_dir
from fercli.predict.onnx_model import ModelInfo, OnnxModel, softmax


def sampled(rng, n=20000, classes=7, temperature=2.5):
    """Logits, and labels drawn from softmax(logits / temperature): T fits `temperature`."""
    logits = rng.normal(0, 3, (n, classes))
    p = softmax(logits / temperature).astype(np.float64)
    labels = (rng.random(n)[:, None] > np.cumsum(p / p.sum(1, keepdims=True), 1)).sum(1)
    return logits, labels


def test_fit_temperature_recovers_the_temperature_of_the_labels():
    rng = np.random.default_rng(0)
    for truth in (0.7, 1.0, 2.5):
        logits, labels = sampled(rng, temperature=truth)
        fitted = calibration.fit_temperature(logits, labels)
        assert fitted == pytest.approx(truth, rel=0.06)
        assert calibration.nll(logits, labels, fitted) <= calibration.nll(logits, labels, truth)


def test_fit_temperature_minimises_the_nll_and_keeps_the_predictions():
    logits, labels = sampled(np.random.default_rng(1), n=3000)
    t = calibration.fit_temperature(logits, labels)
    for other in (t * 0.9, t * 1.1):
        assert calibration.nll(logits, labels, t) < calibration.nll(logits, labels, other)
    assert (softmax(logits / t).argmax(1) == logits.argmax(1)).all()
    with pytest.raises(ValueError):
        calibration.fit_temperature(logits[:0], labels[:0])


def confident_mistakes():
    """A hold-out calibrated bin by bin at T = 1 (ECE 0.01), where a few confidently wrong
    predictions pull the NLL optimum to T of about 2.8: fitting would raise the ECE."""
    m = np.log(0.8 / 0.2)
    logits = np.array([[m, 0.0]] * 800 + [[20.0, 0.0]] * 210)
    labels = np.array([0] * 640 + [1] * 160 + [0] * 200 + [1] * 10)
    return logits, labels


def ece_at(logits, labels, t):
    return calibration.expected_calibration_error(softmax(logits / t), labels)


def test_choose_temperature_keeps_one_where_the_fit_would_raise_the_ece():
    logits, labels = confident_mistakes()
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted > 2 and ece_at(logits, labels, fitted) > ece_at(logits, labels, 1.0) + 0.1
    choice = calibration.choose_temperature(logits, labels)
    assert choice.temperature == 1.0 and choice.fitted == pytest.approx(fitted)
    assert choice.images == 1010
    assert choice.ece_after == choice.ece_before == pytest.approx(ece_at(logits, labels, 1.0))
    assert "\n" not in choice.reason and choice.reason.startswith(
        f"the fitted T = {fitted:.3f} would not lower the hold-out's expected calibration error"
    )


def test_choose_temperature_fits_overconfident_logits():
    logits, labels = sampled(np.random.default_rng(2), n=3000, temperature=2.5)
    choice = calibration.choose_temperature(logits, labels)
    assert choice.reason == "" and choice.temperature == choice.fitted
    assert choice.temperature == pytest.approx(2.5, rel=0.1)
    assert choice.ece_after < choice.ece_before / 2
    assert choice.ece_after == pytest.approx(ece_at(logits, labels, choice.temperature))


def test_choose_temperature_refuses_a_small_holdout():
    logits, labels = sampled(np.random.default_rng(3), n=calibration.MIN_IMAGES - 1)
    choice = calibration.choose_temperature(logits, labels)
    assert (choice.temperature, choice.fitted) == (1.0, None)
    assert choice.ece_after == choice.ece_before
    assert choice.reason == (
        f"the hold-out has {calibration.MIN_IMAGES - 1} images, under the "
        f"{calibration.MIN_IMAGES} needed to fit one"
    )
    assert calibration.choose_temperature(logits[:0], labels[:0]).temperature == 1.0
    # at the minimum it fits
    logits, labels = sampled(np.random.default_rng(3), n=calibration.MIN_IMAGES)
    assert calibration.choose_temperature(logits, labels).fitted is not None


def test_fitted_temperature_stays_in_its_range():
    assert calibration.TEMPERATURE_RANGE == (0.5, 5.0)
    rng = np.random.default_rng(4)
    for truth, bound in ((12.0, 5.0), (0.15, 0.5)):
        logits, labels = sampled(rng, n=3000, temperature=truth)
        fitted = calibration.fit_temperature(logits, labels)
        assert 0.5 <= fitted <= 5.0 and fitted == pytest.approx(bound, rel=1e-3)
        assert calibration.choose_temperature(logits, labels).temperature in (1.0, fitted)


def test_ece_by_hand():
    # 10 predictions at confidence 0.9, 9 right (gap 0); 10 at 0.6, 3 right (gap 0.3).
    probs = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    labels = np.array([0] * 9 + [1] + [0] * 3 + [1] * 7)
    bins = calibration.reliability(probs, labels)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.15)
    assert bins["bins"] == 15 and sum(bins["count"]) == 20
    assert bins["count"][13] == 10 and bins["accuracy"][13] == pytest.approx(0.9)
    assert bins["count"][8] == 10 and bins["confidence"][8] == pytest.approx(0.6)
    assert bins["accuracy"][0] is None  # empty bins have no accuracy
    # A confidence exactly on an edge belongs to the bin below it: (b/15, (b+1)/15].
    edge = np.array([[1 / 3, 1 / 3, 1 / 3]])
    assert calibration.reliability(edge, np.array([0]))["count"][4] == 1
    assert calibration.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def with_temperature(tmp_path, temperature) -> str:
    """The bundled model with `temperature` in its metadata (None: without the key)."""
    proto = onnx.load(str(bundled_path()))
    props = {p.key: p.value for p in proto.metadata_props}
    props.pop("temperature", None)
    if temperature is not None:
        props["temperature"] = json.dumps(temperature)
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    path = tmp_path / f"t{temperature}.onnx"
    onnx.save(proto, str(path))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calibrated")
    return {t: with_temperature(tmp, t) for t in (1.0, 2.0, None)}


def faces(n=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_onnx_model_divides_the_logits_by_its_temperature(models):
    plain, warm = OnnxModel(models[1.0], "cpu"), OnnxModel(models[2.0], "cpu")
    assert (plain.info.temperature, warm.info.temperature) == (1.0, 2.0)
    assert OnnxModel(models[None], "cpu").info.temperature == 1.0  # key absent
    images = faces()
    p1, p2 = plain.predict_proba(images), warm.predict_proba(images)
    # softmax(z / 2) = softmax(log softmax(z) / 2)
    np.testing.assert_allclose(p2, softmax(np.log(p1) / 2), atol=1e-5)
    assert (p1.argmax(1) == p2.argmax(1)).all() and (p2.max(1) < p1.max(1)).all()


def test_temperature_metadata_round_trip_and_bad_values():
    info = ModelInfo(("a", "b"), 48, 48, 0.5, 0.5, temperature=1.7)
    props = info.to_metadata()
    assert json.loads(props["temperature"]) == 1.7
    assert ModelInfo.from_metadata(props).temperature == 1.7
    assert "temperature" not in ModelInfo.from_metadata(props).extra
    without = {k: v for k, v in props.items() if k != "temperature"}
    assert ModelInfo.from_metadata(without).temperature == 1.0
    for bad in ("0", "-1", '"hot"', "NaN"):
        with pytest.raises(FercliError, match="damaged fercli metadata"):
            ModelInfo.from_metadata({**props, "temperature": bad})


def test_predict_dir_uses_the_temperature(models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, face in enumerate(faces(5, seed=3)):
        Image.fromarray(face).save(folder / f"f{i}.png")
    rows = {}
    for t, path in models.items():
        out = tmp_path / f"p{t}.csv"
        predict_dir(folder, out, path, provider="cpu", workers=0, write_summary=False)
        with open(out, newline="") as f:
            rows[t] = {r["path"]: r for r in csv.DictReader(f)}
    classes = OnnxModel(models[1.0], "cpu").info.classes
    for name, row in rows[1.0].items():
        p1 = np.array([float(row[f"prob_{c}"]) for c in classes])
        p2 = np.array([float(rows[2.0][name][f"prob_{c}"]) for c in classes])
        np.testing.assert_allclose(p2, softmax(np.log(p1)[None] / 2)[0], atol=1e-4)


def test_evaluate_reports_ece_and_draws_the_reliability_diagram(
    models, synth_root, tmp_path, run_cli
):
    results = {}
    for t, path in models.items():
        out = tmp_path / f"eval{t}"
        result = run_cli("-q", "evaluate", path, synth_root, "--json", "-o", out)
        assert result.exit_code == 0, result.output
        results[t] = json.loads(result.stdout)
        assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    one, two = results[1.0], results[2.0]
    assert (one["temperature"], two["temperature"]) == (1.0, 2.0)
    assert one["accuracy"] == two["accuracy"] and one["ece"] != two["ece"]
    bins = two["reliability"]
    assert bins["bins"] == 15 and sum(bins["count"]) == two["count"]
    assert bins["ece"] == two["ece"] and 0 <= two["ece"] <= 1
    printed = run_cli("-q", "evaluate", models[2.0], synth_root).stdout
    assert f"Calibration: ECE {two['ece']:.4f} (15 bins), temperature 2" in printed
