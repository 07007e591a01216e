"""A `fercli predict-dir` or `fercli clean` killed (SIGTERM, SIGHUP: `kill`, `timeout`, a
closed terminal; or SIGKILL) leaves no worker process behind and, but after a SIGKILL, no
temporary file; --resume then finishes the output as an uninterrupted run writes it."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clean_helpers import make_dirty_dataset
from PIL import Image

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def image_folder(root: Path, n: int = 2000) -> Path:
    """n small PNG faces (eight distinct ones over and over: quick to write)."""
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(buf, "PNG")
        blobs.append(buf.getvalue())
    root.mkdir()
    for i in range(n):
        (root / f"face_{i:05d}.png").write_bytes(blobs[i % len(blobs)])
    return root


def state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z", "X")  # a zombie has ended, reaped or not


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status and alive(int(entry)):
                found.append(int(entry))
    return found


def start(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fercli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60):
    """Poll `condition()` until it is true; fail if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before it could be killed")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run never got to where it is killed")


def workers_of(proc: subprocess.Popen, count: int = 2) -> list[int]:
    def found():
        pids = children(proc.pid)
        return pids if len(pids) >= count else None

    return wait_for(found, proc)


def fercli(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fercli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def assert_gone(pids: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [p for p in pids if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "worker processes outlived the killed main process"


def tmp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def predict(folder: Path, out: Path, *extra) -> tuple:
    return ("predict-dir", folder, "-o", out, "--workers", 2, "--batch-size", 8, *extra)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_predict_dir_its_workers_and_its_temporary_file(tmp_path, sig):
    folder = image_folder(tmp_path / "faces")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "rows.csv").write_text("the previous output\n")
    proc = start(*predict(folder, out_dir / "rows.csv"))
    workers = workers_of(proc)
    wait_for(lambda: tmp_files(out_dir), proc)  # predicting, into the temporary file
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert_gone(workers)
    assert tmp_files(out_dir) == []
    assert (out_dir / "rows.csv").read_text() == "the previous output\n"  # left as it was


def test_resume_after_sigterm_gives_the_uninterrupted_output(tmp_path):
    folder = image_folder(tmp_path / "faces")
    whole, cut = tmp_path / "whole.csv", tmp_path / "cut.csv"
    assert fercli(*predict(folder, whole)).returncode == 0
    proc = start(*predict(folder, cut, "--resume"))
    workers = workers_of(proc)
    wait_for(lambda: cut.exists() and cut.stat().st_size > 1000, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert_gone(workers)
    rows = cut.read_bytes()
    assert rows.endswith(b"\r\n") and len(rows) < whole.stat().st_size  # whole batches, cut short
    assert fercli(*predict(folder, cut, "--resume")).returncode == 0
    assert cut.read_bytes() == whole.read_bytes()
    assert tmp_files(tmp_path) == []


def test_workers_die_with_a_sigkilled_main_process_and_resume_finishes(tmp_path):
    folder = image_folder(tmp_path / "faces", 1200)
    out = tmp_path / "rows.jsonl"
    proc = start(*predict(folder, out, "--resume"))
    workers = workers_of(proc)
    wait_for(lambda: out.exists() and out.stat().st_size > 0, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert_gone(workers)
    done = fercli(*predict(folder, out, "--resume"))
    assert done.returncode == 0, done.stderr
    paths = [json.loads(line)["path"] for line in out.read_text().splitlines()]
    assert sorted(paths) == sorted(p.name for p in folder.iterdir())  # each once


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_clean_leaves_no_workers(tmp_path, sig):
    root = tmp_path / "data"
    make_dirty_dataset(root, per_class=500)  # over 1,024 files: clean starts workers
    report = tmp_path / "report.json"
    proc = start("clean", root, "--workers", 2, "--report", report)
    workers = workers_of(proc)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert_gone(workers)
    assert not report.exists() and tmp_files(tmp_path) == []


@pytest.fixture
def default_sigterm():
    """SIGTERM at its default action in this process, as in a fresh fercli process: an
    earlier test may have left another handler (Ray's driver installs one that exits)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_signals_raise_in_this_process_and_are_restored(tmp_path, default_sigterm):
    from fercli.util import Terminated, atomic_path, signals_raise

    before = signal.getsignal(signal.SIGTERM)
    assert before == signal.SIG_DFL
    with pytest.raises(Terminated) as caught:
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("half")
            with signals_raise():  # nested: the outer one restores
                pass
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the signal is raised here, at once
    assert caught.value.code == 143
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before


def scene_folder(root: Path, n: int = 120) -> Path:
    """n pictures of 2 or 3 synthetic faces pasted on a backdrop, for rows per face."""
    from faces_scenes import Placed, scene

    from fercli.data.synth import draw_face

    rng = np.random.default_rng(1)
    root.mkdir()
    for i in range(n):
        k = 2 + i % 2
        placed = [
            Placed(draw_face(["happy", "sad", "surprise"][j], rng), 60 + 110 * j, 80, 90)
            for j in range(k)
        ]
        scene(110 * k + 10, 160, placed, seed=i).save(root / f"scene_{i:04d}.png")
    return root


def kill_at_size(proc: subprocess.Popen, out: Path, size: int) -> int:
    """SIGKILL the run as soon as its output holds `size` bytes; the size it had then."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        now = out.stat().st_size if out.exists() else 0
        if now >= size:
            proc.kill()  # SIGKILL: nothing of fercli's runs after it
            proc.wait(timeout=30)
            return now
        time.sleep(0.001)
    proc.kill()
    proc.wait(timeout=30)
    return -1  # it ended first


@pytest.mark.parametrize("faces", ["none", "detect"], ids=["whole-images", "faces"])
def test_resume_after_sigkill_at_random_moments_gives_the_uninterrupted_rows(tmp_path, faces):
    """kill -9 of predict-dir at 10 random moments per mode (20 in all), each time resumed:
    the output ends byte for byte as an uninterrupted run's, no picture cut short, none
    twice. A moment is a random point of the output's growth (5% to 95% of its bytes)."""
    folder = (
        image_folder(tmp_path / "in", 1500) if faces == "none" else scene_folder(tmp_path / "in")
    )
    full, out = tmp_path / "full.csv", tmp_path / "out.csv"
    extra = ("--faces", faces, "--workers", 1)
    assert fercli(*predict(folder, full, *extra)).returncode == 0
    expected = full.read_bytes()
    assert expected.count(b"\n") > 100
    rng = np.random.default_rng(7 if faces == "none" else 8)
    cut_at = []
    for _ in range(10):
        out.unlink(missing_ok=True)
        proc = start(*predict(folder, out, "--resume", *extra))
        cut_at.append(kill_at_size(proc, out, int(len(expected) * rng.uniform(0.05, 0.95))))
        done = fercli(*predict(folder, out, "--resume", *extra))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == expected, f"killed at {cut_at[-1]} bytes"
    assert sum(0 < size < len(expected) for size in cut_at) >= 8, cut_at  # killed mid-run
