"""--apply, --undo and --output: no file is ever lost, even when the process is killed."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clean_helpers import make_dirty_dataset, tree

from fercli.clean import quarantine
from fercli.clean.pipeline import CleanSettings, clean_dataset, run_clean
from fercli.errors import FercliError

BUILTIN = CleanSettings(filters=["corrupt", "blank", "dedup"])  # whatever else is installed


@pytest.fixture
def dirty(tmp_path):
    root = tmp_path / "data"
    info = make_dirty_dataset(root)
    return root, info


def test_apply_moves_flagged_files_and_undo_restores_byte_for_byte(dirty):
    root, info = dirty
    before = tree(root)
    summary = clean_dataset(root, BUILTIN, apply=True)
    q = summary["quarantine"]
    run_dir = root / ".fercli-quarantine" / q["run_id"]
    assert q["moved"] == len(info["planted"])
    after = tree(root)
    data_files = {p for p in after if not p.startswith(".fercli-quarantine/")}
    assert data_files == set(info["clean"])
    for rel in info["planted"]:
        assert (run_dir / rel).read_bytes() == before[rel]  # same relative path, same bytes
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} == set(info["planted"])
    assert all(f["flags"][0]["reason"] for f in manifest["files"])
    # The quarantine is never scanned as data: a second run finds nothing.
    again = run_clean(root, BUILTIN)
    assert again.flags == [] and len(again.paths) == len(info["clean"])

    result = quarantine.undo(quarantine.find_run(q["run_id"], root))
    assert result == {
        "run_id": q["run_id"],
        "root": str(root.resolve()),
        "restored": len(info["planted"]),
        "already_in_place": 0,
        "problems": [],
    }
    assert tree(root) == before
    assert not (root / ".fercli-quarantine").exists()


def test_undo_by_manifest_path_with_a_quarantine_outside_root(dirty, tmp_path):
    root, _ = dirty
    before = tree(root)
    summary = clean_dataset(root, BUILTIN, apply=True, quarantine=tmp_path / "q")
    assert not (root / ".fercli-quarantine").exists()
    quarantine.undo(quarantine.find_run(summary["quarantine"]["manifest"]))
    assert tree(root) == before


def test_undo_survives_a_torn_journal_and_a_half_done_cross_device_move(dirty):
    root, _ = dirty
    before = tree(root)
    summary = clean_dataset(root, BUILTIN, apply=True)
    run_dir = root / ".fercli-quarantine" / summary["quarantine"]["run_id"]
    journal = run_dir / "journal.jsonl"
    # A copy that reached the quarantine while the original stayed (killed mid-copy) ...
    rel = "train/angry/angry_001.jpg"
    (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    (run_dir / rel).write_bytes(before[rel])
    # ... and a journal line cut short by the kill.
    with open(journal, "a") as f:
        f.write(json.dumps({"move": rel}) + "\n" + '{"move": "train/ang')
    result = quarantine.undo(run_dir)
    assert result["problems"] == []
    assert result["already_in_place"] == 1
    assert tree(root) == before


def test_undo_reports_a_file_it_cannot_put_back(dirty):
    root, _ = dirty
    summary = clean_dataset(root, BUILTIN, apply=True)
    run_dir = root / ".fercli-quarantine" / summary["quarantine"]["run_id"]
    (run_dir / "train/angry/blank_gray.jpg").unlink()  # someone deleted it from quarantine
    result = quarantine.undo(run_dir)
    assert result["problems"] == [
        f"train/angry/blank_gray.jpg: in neither {root.resolve()} nor {run_dir}"
    ]
    assert run_dir.exists()  # kept, with its journal, for a later look
    assert (root / "train/angry/blank_black.jpg").exists()


def wait_for_moves(root, count, timeout=120):
    """The run's journal once it names `count` moves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for journal in (root / ".fercli-quarantine").glob("*/journal.jsonl"):
            if journal.read_text().count('"move"') >= count:
                return journal
        time.sleep(0.005)
    raise AssertionError("the --apply run never got that far")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_apply_killed_at_a_random_point_still_undoes_to_the_original_tree(dirty, seed):
    root, info = dirty
    before = tree(root)
    rng = random.Random(seed)
    moves = rng.randint(2, len(info["planted"]) - 1)  # the first move is done by then
    delay = 0.2
    env = {**os.environ, "FERCLI_TEST_MOVE_DELAY": str(delay)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fercli",
            "-q",
            "clean",
            str(root),
            "--apply",
            "--filters",
            "corrupt,blank,dedup",
        ],  # fmt: skip
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        journal = wait_for_moves(root, moves)
        time.sleep(rng.uniform(0, 1.5 * delay))  # before or after that move happens
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    run_dir = journal.parent
    assert not (run_dir / "manifest.json").exists()  # it really died half-way
    moved = [rel for rel in info["planted"] if (run_dir / rel).exists()]
    assert 0 < len(moved) < len(info["planted"])
    for rel in info["planted"]:  # each file is in exactly one place
        assert (root / rel).exists() != (run_dir / rel).exists()

    done = subprocess.run(
        [sys.executable, "-m", "fercli", "clean", str(root), "--undo", "latest"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"put back {len(moved)} file(s)" in done.stdout
    assert tree(root) == before


def test_output_writes_a_cleaned_copy_with_hard_links_and_leaves_root_alone(dirty, tmp_path):
    root, info = dirty
    stats = {p: os.stat(root / p) for p in tree(root)}
    before = tree(root)
    out = tmp_path / "cleaned"
    summary = clean_dataset(root, BUILTIN, output=out)
    assert tree(root) == before
    assert {p: os.stat(root / p).st_mtime_ns for p in before} == {
        p: s.st_mtime_ns for p, s in stats.items()
    }
    assert set(tree(out)) == set(info["clean"])
    assert summary["output"]["files"] == len(info["clean"])
    rel = info["clean"][0]
    assert os.stat(out / rel).st_ino == os.stat(root / rel).st_ino  # hard link, same fs
    assert summary["output"]["linked"] == len(info["clean"])
    assert not list(tmp_path.glob(".cleaned*"))  # no temporary folder left


def test_output_and_quarantine_places_are_checked(dirty, tmp_path):
    root, _ = dirty
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FercliError, match="not empty"):
        clean_dataset(root, output=tmp_path / "full")
    with pytest.raises(FercliError, match="inside the train split"):
        clean_dataset(root, output=root / "train" / "clean")
    with pytest.raises(FercliError, match="inside the test split"):
        clean_dataset(root, apply=True, quarantine=root / "test" / "q")
    with pytest.raises(FercliError, match="exclude each other"):
        clean_dataset(root, apply=True, output=tmp_path / "new")
    with pytest.raises(FercliError, match="no quarantine run 'nope'.*runs there: none"):
        quarantine.find_run("nope", root)


def test_a_file_gone_since_the_scan_is_skipped(dirty, tmp_path):
    root, _ = dirty
    before = tree(root)
    files = [("train/angry/blank_gray.jpg", []), ("train/angry/vanished.jpg", [])]
    manifest = quarantine.apply(root, files, tmp_path / "q")
    assert [f["path"] for f in manifest["files"]] == ["train/angry/blank_gray.jpg"]
    assert manifest["missing"] == ["train/angry/vanished.jpg"]
    manifest_path = Path(manifest["quarantine"]) / "manifest.json"
    done = subprocess.run(
        [sys.executable, "-m", "fercli", "clean", "--undo", str(manifest_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert tree(root) == before
