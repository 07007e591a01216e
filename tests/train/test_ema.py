"""`fercli train --ema`: the moving average of the weights, what a run validates, keeps and
resumes."""

import csv
import importlib.util

import pytest
import torch
from train_helpers import interrupt_at, validation_accuracy

from fercli.errors import FercliError
from fercli.train import TrainConfig, train
from fercli.train.checkpoint import load_checkpoint
from fercli.train.ema import WeightAverage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(root, out, **overrides) -> TrainConfig:
    values = dict(
        data_dir=str(root),
        model="resnet-narrow",
        learning_rate=0.02,
        batch_size=32,
        num_epochs=2,
        augment="flip,crop",
        ema=0.9,
        out=str(out),
    )
    return TrainConfig(**{**values, **overrides})


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_average_follows_the_weights_with_a_warming_decay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, 0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 3
    average.update(model)  # decay min(0.5, 2 / 11): the new weights count 9/11
    got = average.module.state_dict()
    assert torch.allclose(got["0.weight"], start["0.weight"] + 9 / 11)
    assert torch.equal(got["0.bias"], start["0.bias"])
    assert got["1.num_batches_tracked"].item() == 3  # integers are copied, not averaged
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)  # decay min(0.5, 3 / 12) = 0.25
    expected = (start["0.weight"] + 9 / 11) * 0.25 + (start["0.weight"] + 2) * 0.75
    assert torch.allclose(got["0.weight"], expected)
    assert not average.module.training and not any(
        p.requires_grad for p in average.module.parameters()
    )
    for decay in (0, 1, 1.5):
        with pytest.raises(FercliError, match="--ema"):
            WeightAverage(model, decay)


def test_a_run_validates_and_keeps_the_average_and_resumes_exactly(
    synth_root, tmp_path, monkeypatch
):
    whole = train(config(synth_root, tmp_path / "whole"))
    best = load_checkpoint(tmp_path / "whole" / "best.pt")
    last = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert last["ema"]["updates"] > 0
    assert not same(last["state_dict"], last["ema"]["live"])  # the average is not the step
    # val_acc is the kept weights' (the average's); val_acc_live the step's own
    rows = list(csv.DictReader((tmp_path / "whole" / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all("val_acc_live" in r for r in rows)
    if importlib.util.find_spec("matplotlib"):  # the curves plot both validations
        assert (tmp_path / "whole" / "curves.png").stat().st_size > 0
    accuracy = validation_accuracy(best, synth_root)
    assert accuracy == pytest.approx(best["metrics"]["val_acc"])
    assert whole["val_report"]["accuracy"] == pytest.approx(accuracy)

    undo = interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(config(synth_root, tmp_path / "split"))
    undo()
    resumed = train(None, resume=str(tmp_path / "split"))
    again = load_checkpoint(tmp_path / "split" / "last.pt")
    assert same(again["state_dict"], last["state_dict"])
    assert same(again["ema"]["live"], last["ema"]["live"])
    assert again["ema"]["updates"] == last["ema"]["updates"]
    assert resumed["val_report"] == whole["val_report"]


def test_without_ema_nothing_changes(synth_root, tmp_path):
    train(config(synth_root, tmp_path / "plain", ema=0.0))
    last = load_checkpoint(tmp_path / "plain" / "last.pt")
    assert last["ema"] is None
    header = (tmp_path / "plain" / "history.csv").read_text().splitlines()[0]
    assert "val_acc_live" not in header


def test_an_ema_of_one_is_refused_in_one_line(synth_root, tmp_path, run_cli):
    result = run_cli("train", synth_root, "--ema", "1", "--out", tmp_path / "run")
    assert result.exit_code != 0 and "--ema" in result.output
    assert "Traceback" not in result.output
