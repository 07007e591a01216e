"""predict-dir --engine ray: on a local Ray cluster (2 CPUs, no dashboard, a small object
store) the output is byte for byte the local engine's, broken files included, with every
--faces mode (the actors find the faces with MTCNN, write --annotate and --crops) and
--resume; a missing extra, an unreachable cluster and a detector the actors cannot make are
one line each. Skipped where Ray is not installed."""

import json
import os
import sys

import numpy as np
import pytest
from faces_scenes import OraclePlugin, Placed, backdrop, scene
from PIL import Image
from ray_helpers import needs_ray
from test_predict import make_mixed_folder, read_rows

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.plugins import pm
from fercli.predict.folder import predict_dir


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
    flags = ["--faces", "none"] + (["--topk", "2", "--tta"] if options else [])
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
    import fercli.predict.ray as ray_engine

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


# ----------------------------------------------------------------------------- --faces


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory):
    """make_mixed_folder's crops, odd formats and broken files, and scenes with synthetic
    faces that MTCNN finds: three (the third small and scoring 0.79), one in a large picture
    turned by EXIF, none."""
    root = tmp_path_factory.mktemp("ray-faces") / "images"
    make_mixed_folder(root)
    names = list(EXPRESSIONS)
    faces = [draw_face(names[i], np.random.default_rng(i)) for i in range(3)]
    (root / "scenes").mkdir()
    three = [Placed(faces[0], 170, 220, 160, 10), Placed(faces[1], 470, 240, 170)]
    three.append(Placed(faces[2], 600, 380, 110))
    scene(700, 480, three).save(root / "scenes" / "group.jpg", quality=95)
    backdrop(400, 300, seed=3).save(root / "scenes" / "wall.png")
    big = scene(1500, 1000, [Placed(faces[0], 500, 450, 420)], seed=2).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    big.rotate(90, expand=True).save(root / "turned big.jpg", exif=exif, quality=90)
    return root


def files_in(folder) -> dict:
    return {
        os.path.relpath(os.path.join(d, name), folder): open(os.path.join(d, name), "rb").read()
        for d, _, names in os.walk(folder)
        for name in names
    }


FACE_CASES = {  # id: (output suffix, CLI options; A and C: the --annotate and --crops folders)
    "auto-csv-annotate-crops": (
        ".csv",
        "--faces auto --detector mtcnn --min-face-score 0 --annotate A --crops C",
    ),
    "detect-jsonl-tta-topk-thresholds-crops": (
        ".jsonl",
        "--faces detect --detector mtcnn --tta --topk 2 --min-face-score 0.9 "
        "--min-face-size 100 --crops C",
    ),
    "auto-jsonl-yunet-annotate": (".jsonl", "--faces auto --detector yunet --annotate A"),
    "none-csv-tta-no-recursive": (".csv", "--faces none --tta --no-recursive"),
}


