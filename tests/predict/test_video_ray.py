"""predict-video --engine ray: on a local Ray cluster (test_predict_ray's: 2 CPUs, no
dashboard, a small object store) one video per actor call, found, tracked and predicted with
MTCNN as locally: the rows, in the order of the files given, and the summary are byte for byte
the local engine's, broken and missing videos included, for a few option combinations;
--threads is refused in one line. Skipped without Ray or PyAV."""

import numpy as np
import pytest
from faces_scenes import Placed, backdrop, scene
from ray_helpers import needs_ray
from test_predict import read_rows
from test_video import make_video

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.predict.video import predict_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two people walking (MTCNN finds both), a video without a face, a broken file and a
    missing one: the paths in the order given."""
    pytest.importorskip("av")
    folder = tmp_path_factory.mktemp("ray-videos")
    names = list(EXPRESSIONS)
    faces = [draw_face(names[i], np.random.default_rng(i)) for i in range(2)]
    frames = [
        scene(560, 360, [Placed(faces[0], 130 + 4 * k, 180, 150), Placed(faces[1], 400, 170, 160)])
        for k in range(15)
    ]  # 1.5 s at 10 fps
    two = make_video(folder / "two.mp4", frames)
    empty = make_video(folder / "empty.mp4", [backdrop(256, 192)] * 10)
    (folder / "broken.mp4").write_bytes(b"not a video")
    return [two, folder / "broken.mp4", empty, folder / "missing.mp4", two]


CASES = {  # id: (output suffix, CLI options; S: the --summary file)
    "csv-summary": (".csv", "--fps 2 --detector mtcnn --min-face-score 0 --summary S"),
    "jsonl-every-frame-smooth-topk-thresholds-redetect": (
        ".jsonl",
        "--fps 0 --detector mtcnn --smooth 0.5 --smoothed-columns --topk 2 --min-face-score 0.9 "
        "--min-face-size 109 --redetect 0.3 --track-gap 0.5 --summary S",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ray_video_writes_what_the_local_engine_writes(
    ray_cluster,  # noqa: F811 (the fixture)
    videos,
    tmp_path,
    run_cli,
    case,
):
    suffix, options = CASES[case][0], CASES[case][1].split()
    outputs = {}
    for engine in ("local", "ray"):
        flags = [str(tmp_path / f"{engine}.summary.json") if o == "S" else o for o in options]
        sizes = ["--engine", "ray", "--actors", 2] if engine == "ray" else []
        out = outputs[engine] = tmp_path / f"{engine}{suffix}"
        result = run_cli("predict-video", *videos, "-o", out, *flags, *sizes)
        assert result.exit_code == 0, result.output
        assert "unreadable: " in result.stderr  # the broken and missing videos, said
    assert outputs["ray"].read_bytes() == outputs["local"].read_bytes()
    summaries = [(tmp_path / f"{e}.summary.json").read_bytes() for e in ("local", "ray")]
    assert summaries[0] == summaries[1]
    rows = read_rows(outputs["local"])
    assert [r["error"] for r in rows if r["status"] == "error"] == [
        "not a video (or an unsupported format)",
        "file not found",
    ]
    assert "no_face" in {r["status"] for r in rows}
    assert {"0", "1"} <= {str(r["track"]) for r in rows if r["status"] == "ok"}  # two people


def test_threads_with_ray_are_refused_in_one_line(videos, tmp_path, run_cli):
    needs_ray()
    result = run_cli(
        "predict-video", videos[0], "-o", tmp_path / "v.csv", "--engine", "ray", "--threads", 2
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --threads sizes the local engine; with --engine ray the actors "
                      "do the work: set --actors and --threads-per-actor."]  # fmt: skip
    assert not (tmp_path / "v.csv").exists()


def test_the_python_api_takes_the_engine(ray_cluster, videos, tmp_path):  # noqa: F811
    options = dict(fps=2, detector="mtcnn", min_face_score=0.0)
    local = predict_video(videos[:3], tmp_path / "local.csv", **options)
    ray = predict_video(videos[:3], tmp_path / "ray.csv", engine="ray", actors=1, **options)
    assert (tmp_path / "ray.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert (ray.frames, ray.faces, ray.no_face, ray.errors, ray.tracks) == (
        local.frames, local.faces, local.no_face, local.errors, local.tracks,
    )  # fmt: skip
    assert local.faces and local.no_face and local.errors
