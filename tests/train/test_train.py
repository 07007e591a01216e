"""Training: learning on synthetic faces, checkpoints, resume, repeatability, models,
augmenters, and clear errors for bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import interrupt_at

from fercli import registry
from fercli.metrics import plots
from fercli.train import TrainConfig, train
from fercli.train.checkpoint import build_model, load_checkpoint, save_checkpoint

TIMING = ("images_per_s", "seconds")


def quick_config(root, out, **overrides) -> TrainConfig:
    """A seconds-long run of the seed CNN on the synthetic faces."""
    values = dict(
        data_dir=str(root),
        model="seed-cnn",
        optimizer="adamw",
        learning_rate=2e-3,
        batch_size=32,
        num_epochs=2,
        augment="flip",
        out=str(out),
    )
    return TrainConfig(**{**values, **overrides})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def history(run) -> list[dict]:
    return load_checkpoint(Path(run) / "last.pt")["history"]


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_short_run_learns_and_writes_the_run_folder(trained_run):
    out, metrics = trained_run
    assert metrics["val_report"]["accuracy"] > 0.45  # chance is 1/7
    for name in ("best.pt", "last.pt", "metrics.json", "history.csv", *plots.RUN_PLOTS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["val_report"]["confusion_matrix"] == metrics["val_report"]["confusion_matrix"]
    assert saved["data"]["val_source"].startswith("10% stratified hold-out")
    assert saved["best"]["val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows), 1e-4)
    # the test split was not read: the validation set is a hold-out of train
    assert saved["data"]["train_images"] + saved["data"]["val_images"] == saved["data"]["count"]


def test_checkpoints_load_with_weights_only_and_rebuild_the_same_network(trained_run, tmp_path):
    out, _ = trained_run
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(out / name, map_location="cpu", weights_only=True)
        assert ckpt["model"] == "seed-cnn"
        assert ckpt["classes"] == [
            "angry",
            "disgust",
            "fear",
            "happy",
            "neutral",
            "sad",
            "surprise",
        ]
        assert ckpt["normalization"] == {"mean": 0.5, "std": 0.5}
        assert ckpt["config"]["num_epochs"] == 8 and ckpt["data"]["file_list_hash"]
    assert "optimizer" in torch.load(out / "last.pt", weights_only=True)

    ckpt = load_checkpoint(out / "best.pt")
    model = build_model(ckpt)
    x = torch.randn(5, 1, 48, 48)
    save_checkpoint(tmp_path / "copy.pt", {**ckpt, "state_dict": model.state_dict()})
    again = build_model(load_checkpoint(tmp_path / "copy.pt"))
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert not torch.equal(model(x), registry.create("model", "seed-cnn").eval()(x))


def test_resume_gives_the_same_run_as_no_interruption(synth_root, tmp_path, monkeypatch):
    # every source of randomness in the loop: augmenters, mixup, dropout, SGD momentum,
    # a per-step schedule
    options = dict(
        optimizer="sgd",
        learning_rate=0.02,
        augment="flip,rotate,crop,jitter,erase",
        mixup=0.2,
        num_epochs=2,
        seed=3,
    )
    whole = train(quick_config(synth_root, tmp_path / "whole", **options))

    undo = interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(quick_config(synth_root, tmp_path / "split", **options))
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 1
    undo()
    resumed = train(None, resume=str(tmp_path / "split"))

    assert without_timing(history(tmp_path / "split")) == without_timing(
        history(tmp_path / "whole")
    )
    assert same_weights(weights(tmp_path / "split/last.pt"), weights(tmp_path / "whole/last.pt"))
    assert resumed["val_report"] == whole["val_report"]


def test_same_seed_same_run_other_seed_other_run(synth_root, tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        train(quick_config(synth_root, tmp_path / name, num_epochs=1, seed=seed, augment="crop"))
    assert without_timing(history(tmp_path / "a")) == without_timing(history(tmp_path / "b"))
    assert same_weights(weights(tmp_path / "a/last.pt"), weights(tmp_path / "b/last.pt"))
    assert not same_weights(weights(tmp_path / "a/last.pt"), weights(tmp_path / "c/last.pt"))


SLOW_PLUGIN = """
import os
import time

