"""The clean engine and the built-in filters, on data with planted problems."""

import json

import numpy as np
import pytest
from clean_helpers import make_dirty_dataset, texture
from PIL import Image

from fercli import registry
from fercli.builtin.filters import BlankFilter, CorruptFilter, DedupFilter
from fercli.clean.duplicates import find_duplicates, group_around_kept
from fercli.clean.filters import Filter, ImageBatch
from fercli.clean.pipeline import CleanSettings, run_clean
from fercli.errors import FercliError, PluginError
from fercli.hookspecs import hookimpl
from fercli.plugins import pm

BUILTIN = CleanSettings(filters=["corrupt", "blank", "dedup"])  # whatever else is installed


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    root = tmp_path_factory.mktemp("dirty") / "data"
    info = make_dirty_dataset(root)
    return root, info


def test_builtin_filters_are_registered():
    assert {"corrupt", "blank", "dedup"} <= set(registry.names("filter"))
    assert registry.get("filter", "dedup").plugin == "fercli.builtin.filters"


def test_every_planted_problem_is_found_and_nothing_else(dirty):
    root, info = dirty
    result = run_clean(root, BUILTIN)
    flagged = {f.path: f for f in result.flags}
    assert len(flagged) == len(result.flags)  # one flag per file here
    assert set(flagged) == set(info["planted"])
    for path, (filt, _what, original) in info["planted"].items():
        flag = flagged[path]
        assert flag.filter == filt, path
        assert flag.reason
        if filt == "dedup":
            assert flag.kept == original
            assert flag.group is not None
    assert "empty file" in flagged["train/happy/empty.jpg"].reason
    assert "truncated" in flagged["train/sad/truncated.jpg"].reason
    assert "not an image" in flagged["test/angry/notes.jpg"].reason
    assert "exact duplicate" in flagged["train/angry/angry_000_copy.jpg"].reason
    assert "near duplicate" in flagged["train/sad/sad_002_q50.jpg"].reason
    assert "cross-split" in flagged["train/sad/leak.jpg"].reason
    assert "label conflict" in flagged["train/happy/angry_003_relabelled.jpg"].reason


def test_summary_counts(dirty):
    root, info = dirty
    summary = run_clean(root, BUILTIN).summary()
    json.dumps(summary)  # serializable
    images = summary["images"]
    assert images["total_before"] == len(info["clean"]) + len(info["planted"])
    assert images["total_after"] == len(info["clean"])
    # FER-2013 class names: all seven are listed, the empty ones with 0
    assert {k: v for k, v in images["after"]["train"].items() if v} == {
        "angry": 6,
        "happy": 6,
        "sad": 6,
    }
    assert images["before"]["train"]["angry"] == 6 + 1 + 3  # a copy and three blanks
    assert summary["flagged"]["per_filter"] == {"corrupt": 3, "blank": 3, "dedup": 5}
    dups = summary["duplicates"]
    assert dups["groups"] == 5
    assert dups["exact_groups"] == 3  # copy, leak, relabelled: pixel-identical pairs
    assert dups["near_groups"] == 2
    assert dups["cross_split_groups"] == 1
    assert dups["label_conflict_groups"] == 1
    assert summary["examples"]["cross_split"][0]["kept"] == "test/sad/sad_000.jpg"


def test_drop_conflicts_flags_every_copy(dirty):
    root, _ = dirty
    result = run_clean(root, CleanSettings(filters=["dedup"], drop_conflicts=True))
    conflict = [f for f in result.flags if "label conflict" in f.reason]
    assert {f.path for f in conflict} == {
        "train/angry/angry_003.jpg",
        "train/happy/angry_003_relabelled.jpg",
    }
    assert all(f.kept is None for f in conflict)


