"""--abstain P (predict-dir, predict-video, fercli.Predictor): a face whose top probability is
below P is labelled `uncertain`, its probabilities kept; `fercli evaluate --coverage-plot`
shows what each P trades (the share answered and its accuracy)."""

import csv
import io
import json

import numpy as np
import pytest
from faces_scenes import Placed, oracle_folder, scene
from test_video import make_video, oracle_plugin  # noqa: F401 (the fixture)

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.errors import FercliError
from fercli.metrics.calibration import coverage
from fercli.predict.folder import predict_dir
from fercli.predict.output import UNCERTAIN, abstain_rows

P = 0.6


def read(path):
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


def probabilities(row):
    return {k: v for k, v in row.items() if k.startswith("prob_")}


def assert_abstained(plain, abstained, below=P):
    """The same rows but for the label of those whose confidence is below P."""
    assert len(plain) == len(abstained)
    changed = 0
    for a, b in zip(plain, abstained):
        assert {k: v for k, v in a.items() if k != "label"} == {
            k: v for k, v in b.items() if k != "label"
        }
        if a["status"] == "ok" and float(a["confidence"]) < below:
            assert b["label"] == UNCERTAIN
            changed += 1
        else:
            assert b["label"] == a["label"]
    return changed


def test_abstain_rows_relabels_below_the_threshold_only():
    rows = [
        {"status": "ok", "label": "happy", "confidence": 0.59},
        {"status": "ok", "label": "sad", "confidence": 0.6},
        {"status": "error", "label": None},
        {"status": "no_face"},
    ]
    out = abstain_rows([dict(r) for r in rows], 0.6)
    assert [r.get("label") for r in out] == [UNCERTAIN, "sad", None, None]
    assert abstain_rows([dict(r) for r in rows], 0.0) == rows  # 0: off


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_dir_labels_low_confidence_faces_uncertain(synth_root, tmp_path, suffix):
    folder = synth_root / "test"
    plain, abst = tmp_path / f"plain{suffix}", tmp_path / f"abstain{suffix}"
    before = predict_dir(folder, plain, workers=0, evaluate=True)
    after = predict_dir(folder, abst, workers=0, evaluate=True, abstain=P)
    if suffix == ".csv":
        changed = assert_abstained(read(plain), read(abst))
    else:
        lines = [json.loads(line) for line in plain.read_text().splitlines()]
        rows = [{**r, "confidence": r.get("confidence")} for r in lines]
        got = [json.loads(line) for line in abst.read_text().splitlines()]
        changed = assert_abstained(rows, got)
    assert 0 < changed < before.total  # the synthetic test split has both
    assert after.counts[UNCERTAIN] == changed
    assert sum(after.counts.values()) == sum(before.counts.values())
    # --eval scores the faces answered; the uncertain ones are left out and counted
    assert after.eval["excluded"] == before.eval["excluded"] + changed
    made_with = json.loads(abst.with_name(abst.name + ".summary.json").read_text())["made_with"]
    assert made_with["abstain"] == P


def test_workers_and_this_process_abstain_alike(synth_root, tmp_path):
    folder = synth_root / "test"
    here, workers = tmp_path / "here.csv", tmp_path / "workers.csv"
    predict_dir(folder, here, workers=0, abstain=P)
    predict_dir(folder, workers, workers=2, batch_size=8, abstain=P)
    assert here.read_bytes() == workers.read_bytes()


def test_faces_found_are_abstained_and_annotated_so(oracle, tmp_path):  # noqa: F811
    truth, _ = oracle_folder(tmp_path / "in")
    name = oracle(truth)
    plain, abst, crops = tmp_path / "plain.csv", tmp_path / "abstain.csv", tmp_path / "crops"
    predict_dir(tmp_path / "in", plain, faces="detect", detector=name, workers=0)
    predict_dir(
        tmp_path / "in", abst, faces="detect", detector=name, workers=0, abstain=0.99,
        crops=crops,
    )  # fmt: skip
    changed = assert_abstained(read(plain), read(abst), 0.99)
    assert changed == sum(r["status"] == "ok" for r in read(plain))  # none is that sure
    assert {p.parent.name for p in crops.rglob("*.png")} == {UNCERTAIN}  # crops by label


