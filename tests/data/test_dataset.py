"""The dataset layer: layout, class names, scanning, loading a split, and the on-disk cache
(a hit decodes nothing; a changed, added or removed file invalidates it)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fercli import FER_CLASSES
from fercli.data import dataset
from fercli.data.dataset import (
    QUARANTINE_DIR,
    cache_dir,
    class_names,
    find_splits,
    load_split,
    scan_split,
)
from fercli.data.images import load_image
from fercli.errors import FercliError


def make_tree(root: Path, files: dict[str, int]) -> Path:
    """files: relative path -> gray level of a flat 48x48 PNG (or -1 for a broken file)."""
    for rel, level in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if level < 0:
            path.write_bytes(b"not an image")
        else:
            Image.fromarray(np.full((48, 48), level, np.uint8)).save(path)
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(
        tmp_path / "data",
        {
            "train/happy/b.png": 20,
            "train/happy/a.png": 10,
            "train/sad/c.png": 30,
            "train/sad/broken.png": -1,
            "test/happy/d.png": 40,
            "test/angry/e.png": 50,
        },
    )


class DecodeSpy:
    """Counts calls of fercli.data.dataset.decode (or refuses them)."""

    def __init__(self, monkeypatch, refuse=False):
        self.calls = 0
        self.refuse = refuse
        self.real = dataset.decode
        monkeypatch.setattr(dataset, "decode", self)

    def __call__(self, *args, **kwargs):
        if self.refuse:
            raise AssertionError("decode called although the cache should have answered")
        self.calls += 1
        return self.real(*args, **kwargs)


def test_missing_dataset_message(tmp_path):
    for root in (tmp_path / "nowhere", tmp_path):  # no folder; a folder without splits
        with pytest.raises(FercliError) as err:
            find_splits(root)
        message = str(err.value)
        assert f"{root}/train/<class>/<image>" in message
        assert "kaggle.com" in message and f"fercli synth {root}" in message


def test_splits_and_fer_class_order(tree):
    assert find_splits(tree) == ["train", "test"]
    (tree / "val").mkdir()
    assert find_splits(tree) == ["train", "val", "test"]
    # a subset of FER's classes gets all seven in FER's order, so labels mean the same everywhere
    assert class_names(tree) == FER_CLASSES


def test_other_class_names_are_sorted(tmp_path):
    root = make_tree(
        tmp_path, {"train/zebra/a.png": 1, "train/cat/b.png": 2, "train/.hid/c.png": 3}
    )
    assert class_names(root) == ("cat", "zebra")


def test_no_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FercliError, match="no class folders"):
        class_names(tmp_path)


def test_scan_skips_hidden_quarantine_and_non_images(tree):
    make_tree(
        tree,
        {
            f"{QUARANTINE_DIR}/run1/train/happy/q.png": 1,
            "train/happy/.hidden.png": 1,
            "train/happy/.cache/x.png": 1,
            "train/happy/sub/deep.png": 60,
        },
    )
    (tree / "train" / "happy" / "notes.txt").write_text("x")
    samples = scan_split(tree, "train", FER_CLASSES)
    happy, sad = FER_CLASSES.index("happy"), FER_CLASSES.index("sad")
    assert [(s.rel, s.label) for s in samples] == [
        ("train/happy/a.png", happy),
        ("train/happy/b.png", happy),
        ("train/happy/sub/deep.png", happy),
        ("train/sad/broken.png", sad),
        ("train/sad/c.png", sad),
    ]


def test_load_split(tree):
    data = load_split(tree, "train", workers=1)
    assert data.images.shape == (3, 48, 48) and data.images.dtype == np.uint8
    assert data.paths == ["train/happy/a.png", "train/happy/b.png", "train/sad/c.png"]
    assert [int(im[0, 0]) for im in data.images] == [10, 20, 30]
    assert list(data.labels) == [FER_CLASSES.index(c) for c in ("happy", "happy", "sad")]
    assert data.errors == [("train/sad/broken.png", "not an image (or an unsupported format)")]
    assert data.counts()["happy"] == 2 and data.counts()["angry"] == 0
    assert len(data) == 3 and data.classes == FER_CLASSES


def test_missing_and_empty_split(tree, tmp_path):
    with pytest.raises(FercliError, match="no 'val' split"):
        load_split(tree, "val")
    (tmp_path / "e" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(FercliError, match="has no images"):
        load_split(tmp_path / "e", "train")


def test_cache_hit_does_not_decode(tree, monkeypatch):
    first = load_split(tree, "train", workers=1)
    assert len(list(cache_dir().glob("train-*.npz"))) == 1
    DecodeSpy(monkeypatch, refuse=True)
    second = load_split(tree, "train", workers=1)
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels)
    assert first.paths == second.paths and first.errors == second.errors
    assert first.file_list_hash == second.file_list_hash


def test_cache_dir_comes_from_the_environment(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("FERCLI_CACHE_DIR", str(tmp_path / "mycache"))
    load_split(tree, "test", workers=1)
    assert list((tmp_path / "mycache").glob("test-*.npz"))


@pytest.mark.parametrize("change", ["content", "mtime", "added", "removed"])
def test_cache_is_invalidated_when_files_change(tree, monkeypatch, change):
    load_split(tree, "train", workers=1)
    spy = DecodeSpy(monkeypatch)
    a = tree / "train" / "happy" / "a.png"
    if change == "content":
        Image.fromarray(np.full((60, 60), 99, np.uint8)).save(a)  # other size, other pixels
    elif change == "mtime":
        st = a.stat()
        os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif change == "added":
        make_tree(tree, {"train/sad/z.png": 70})
    else:
        a.unlink()
    data = load_split(tree, "train", workers=1)
    assert spy.calls == 1
    by_path = dict(zip(data.paths, data.images, strict=True))
    if change == "content":
        assert (by_path["train/happy/a.png"] == 99).all()
    if change == "added":
        assert (by_path["train/sad/z.png"] == 70).all()
    if change == "removed":
        assert "train/happy/a.png" not in by_path
    load_split(tree, "train", workers=1)
    assert spy.calls == 1  # and the new state is cached in turn


def test_damaged_cache_is_rebuilt(tree, monkeypatch):
    load_split(tree, "train", workers=1)
    (cached,) = cache_dir().glob("train-*.npz")
    cached.write_bytes(b"garbage")
    spy = DecodeSpy(monkeypatch)
    assert len(load_split(tree, "train", workers=1)) == 3
    assert spy.calls == 1


def test_no_cache(tree):
    load_split(tree, "train", use_cache=False, workers=1)
    assert not list(cache_dir().glob("*.npz"))


def test_parallel_decode_matches_serial(tmp_path):
    """More than two chunks of files: decoded in worker processes, same result as in one."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(1100):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
        paths.append(path)
    paths[5] = tmp_path / "missing.png"
    serial, serial_errors = dataset.decode(paths, workers=1)
    parallel, parallel_errors = dataset.decode(paths, workers=2)
    assert np.array_equal(serial, parallel)
    assert serial_errors == parallel_errors == [(5, "file not found")]
    assert np.array_equal(parallel[1000], load_image(paths[1000]))


def test_synthetic_dataset_loads(synth_root):
    planted = json.loads((synth_root / "planted.json").read_text())["planted"]
    in_train = [p for p in planted if p["path"].startswith("train/")]
    corrupt = [p["path"] for p in planted if p["kind"] == "corrupt"]
    train = load_split(synth_root, "train")
    assert len(train) == 7 * 40 + len(in_train) - len(corrupt)
    assert [path for path, _ in train.errors] == corrupt


@pytest.mark.fer2013
def test_real_fer2013_layout(fer2013):
    assert find_splits(fer2013) == ["train", "test"]
    assert class_names(fer2013) == FER_CLASSES
    samples = scan_split(fer2013, "test", FER_CLASSES)
    assert len(samples) > 3000
    images, errors = dataset.decode([fer2013 / s.rel for s in samples[::50]], workers=1)
    assert errors == [] and images.shape[1:] == (48, 48)