def test_filters_option_and_unknown_filter(dirty):
    root, _ = dirty
    result = run_clean(root, CleanSettings(filters=["blank"]))
    assert result.filters == ["blank"]
    assert {f.filter for f in result.flags} == {"blank"}
    with pytest.raises(PluginError, match="unknown filter 'sharpness'.*corrupt, blank, dedup"):
        run_clean(root, CleanSettings(filters=["sharpness"]))


def test_blank_threshold_is_configurable(tmp_path):
    rng = np.random.default_rng(0)
    faint = np.full((48, 48), 100, np.uint8) + (rng.random((48, 48)) < 0.5).astype(np.uint8) * 6
    batch = ImageBatch(
        paths=["a", "b"], splits=["train"] * 2, labels=["x"] * 2,
        images=np.stack([faint, texture(rng)]), errors=[None, None],
    )  # fmt: skip
    assert [i for i, _ in BlankFilter().check(batch)] == [0]  # std 3 < 5
    assert BlankFilter(blank_std=2.0).check(batch) == []
    assert CorruptFilter().check(batch) == []


def test_blank_and_unreadable_images_are_not_hashed():
    rng = np.random.default_rng(1)
    face = texture(rng)
    black = np.zeros((48, 48), np.uint8)
    batch = ImageBatch(
        paths=["a", "b", "c", "d", "e"], splits=["train"] * 5, labels=["x"] * 5,
        images=np.stack([face, face, black, black, np.zeros_like(face)]),
        errors=[None, None, None, None, "truncated"],
    )  # fmt: skip
    dedup = DedupFilter()
    assert list(dedup.check(batch)) == []
    flags = list(dedup.finish())
    assert [(f.path, f.kept) for f in flags] == [("b", "a")]  # the two blacks are no group


def test_dedup_settings_are_checked():
    with pytest.raises(FercliError, match="out of range"):
        DedupFilter(threshold=64)
    with pytest.raises(FercliError, match="power-of-two"):
        DedupFilter(hash="whash", hash_size=6)
    assert DedupFilter(hash_size=16).threshold == 24  # the default, scaled to 256 bits


def rows(*bit_strings):
    return np.array([[c == "1" for c in s] for s in bit_strings])


def test_keep_rule_test_then_val_then_majority_label_then_path():
    bits = rows("0000", "0000", "0000", "0000")
    paths = ["train/a/1.jpg", "val/a/2.jpg", "test/b/3.jpg", "test/a/4.jpg"]
    splits = ["train", "val", "test", "test"]
    groups = group_around_kept(paths, splits, ["a", "a", "b", "a"], bits, 0)
    assert [paths[i] for i in groups[0]][0] == "test/a/4.jpg"  # test, and label a has 3 votes
    groups = group_around_kept(paths[:2], splits[:2], ["a", "a"], bits[:2], 0)
    assert paths[groups[0][0]] == "val/a/2.jpg"
    groups = group_around_kept(["t/b.jpg", "t/a.jpg"], ["train"] * 2, ["x", "x"], bits[:2], 0)
    assert groups == [[1, 0]]  # same split and label: smallest path


def test_no_chains_every_flagged_copy_is_near_its_kept_copy():
    # a ~ b ~ c but a and c are 4 apart: with threshold 2, c is not a's duplicate.
    bits = rows("00000000", "11000000", "11110000")
    paths = ["train/x/a.jpg", "train/x/b.jpg", "train/x/c.jpg"]
    groups, flags = find_duplicates(paths, ["train"] * 3, ["x"] * 3, bits, [b"1", b"2", b"3"], 2)
    assert [(f.path, f.kept) for f in flags] == [("train/x/b.jpg", "train/x/a.jpg")]
    assert len(groups) == 1 and not groups[0].exact


def test_a_plugin_filter_takes_part(dirty):
    class Dark(Filter):
        def check(self, batch):
            return [(i, "dark") for i in batch.readable() if batch.images[i].mean() < 20]

    class Plugin:
        @hookimpl
        def register_filters(self, register):
            register("dark", lambda: Dark(), "Very dark images.")

    pm.register(Plugin(), name="test-dark-plugin")  # undone by conftest
    root, _ = dirty
    result = run_clean(root)
    assert "dark" in result.filters
    assert [f.path for f in result.flags if f.filter == "dark"] == ["train/angry/blank_black.jpg"]
    assert result.summary()["flagged"]["per_filter"]["dark"] == 1


