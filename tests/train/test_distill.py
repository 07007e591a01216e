"""Distillation (`fercli train --teacher`): the loss, the cached teacher targets, what a run
records, --resume, and one-line errors for a teacher that does not fit."""

import json
import shutil

import numpy as np
import pytest
import torch
from train_helpers import interrupt_at

from fercli.errors import FercliError
from fercli.train import TrainConfig, train
from fercli.train.checkpoint import load_checkpoint
from fercli.train.teacher import distillation_loss

TIMING = ("seconds", "images_per_s")  # recorded by the run that computes the targets


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def teacher(trained_onnx, tmp_path_factory):
    """A tiny teacher: the session's trained seed-cnn run, exported (as teacher.onnx)."""
    out = tmp_path_factory.mktemp("teacher") / "teacher.onnx"
    shutil.copyfile(trained_onnx, out)
    return out


def config(root, out, **overrides) -> TrainConfig:
    values = dict(
        data_dir=str(root),
        model="resnet-narrow",
        optimizer="sgd",
        learning_rate=0.02,
        batch_size=32,
        num_epochs=2,
        augment="flip,crop",
        out=str(out),
    )
    return TrainConfig(**{**values, **overrides})


def weights(run):
    return load_checkpoint(run / "last.pt")["state_dict"]


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distillation_loss_is_the_tempered_kl():
    teacher = torch.log_softmax(torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), 1)
    assert distillation_loss(teacher.clone(), teacher, 4.0).item() == pytest.approx(0, abs=1e-6)
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = torch.softmax(teacher / 2, 1)
    kl = (p * (p.log() - torch.log_softmax(student / 2, 1))).sum(1).mean() * 4
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(kl.item(), rel=1e-5)


def test_weight_zero_is_the_run_without_teacher(synth_root, teacher, tmp_path):
    plain = train(config(synth_root, tmp_path / "plain"))
    zero = train(config(synth_root, tmp_path / "zero", teacher=str(teacher), distill_weight=0))
    assert same(weights(tmp_path / "plain"), weights(tmp_path / "zero"))
    assert zero["val_report"] == plain["val_report"]
    assert plain["teacher"] is None and zero["teacher"]["model"] == "seed-cnn"


def test_a_distilled_run_records_its_teacher_and_resumes_exactly(
    synth_root, teacher, tmp_path, monkeypatch
):
    # mixup on: the teacher's targets are mixed as the labels are
    options = dict(teacher=str(teacher), distill_weight=0.7, distill_temperature=3, mixup=0.2)
    whole = train(config(synth_root, tmp_path / "whole", **options))
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["config"]["teacher"] == str(teacher)
    assert metrics["config"]["distill_weight"] == 0.7
    assert metrics["config"]["distill_temperature"] == 3
    record = metrics["teacher"]
    assert record["sha256"] and record["model"] == "seed-cnn"
    train(config(synth_root, tmp_path / "w0", **{**options, "distill_weight": 0.0}))
    assert not same(weights(tmp_path / "whole"), weights(tmp_path / "w0"))  # the teacher counts

    undo = interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(config(synth_root, tmp_path / "split", **options))
    undo()
    resumed = train(None, resume=str(tmp_path / "split"))
    assert same(weights(tmp_path / "split"), weights(tmp_path / "whole"))
    assert resumed["val_report"] == whole["val_report"]
    # "whole" ran the teacher; "split" read its cache (no timing to record)
    split_record = json.loads((tmp_path / "split" / "metrics.json").read_text())["teacher"]
    assert split_record == {k: v for k, v in record.items() if k not in TIMING}


