"""`fercli clean`'s options as the library takes them: CleanSettings.from_options (the click
parameters, --filters comma-separated), its checks, and find_duplicates' DuplicateSearch."""

import numpy as np
import pytest
from clean_helpers import make_dirty_dataset

from fercli.clean.duplicates import DuplicateSearch, find_duplicates
from fercli.clean.pipeline import OUTPUT_OPTIONS, CleanSettings, clean_dataset, run_clean
from fercli.commands.clean import clean_command
from fercli.errors import FercliError


def test_from_options_takes_the_settings_and_leaves_the_rest():
    options = {
        "data_dir": "data", "apply": True, "undo_run": None, "quarantine": None,
        "filters": " corrupt, ,dedup ", "hash": "dhash", "hash_size": 16, "threshold": 3,
        "blank_std": 2.5, "verify": False, "workers": 2, "engine": "local",
    }  # fmt: skip
    settings = CleanSettings.from_options(options)
    assert settings == CleanSettings(
        filters=["corrupt", "dedup"], hash="dhash", hash_size=16, threshold=3, blank_std=2.5,
        verify=False, workers=2,
    )  # fmt: skip


@pytest.mark.parametrize(("given", "filters"), [(None, None), ("", None), (",", []), ("a", ["a"])])
def test_from_options_filters_as_the_command_line_gives_them(given, filters):
    assert CleanSettings.from_options({"filters": given}).filters == filters
    assert CleanSettings.from_options({}).filters is None


def test_every_click_parameter_is_a_setting_or_an_output_or_the_command_s_own():
    settings = {name for name in CleanSettings.__dataclass_fields__}
    own = {"data_dir", "undo_run", "as_json"}
    params = {p.name for p in clean_command.params}
    assert params == (settings | set(OUTPUT_OPTIONS) | own)
    assert not (settings & set(OUTPUT_OPTIONS))


def test_an_unknown_engine_is_refused_before_any_work(tmp_path):
    with pytest.raises(FercliError, match=r"^unknown engine 'spark': choose local or ray\.$"):
        CleanSettings(engine="spark").check()
    with pytest.raises(FercliError, match="unknown engine 'spark'"):
        run_clean(tmp_path / "nowhere", CleanSettings(engine="spark"))


def test_undo_takes_no_output_options(run_cli, tmp_path):
    for extra in (["--apply"], ["--output", tmp_path / "out"], ["--report", tmp_path / "r.json"]):
        result = run_cli("clean", tmp_path, "--undo", "latest", *extra)
        assert result.exit_code == 2
        assert result.stderr == (
            "Error: --undo takes no --apply, --output, --report or --contact-sheet.\n"
        )


def test_the_command_and_the_library_give_the_same_summary(run_cli, tmp_path):
    import json

    root = tmp_path / "data"
    make_dirty_dataset(root)
    result = run_cli("clean", root, "--json", "--filters", "corrupt,blank,dedup", "--workers", "1")
    assert result.exit_code == 0, result.output
    settings = CleanSettings(filters=["corrupt", "blank", "dedup"], blank_std=5.0, workers=1)
    summary = clean_dataset(root, settings)
    printed = json.loads(result.stdout)
    assert printed.pop("seconds") >= 0 and summary.pop("seconds") >= 0
    assert printed == summary


def rows(*codes: str) -> np.ndarray:
    return np.array([[c == "1" for c in code] for code in codes], bool)


def test_a_bare_threshold_is_a_hash_only_search():
    bits = rows("00000000", "11000000", "11110000", "00000001")
    paths = ["train/x/a.jpg", "train/y/b.jpg", "train/x/c.jpg", "test/x/d.jpg"]
    splits = [p.split("/")[0] for p in paths]
    labels = [p.split("/")[1] for p in paths]
    digests = [b"1", b"2", b"3", b"4"]
    bare = find_duplicates(paths, splits, labels, bits, digests, 2)
    search = find_duplicates(paths, splits, labels, bits, digests, DuplicateSearch(2))
    assert [g.as_dict() for g in bare[0]] == [g.as_dict() for g in search[0]]
    assert bare[1] == search[1]
    reasons = {f.path: f.reason for f in bare[1]}
    assert reasons["train/x/a.jpg"] == (
        "near duplicate of test/x/d.jpg (hash distance 1); cross-split: the test copy is kept"
    )


def test_drop_conflicts_and_verification_through_the_search():
    bits = rows("00000000", "00000001", "00000000")
    paths = ["train/a/1.jpg", "train/b/2.jpg", "train/a/3.jpg"]
    labels = ["a", "b", "a"]
    digests = [b"1", b"2", b"1"]
    search = DuplicateSearch(2, drop_conflicts=True)
    groups, flags = find_duplicates(paths, ["train"] * 3, labels, bits, digests, search)
    assert groups[0].kept is None and groups[0].exact_sets == 1
    assert [(f.path, f.kept) for f in flags] == [(p, None) for p in groups[0].paths]
    assert {f.reason for f in flags} == {"label conflict: copies labelled a, b"}

    stats: dict = {}
    rejecting = DuplicateSearch(2, scores=lambda a, b: np.zeros(len(a)), verify_threshold=0.5)
    groups, flags = find_duplicates(
        paths, ["train"] * 3, labels, bits, digests, rejecting, stats=stats
    )
    assert [(f.path, f.reason) for f in flags] == [
        ("train/a/3.jpg", "exact duplicate of train/a/1.jpg")
    ]
    assert stats == {"pairs_checked": 1, "pairs_rejected": 1}
    keyword = find_duplicates(
        paths, ["train"] * 3, labels, bits, digests, DuplicateSearch(2, verify_threshold=0.5),
        scores=lambda a, b: np.zeros(len(a)),
    )  # fmt: skip
    assert keyword[1] == flags
