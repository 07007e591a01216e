"""clean --engine ray: on a local Ray cluster (2 CPUs, no dashboard, a small object store)
the synthetic dataset's planted duplicates, blanks and corrupt file are flagged exactly as the
local engine flags them (the JSON reports are the same but for the timing and the report's
own path), the near-duplicate search's keys run as Ray tasks; a missing extra is one line.
Skipped where Ray is not installed."""

import json
import sys

import numpy as np
import pytest


def _report(path):
    report = json.loads(path.read_text())
    summary = report["summary"]
    del summary["seconds"], summary["report"]
    return report


def test_ray_engine_flags_what_the_local_engine_flags(
    ray_cluster,  # noqa: F811 (the fixture)
    synth_root,
    tmp_path,
    run_cli,
    monkeypatch,
):
    from fercli.clean import ray as clean_ray
    from fercli.data import dataset

    monkeypatch.setattr(dataset, "CHUNK", 100)  # several Ray batches, regrouped (local: 512)
    searched = []  # the near-duplicate search's tasks, run on the cluster

    def run_tasks(task, items, tasks=None, _run=clean_ray.run_tasks):
        searched.append(len(items))
        return _run(task, items, tasks=tasks)

    monkeypatch.setattr(clean_ray, "run_tasks", run_tasks)
    local = run_cli("clean", synth_root, "--report", tmp_path / "local.json", "--workers", 1)
    assert local.exit_code == 0, local.output
    ray = run_cli(
        "clean", synth_root, "--report", tmp_path / "ray.json", "--engine", "ray",
        "--actors", 2,
    )  # fmt: skip
    assert ray.exit_code == 0, ray.output
    assert searched and sum(searched) > 0  # the dedup filter's search ran as Ray tasks
    expected, got = _report(tmp_path / "local.json"), _report(tmp_path / "ray.json")
    assert got == expected
    per_filter = expected["summary"]["flagged"]["per_filter"]
    assert per_filter["corrupt"] and per_filter["blank"] and per_filter["dedup"]  # planted


def test_without_ray_the_extra_is_named(synth_root, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    result = run_cli("clean", synth_root, "--engine", "ray")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --engine ray needs Ray Data, which is not installed here: "
                      "pip install 'fercli[ray]'."]  # fmt: skip


def test_regroup_cuts_batches_into_the_chunks():
    from fercli.engines.ray import regroup

    batches = [{"index": np.arange(a, b), "x": np.arange(a, b) * 2} for a, b in
               [(0, 3), (3, 4), (4, 10), (10, 11)]]  # fmt: skip
    parts = list(regroup(iter(batches), [5, 5, 1]))
    assert [list(p["index"]) for p in parts] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10]]
    assert list(parts[1]["x"]) == [10, 12, 14, 16, 18]


def test_unreachable_cluster_is_one_line(synth_root, run_cli, monkeypatch):
    pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh process would be
    result = run_cli("clean", synth_root, "--engine", "ray", "--ray-address", "127.0.0.1:1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr


def test_workers_with_ray_is_refused_in_one_line(synth_root, run_cli):
    """--workers sizes the local decoding pool, which Ray does not use: refused, not ignored."""
    result = run_cli("clean", synth_root, "--engine", "ray", "--workers", "2")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --workers sizes the local engine; with --engine ray the actors "
                      "do the work: set --actors."]  # fmt: skip
