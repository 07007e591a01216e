"""Moving flagged files out of a dataset without ever losing one, putting them back, and
writing a cleaned copy.

`apply` moves each flagged file to QUARANTINE/<run-id>/<its path relative to ROOT>. Before
each move a line naming it is appended to the run's `journal.jsonl` and flushed to the OS,
so a process killed at any moment leaves every file either in place or in quarantine, and
the journal names every file that may have moved. At the end `manifest.json` is written
(atomically) with the run's files and reasons. `undo` reads the journal, so it also undoes a
run that was killed half-way, and running it again is harmless.
"""

import errno
import filecmp
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from fercli.data.dataset import QUARANTINE_DIR
from fercli.errors import FercliError
from fercli.util import atomic_write_text

JOURNAL = "journal.jsonl"
MANIFEST = "manifest.json"
FORMAT = 1


def default_quarantine(root) -> Path:
    return Path(root) / QUARANTINE_DIR


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _move(src: Path, dst: Path) -> None:
    """Rename src to dst (never over an existing file); across file systems: copy to a
    temporary name, rename that into place, then remove src."""
    if dst.exists():
        raise FercliError(f"{dst} already exists: refusing to overwrite it.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = dst.with_name(f".{dst.name}.fercli-tmp")
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.rename(tmp, dst)
        os.unlink(src)


def _move_delay() -> float:
    # Test hook: slow each move down so a test can kill the process in the middle of a run.
    return float(os.environ.get("FERCLI_TEST_MOVE_DELAY") or 0)


def apply(
    root,
    files: Iterable[tuple[str, list[dict]]],
    quarantine=None,
    run_id: str | None = None,
    summary: dict | None = None,
) -> dict:
    """Move each (relative path, [flag dicts]) into the quarantine; return the manifest
    (its "quarantine" is the run folder)."""
    root = Path(root).resolve()
    run_id = run_id or new_run_id()
    run_dir = Path(quarantine or default_quarantine(root)).resolve() / run_id
    if run_dir.exists():
        raise FercliError(f"quarantine run folder {run_dir} already exists: use a new run id.")
    run_dir.mkdir(parents=True)
    files = list(files)
    delay = _move_delay()
    moved, missing = [], []
    with open(run_dir / JOURNAL, "a", encoding="utf-8") as journal:
        header = {"format": FORMAT, "run_id": run_id, "root": str(root), "created": _now()}
        _append(journal, header, sync=True)
        for rel, flags in files:
            src, dst = root / rel, run_dir / rel
            if not src.exists():  # gone since the scan: nothing to move
                missing.append(rel)
                continue
            _append(journal, {"move": rel})  # the journal line comes before the move
            if delay:
                time.sleep(delay)
            _move(src, dst)
            moved.append({"path": rel, "flags": flags})
        os.fsync(journal.fileno())
    manifest = {
        "format": FORMAT,
        "run_id": run_id,
        "root": str(root),
        "quarantine": str(run_dir),
        "created": header["created"],
        "undo": f"fercli clean --undo {run_dir / MANIFEST}",
        "files": moved,
        "missing": missing,
        "summary": summary or {},
    }
    atomic_write_text(run_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _append(journal, entry: dict, sync: bool = False) -> None:
    journal.write(json.dumps(entry) + "\n")
    journal.flush()  # in the OS from here on: survives the process being killed
    if sync:
        os.fsync(journal.fileno())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def find_run(target, root=None, quarantine=None) -> Path:
    """The run folder for a run id, `latest`, a run folder, or its manifest/journal path."""
    path = Path(target)
    if path.is_file() and path.name in (MANIFEST, JOURNAL):
        return path.parent
    if path.is_dir() and (path / JOURNAL).exists():
        return path
    if root is None and quarantine is None:
        raise FercliError(
            f"no quarantine run at {target}: give ROOT with a run id "
            f"(`fercli clean ROOT --undo RUN_ID`) or the path of the run's {MANIFEST}."
        )
    base = Path(quarantine or default_quarantine(root))
    runs = list_runs(base)
    if str(target) == "latest" and runs:
        return base / runs[-1]
    if (base / str(target) / JOURNAL).exists():
        return base / str(target)
    choices = ", ".join(runs) if runs else "none"
    raise FercliError(f"no quarantine run {target!r} in {base}: runs there: {choices}.")


def list_runs(base) -> list[str]:
    """Run ids in a quarantine folder, oldest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / JOURNAL).exists())


def read_journal(run_dir: Path) -> tuple[dict, list[str]]:
    """The journal's header and the relative paths it names. A line cut short by a kill is
    the last one, and its move never started: it is skipped."""
    header, moves = None, []
    with open(run_dir / JOURNAL, encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if header is None:
                header = entry
            elif "move" in entry:
                moves.append(entry["move"])
    if header is None or "root" not in header:
        raise FercliError(f"{run_dir / JOURNAL} has no header: it is not a fercli journal.")
    return header, moves


def undo(run_dir) -> dict:
    """Put every file of a run back; remove the run folder when all are back. Returns
    {"run_id", "root", "restored", "already_in_place", "problems": [...]}."""
    run_dir = Path(run_dir)
    header, moves = read_journal(run_dir)
    root = Path(header["root"])
    restored, in_place, problems = 0, 0, []
    for rel in reversed(moves):
        src, dst = root / rel, run_dir / rel
        if dst.exists() and not src.exists():
            _move(dst, src)
            restored += 1
        elif src.exists() and dst.exists():
            # A cross-file-system move cut short: the original is still there.
            if filecmp.cmp(src, dst, shallow=False):
                dst.unlink()
                in_place += 1
            else:
                problems.append(f"{rel}: differs from its quarantined copy; both kept")
        elif src.exists():
            in_place += 1  # killed before this move happened
        else:
            problems.append(f"{rel}: in neither {root} nor {run_dir}")
    if not problems:
        shutil.rmtree(run_dir)
        if run_dir.parent.name == QUARANTINE_DIR:  # the default one, once empty
            try:
                run_dir.parent.rmdir()
            except OSError:
                pass
    return {
        "run_id": header.get("run_id", run_dir.name),
        "root": str(root),
        "restored": restored,
        "already_in_place": in_place,
        "problems": problems,
    }


def write_clean_copy(root, paths: list[str], dest) -> dict:
    """Write ROOT's kept files to a new folder `dest`, hard-linked where the file system
    allows (else copied). Built in a temporary folder beside dest and renamed into place,
    so dest either is complete or does not exist. ROOT is not touched."""
    root, dest = Path(root), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FercliError(f"output folder {dest} exists and is not empty: choose a new folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.fercli-tmp-{secrets.token_hex(3)}"
    linked = copied = 0
    try:
        for rel in paths:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(root / rel, target)
                linked += 1
            except OSError:
                shutil.copy2(root / rel, target)
                copied += 1
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"output": str(dest), "files": linked + copied, "linked": linked, "copied": copied}
