"""predict-video: faces in frames sampled at --fps from videos made by the test (PyAV, the
`video` extra; skipped where it is not installed), a timeline PNG, and one-line errors."""

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from faces_scenes import OraclePlugin, Placed, backdrop, fer_faces, scene
from PIL import Image

from fercli.plugins import pm
from fercli.synth import EXPRESSIONS, draw_face


def make_video(path: Path, frames, fps: int = 10, rotation: int = 0) -> Path:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames[0].size
        if rotation:
            stream.set_display_rotation(rotation)
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000  # little codec noise on the small faces
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.fixture
def oracle_plugin():
    added = []

    def register(truth):
        plugin = OraclePlugin(truth)
        pm.register(plugin, name="oracle-video")
        added.append(plugin)

    yield register
    for plugin in added:
        pm.unregister(plugin)


def test_predict_video_rows_per_face_and_timeline(oracle_plugin, tmp_path, run_cli):
    pytest.importorskip("av")
    names = list(EXPRESSIONS)
    faces = [draw_face(names[i], np.random.default_rng(i)) for i in range(2)]
    placed = [Placed(faces[0], 90, 120, 100), Placed(faces[1], 240, 110, 90, 15)]
    two = make_video(tmp_path / "two.mp4", [scene(320, 240, placed)] * 20)  # 2 s at 10 fps
    empty = make_video(tmp_path / "empty.mp4", [backdrop(256, 192)] * 10)  # 1 s
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    oracle_plugin({(320, 240): [p.truth() for p in placed]})
    out, timeline = tmp_path / "v.csv", tmp_path / "timeline.png"
    result = run_cli(
        "predict-video",
        two,
        tmp_path / "broken.mp4",
        empty,
        "--fps",
        2,
        "-o",
        out,
        "--timeline",
        timeline,
        "--detector",
        "oracle",
        "--provider",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    assert "unreadable: " in result.output and "broken.mp4" in result.output
    assert "not a video (or an unsupported format)" in result.output
    rows = read_csv(out)
    got = [(Path(r["path"]).name, r["status"], r["time"], r["face"]) for r in rows]
    assert got == [
        *[("two.mp4", "ok", t, f) for t in ("0.0", "0.5", "1.0", "1.5") for f in ("0", "1")],
        ("broken.mp4", "error", "", ""),
        ("empty.mp4", "no_face", "0.0", ""),
        ("empty.mp4", "no_face", "0.5", ""),
    ]
    assert [r["frame"] for r in rows[:8:2]] == ["0", "5", "10", "15"]
    for row, p in zip(rows[:2], placed):
        assert [int(v) for v in row["box"].split(",")] == p.truth().xywh()
        assert row["label"] in EXPRESSIONS and float(row["face_score"]) == pytest.approx(0.99)
    # the same faces in every frame: the same predictions (up to the codec's noise)
    probs = np.array([[float(r[f"prob_{c}"]) for c in EXPRESSIONS] for r in rows[0:8:2]])
    assert np.abs(probs - probs[0]).max() < 0.1
    assert "8 faces in 6 frames of 3 video(s)" in result.output
    with Image.open(timeline) as im:
        assert im.format == "PNG" and im.width == 1000


def test_predict_video_min_face_size_and_score(oracle_plugin, tmp_path, run_cli):
    pytest.importorskip("av")
    names = list(EXPRESSIONS)
    faces = [draw_face(names[i], np.random.default_rng(i)) for i in range(2)]
    placed = [Placed(faces[0], 90, 120, 100), Placed(faces[1], 240, 110, 80)]
    two = make_video(tmp_path / "two.mp4", [scene(320, 240, placed)] * 10)
    oracle_plugin({(320, 240): [p.truth() for p in placed]})
    sizes = [min(p.truth().xywh()[2:]) for p in placed]
    base = ("predict-video", two, "--fps", 2, "--detector", "oracle", "--provider", "cpu")
    every = run_cli(*base, "-o", tmp_path / "all.csv")
    assert every.exit_code == 0, every.output
    assert [int(r["face_size"]) for r in read_csv(tmp_path / "all.csv")[:2]] == sizes
    big = run_cli(*base, "-o", tmp_path / "big.csv", "--min-face-size", max(sizes))
    assert big.exit_code == 0, big.output
    rows = read_csv(tmp_path / "big.csv")
    assert {(r["face"], int(r["face_size"])) for r in rows} == {("0", max(sizes))}
    run_cli(*base, "-o", tmp_path / "none.csv", "--min-face-score", 1.0)
    assert {r["status"] for r in read_csv(tmp_path / "none.csv")} == {"no_face"}  # 0.99 < 1


def test_unreadable_videos_get_predict_dirs_reasons(oracle_plugin, tmp_path, run_cli):
    pytest.importorskip("av")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    out = tmp_path / "v.csv"
    names = ("missing.mp4", "empty.mp4", "junk.mp4", "dangling.mp4")
    result = run_cli(
        "predict-video", *(tmp_path / n for n in names), "-o", out, "--provider", "cpu"
    )
    # nothing could be read: status 2 and one line, no traceback, no raw errno
    assert result.exit_code == 2, result.output
    assert "none of the 4 video(s) could be read" in result.stderr
    assert "Traceback" not in result.output and "Errno" not in result.output
    reasons = {Path(r["path"]).name: (r["status"], r["error"]) for r in read_csv(out)}
    assert reasons == {
        "missing.mp4": ("error", "file not found"),
        "empty.mp4": ("error", "empty file (0 bytes)"),
        "junk.mp4": ("error", "not a video (or an unsupported format)"),
        "dangling.mp4": ("error", "broken symbolic link"),
    }


def test_strict_fails_on_one_bad_video_the_rest_still_written(oracle_plugin, tmp_path, run_cli):
    pytest.importorskip("av")
    good = make_video(tmp_path / "good.mp4", [backdrop(256, 192)] * 10)
    oracle_plugin({})
    out = tmp_path / "v.csv"
    args = ("predict-video", good, tmp_path / "missing.mp4", "-o", out, "--detector", "oracle")
    result = run_cli(*args, "--provider", "cpu")
    assert result.exit_code == 0, result.output  # one bad video: its row, the others go on
    assert "unreadable: " in result.output and "file not found" in result.output
    result = run_cli(*args, "--provider", "cpu", "--strict")
    assert result.exit_code == 2 and "because of --strict" in result.stderr
    assert "Traceback" not in result.output
    rows = read_csv(out)
    assert [(Path(r["path"]).name, r["status"]) for r in rows] == [
        ("good.mp4", "no_face"),
        ("good.mp4", "no_face"),
        ("missing.mp4", "error"),
    ]


@pytest.mark.fer2013
def test_predict_video_finds_fer2013_faces(fer2013, tmp_path):
    pytest.importorskip("av")
    from fercli.faces.video import predict_video

    faces = fer_faces(fer2013)
    frames = []
    for i in range(15):  # the faces drift right, one turns
        placed = [Placed(faces[2], 120 + 4 * i, 150, 130, angle=i), Placed(faces[5], 330, 140, 120)]
        frames.append(scene(480, 300, placed))
    video = make_video(tmp_path / "drift.mp4", frames)
    result = predict_video([video], tmp_path / "v.jsonl", fps=5, provider="cpu")
    assert (result.frames, result.faces, result.no_face, result.errors) == (8, 16, 0, [])
    import json

    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    first, last = rows[0], rows[-2]
    assert first["face"] == 0 and abs(first["box"][0] + first["box"][2] / 2 - 120) < 25
    assert abs(last["box"][0] + last["box"][2] / 2 - 176) < 25  # frame 14: 120 + 56


def test_predict_video_without_pyav_is_one_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    (tmp_path / "a.mp4").write_bytes(b"")
    result = run_cli("predict-video", tmp_path / "a.mp4", "-o", tmp_path / "v.csv")
    assert result.exit_code == 2
    assert "pip install 'fercli[video]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "v.csv").exists()


def test_predict_video_turns_frames_by_the_display_matrix(oracle_plugin, tmp_path):
    av = pytest.importorskip("av")
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip("this PyAV cannot write a display matrix")
    from fercli.faces.video import predict_video

    face = draw_face("happy", np.random.default_rng(0))
    placed = [Placed(face, 100, 120, 110)]
    shown = scene(320, 240, placed)
    # stored turned clockwise, shown turned back: a phone's portrait video says -90 instead
    stored = shown.transpose(Image.Transpose.ROTATE_270)
    video = make_video(tmp_path / "turned.mp4", [stored] * 5, rotation=90)
    oracle_plugin({(320, 240): [p.truth() for p in placed]})  # found only when upright
    result = predict_video([video], tmp_path / "v.csv", fps=5, detector="oracle", provider="cpu")
    assert (result.frames, result.faces, result.no_face) == (3, 3, 0)  # 0, 0.2, 0.4 s
