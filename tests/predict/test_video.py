"""predict-video: faces in frames sampled at --fps from videos made by the test (PyAV, the
`video` extra; skipped where it is not installed), tracks through a crossing, a gap and a
newcomer, --smooth, --summary, a timeline PNG per track, and one-line errors."""

import csv
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from faces_scenes import OraclePlugin, Placed, backdrop, fer_faces, scene
from PIL import Image

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.hookspecs import hookimpl
from fercli.plugins import pm


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
    got = [(Path(r["path"]).name, r["status"], r["time"], r["face"], r["track"]) for r in rows]
    assert got == [
        *[("two.mp4", "ok", t, f, f) for t in ("0.0", "0.5", "1.0", "1.5") for f in ("0", "1")],
        ("broken.mp4", "error", "", "", ""),
        ("empty.mp4", "no_face", "0.0", "", ""),
        ("empty.mp4", "no_face", "0.5", "", ""),
    ]
    assert list(rows[0])[-7:] == [
        "time",
        "frame",
        "face",
        "track",
        "box",
        "face_score",
        "face_size",
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
    from fercli.predict.video import predict_video

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
    from fercli.predict.video import predict_video

    face = draw_face("happy", np.random.default_rng(0))
    placed = [Placed(face, 100, 120, 110)]
    shown = scene(320, 240, placed)
    # stored turned clockwise, shown turned back: a phone's portrait video says -90 instead
    stored = shown.transpose(Image.Transpose.ROTATE_270)
    video = make_video(tmp_path / "turned.mp4", [stored] * 5, rotation=90)
    oracle_plugin({(320, 240): [p.truth() for p in placed]})  # found only when upright
    result = predict_video([video], tmp_path / "v.csv", fps=5, detector="oracle", provider="cpu")
    assert (result.frames, result.faces, result.no_face) == (3, 3, 0)  # 0, 0.2, 0.4 s


class Sequence:
    """A detector that reports frames[i] for the i-th picture it is shown (a test video's
    faces frame by frame, as it knows where it drew them)."""

    def __init__(self, frames):
        self.frames = iter(frames)

    def detect(self, images):
        return [list(next(self.frames, [])) for _ in images]


class SequencePlugin:
    def __init__(self, frames):
        self.frames = frames

    @hookimpl
    def register_detectors(self, register):
        register("sequence", lambda **options: Sequence(self.frames), "Knows each frame.")


@pytest.fixture
def sequence_plugin():
    added = []

    def register(frames):
        plugin = SequencePlugin(frames)
        pm.register(plugin, name=f"sequence-video-{len(added)}")
        added.append(plugin)

    yield register
    for plugin in added:
        pm.unregister(plugin)


def crossing_video(path: Path, frames: int = 40):
    """A 320x240 video at 10 fps: A walks right, B walks left in front of it (B hidden from
    the detector while they overlap most), A is missed at frames 5 to 7, and C comes in at
    frame 30. (the video, the detector's faces per frame, [{person: Placed}] per frame)"""
    names = list(EXPRESSIONS)
    face = {p: draw_face(names[i], np.random.default_rng(i)) for i, p in enumerate("ABC")}
    people, found, pictures = [], [], []
    for k in range(frames):
        now = {
            "A": Placed(face["A"], 60 + 5 * k, 150, 70),
            "B": Placed(face["B"], 260 - 5 * k, 155, 70),
        }
        if k >= 30:
            now["C"] = Placed(face["C"], 160, 50, 50)
        seen = dict(now)
        if abs(now["A"].cx - now["B"].cx) < 20:
            del seen["B"]
        if 5 <= k <= 7:
            del seen["A"]
        people.append(seen)
        found.append([p.truth() for p in seen.values()])
        pictures.append(scene(320, 240, list(now.values())))
    return make_video(path, pictures, fps=10), found, people


def person_of(row, people) -> str:
    x, y, w, h = (
        (int(v) for v in row["box"].split(",")) if isinstance(row["box"], str) else row["box"]
    )
    frame = people[int(row["frame"])]
    return min(frame, key=lambda p: np.hypot(x + w / 2 - frame[p].cx, y + h / 2 - frame[p].cy))


def test_tracks_follow_people_through_a_crossing_a_gap_and_a_newcomer(
    sequence_plugin, tmp_path, run_cli
):
    pytest.importorskip("av")
    video, found, people = crossing_video(tmp_path / "cross.mp4")
    sequence_plugin(found)
    out = tmp_path / "v.csv"
    args = ("predict-video", video, "--fps", 0, "-o", out, "--detector", "sequence")
    result = run_cli(*args, "--provider", "cpu")
    assert result.exit_code == 0, result.output
    assert "at every frame" in result.output and "(3 tracks," in result.output
    rows = read_csv(out)
    assert sorted({int(r["frame"]) for r in rows}) == list(range(40))  # --fps 0: every frame
    assert [float(r["time"]) for r in rows[::2][:3]] == [0.0, 0.1, 0.2]
    tracks = {}
    for row in rows:
        tracks.setdefault(person_of(row, people), set()).add(row["track"])
    assert tracks == {"A": {"0"}, "B": {"1"}, "C": {"2"}}
    # rows stay left to right: after the crossing, face 0 is B (track 1)
    for frame in ("2", "38"):
        here = [r for r in rows if r["frame"] == frame]
        lefts = [int(r["box"].split(",")[0]) for r in here]
        assert [r["face"] for r in here] == [str(i) for i in range(len(here))]
        assert lefts == sorted(lefts)
    assert [r["track"] for r in rows if r["frame"] == "2"] == ["0", "1"]
    assert [r["track"] for r in rows if r["frame"] == "38"] == ["1", "2", "0"]  # B, C, A
    assert [r["track"] for r in rows if r["frame"] == "6"] == ["1"]  # A missed, B on


def test_summary_timeline_and_smoothing_per_track(sequence_plugin, tmp_path):
    pytest.importorskip("av")
    import json

    from fercli.predict.video import VideoOptions, predict_video

    video, found, people = crossing_video(tmp_path / "cross.mp4", frames=34)
    still = make_video(tmp_path / "empty.mp4", [backdrop(256, 192)] * 5)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    sequence_plugin(found)  # the empty video's frames come after: no faces
    summary, timeline, out = tmp_path / "s.json", tmp_path / "t.png", tmp_path / "v.jsonl"
    options = VideoOptions(
        fps=0, detector="sequence", provider="cpu", smooth=0.5, smoothed_columns=True,
        summary=summary, timeline=timeline,
    )  # fmt: skip
    result = predict_video([video, tmp_path / "broken.mp4", still], out, None, options)
    assert (result.frames, result.tracks, len(result.errors)) == (39, 3, 1)
    assert result.timeline_panels == [f"cross.mp4: track {i}" for i in range(3)]
    with Image.open(timeline) as im:
        assert im.size == (1000, 3 * 260)  # 2.6 inches a panel at 100 dpi
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = json.loads(summary.read_text())
    assert got["classes"] == list(rows[0]["probabilities"])
    assert (got["fps"], got["smooth"]) == (0, 0.5)
    assert [(Path(v["path"]).name, v["frames"], v["error"]) for v in got["videos"]] == [
        ("cross.mp4", 34, None),
        ("broken.mp4", 0, "not a video (or an unsupported format)"),
        ("empty.mp4", 5, None),
    ]
    assert got["videos"][1]["tracks"] == got["videos"][2]["tracks"] == []
    classes = got["classes"]
    for track in got["videos"][0]["tracks"]:
        mine = [r for r in rows if r["track"] == track["track"]]
        assert track["frames"] == len(mine)
        assert (track["first"], track["last"]) == (mine[0]["time"], mine[-1]["time"])
        raw = np.array([list(r["probabilities"].values()) for r in mine])
        mean = raw.mean(axis=0)
        assert list(track["mean_probabilities"].values()) == pytest.approx(mean, abs=1e-5)
        assert track["dominant"] == classes[int(np.argmax(mean))]
        assert sum(track["label_frames"].values()) == len(mine)
        # the rows keep the raw values; smoothed_*: the moving average, 0.5 s time constant
        smooth, last = raw[0], mine[0]["time"]
        for row, p in zip(mine, raw):
            smooth = smooth + (1 - np.exp(-(row["time"] - last) / 0.5)) * (p - smooth)
            last = row["time"]
            assert list(row["smoothed_probabilities"].values()) == pytest.approx(smooth, abs=1e-5)
            assert row["smoothed_label"] == classes[int(np.argmax(smooth))]
    assert [t["first"] for t in got["videos"][0]["tracks"]] == [0.0, 0.0, 3.0]
    no_face = next(r for r in rows if r["status"] == "no_face")
    assert no_face["track"] is None and no_face["smoothed_label"] is None


def test_smoothed_csv_columns_and_option_errors(sequence_plugin, tmp_path, run_cli):
    pytest.importorskip("av")
    video, found, _ = crossing_video(tmp_path / "cross.mp4", frames=10)
    sequence_plugin(found)
    out = tmp_path / "v.csv"
    base = ("predict-video", video, "--detector", "sequence", "--provider", "cpu", "-o", out)
    result = run_cli(*base, "--fps", 0, "--smooth", 1, "--smoothed-columns")
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0])[-len(EXPRESSIONS) - 2 :][:2] == ["smoothed_label", "smoothed_confidence"]
    assert all(f"smoothed_prob_{c}" in rows[0] for c in EXPRESSIONS)
    assert rows[0]["smoothed_label"] == rows[0]["label"]  # a track's first frame: its own
    bad = run_cli(*base, "--smoothed-columns")
    assert bad.exit_code == 2 and "--smoothed-columns needs --smooth" in bad.output
    assert "Traceback" not in bad.output
    assert run_cli(*base, "--fps", -1).exit_code == 2
    folder = run_cli(*base, "--summary", tmp_path)
    assert folder.exit_code == 2 and "Traceback" not in folder.output
    help_text = run_cli("predict-video", "--help").output
    assert "0: every frame" in help_text and "--summary" in help_text and "track" in help_text