def test_resume_refuses_another_abstain(synth_root, tmp_path, run_cli):
    out = tmp_path / "out.csv"
    first = run_cli("predict-dir", synth_root / "test", "-o", out, "--abstain", P)
    assert first.exit_code == 0, first.output
    for other in (0.8, 0):  # another threshold, or none
        result = run_cli(
            "predict-dir", synth_root / "test", "-o", out, "--resume", "--abstain", other
        )
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"--abstain {P!r} (this run: " in result.stderr
    same = run_cli("predict-dir", synth_root / "test", "-o", out, "--resume", "--abstain", P)
    assert same.exit_code == 0, same.output


def test_abstain_out_of_range_is_one_line(synth_root, tmp_path, run_cli):
    result = run_cli("predict-dir", synth_root / "test", "-o", tmp_path / "o.csv", "--abstain", 1)
    assert result.exit_code == 2 and "--abstain" in result.output
    with pytest.raises(FercliError, match="--abstain"):
        predict_dir(synth_root / "test", tmp_path / "o.csv", abstain=-0.1)


def test_predictor_abstains(synth_root):
    import fercli

    image = next((synth_root / "test" / "happy").glob("*"))
    plain = fercli.Predictor(faces="none").predict(image)[0]
    sure = fercli.Predictor(faces="none", abstain=0.999).predict(image)[0]
    assert sure.label == UNCERTAIN and sure.probabilities == plain.probabilities
    assert fercli.Predictor(faces="none", abstain=plain.confidence).predict(image)[0] == plain
    with pytest.raises(FercliError, match="abstain"):
        fercli.Predictor(abstain=1.0)


def test_predict_video_abstains(oracle_plugin, tmp_path, run_cli):  # noqa: F811
    pytest.importorskip("av")
    names = list(EXPRESSIONS)[:2]
    faces = [draw_face(name, np.random.default_rng(i)) for i, name in enumerate(names)]
    placed = [Placed(faces[0], 90, 120, 100), Placed(faces[1], 240, 110, 90)]
    video = make_video(tmp_path / "two.mp4", [scene(320, 240, placed)] * 10)
    oracle_plugin({(320, 240): [p.truth() for p in placed]})
    rows = {}
    for name, extra in (("plain", []), ("abstain", ["--abstain", 0.99])):
        out = tmp_path / f"{name}.csv"
        result = run_cli(
            "predict-video", video, "-o", out, "--detector", "oracle", "--provider", "cpu", *extra
        )
        assert result.exit_code == 0, result.output
        rows[name] = read(out)
    assert assert_abstained(rows["plain"], rows["abstain"], 0.99) == len(rows["plain"])


def test_coverage_table_and_curve():
    confidence = np.array([0.95, 0.9, 0.7, 0.55, 0.4, 0.0])
    correct = np.array([True, True, False, True, False, False])
    found = coverage(confidence, correct, thresholds=(0.0, 0.5, 0.8))
    assert found["table"] == [
        {"abstain": 0.0, "answered": 1.0, "accuracy": 0.5},
        {"abstain": 0.5, "answered": 4 / 6, "accuracy": 0.75},
        {"abstain": 0.8, "answered": 2 / 6, "accuracy": 1.0},
    ]
    assert found["curve"]["accuracy"][:3] == [1.0, 1.0, round(2 / 3, 4)]
    assert found["curve"]["coverage"][-1] == 1.0


def test_evaluate_reports_and_draws_coverage(synth_root, tmp_path, run_cli):
    plot = tmp_path / "coverage.png"
    result = run_cli("evaluate", "fast", synth_root, "--json", "--coverage-plot", plot)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    table = report["coverage"]["table"]
    assert table[0]["abstain"] == 0 and table[0]["answered"] == 1.0
    assert table[0]["accuracy"] == pytest.approx(report["accuracy"])
    answered = [row["answered"] for row in table]
    assert answered == sorted(answered, reverse=True) and answered[-1] < 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run_cli("evaluate", "fast", synth_root)
    assert "With --abstain P (answered, their accuracy): P=0: 100%" in text.stdout