@pytest.mark.parametrize("case", list(FACE_CASES))
def test_ray_faces_write_what_the_local_engine_writes(
    ray_cluster, face_folder, tmp_path, run_cli, case
):
    """The rows, the summary's counts and the --annotate and --crops files (names and
    bytes) of `--engine ray` are the local engine's, for each --faces mode."""
    suffix, options = FACE_CASES[case][0], FACE_CASES[case][1].split()
    outputs = {}
    for engine in ("local", "ray"):
        flags = [str(tmp_path / engine / o) if o in ("A", "C") else o for o in options]
        sizes = ["--workers", 0] if engine == "local" else ["--actors", 2]
        out = tmp_path / f"{engine}{suffix}"
        result = run_cli(
            "predict-dir", face_folder, "-o", out, "--engine", engine, "--batch-size", 4,
            *sizes, *flags,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[engine] = out
    assert outputs["ray"].read_bytes() == outputs["local"].read_bytes()
    local, ray = (
        json.loads((tmp_path / f"{e}{suffix}.summary.json").read_text()) for e in ("local", "ray")
    )
    assert ray["engine"] == "ray" and local["engine"] == "local"
    for key in ("rows", "errors", "no_face", "counts", "made_with", "faces", "tta"):
        assert ray[key] == local[key], key
    assert local["errors"] and local["rows"] > len(local["errors"])  # good and broken files
    rows = read_rows(outputs["local"])
    if options[1] != "none" and "yunet" not in options:  # MTCNN's faces in the scenes (fewer
        # above the thresholds), none in one
        faces = {row["path"]: str(row["face"]) for row in rows if row["face"] not in ("", None)}
        assert faces == {
            "scenes/group.jpg": "1" if "0.9" in options else "2",
            "turned big.jpg": "0",
        }
        assert "no_face" in {row["status"] for row in rows}
    for folder in ("A", "C"):
        if folder in options:
            found = files_in(tmp_path / "local" / folder)
            assert len(found) > 1  # the marker, and pictures or crops
            assert files_in(tmp_path / "ray" / folder) == found


def test_ray_resume_with_faces_appends_the_rest(ray_cluster, face_folder, tmp_path):
    """An output cut between two faces of a picture, resumed on Ray: the file ends as an
    uninterrupted local run's."""
    full, cut = tmp_path / "full.csv", tmp_path / "cut.csv"
    options = dict(faces="auto", detector="mtcnn", min_face_score=0.0, batch_size=4)
    options.update(min_face_size=0, write_summary=False)
    predict_dir(face_folder, full, workers=0, **options)
    lines = full.read_bytes().split(b"\r\n")  # a path's own newline is a bare \n
    group = [i for i, line in enumerate(lines) if line.startswith(b"scenes/group.jpg")]
    assert len(group) == 3
    cut.write_bytes(b"\r\n".join(lines[: group[0] + 1]) + b"\r\n")
    result = predict_dir(face_folder, cut, engine="ray", actors=2, resume=True, **options)
    assert result.resumed == group[0] - 1  # the rows before group.jpg's
    assert cut.read_bytes() == full.read_bytes()


PLUGIN = """
from fercli.faces.detect import Face
from fercli.hookspecs import hookimpl


class Middle:
    def detect(self, images):
        return [[Face((w * 0.3, h * 0.2, w * 0.6, h * 0.7), 0.9)] if w > 40 else []
                for h, w in (a.shape[:2] for a in images)]


@hookimpl
def register_detectors(register):
    register("middle", lambda **options: Middle(), "A face in the middle of each picture.")
"""


def test_ray_actors_load_a_plugins_dir_detector(ray_cluster, face_folder, tmp_path, run_cli):
    """A detector from a --plugins-dir file: the actors load the same file (on a cluster, from
    a shared folder) and write the local engine's rows, pictures and crops."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "middle.py").write_text(PLUGIN)
    for engine in ("local", "ray"):
        result = run_cli(
            "--plugins-dir", tmp_path / "plugins", "predict-dir", face_folder,
            "-o", tmp_path / f"{engine}.csv", "--faces", "detect", "--detector", "middle",
            "--annotate", tmp_path / engine / "A", "--crops", tmp_path / engine / "C",
            "--engine", engine, *(["--actors", 1] if engine == "ray" else ["--workers", 0]),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    for folder in ("A", "C"):
        found = files_in(tmp_path / "local" / folder)
        assert files_in(tmp_path / "ray" / folder) == found
    assert sum(name.endswith("_0.png") for name in files_in(tmp_path / "local" / "C")) > 10


def test_a_detector_registered_in_this_process_only_is_refused(face_folder, tmp_path, run_cli):
    """The actors make the detector by name on their node: one registered by this process
    alone (not installed, not a --plugins-dir file) cannot be, which is one line."""
    needs_ray()
    pm.register(OraclePlugin({}), name="oracle-here-only")
    try:
        result = run_cli(
            "predict-dir", face_folder, "-o", tmp_path / "out.csv", "--engine", "ray",
            "--detector", "oracle",
        )  # fmt: skip
    finally:
        pm.unregister(name="oracle-here-only")
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --detector oracle is registered in this process only (plugin "
                      "'oracle-here-only'): --engine ray makes the detector on each node by "
                      "name, from fercli's built-in ones, installed plugins (entry points) and "
                      "--plugins-dir files."]  # fmt: skip
    assert not (tmp_path / "out.csv").exists()