def test_a_failing_plugin_filter_is_a_clear_error(dirty):
    class Broken(Filter):
        def check(self, batch):
            raise RuntimeError("boom")

    class Plugin:
        @hookimpl
        def register_filters(self, register):
            register("broken", Broken, "Always fails.")

    pm.register(Plugin(), name="test-broken-plugin")
    root, _ = dirty
    with pytest.raises(PluginError, match="filter 'broken' failed.*boom"):
        run_clean(root, CleanSettings(filters=["broken"]))


def test_decompression_bombs_are_corrupt(tmp_path, monkeypatch):
    root = tmp_path / "data"
    (root / "train" / "happy").mkdir(parents=True)
    Image.fromarray(texture(np.random.default_rng(0), 200)).save(root / "train/happy/big.png")
    Image.fromarray(texture(np.random.default_rng(1))).save(root / "train/happy/ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # workers run in-process here
    result = run_clean(root, CleanSettings(workers=1))
    assert [(f.path, f.filter) for f in result.flags] == [("train/happy/big.png", "corrupt")]
    assert "decompression bomb" in result.flags[0].reason


def test_planted_problems_of_the_synthetic_dataset_are_found(synth_root):
    """`fercli synth`'s planted problems are exactly what the built-in filters flag."""
    planted = json.loads((synth_root / "planted.json").read_text())["planted"]
    result = run_clean(synth_root, BUILTIN)
    found = {f.path: f.filter for f in result.flags}
    expect = {}
    for p in planted:
        if p["kind"] == "cross-split-duplicate":
            expect[p["of"]] = "dedup"  # the test copy is kept, the train original flagged
        else:
            expect[p["path"]] = {"blank": "blank", "corrupt": "corrupt"}.get(p["kind"], "dedup")
    assert found == expect
    conflicts = [g for g in result.groups if g.label_conflict]
    relabelled = [p for p in planted if p["kind"] == "label-conflict"]
    assert [set(g.paths) for g in conflicts] == [{p["path"], p["of"]} for p in relabelled]


def test_decoding_matches_the_one_preprocessing_and_imagehash(tmp_path):
    """The worker's fast path for plain 48x48 gray JPEGs and the general path give exactly
    fercli.data.images.load_image's arrays; the hashes are imagehash's."""
    import imagehash

    from fercli.clean.pipeline import decode_chunk
    from fercli.data.hashing import to_hex
    from fercli.data.images import load_image

    rng = np.random.default_rng(5)
    face = texture(rng)
    Image.fromarray(face).save(tmp_path / "plain.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    Image.fromarray(texture(rng, 64)[:, :40]).save(tmp_path / "turned.jpg", exif=exif)
    Image.fromarray(np.stack([face, face[::-1], face.T], -1), "RGB").save(tmp_path / "rgb.png")
    wide = (texture(rng, 96).astype(np.uint16) * 257)[:60]
    Image.fromarray(wide).save(tmp_path / "deep.png")  # 16-bit, not square
    paths = [str(tmp_path / n) for n in ("plain.jpg", "turned.jpg", "rgb.png", "deep.png")]
    images, errors, digests, hashes = decode_chunk(paths, [("phash", 8), ("dhash", 8)])
    assert errors == [None] * 4
    for path, arr in zip(paths, images):
        np.testing.assert_array_equal(arr, load_image(path), err_msg=path)
    assert to_hex(hashes[("phash", 8)]) == [str(imagehash.phash(Image.open(p))) for p in paths]
    assert to_hex(hashes[("dhash", 8)]) == [str(imagehash.dhash(Image.open(p))) for p in paths]
    assert len(set(digests)) == 4
