"""`fercli clean` on the command line: dry run, report files, contact sheet, apply/undo,
errors, config, and no torch."""

import csv
import json
import subprocess
import sys

import pytest
from clean_helpers import make_dirty_dataset, tree
from PIL import Image

from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD


@pytest.fixture
def dirty(tmp_path):
    root = tmp_path / "data"
    info = make_dirty_dataset(root)
    return root, info


def test_dry_run_json_touches_nothing(run_cli, dirty):
    root, info = dirty
    before = tree(root)
    result = run_cli("clean", root, "--json", "--filters", "corrupt,blank,dedup")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["mode"] == "dry-run"
    assert summary["flagged"]["files"] == len(info["planted"])
    assert summary["duplicates"]["cross_split_groups"] == 1
    assert summary["settings"]["dedup"] == {
        "blank_std": 5.0, "threshold": 6, "drop_conflicts": False, "hash": "phash", "hash_size": 8,
        "verify": True, "verify_threshold": DEFAULT_VERIFY_THRESHOLD,
    }  # fmt: skip
    assert tree(root) == before


def test_rich_summary_names_the_problems(run_cli, dirty):
    root, _ = dirty
    result = run_cli("clean", root)
    assert result.exit_code == 0, result.output
    for text in ("flagged", "corrupt", "blank", "dedup", "Cross-split group", "--apply"):
        assert text in result.stdout


def test_report_json_csv_and_contact_sheet(run_cli, dirty, tmp_path):
    root, info = dirty
    sheet = tmp_path / "sheet.png"
    result = run_cli(
        "clean", root, "--report", tmp_path / "r.json", "--contact-sheet", sheet, "--json",
        "--filters", "corrupt,blank,dedup",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert {f["path"] for f in report["flags"]} == set(info["planted"])
    leak = next(f for f in report["flags"] if f["path"] == "train/sad/leak.jpg")
    assert leak["filter"] == "dedup" and leak["kept"] == "test/sad/sad_000.jpg"
    assert isinstance(leak["group"], int)
    group = next(g for g in report["groups"] if g["id"] == leak["group"])
    assert group["cross_split"] and group["kept"] == "test/sad/sad_000.jpg"
    assert report["summary"]["report"] == str(tmp_path / "r.json")
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width > 500

    csv_run = run_cli("clean", root, "--report", tmp_path / "r.csv", "--filters", "dedup,blank")
    assert csv_run.exit_code == 0
    with open(tmp_path / "r.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "filter", "reason", "group", "kept"]
    assert {r["path"] for r in rows} == {
        p for p, (filt, _, _) in info["planted"].items() if filt != "corrupt"
    }
    blank = next(r for r in rows if r["path"] == "train/angry/blank_white.jpg")
    assert blank["filter"] == "blank" and blank["group"] == "" and blank["kept"] == ""


def test_apply_then_undo_on_the_command_line(run_cli, dirty):
    root, info = dirty
    before = tree(root)
    result = run_cli("clean", root, "--apply", "--json", "--filters", "corrupt,blank,dedup")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["quarantine"]["run_id"]
    assert not (root / "train/sad/leak.jpg").exists()
    assert (root / ".fercli-quarantine" / run_id / "train/sad/leak.jpg").exists()
    result = run_cli("clean", root, "--undo", run_id)
    assert result.exit_code == 0, result.output
    assert f"put back {len(info['planted'])} file(s)" in result.stdout
    assert tree(root) == before


def test_user_errors_are_one_line_exit_2(run_cli, dirty, tmp_path):
    root, _ = dirty
    cases = [
        (("clean", tmp_path / "nothing"), "no dataset at"),
        (("clean", root, "--filters", "corrupt,nope"), "unknown filter 'nope'"),
        (("clean", root, "--apply", "--output", tmp_path / "o"), "exclude each other"),
        (("clean", root, "--undo", "20990101-000000-abcdef"), "no quarantine run"),
        (("clean", root, "--threshold", "64"), "out of range"),
        (("clean",), "missing ROOT"),
    ]
    for args, message in cases:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_data_dir_from_the_config_file(run_cli, dirty, tmp_path, monkeypatch):
    root, info = dirty
    (tmp_path / "fercli.toml").write_text(f'[clean]\ndata_dir = "{root}"\nblank_std = 0.5\n')
    monkeypatch.chdir(tmp_path)
    result = run_cli("clean", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["root"] == str(root)
    assert summary["settings"]["blank"] == {"blank_std": 0.5}


def test_clean_never_imports_torch(dirty):
    root, _ = dirty
    code = (
        "import sys\n"
        "from fercli.cli import main\n"
        "try:\n"
        f"    main(['-q', 'clean', {str(root)!r}, '--json', '--report', {str(root / 'r.csv')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["flagged"]["files"] > 0


def test_the_command_offers_every_hash_the_library_has():
    from fercli.commands.clean import HASHES
    from fercli.data.hashing import HASHES as LIBRARY

    assert HASHES == LIBRARY