from fercli.hookspecs import hookimpl


def slow(**options):
    def augment(batch, generator):
        if os.environ.get("FERCLI_TEST_SLOW"):
            time.sleep(0.1)
        return batch

    return augment


@hookimpl
def register_augmenters(register):
    register("slow", slow, "Does nothing, slowly when FERCLI_TEST_SLOW is set.")
"""


def test_a_run_killed_mid_epoch_resumes_and_finishes(synth_root, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow.py").write_text(SLOW_PLUGIN)
    out = tmp_path / "run"
    args = ["--plugins-dir", plugins, "-q", "train", synth_root, "--model", "seed-cnn"]
    args += ["--epochs", "3", "--batch-size", "32", "--augment", "flip,slow", "--out", out]
    env = {**os.environ, "FERCLI_TEST_SLOW": "1", "FERCLI_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fercli", *map(str, args)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():  # epoch 1 is saved ...
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # ... and epoch 2 (about 1 s of sleeping batches) is under way
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_checkpoint(out / "last.pt")  # intact: written by rename, never in place
    assert state["epoch"] == 1 and not state["finished"]

    from fercli.plugins import load_plugins_dir

    load_plugins_dir(plugins)
    train(None, resume=str(out))
    assert [row["epoch"] for row in history(out)] == [1, 2, 3]
    assert load_checkpoint(out / "last.pt")["finished"]
    assert not list(out.glob(".*.tmp"))
    # a finished run has nothing left to train: resuming only rewrites its report
    before = history(out)
    again = train(None, resume=str(out))
    assert history(out) == before and again["epochs_run"] == 3


def test_seed_cnn_is_the_seed_notebooks_network():
    model = registry.create("model", "seed-cnn")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)),
        (32, 64, (3, 3)),
        (64, 128, (3, 3)),
    ]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 3
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 4
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (128 * 6 * 6, 512),
        (512, 7),
    ]
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.5]


@pytest.mark.parametrize("name", registry.names("model"))
def test_every_model_does_forward_and_backward(name):
    model = registry.create("model", name, num_classes=7).train()
    x = torch.randn(2, 1, 48, 48, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", registry.names("augmenter"))
def test_every_augmenter_keeps_shape_and_range_and_is_repeatable(name):
    augment = registry.create("augmenter", name)
    batch = torch.rand(16, 1, 48, 48, generator=torch.Generator().manual_seed(0))

    def run(seed):
        return augment(batch.clone(), torch.Generator().manual_seed(seed))

    out = run(1)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, run(1))
    assert not torch.equal(run(1), run(2)) or torch.equal(out, batch)


def test_empty_class_folder_stops_with_a_clear_error(synth_copy, run_cli):
    for path in (synth_copy / "train" / "disgust").iterdir():
        path.unlink()
    result = run_cli("train", synth_copy, "--model", "seed-cnn", "--epochs", "1")
    assert result.exit_code == 2
    assert "Error: class(es) disgust have no training images" in result.stderr
    assert "Traceback" not in result.output


def test_empty_split_stops_with_a_clear_error(tmp_path, run_cli):
    for name in ("happy", "sad"):
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
    result = run_cli("train", tmp_path / "data", "--epochs", "1")
    assert result.exit_code == 2
    assert "split in" in result.stderr and "has no images" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--model", "resnet-huge", "unknown model 'resnet-huge': choose one of seed-cnn, vgg"),
        ("--augment", "flip,twirl", "unknown augmenter 'twirl': choose one of flip, rotate"),
    ],
)
def test_unknown_names_list_the_choices(synth_root, run_cli, option, value, message):
    result = run_cli("train", synth_root, option, value, "--epochs", "1")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_config_after_the_subcommand_and_corrupt_files_skipped(synth_root, tmp_path, run_cli):
    from fercli.data.synth import MANIFEST

    planted = json.loads((synth_root / MANIFEST).read_text())["planted"]
    corrupt = [p["path"] for p in planted if p["kind"] == "corrupt"]
    out = tmp_path / "run"
    config = tmp_path / "recipe.toml"
    config.write_text(
        f'data_dir = "{synth_root.as_posix()}"\n[train]\nmodel = "seed-cnn"\nnum_epochs = 1\n'
        f'batch_size = 64\naugment = "flip"\nout = "{out.as_posix()}"\n'
    )
    result = run_cli("train", "--config", config)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "last.pt")["config"]["batch_size"] == 64
    warning = [line for line in result.stderr.splitlines() if "skipped unreadable" in line]
    assert len(warning) == 1 and corrupt[0] in warning[0] and "fercli clean" in warning[0]
    assert "Validation (best epoch)" in result.stderr


def test_interrupted_run_says_how_to_resume(synth_root, tmp_path, run_cli, monkeypatch):
    interrupt_at(monkeypatch, 2)
    out = tmp_path / "run"
    result = run_cli(
        "train",
        synth_root,
        "--model",
        "seed-cnn",
        "--epochs",
        "2",
        "--augment",
        "none",
        "--out",
        out,
    )
    assert result.exit_code == 130
    assert f"fercli train --resume {out}" in result.stderr


def test_run_folder_default_is_timestamped(synth_root, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        "train", synth_root, "--model", "seed-cnn", "--epochs", "1", "--augment", "none"
    )
    assert result.exit_code == 0, result.output
    (run,) = Path("runs").iterdir()
    assert run.name.endswith("-seed-cnn") and (run / "best.pt").is_file()


def test_oversample_tops_up_small_classes_to_half_the_median():
    from fercli.train import class_weights, epoch_indices

    labels = torch.tensor([0] * 100 + [1] * 10 + [2] * 80 + [3] * 60)
    order = epoch_indices(labels, "oversample", torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[order]).tolist()
    assert counts == [100, 30, 80, 60]  # (lower) median 60: class 1 goes from 10 to 30
    assert sorted(set(order.tolist())) == list(range(len(labels)))  # every image still in
    plain = epoch_indices(labels, "none", torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(len(labels)))
    weights = class_weights(labels, 4)
    assert weights[1] > weights[3] > weights[2] > weights[0]
    assert torch.allclose((weights * torch.bincount(labels)).float(), torch.full((4,), 62.5))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ),
    ],
)
def test_training_learns_and_resumes_on_each_device(device, synth_root, tmp_path, monkeypatch):
    """The same run on the CPU and, where there is one, on a GPU (images kept and augmented
    on the device, float16 autocast): it learns, and an interrupted run resumes with the
    random streams where they were (to rounding: GPU kernels need not be deterministic)."""
    options = dict(device=device, augment="flip,crop,erase", num_epochs=4, seed=5)
    train(quick_config(synth_root, tmp_path / "whole", **options))
    rows = history(tmp_path / "whole")
    # it learns (4 short epochs on a few hundred faces: the training figures, not the noisy
    # validation accuracy of 29 images, which test_short_run_learns... checks on the CPU)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.05
    assert rows[-1]["train_acc"] > 0.25  # chance is 1/7
    state = load_checkpoint(tmp_path / "whole" / "last.pt")
    assert ("augment_generator" in state["rng"]) == (device == "cuda")

    undo = interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(quick_config(synth_root, tmp_path / "split", **options))
    undo()
    train(None, resume=str(tmp_path / "split"))
    a, b = history(tmp_path / "whole"), history(tmp_path / "split")
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for row_a, row_b in zip(a, b):
        assert row_b["train_loss"] == pytest.approx(row_a["train_loss"], rel=2e-2, abs=1e-3)
        assert row_b["val_loss"] == pytest.approx(row_a["val_loss"], rel=2e-2, abs=1e-3)
    if device == "cpu":  # deterministic there: the same run to the last bit
        assert without_timing(a) == without_timing(b)


@pytest.mark.parametrize(
    ("amp", "device", "flags", "expected"),
    [
        ("auto", "cpu", "fpu avx512f avx512_bf16 amx_bf16 amx_tile", torch.bfloat16),
        ("auto", "cpu", "fpu avx512f avx512_bf16 avx512_vnni", None),  # bf16 is slower there
        ("auto", "cpu", "fpu sse2", None),
        ("on", "cpu", "fpu sse2", torch.bfloat16),
        ("off", "cpu", "amx_bf16", None),
        ("auto", "cuda", "", torch.float16),
        ("off", "cuda", "", None),
    ],
)
def test_amp_auto_uses_bf16_only_with_amx(amp, device, flags, expected, monkeypatch):
    import fercli.train

    monkeypatch.setattr(fercli.train.device, "cpuinfo", lambda: f"flags\t\t: {flags}\n")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    config = fercli.train.TrainConfig(data_dir=".", amp=amp)
    assert fercli.train.amp_dtype(config, torch.device(device)) == expected


def test_run_records_the_autocast_it_used(trained_run):
    import fercli.train

    run, _ = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    config = fercli.train.TrainConfig.from_dict(metrics["config"])
    dtype = fercli.train.amp_dtype(config, torch.device("cpu"))
    assert metrics["autocast"] == (str(dtype).split(".")[-1] if dtype else "off")


QUICK_CLI = ("--model", "seed-cnn", "--optimizer", "adamw", "--batch-size", "32")
QUICK_CLI += ("--augment", "none")


@pytest.mark.parametrize("name", ["best.pt", "last.pt", "history.csv", "metrics.json"])
def test_train_refuses_an_out_folder_that_holds_a_run(synth_root, tmp_path, run_cli, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("an earlier run's")
    result = run_cli("train", synth_root, *QUICK_CLI, "--epochs", "1", "--out", out)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()  # one line
    assert line.startswith(f"Error: {out} already holds a run ({name})")
    assert f"fercli train --resume {out}" in line and "--overwrite" in line
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written
    assert (out / name).read_text() == "an earlier run's"


def test_the_python_side_refuses_too_unless_overwrite(synth_root, tmp_path):
    from fercli.errors import FercliError

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    with pytest.raises(FercliError, match="already holds a run"):
        train(quick_config(synth_root, out, num_epochs=1))
    metrics = train(quick_config(synth_root, out, num_epochs=1), overwrite=True)
    assert metrics["epochs_run"] == 1 and (out / "best.pt").is_file()


def test_overwrite_replaces_a_run_and_resume_continues_one(synth_root, tmp_path, run_cli):
    out = tmp_path / "run"
    out.mkdir()  # an empty folder is fine
    first = ("train", synth_root, *QUICK_CLI, "--epochs", "2", "--out", out)
    result = run_cli(*first, "--max-minutes", "1e-6")  # stops after epoch 1
    assert result.exit_code == 0, result.output
    assert [row["epoch"] for row in history(out)] == [1]
    saved = (out / "last.pt").read_bytes()

    refused = run_cli(*first)
    assert refused.exit_code == 2 and "already holds a run" in refused.stderr
    assert (out / "last.pt").read_bytes() == saved

    resumed = run_cli("train", "--resume", out)  # --resume is not refused
    assert resumed.exit_code == 0, resumed.output
    assert [row["epoch"] for row in history(out)] == [1, 2]

    again = run_cli("train", synth_root, *QUICK_CLI, "--epochs", "1", "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert [row["epoch"] for row in history(out)] == [1]
    with open(out / "history.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1
