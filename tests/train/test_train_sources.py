"""Training on several sources: --data ROOT[:WEIGHT], [[train.data]] tables, the weighted
sampler, classes by folder name, per-source validation columns, --resume with sources."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import interrupt_at

from fercli import FER_CLASSES
from fercli.data.synth import make_synthetic
from fercli.errors import FercliError
from fercli.train import TrainConfig, train
from fercli.train.checkpoint import build_model, load_checkpoint
from fercli.train.data import data_class_weights, data_epoch_indices, load_data
from fercli.train.sources import parse_source, source_list

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BETA_CLASSES = ("happy", "sad", "surprise")  # beta lacks the other four
QUICK = dict(
    model="seed-cnn",
    optimizer="adamw",
    learning_rate=2e-3,
    batch_size=32,
    num_epochs=2,
    augment="flip",
    amp="off",
)
QUICK_ARGS = [
    "--model",
    "seed-cnn",
    "--optimizer",
    "adamw",
    "--lr",
    "2e-3",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--augment",
    "flip",
    "--amp",
    "off",
]
TIMING = ("images_per_s", "seconds")


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict:
    """alpha: every class, 20 faces each; beta: three classes, 12 each; gamma: a flat photo
    folder gamma/<class>/<person>_NNNN.jpg (6 persons a class, 2 photos each) with a split
    file putting each class's first person in val. Read only."""
    base = tmp_path_factory.mktemp("sources")
    alpha, beta, made = base / "alpha", base / "beta", base / "made"
    make_synthetic(alpha, splits={"train": 20}, seed=1, plant=False)
    make_synthetic(beta, splits={"train": 12}, seed=2, plant=False)
    for name in set(FER_CLASSES) - set(BETA_CLASSES):
        shutil.rmtree(beta / "train" / name)
    make_synthetic(made, splits={"train": 12}, seed=3, plant=False)
    gamma, persons = base / "gamma", {}
    for cls in FER_CLASSES:
        (gamma / cls).mkdir(parents=True)
        for i, path in enumerate(sorted((made / "train" / cls).iterdir())):
            person = f"{cls}_person{i // 2}"
            shutil.copy(path, gamma / cls / f"{person}_{i:04d}.jpg")
            persons[person] = "val" if i // 2 == 0 else "train"
    split = base / "gamma-split.json"
    split.write_text(json.dumps({"persons": persons}))
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "split": split}


def sources_config(roots, *entries, **overrides) -> TrainConfig:
    sources = source_list(None, entries)
    return TrainConfig(data_dir=sources[0]["root"], sources=sources, **{**QUICK, **overrides})


def holdout(root: Path, val_fraction=0.1, seed=0):
    """A root's stratified validation hold-out, drawn here without fercli.train."""
    from sklearn.model_selection import train_test_split

    from fercli.data.dataset import load_split

    split = load_split(root, "train", classes=FER_CLASSES)
    idx = np.arange(len(split.labels))
    _, va = train_test_split(idx, test_size=val_fraction, stratify=split.labels, random_state=seed)
    va.sort()
    return split.images[va], split.labels[va]


def scores(checkpoint: dict, images, labels) -> tuple[float, float]:
    """Accuracy and macro recall (over the classes present) of a checkpoint's weights."""
    from sklearn.metrics import recall_score

    from fercli.train.data import predict_logits

    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    guess = predict_logits(build_model(checkpoint), x, torch.device("cpu")).argmax(1).numpy()
    present = sorted(set(labels.tolist()))
    recall = recall_score(labels, guess, labels=present, average="macro", zero_division=0)
    return float((guess == labels).mean()), float(recall)


def rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "history.csv").open()))


@pytest.mark.parametrize(
    ("text", "root", "weight"),
    [
        ("data/fer2013", "data/fer2013", 1.0),
        ("data/fer2013:3", "data/fer2013", 3.0),
        ("data/wild:0.25", "data/wild", 0.25),
        ("odd:name/root", "odd:name/root", 1.0),  # what follows the ':' is no number
        ("odd:name/root:2", "odd:name/root", 2.0),  # only the last ':' splits
        ("C:\\data\\fer", "C:\\data\\fer", 1.0),
        ("root:", "root:", 1.0),
    ],
)
def test_data_argument_splits_on_the_last_colon_before_a_number(text, root, weight):
    assert parse_source(text)["root"] == root
    assert parse_source(text)["weight"] == weight


