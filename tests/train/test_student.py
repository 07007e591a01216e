"""The CPU students (`resnet-narrow`, `resnet-s2`) and the costs `fercli models` lists:
multiply-accumulates counted exactly, within a twentieth of the bundled ensemble, with or
without PyTorch."""

import json

import torch
from torch import nn

from fercli import registry
from fercli.train.model_cost import count_macs, count_parameters

ENSEMBLE_MACS = 5 * 263_764_608  # the bundled default, 5 x vgg: 1.32 G


def test_macs_are_counted_from_each_layers_shapes():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 48*48 outputs x 4 channels x 9 inputs each
        nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4),  # depthwise: 24*24*4 x 9
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 7),
    )
    assert count_macs(model) == 48 * 48 * 4 * 9 + 24 * 24 * 4 * 9 + 4 * 7
    assert count_parameters(model) == (4 * 9 + 4) + (4 * 9 + 4) + (4 * 7 + 7)
    assert model.training  # counting leaves the mode as it found it


def test_vgg_cost_matches_the_ensemble_figure():
    assert 5 * count_macs(registry.create("model", "vgg")) == ENSEMBLE_MACS


def test_student_is_a_twentieth_of_the_ensemble_and_learns_shapes():
    model = registry.create("model", "resnet-narrow", num_classes=7)
    assert count_macs(model) <= ENSEMBLE_MACS / 20  # about 60 M
    assert count_parameters(model) < 500_000
    assert model(torch.zeros(3, 1, 48, 48)).shape == (3, 7)
    # any input size the stages can halve three times
    assert model.eval()(torch.zeros(1, 1, 40, 40)).shape == (1, 7)


def test_stride_two_stem_buys_twice_the_filters_for_the_same_work():
    narrow = registry.create("model", "resnet-narrow", num_classes=7)
    s2 = registry.create("model", "resnet-s2", num_classes=7)
    assert abs(count_macs(s2) - count_macs(narrow)) < 0.01 * count_macs(narrow)
    assert count_macs(s2) <= ENSEMBLE_MACS / 20
    assert s2.features[0].stride == (2, 2) and s2.features[0].out_channels == 32
    assert s2(torch.zeros(2, 1, 48, 48)).shape == (2, 7)
    assert s2.eval()(torch.zeros(1, 1, 40, 40)).shape == (1, 7)  # halved four times


def test_models_lists_macs_and_parameters(run_cli):
    proc = run_cli("models", "--json")
    listing = json.loads(proc.stdout)
    rows = {row["name"]: row for row in listing["architectures"]}
    assert listing["costs_note"] is None
    assert rows["vgg"]["macs"] == ENSEMBLE_MACS // 5 and rows["vgg"]["parameters"] == 2_639_479
    assert rows["resnet-narrow"]["macs"] <= 60e6
    assert all(row["macs"] > 0 and row["parameters"] > 0 for row in rows.values())
    table = run_cli("models", "resnet*").stdout
    assert "resnet-narrow" in table and "46.3 M" in table and "seed-cnn" not in table


def test_a_model_that_cannot_be_counted_shows_no_figures(monkeypatch):
    from fercli.train import model_listing

    def broken(num_classes=7):
        raise RuntimeError("needs a 3-channel input")

    real = registry.entries

    def entries(kind):
        found = dict(real(kind))
        found["odd"] = registry.Entry(kind, "odd", broken, "", "test")
        return found

    monkeypatch.setattr(registry, "entries", entries)
    rows = [{"name": "odd"}, {"name": "seed-cnn"}]
    assert model_listing.add_costs(rows) is None
    assert rows[0]["macs"] is None and rows[1]["macs"] == 24_260_096


def test_student_trains_in_bf16_autocast():
    model = registry.create("model", "resnet-narrow").train()
    x = torch.randn(4, 1, 48, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1, 2, 3])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
