"""predict-dir --engine ray: on a local Ray cluster (2 CPUs, no dashboard, a small object
store) the output is byte for byte the local engine's, broken files included; a missing extra
and an unreachable cluster are one line each. Skipped where Ray is not installed."""

import json
import sys

import pytest
from test_predict import make_mixed_folder

from fercli.predict import predict_dir


def needs_ray():
    return pytest.importorskip("ray.data", reason="Ray Data not installed (fercli[ray])")


@pytest.fixture(scope="module")
def ray_cluster():
    needs_ray()
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray") / "images"
    expected = make_mixed_folder(root)
    assert "error" in expected.values()  # good and broken files
    return root


@pytest.mark.parametrize(
    "suffix, options",
    [(".csv", {}), (".jsonl", {"topk": 2, "tta": True})],
    ids=["csv", "jsonl-topk-tta"],
)
def test_ray_engine_writes_what_the_local_engine_writes(
    ray_cluster, mixed_folder, tmp_path, run_cli, suffix, options
):
    local_out = tmp_path / f"local{suffix}"
    local = predict_dir(mixed_folder, local_out, workers=0, batch_size=4, **options)
    flags = ["--topk", "2", "--tta"] if options else []
    result = run_cli(
        "predict-dir", mixed_folder, "-o", tmp_path / f"ray{suffix}", "--engine", "ray",
        "--actors", 2, "--batch-size", 4, *flags,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "engine ray" in result.stderr
    ray_bytes = (tmp_path / f"ray{suffix}").read_bytes()
    assert ray_bytes == local_out.read_bytes()
    assert local.errors and len(local.errors) < local.total  # good and broken files
    summary = json.loads((tmp_path / f"ray{suffix}.summary.json").read_text())
    assert summary["engine"] == "ray" and summary["rows"] == local.total
    assert json.loads(local.summary_path.read_text())["engine"] == "local"


def test_unreachable_cluster_is_one_line(mixed_folder, tmp_path, run_cli, monkeypatch):
    needs_ray()
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh process would be
    result = run_cli(
        "predict-dir", mixed_folder, "-o", tmp_path / "out.csv", "--engine", "ray",
        "--ray-address", "127.0.0.1:1",
    )  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_without_ray_the_extra_is_named(mixed_folder, tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if not installed
    result = run_cli("predict-dir", mixed_folder, "-o", tmp_path / "out.csv", "--engine", "ray")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --engine ray needs Ray Data, which is not installed here: "
                      "pip install 'fercli[ray]'."]  # fmt: skip


@pytest.mark.parametrize("provider, gpus", [("cuda", 1), ("cpu", 0), ("auto", 0)])
def test_ray_actors_ask_for_a_gpu_only_for_the_cuda_provider(provider, gpus, monkeypatch, tmp_path):
    """Ray places an actor by the resources it names: a CUDA session's actor asks for a GPU."""
    import fercli.ray_engine as ray_engine

    seen = {}

    def fake_map_files(files, actor_class, kwargs, **options):
        import numpy as np

        seen.update(options)
        probs = np.full((1, 7), 1 / 7, np.float32)
        yield {"index": np.array([0]), "probs": probs, "failed": np.array([False]),
               "error": np.array([""])}  # fmt: skip

    class FakeRay:
        @staticmethod
        def put(value):
            return value

    monkeypatch.setattr(ray_engine, "import_ray", lambda: FakeRay)
    monkeypatch.setattr(ray_engine, "map_files", fake_map_files)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model bytes")
    chunks = ray_engine.predict_chunks(
        [["a.jpg"]], ["a.jpg"], model, 7, provider=provider, batch_size=4, tta=False,
        actors=None, threads_per_actor=1,
    )  # fmt: skip
    ((probs, errors),) = list(chunks)  # the one file's row, as the actors returned it
    assert probs.shape == (1, 7) and errors == {}
    assert seen["gpus_per_actor"] == gpus


def test_local_sizes_with_ray_are_refused_in_one_line(mixed_folder, tmp_path, run_cli):
    """--workers and --threads size this machine's pool, which Ray does not use."""
    result = run_cli(
        "predict-dir", mixed_folder, "-o", tmp_path / "out.csv", "--engine", "ray",
        "--faces", "none", "--workers", "1", "--threads", "2",
    )  # fmt: skip
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --workers and --threads size the local engine; with --engine ray "
                      "the actors do the work: set --actors and --threads-per-actor."]  # fmt: skip
    assert not (tmp_path / "out.csv").exists()