@pytest.mark.parametrize("text", ["data:0", "data:-1", "data:inf", "data:nan"])
def test_a_weight_must_be_a_number_above_zero(text):
    with pytest.raises(FercliError, match="must be a number above 0"):
        parse_source(text)


def test_sources_are_named_checked_and_given_once(tmp_path):
    got = source_list("x/fer2013", ["y/fer2013:2", {"root": "z", "name": "wild", "split": "s"}])
    assert [s["name"] for s in got] == ["fer2013", "fer2013-2", "wild"]
    assert [s["weight"] for s in got] == [1.0, 2.0, 1.0]
    assert got[2]["split"] == "s"
    bad = [
        (["a", "a:2"], "listed twice"),
        ([{"root": "a", "name": "n"}, {"root": "b", "name": "n"}], "two sources are named"),
        ([{"root": "a", "name": "live"}], "source name 'live'"),
        ([{"root": "a", "name": "has space"}], "source name 'has space'"),
        ([{"root": "a", "wieght": 2}], "unknown key.*wieght"),
        ([{"weight": 2}], "needs a root"),
        ([{"root": "a", "weight": "2"}], "must be a number above 0"),
    ]
    for entries, message in bad:
        with pytest.raises(FercliError, match=message):
            source_list(None, entries)


def test_one_root_by_data_or_by_data_dir_is_the_same_plain_run(roots, run_cli, monkeypatch):
    import fercli.train

    seen = []
    monkeypatch.setattr(fercli.train, "train", lambda config, **_: seen.append(config))
    alpha = str(roots["alpha"])
    for args in ([alpha], ["--data", alpha], ["--data", f"{alpha}:3"]):
        assert run_cli("train", *args, "--out", "run").exit_code == 0
    assert seen[0] == seen[1] == seen[2]
    assert seen[0].sources == [] and seen[0].data_dir == alpha
    from fercli.train.loop import saved_config

    assert "sources" not in saved_config(seen[0])  # a single root's record stays as it was


def test_classes_are_mapped_by_folder_name(roots):
    data = load_data(sources_config(roots, str(roots["alpha"]), str(roots["beta"])))
    assert data.classes == FER_CLASSES
    alpha, beta = data.sources
    for s, root, classes in (
        (alpha, roots["alpha"], FER_CLASSES),
        (beta, roots["beta"], BETA_CLASSES),
    ):
        labels = torch.cat([data.y_train[s.train], data.y_val[s.val]])
        counts = torch.bincount(labels, minlength=len(FER_CLASSES)).tolist()
        files = [
            len(list((root / "train" / c).glob("*.jpg"))) if c in classes else 0
            for c in FER_CLASSES
        ]
        assert counts == files
    # beta's happy images are labelled happy: the same pixels as its happy folder's
    happy = FER_CLASSES.index("happy")
    from fercli.data.dataset import load_split

    own = load_split(roots["beta"], "train", classes=("happy",))
    mine = torch.cat(
        [
            data.x_train[beta.train][data.y_train[beta.train] == happy],
            data.x_val[beta.val][data.y_val[beta.val] == happy],
        ]
    )
    assert sorted(x.numpy().tobytes() for x in mine[:, 0]) == sorted(
        x.tobytes() for x in own.images
    )


def test_an_unknown_class_folder_is_one_clear_line(roots, tmp_path, run_cli):
    bad = Path(shutil.copytree(roots["beta"], tmp_path / "bad"))
    (bad / "train" / "sad").rename(bad / "train" / "joy")
    result = run_cli("train", roots["alpha"], "--data", bad, "--out", tmp_path / "run")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: unknown class folder 'joy'")
    assert ", ".join(FER_CLASSES) in lines[0]