def test_resume_keeps_the_first_runs_teacher_timing(synth_root, teacher, tmp_path, monkeypatch):
    from fercli.train import teacher as teacher_module

    monkeypatch.setattr(teacher_module, "cache_dir", lambda: tmp_path / "cache")
    options = dict(teacher=str(teacher), max_minutes=1e-9)  # stops after epoch 1
    train(config(synth_root, tmp_path / "run", **options))
    first = load_checkpoint(tmp_path / "run" / "last.pt")["teacher"]
    assert first["images_per_s"] > 0
    train(None, resume=str(tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["teacher"] == first


def test_a_teacher_that_does_not_fit_is_one_line(synth_copy, teacher, tmp_path, run_cli):
    def fails(*args):
        result = run_cli("train", synth_copy, "--epochs", "1", "--augment", "none", *args)
        assert result.exit_code != 0
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert "Traceback" not in result.stderr
        return error

    assert "not found" in fails("--teacher", tmp_path / "none.onnx")
    # a file that is no model
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    assert "not a usable ONNX model" in fails("--teacher", tmp_path / "bad.onnx")
    for split in ("train", "test"):
        (synth_copy / split / "angry").rename(synth_copy / split / "anger")
    message = fails("--teacher", teacher, "--out", tmp_path / "run")
    assert "has classes angry, disgust" in message and "data has anger" in message
    assert not (tmp_path / "run").exists()


def test_resume_needs_the_same_teacher(synth_root, teacher, tmp_path, run_cli):
    import onnx

    mine = tmp_path / "teacher.onnx"
    shutil.copy(teacher, mine)
    train(config(synth_root, tmp_path / "run", num_epochs=1, teacher=str(mine)))
    model = onnx.load(str(mine))
    model.doc_string = "retrained"  # another file, the same classes
    onnx.save(model, str(mine))
    result = run_cli("train", "--resume", tmp_path / "run")
    assert result.exit_code != 0 and "is not the teacher" in result.stderr
    assert "Traceback" not in result.stderr


def test_cached_targets_are_the_mirror_averaged_teacher(synth_root, teacher):
    from fercli.data.dataset import load_split
    from fercli.predict.onnx_model import OnnxModel
    from fercli.train.teacher import teacher_targets

    images = load_split(synth_root, "train").images[:50]
    x = torch.from_numpy(images).unsqueeze(1)
    classes = OnnxModel(teacher, "cpu").info.classes
    targets, record = teacher_targets(str(teacher), classes, x)
    model = OnnxModel(teacher, "cpu")
    expected = (model.predict_proba(images) + model.predict_proba(images[..., ::-1].copy())) / 2
    np.testing.assert_allclose(targets.exp().numpy(), expected, atol=1e-6)
    again, record2 = teacher_targets(str(teacher), classes, x)  # from the cache
    assert torch.equal(again, targets) and "seconds" not in record2


def test_two_processes_distil_from_one_pass_of_the_teacher(synth_root, teacher, tmp_path):
    """Under torchrun rank 0 runs the teacher and the other process reads its cache."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "fercli", "train", str(synth_root)]
    command += ["--model", "seed-cnn", "--epochs", "1", "--batch-size", "32", "--augment"]
    command += ["flip", "--teacher", str(teacher), "--out", str(out)]
    env = {**os.environ, "FERCLI_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("Teacher teacher.onnx") >= 1  # rank 0's progress
    assert proc.stderr.count("distilling from teacher.onnx") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert "2 processes" in metrics["hardware"] and metrics["teacher"]["images_per_s"] > 0


def test_batch_targets_are_the_teacher_on_each_augmented_batch(
    synth_root, teacher, tmp_path, monkeypatch
):
    """--teacher-targets batch: the teacher sees exactly the student's (augmented, mixed)
    batches, once each, and its targets are its tempered log-probabilities of them."""
    from fercli.predict.onnx_model import OnnxModel
    from fercli.train import teacher as teacher_module

    model = OnnxModel(teacher, "cpu")
    seen = []
    real = teacher_module.BatchTeacher.__call__

    def spy(self, xb):
        out = real(self, xb)
        seen.append((xb.detach().clone(), out))
        return out

    monkeypatch.setattr(teacher_module.BatchTeacher, "__call__", spy)
    options = dict(teacher=str(teacher), distill_weight=0.7, mixup=0.2)
    train(config(synth_root, tmp_path / "batch", teacher_targets="batch", **options))
    metrics = json.loads((tmp_path / "batch" / "metrics.json").read_text())
    assert len(seen) == 2 * -(-metrics["data"]["train_images"] // 32)  # 2 epochs of 32
    for xb, out in seen:
        x = np.ascontiguousarray(xb.float().numpy())
        expected = torch.log_softmax(torch.from_numpy(model.logits(x)) / model.info.temperature, 1)
        torch.testing.assert_close(out, expected)
    unique = {tuple(xb.flatten()[:64].tolist()) for xb, _ in seen}
    assert len(unique) == len(seen)  # every batch its own augmented images
    record = metrics["teacher"]
    assert record["targets"].startswith("probabilities of every augmented batch")
    assert record["model"] == "seed-cnn" and record["sha256"]
    train(config(synth_root, tmp_path / "cached", **options))
    assert not same(weights(tmp_path / "batch"), weights(tmp_path / "cached"))


def test_init_starts_from_the_checkpoint_and_resume_keeps_the_run(
    synth_root, tmp_path, monkeypatch
):
    from fercli.train import epoch as training

    train(config(synth_root, tmp_path / "first", num_epochs=1))
    start = load_checkpoint(tmp_path / "first" / "best.pt")["state_dict"]
    real, started = training.train_epoch, []

    def first_epoch(parts, *args):
        started.append({k: v.clone() for k, v in parts.model.state_dict().items()})
        return real(parts, *args)

    monkeypatch.setattr(training, "train_epoch", first_epoch)
    init = str(tmp_path / "first" / "best.pt")
    metrics = train(config(synth_root, tmp_path / "tuned", init=init, max_minutes=1e-9))
    assert same(started[0], start)
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text())["config"]["init"] == init
    assert metrics is not None
    (tmp_path / "first" / "best.pt").unlink()  # a resume carries on from its own weights
    train(None, resume=str(tmp_path / "tuned"))
    assert load_checkpoint(tmp_path / "tuned" / "last.pt")["epoch"] == 2
    assert not same(started[1], start)


def test_an_init_that_does_not_fit_is_one_line(synth_root, trained_run, tmp_path, run_cli):
    def fails(*args):
        result = run_cli("train", synth_root, "--epochs", "1", "--out", tmp_path / "run", *args)
        assert result.exit_code != 0 and "Traceback" not in result.stderr
        (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        return error

    assert "not found" in fails("--init", tmp_path / "none.pt")
    message = fails("--init", trained_run[0] / "best.pt", "--model", "resnet-narrow")
    assert "is a seed-cnn" in message and "trains a resnet-narrow" in message
    with pytest.raises(FercliError, match="unknown --teacher-targets 'x': choose cached or"):
        train(config(synth_root, tmp_path / "x", teacher_targets="x"))


def test_a_batch_teacher_of_another_normalization_is_one_line(teacher):
    from fercli.predict.onnx_model import OnnxModel
    from fercli.train.teacher import BatchTeacher

    info = OnnxModel(teacher, "cpu").info
    BatchTeacher(str(teacher), info.classes, info.image_size, {"mean": info.mean, "std": info.std})
    with pytest.raises(FercliError, match="use --teacher-targets cached"):
        BatchTeacher(str(teacher), info.classes, info.image_size, {"mean": 0.0, "std": 1.0})
