"""A Ray actor killed in the middle of `predict-dir --engine ray` (SIGKILL, as a node's
out-of-memory killer or a lost machine would): Ray starts another and runs its batches again,
and the output is complete and byte for byte the uninterrupted run's. Skipped without Ray."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_killed import image_folder

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def parent(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("\nPPid:\t", 1)[1].split("\n", 1)[0])


def descends_from(pid: int, ancestor: int) -> bool:
    while pid and pid != 1:
        if pid == ancestor:
            return True
        pid = parent(pid)
    return False


def map_workers(driver: int) -> list[int]:
    """The Ray Data actors (processes titled `ray::MapWorker(...)`) of this driver's cluster."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::") and b"MapWorker" in title:
            if descends_from(int(entry), driver):
                found.append(int(entry))
    return found


def predict(folder, out, *extra):
    command = [sys.executable, "-m", "fercli", "predict-dir", folder, "-o", out,
               "--engine", "ray", "--actors", 2, "--batch-size", 16, *extra]  # fmt: skip
    return [str(part) for part in command]


def test_a_killed_actor_is_replaced_and_the_output_is_whole(tmp_path):
    pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")
    folder = image_folder(tmp_path / "in", 6000)
    full, out = tmp_path / "full.csv", tmp_path / "out.csv"
    done = subprocess.run(predict(folder, full), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(predict(folder, out), stderr=subprocess.PIPE, text=True)
    deadline, killed = time.monotonic() + 120, None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        workers = map_workers(proc.pid)
        if len(workers) >= 2:
            time.sleep(1.0)  # mid-run: the actors are predicting batches
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=300)
    assert killed is not None, "the run ended before an actor could be killed"
    assert proc.returncode == 0, stderr[-2000:]
    assert out.read_bytes() == full.read_bytes()
