"""`fercli clean` and files it may not read: a file that cannot be opened or read (permission
denied, an I/O error) is reported as unreadable, with its reason, and never quarantined; only
files that were read and failed to decode are corrupt.

Tests run as root, where chmod 000 does not stop reading, so unreadability is simulated: os.open
(what fercli's image loader and the clean engine open files with) raises PermissionError for
the chosen paths. The test datasets are small enough to be decoded in this process."""

import csv
import errno
import json
import os

import pytest
from clean_helpers import make_dirty_dataset, tree

from fercli.clean.pipeline import clean_dataset, read_failure, run_clean

DENIED = ("train/happy/happy_002.jpg", "train/sad/truncated.jpg")  # a good file, a corrupt one


@pytest.fixture
def dirty(tmp_path):
    root = tmp_path / "data"
    info = make_dirty_dataset(root)
    return root, info


def deny(monkeypatch, root, rels=DENIED):
    """Make opening these files fail as a file without read permission does."""
    denied = {os.path.abspath(root / rel) for rel in rels}
    real_open = os.open

    def guarded(path, *args, **kwargs):
        if os.path.abspath(os.fspath(path)) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def test_unreadable_files_are_reported_and_never_flagged(dirty, monkeypatch):
    root, info = dirty
    deny(monkeypatch, root)
    result = run_clean(root)
    assert result.unreadable == {rel: "permission denied" for rel in DENIED}
    flagged = {f.path for f in result.flags}
    assert not flagged & set(DENIED)
    assert flagged == set(info["planted"]) - set(DENIED)  # the other corrupt files still are
    corrupt = {f.path for f in result.flags if f.filter == "corrupt"}
    assert corrupt == {"train/happy/empty.jpg", "test/angry/notes.jpg"}
    summary = result.summary()
    assert summary["unreadable"] == {
        "files": 2,
        "examples": [{"path": rel, "reason": "permission denied"} for rel in DENIED],
    }
    assert summary["flagged"]["per_filter"]["corrupt"] == 2
    assert result.report()["unreadable"] == summary["unreadable"]["examples"]
    assert not set(result.kept_paths()) & set(DENIED)  # a cleaned copy leaves them out too


def test_a_readable_dataset_reports_as_before(dirty):
    root, _ = dirty
    result = run_clean(root)
    assert result.unreadable == {}
    assert "unreadable" not in result.summary() and "unreadable" not in result.report()


def test_read_failure_tells_unreadable_from_corrupt(dirty, monkeypatch):
    root, _ = dirty
    assert read_failure(root / "train/sad/truncated.jpg") is None  # read: corrupt
    assert read_failure(root / "train/happy/empty.jpg") is None
    assert read_failure(root / "train/sad/missing.jpg") == "file not found"
    deny(monkeypatch, root)
    assert read_failure(root / DENIED[1]) == "permission denied"

    real_read = os.read

    def failing_read(fd, n):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "read", failing_read)
    assert read_failure(root / "train/sad/sad_000.jpg") == "input/output error"
    monkeypatch.setattr(os, "read", real_read)


def test_apply_leaves_unreadable_files_in_place(run_cli, dirty, monkeypatch, tmp_path):
    root, info = dirty
    before = tree(root)
    deny(monkeypatch, root)
    report = tmp_path / "r.csv"
    result = run_cli("clean", root, "--apply", "--json", "--report", report)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["unreadable"]["files"] == 2
    assert {u["path"]: u["reason"] for u in summary["unreadable"]["examples"]} == {
        rel: "permission denied" for rel in DENIED
    }
    run_dir = root / ".fercli-quarantine" / summary["quarantine"]["run_id"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    moved = {f["path"] for f in manifest["files"]}
    assert moved == set(info["planted"]) - set(DENIED)
    assert summary["quarantine"]["moved"] == len(moved)
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["filter"], r["reason"]) for r in rows if r["path"] in DENIED] == [
        (rel, "unreadable", "permission denied") for rel in DENIED
    ]
    monkeypatch.undo()
    for rel in DENIED:  # in place, untouched
        assert (root / rel).read_bytes() == before[rel]
        assert not (run_dir / rel).exists()


def test_the_rich_summary_names_unreadable_files(run_cli, dirty, monkeypatch):
    root, _ = dirty
    deny(monkeypatch, root, DENIED[1:])
    result = run_cli("clean", root, "--apply")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "1 file(s) could not be read" in text and "never quarantined" in text
    assert f"{DENIED[1]}: permission denied" in text
    monkeypatch.undo()
    assert (root / DENIED[1]).is_file()


def test_clean_dataset_apply_skips_them(dirty, monkeypatch):
    root, info = dirty
    deny(monkeypatch, root)
    summary = clean_dataset(root, apply=True)
    assert summary["quarantine"]["moved"] == len(info["planted"]) - 1  # happy_002 was clean
    monkeypatch.undo()
    assert all((root / rel).is_file() for rel in DENIED)
