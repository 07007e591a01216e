import json

import numpy as np
import pytest

from fercli import FER_CLASSES
from fercli.data.dataset import load_split
from fercli.data.images import ImageError, load_image
from fercli.data.synth import MANIFEST, make_synthetic
from fercli.errors import FercliError


def files_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
    make_synthetic(tmp_path / "a", per_class=6, seed=3)
    make_synthetic(tmp_path / "b", per_class=6, seed=3)
    make_synthetic(tmp_path / "c", per_class=6, seed=4)
    a, b, c = (files_of(tmp_path / x) for x in "abc")
    assert a == b
    common = a.keys() & c.keys()  # the planted files differ too
    assert sum(a[k] != c[k] for k in common) > len(common) // 2


def test_layout_and_counts(tmp_path):
    summary = make_synthetic(tmp_path / "d", per_class=8, seed=0, plant=False)
    assert summary["created"]
    for split, per_class in (("train", 8), ("test", 2)):
        for name in FER_CLASSES:
            files = sorted((tmp_path / "d" / split / name).glob("*.jpg"))
            assert len(files) == per_class == summary["counts"][split][name]
            assert load_image(files[0]).shape == (48, 48)
    assert summary["planted"] == []


def test_planted_problems_are_what_the_manifest_says(tmp_path):
    root = tmp_path / "d"
    summary = make_synthetic(root, per_class=8, seed=1)
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["planted"] == summary["planted"]
    by_kind = {}
    for p in summary["planted"]:
        by_kind.setdefault(p["kind"], []).append(p)
        assert (root / p["path"]).is_file()
    assert {k: len(v) for k, v in by_kind.items()} == {
        "exact-duplicate": 3,
        "near-duplicate": 3,
        "cross-split-duplicate": 1,
        "label-conflict": 1,
        "blank": 3,
        "corrupt": 1,
    }
    for p in (
        by_kind["exact-duplicate"] + by_kind["cross-split-duplicate"] + by_kind["label-conflict"]
    ):
        assert (root / p["path"]).read_bytes() == (root / p["of"]).read_bytes()
    assert by_kind["cross-split-duplicate"][0]["path"].startswith("test/")
    assert by_kind["cross-split-duplicate"][0]["of"].startswith("train/")
    conflict = by_kind["label-conflict"][0]
    assert conflict["path"].split("/")[1] != conflict["of"].split("/")[1]
    for p in by_kind["near-duplicate"]:
        a, b = load_image(root / p["path"]), load_image(root / p["of"])
        assert (root / p["path"]).read_bytes() != (root / p["of"]).read_bytes()
        assert np.abs(a.astype(int) - b).mean() < 15
    for p in by_kind["blank"]:
        assert np.ptp(load_image(root / p["path"])) <= 2
    with pytest.raises(ImageError):
        load_image(root / by_kind["corrupt"][0]["path"])


def test_only_the_corrupt_file_fails_to_load(tmp_path):
    summary = make_synthetic(tmp_path / "d", per_class=5, seed=2)
    corrupt = [p["path"] for p in summary["planted"] if p["kind"] == "corrupt"]
    train = load_split(tmp_path / "d", "train", use_cache=False, workers=1)
    assert [path for path, _ in train.errors] == corrupt
    assert load_split(tmp_path / "d", "test", use_cache=False, workers=1).errors == []


def test_learnable_by_a_linear_model(tmp_path):
    """A ridge classifier on standardized 24x24 pixels clearly beats chance (1/7)."""
    from sklearn.linear_model import RidgeClassifier

    root = tmp_path / "d"
    make_synthetic(root, per_class=60, seed=0)
    train = load_split(root, "train", use_cache=False, workers=1)
    test = load_split(root, "test", use_cache=False, workers=1)

    def features(images):
        x = images.astype(np.float32).reshape(len(images), 24, 2, 24, 2).mean((2, 4))
        x -= x.mean((1, 2), keepdims=True)
        x /= x.std((1, 2), keepdims=True) + 1e-3
        return x.reshape(len(x), -1)

    model = RidgeClassifier(alpha=100).fit(features(train.images), train.labels)
    accuracy = model.score(features(test.images), test.labels)
    assert accuracy > 0.4, accuracy  # chance: 1/7; measured 0.56 for seed 0


def test_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep me")
    with pytest.raises(FercliError, match="not empty"):
        make_synthetic(tmp_path / "d", per_class=4)
    assert (tmp_path / "d" / "mine.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folder left behind


def test_empty_folder_is_fine_and_a_rerun_is_a_no_op(tmp_path):
    (tmp_path / "d").mkdir()
    assert make_synthetic(tmp_path / "d", per_class=4)["created"]
    before = files_of(tmp_path / "d")
    again = make_synthetic(tmp_path / "d", per_class=4)
    assert not again["created"]
    assert files_of(tmp_path / "d") == before
    with pytest.raises(FercliError, match="not empty"):
        make_synthetic(tmp_path / "d", per_class=5)


def test_synth_command(run_cli, tmp_path):
    result = run_cli("synth", tmp_path / "d", "--per-class", "4", "--seed", "5")
    assert result.exit_code == 0, result.output
    assert "Planted for `fercli clean`" in result.stdout
    assert len(list((tmp_path / "d" / "train" / "happy").glob("happy_*.jpg"))) >= 4
    again = run_cli("synth", tmp_path / "d", "--per-class", "4", "--seed", "5")
    assert again.exit_code == 0 and "left as it is" in again.stdout
    other = run_cli("synth", tmp_path / "d", "--per-class", "4", "--seed", "6")
    assert other.exit_code == 2
    assert other.stderr.startswith("Error: ") and "not empty" in other.stderr


def test_synth_fixture_is_a_dataset(synth_root, synth_copy):
    from fercli.data.dataset import find_splits

    assert find_splits(synth_root) == ["train", "test"]
    assert (synth_copy / MANIFEST).read_bytes() == (synth_root / MANIFEST).read_bytes()


def test_only_the_planted_copies_are_near_duplicates(synth_root):
    """Under clean's default perceptual hash and threshold, the drawn faces stay apart: the
    duplicate pairs are exactly the planted ones."""
    from PIL import Image

    from fercli.clean.duplicates import default_threshold
    from fercli.data.hashing import hash_images, pack, popcount

    planted = json.loads((synth_root / MANIFEST).read_text())["planted"]
    paths = sorted(p.relative_to(synth_root).as_posix() for p in synth_root.rglob("*.jpg"))
    images = {}
    for rel in paths:
        try:
            image = load_image(synth_root / rel)
        except ImageError:
            continue
        if image.std() > 5:  # blanks are the blank filter's business
            images[rel] = image
    names = list(images)
    words = pack(hash_images("phash", [Image.fromarray(a) for a in images.values()]))
    close = set()
    for i in range(len(names)):
        near = popcount(words[i + 1 :] ^ words[i]) <= default_threshold(64)
        close |= {frozenset((names[i], names[i + 1 + j])) for j in np.flatnonzero(near)}
    assert close == {frozenset((p["path"], p["of"])) for p in planted if "of" in p}