def test_each_epoch_draws_from_the_sources_in_proportion_to_their_weights(roots):
    data = load_data(sources_config(roots, str(roots["alpha"]), f"{roots['beta']}:3"))
    alpha, beta = data.sources
    n_alpha, n_beta = alpha.train.stop - alpha.train.start, beta.train.stop - beta.train.start
    total = n_alpha + n_beta
    generator = torch.Generator().manual_seed(0)
    drawn = torch.zeros(total)
    epochs = 40
    for _ in range(epochs):
        order = data_epoch_indices(data, "none", generator)
        assert len(order) == total  # an epoch is as long as the sources together
        from_beta = ((order >= beta.train.start) & (order < beta.train.stop)).float().mean()
        # weight 3 against 1: three quarters; by size alone beta would have about 16%
        assert abs(from_beta.item() - 0.75) < 0.01
        drawn += torch.bincount(order, minlength=total)
    # within a source, every image alike: beta's repeat about 4.7 times an epoch, alpha's
    # are a random 4/15 of them, so 40 epochs see each about 10.7 times
    per_beta = drawn[beta.train] / epochs
    assert (
        per_beta.min() >= int(0.75 * total / n_beta)
        and per_beta.max() <= int(0.75 * total / n_beta) + 1
    )
    per_alpha = drawn[alpha.train]
    expected = epochs * (total - int(0.75 * total)) / n_alpha  # alpha's quota, whole
    assert per_alpha.mean().item() == pytest.approx(expected, abs=1e-4)
    assert per_alpha.min() > 0 and per_alpha.max() < 3 * expected


