"""A real Ray cluster of two nodes, started the way docs/engines.md shows (`ray start --head`,
then `ray start --address` for a worker node, each in its own process, with a temporary
folder): `fercli predict-dir` and `fercli clean` run on it with `--ray-address` and give what
the local engine gives. Skipped where Ray is not installed; every wait has its own deadline."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_predict import make_mixed_folder

from fercli.predict.folder import predict_dir

pytestmark = pytest.mark.slow  # starts a two-node Ray cluster: `pytest -m 'not slow'` leaves it out

STARTUP_S = 90  # each node up, and both seen by the head
RUN_S = 300  # each fercli command on the cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, seconds: float, processes) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                pytest.fail(f"{what}: `ray start` exited with {p.returncode}")
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {seconds} s")


def alive_nodes(address: str, env: dict) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR', "
        "log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) if done.returncode == 0 and lines else 0


def stop(process: subprocess.Popen) -> None:
    """The node: `ray start --block` and every process it started (its process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                process.poll()
                return
            process.poll()  # reap `ray start` itself
            time.sleep(0.2)


@pytest.fixture(scope="module")
def two_node_cluster():
    pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")
    ray_cli = Path(sys.executable).with_name("ray")
    if not ray_cli.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    port = free_port()
    address = f"127.0.0.1:{port}"
    # Short: Ray puts Unix sockets under it, whose paths may not pass 107 bytes.
    temp = tempfile.mkdtemp(prefix="fray", dir="/tmp" if os.path.isdir("/tmp") else None)
    # Ray 2.60's `ray start --head` turns token authentication on, which its drivers then
    # need RAY_AUTH_MODE=token for: a test cluster on one machine goes without.
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    common = ["--block", "--num-cpus", "1", "--disable-usage-stats"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    quiet["start_new_session"] = True  # its own process group: the node's processes too
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--port", str(port), "--temp-dir", temp,
         "--include-dashboard", "false", "--object-store-memory", str(100 * 1024**2), *common],
        **quiet,
    )  # fmt: skip
    nodes = [head]
    try:
        wait_for("the head node", lambda: alive_nodes(address, env) == 1, STARTUP_S, nodes)
        nodes.append(
            subprocess.Popen(
                [
                    ray_cli,
                    "start",
                    "--address",
                    address,
                    "--object-store-memory",
                    str(100 * 1024**2),
                    *common,
                ],
                **quiet,
            )  # fmt: skip
        )
        wait_for("the worker node", lambda: alive_nodes(address, env) == 2, STARTUP_S, nodes)
        yield address, env
    finally:
        for process in reversed(nodes):
            stop(process)
        shutil.rmtree(temp, ignore_errors=True)


def fercli(*args, cwd, env) -> subprocess.CompletedProcess:
    """fercli as a user runs it: its own process, a driver that joins the cluster."""
    command = [sys.executable, "-m", "fercli", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_S)


def test_predict_dir_on_a_two_node_cluster_writes_the_local_rows(two_node_cluster, tmp_path):
    root = tmp_path / "images"
    make_mixed_folder(root)
    local = tmp_path / "local.csv"
    predict_dir(root, local, workers=0, batch_size=4)
    address, env = two_node_cluster
    done = fercli(
        "predict-dir", root, "-o", tmp_path / "cluster.csv", "--engine", "ray",
        "--ray-address", address, "--actors", 2, "--batch-size", 4, "--faces", "none",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cluster.csv").read_bytes() == local.read_bytes()
    summary = json.loads((tmp_path / "cluster.csv.summary.json").read_text())
    assert summary["engine"] == "ray"


def test_clean_on_a_two_node_cluster_flags_what_the_local_engine_flags(
    two_node_cluster, synth_root, tmp_path
):
    address, env = two_node_cluster

    def report(name, *engine):
        done = fercli(
            "clean", synth_root, "--report", tmp_path / name, *engine, cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        found = json.loads((tmp_path / name).read_text())
        del found["summary"]["seconds"], found["summary"]["report"]
        return found

    local = report("local.json", "--workers", 1)
    cluster = report("cluster.json", "--engine", "ray", "--ray-address", address, "--actors", 2)
    assert cluster == local
    assert local["summary"]["flagged"]["per_filter"]["dedup"]  # the planted duplicates