def test_redetect_looks_around_the_tracks_between_whole_frames(tmp_path, monkeypatch):
    pytest.importorskip("av")
    import fercli.predict.video as video_module

    names = list(EXPRESSIONS)
    faces = [draw_face(names[i], np.random.default_rng(i)) for i in range(2)]  # MTCNN finds
    frames = [
        scene(
            320, 240, [Placed(faces[0], 80 + 2 * k, 120, 100), Placed(faces[1], 240 - k, 125, 100)]
        )
        for k in range(20)
    ]
    video = make_video(tmp_path / "drift.mp4", frames)  # 2 s at 10 fps
    whole = []
    real = video_module.detect_scaled
    monkeypatch.setattr(video_module, "detect_scaled", lambda d, im: whole.append(1) or real(d, im))
    runs = {}
    for redetect in (0.0, 0.5):
        whole.clear()
        out = tmp_path / f"v{redetect}.csv"
        result = video_module.predict_video(
            [video], out, fps=0, provider="cpu", redetect=redetect,
            detector="mtcnn", min_face_score=0.0,  # the faces MTCNN finds (above), every one
        )  # fmt: skip
        assert (result.frames, result.faces, result.tracks) == (20, 40, 2)
        runs[redetect] = (len(whole), read_csv(out))
    assert runs[0.0][0] == 20 and runs[0.5][0] == 4  # the whole frame at 0, 0.5, 1 and 1.5 s
    for a, b in zip(runs[0.0][1], runs[0.5][1]):
        assert a["track"] == b["track"] and a["face"] == b["face"]
        boxes = [np.array(r["box"].split(","), float) for r in (a, b)]
        assert np.abs(boxes[0] - boxes[1]).max() <= 12  # a 100 px face, found on a 64 px copy


def test_find_near_maps_region_faces_back_and_counts_a_face_once():
    from fercli.faces.detect import Face
    from fercli.predict.video import find_near

    class Centre:
        """Finds one face filling the middle half of each picture it is shown."""

        def __init__(self):
            self.sizes = []

        def detect(self, images):
            self.sizes += [a.shape[:2] for a in images]
            out = []
            for a in images:
                h, w = a.shape[:2]
                marks = np.array([[w / 2, h / 2]] * 5)
                out.append([Face((w / 4, h / 4, 3 * w / 4, 3 * h / 4), 0.9, marks)])
            return out

    image = Image.new("RGB", (640, 480))
    detector = Centre()
    found = find_near(detector, image, [(200, 100, 400, 300), (210, 100, 410, 300)])
    assert len(found) == 1 and detector.sizes == [(128, 128), (128, 128)]  # 64 px faces
    assert found[0].box == pytest.approx((200, 100, 400, 300), abs=2)
    assert found[0].landmarks[0] == pytest.approx((300, 200), abs=2)
    edge = find_near(Centre(), image, [(590, 400, 690, 500)])[0]  # cut at the corner:
    assert edge.box == pytest.approx((565, 382.5, 615, 447.5), abs=1)  # x 540-640, y 350-480