def test_oversample_tops_up_each_source_and_weights_follow_the_epochs_classes(roots):
    data = load_data(sources_config(roots, str(roots["alpha"]), f"{roots['beta']}:0.5"))
    generator = torch.Generator().manual_seed(1)
    classes = torch.zeros(len(FER_CLASSES))
    for _ in range(200):
        classes += torch.bincount(
            data.y_train[data_epoch_indices(data, "none", generator)], minlength=7
        )
    expected = classes.sum() / (len(FER_CLASSES) * classes)
    assert torch.allclose(data_class_weights(data, len(FER_CLASSES)), expected, rtol=0.03)
    # --balance oversample: a source's classes under half its own median are topped up
    small = load_data(sources_config(roots, str(roots["alpha"]), str(roots["beta"])))
    beta = small.sources[1]
    y = small.y_train.clone()
    keep = torch.ones(len(y), dtype=torch.bool)
    sad = FER_CLASSES.index("sad")
    drop = torch.nonzero((y == sad) & (torch.arange(len(y)) >= beta.train.start))[2:, 0]
    keep[drop] = False  # beta keeps 2 sad images; its median class has 10 or 11
    from dataclasses import replace

    from fercli.train.sources import SourceSplit

    n = int(keep.sum())
    cut = replace(
        small,
        x_train=small.x_train[keep],
        y_train=y[keep],
        sources=(
            small.sources[0],
            SourceSplit(beta.name, beta.weight, slice(beta.train.start, n), beta.val, beta.record),
        ),
    )
    plain = data_epoch_indices(cut, "none", torch.Generator().manual_seed(0))
    topped = data_epoch_indices(cut, "oversample", torch.Generator().manual_seed(0))
    beta_sizes = torch.bincount(cut.y_train[beta.train.start :], minlength=7)
    floor = int(beta_sizes[beta_sizes > 0].float().median().item() // 2)
    assert len(topped) == len(plain) + (floor - 2)


def test_two_sources_train_with_per_source_columns(roots, tmp_path, run_cli):
    out = tmp_path / "run"
    result = run_cli(
        "train", roots["alpha"], "--data", f"{roots['beta']}:3", *QUICK_ARGS, "--out", out
    )
    assert result.exit_code == 0, result.output
    assert "source beta: " in result.stderr and "75% of each epoch" in result.stderr
    history = rows(out)
    assert list(history[0]) == [
        "epoch",
        "train_loss",
        "train_acc",
        "lr",
        "images_per_s",
        "seconds",
        "val_loss",
        "val_acc",
        "val_acc_alpha",
        "val_recall_alpha",
        "val_acc_beta",
        "val_recall_beta",
    ]
    last = load_checkpoint(out / "last.pt")
    row = history[-1]
    for name in ("alpha", "beta"):
        accuracy, recall = scores(last, *holdout(roots[name]))
        assert float(row[f"val_acc_{name}"]) == pytest.approx(accuracy, abs=1e-4)
        assert float(row[f"val_recall_{name}"]) == pytest.approx(recall, abs=1e-4)
    for r in history:  # the combined figure: the mean over sources
        mean = (float(r["val_acc_alpha"]) + float(r["val_acc_beta"])) / 2
        assert float(r["val_acc"]) == pytest.approx(mean, abs=2e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    best = max(history, key=lambda r: float(r["val_acc"]))
    assert metrics["best"]["epoch"] == int(best["epoch"])
    assert metrics["best"]["val_acc_beta"] == float(best["val_acc_beta"])
    assert [s["name"] for s in metrics["data"]["sources"]] == ["alpha", "beta"]
    assert [s["weight"] for s in metrics["data"]["sources"]] == [1.0, 3.0]
    assert set(metrics["val_sources"]) == {"alpha", "beta"}
    beta_count = metrics["val_sources"]["beta"]["count"]
    assert (
        beta_count == len(holdout(roots["beta"])[1]) == metrics["data"]["sources"][1]["val_images"]
    )
    assert metrics["config"]["sources"][1]["root"] == f"{roots['beta']}"


def test_toml_data_tables_with_a_person_split_and_resume(roots, tmp_path, run_cli):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        "[train]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in QUICK.items())
        + f'[[train.data]]\nroot = {json.dumps(str(roots["alpha"]))}\nname = "fer"\n'
        + f"[[train.data]]\nroot = {json.dumps(str(roots['gamma']))}\nweight = 0.5\n"
        + f'name = "wild"\nsplit = {json.dumps(str(roots["split"]))}\n'
    )
    out = tmp_path / "run"
    result = run_cli("--config", recipe, "train", "--out", out)
    assert result.exit_code == 0, result.output
    history = rows(out)
    assert {"val_acc_fer", "val_recall_wild", "val_acc_wild"} <= set(history[0])
    metrics = json.loads((out / "metrics.json").read_text())
    wild = metrics["data"]["sources"][1]
    assert wild["split"] == str(roots["split"]) and "person split" in wild["val_source"]
    assert (wild["train_images"], wild["val_images"]) == (7 * 10, 7 * 2)  # the split's parts
    val_photos = sorted(p for p in roots["gamma"].rglob("*_person0_*.jpg"))
    from fercli.data.dataset import decode

    images, _ = decode(val_photos, 48, workers=1)
    labels = np.array([FER_CLASSES.index(p.parent.name) for p in val_photos])
    accuracy, recall = scores(load_checkpoint(out / "last.pt"), images, labels)
    assert float(history[-1]["val_acc_wild"]) == pytest.approx(accuracy, abs=1e-4)
    assert float(history[-1]["val_recall_wild"]) == pytest.approx(recall, abs=1e-4)
    # resuming with other sources is refused in one line; with the same, it goes on
    refused = run_cli("train", "--resume", out, "--data", roots["beta"])
    assert refused.exit_code == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--resume continues on the same data" in lines[0]
    again = run_cli("--config", recipe, "train", "--resume", out)
    assert again.exit_code == 0, again.output
    assert "already finished" in again.stderr


def test_resume_with_several_sources_gives_the_uninterrupted_run(roots, tmp_path, monkeypatch):
    entries = (str(roots["alpha"]), f"{roots['beta']}:2")
    options = dict(augment="flip,rotate,crop", mixup=0.2, balance="oversample", seed=2)
    whole = sources_config(roots, *entries, out=str(tmp_path / "whole"), **options)
    train(whole)
    undo = interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(sources_config(roots, *entries, out=str(tmp_path / "split"), **options))
    undo()
    train(None, resume=str(tmp_path / "split"))
    a, b = (load_checkpoint(tmp_path / n / "last.pt") for n in ("whole", "split"))
    strip = lambda h: [{k: v for k, v in r.items() if k not in TIMING} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
