"""Faces in photos: MTCNN (numpy + onnxruntime) finds faces pasted into scenes at known
places and angles, alignment turns them upright in FER-2013's framing, and
`predict-dir --faces` writes a row per face (no_face, errors, EXIF, huge photos, resume,
--annotate, --crops), while `--faces auto` leaves FER-style folders exactly as they were."""

import csv
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from faces_scenes import (
    Placed,
    backdrop,
    fer_faces,
    oracle_folder,
    scene,
    synth_faces,
)
from PIL import Image

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.errors import FercliError
from fercli.faces import mtcnn as mtcnn_module
from fercli.faces.align import align, framing
from fercli.faces.detect import Face
from fercli.faces.mtcnn import MTCNN, nms, square
from fercli.plugins import pm
from fercli.predict.faces import crop_name
from fercli.predict.folder import OUTPUT_MARKER, find_images, predict_dir

PHOTOS = Path(
    os.environ.get("FERCLI_PHOTOS") or Path(__file__).resolve().parents[3] / "shared" / "photos"
)


@pytest.fixture(scope="module")
def detector():
    return MTCNN()


def read_rows(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return [json.loads(line) for line in text.splitlines()]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


# ----------------------------------------------------------------------------- the pieces


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]
    assert nms(boxes, scores, 0.5, "min").tolist() == [3, 2]  # the small box lies inside
    assert square(np.array([[0.0, 0.0, 10.0, 20.0, 1.0]]))[0, :4].tolist() == [-5, 0, 15, 20]


def test_weights_ship_with_their_licence():
    folder = mtcnn_module.weights_dir()
    assert {p.name for p in folder.iterdir()} >= {"pnet.onnx", "rnet.onnx", "onet.onnx"}
    licence = (folder / "LICENSE.md").read_text()
    assert "MIT License" in licence and "facenet-pytorch" in licence
    assert sum((folder / f"{n}.onnx").stat().st_size for n in ("pnet", "rnet", "onet")) < 2.5e6


def test_mtcnn_finds_nothing_in_a_picture_without_faces(detector):
    assert detector.detect([np.asarray(backdrop(640, 480, seed=s)) for s in range(3)]) == [[]] * 3


def test_mtcnn_takes_grey_and_rgb_of_any_size(detector):
    grey = np.asarray(backdrop(50, 30))
    assert detector.detect([grey, np.repeat(grey[:, :, None], 3, 2), grey[:5, :5]]) == [[]] * 3


def test_mtcnn_finds_synthetic_faces_where_they_are(detector):
    # MTCNN was trained on photos: it finds only some of fercli.data.synth's cartoon faces (these
    # seeds), but every face it reports must be one of them, with the eyes above the mouth.
    faces = [draw_face(list(EXPRESSIONS)[s % 7], np.random.default_rng(s)) for s in (0, 1, 8, 14)]
    placed = [
        Placed(f, 130 + 260 * (i % 2), 130 + 260 * (i // 2), 160) for i, f in enumerate(faces)
    ]
    found = detector.detect([np.asarray(scene(520, 520, placed))])[0]
    assert all(any(p.contains(f) for p in placed) for f in found)
    assert sum(any(p.contains(f) for f in found) for p in placed) >= 3
    for f in found:
        assert f.landmarks[:2, 1].max() < f.landmarks[3:, 1].min()  # eyes above the mouth


@pytest.mark.fer2013
def test_mtcnn_finds_fer2013_faces_at_their_places_and_angles(detector, fer2013):
    faces = fer_faces(fer2013)
    hits = misses = 0
    for i, face in enumerate(faces):
        upright = Placed(face, 170, 200, 160)
        own = framing(detector.detect([np.asarray(scene(340, 400, [upright]))])[0][0])[3]
        placed = [
            Placed(face, 170, 200, 160, angle=20.0 * (-1) ** i),
            Placed(faces[(i + 1) % 7], 460, 180, 130),
            Placed(faces[(i + 3) % 7], 700, 330, 110, angle=-10.0),
        ]
        found = detector.detect([np.asarray(scene(800, 500, placed, seed=i))])[0]
        assert all(any(p.contains(f) for p in placed) for f in found), "a face in the backdrop"
        for p in placed:
            match = [f for f in found if p.contains(f)]
            hits, misses = hits + bool(match), misses + (not match)
        match = [f for f in found if placed[0].contains(f)]
        if match:  # turned 20 degrees: the eyes' angle turns with it (y grows downwards)
            got = np.degrees(framing(match[0])[3] - own)
            assert got == pytest.approx(-placed[0].angle, abs=6)
    assert hits >= 0.85 * (hits + misses), (hits, misses)


@pytest.mark.fer2013
def test_alignment_turns_fer2013_faces_upright_in_their_framing(detector, fer2013):
    """A FER-2013 face blown up and pasted comes back framed much as FER-2013 framed it, and
    turned 15-25 degrees it comes back the same: upright."""
    same, framed = [], []
    for i, face in enumerate(fer_faces(fer2013)):
        crops = []
        for angle in (0, (-15, 15, 25)[i % 3]):
            p = Placed(face, 300, 250, 200, angle=angle)
            picture = scene(600, 500, [p], seed=i)
            found = [f for f in detector.detect([np.asarray(picture)])[0] if p.contains(f)]
            crops.append(align(picture, found[0]) if found else None)
        if crops[0] is not None:
            # FER-2013's own crops vary (tight ones, tilted ones): the median is what counts
            framed.append(corr(crops[0], face))
            assert corr(crops[0], face) > corr(crops[0], np.rot90(face, 2)) - 0.1
        if all(c is not None for c in crops):
            same.append(corr(*crops))
    assert len(same) >= 5 and min(same) > 0.8 and np.median(same) > 0.9, same
    assert np.median(framed) > 0.5, framed


def test_alignment_levels_the_eyes_and_keeps_the_framing():
    face = synth_faces(1)[0]
    picture_0 = scene(400, 400, [p0 := Placed(face, 200, 200, 192)])
    picture_30 = scene(400, 400, [p30 := Placed(face, 200, 200, 192, angle=30)])
    crop_0, crop_30 = align(picture_0, p0.truth()), align(picture_30, p30.truth())
    assert np.degrees(framing(p30.truth())[3]) == pytest.approx(-30, abs=0.01)
    assert corr(crop_0, crop_30) > 0.95
    # FER-2013's framing: the eyes' midpoint 0.298 / 2.54 of the side above the centre
    cx, cy, side, _ = framing(p0.truth())
    eyes = p0.truth().landmarks[:2].mean(axis=0)
    assert (cx - eyes[0], cy - eyes[1]) == pytest.approx((0, side * 0.298 / 2.54), abs=0.01)
    no_marks = Face(p0.truth().box, 0.9, None)  # a detector without landmarks: the box
    assert corr(align(picture_0, no_marks), crop_0) > 0.6


# ----------------------------------------------------------------------------- predict-dir


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_dir_detect_writes_a_row_per_face(oracle, tmp_path, suffix):
    truth, expected = oracle_folder(tmp_path / "in")
    out = tmp_path / f"p{suffix}"
    result = predict_dir(
        tmp_path / "in",
        out,
        faces="detect",
        detector=oracle(truth),
        workers=0,
        crops=tmp_path / "crops",
        annotate=tmp_path / "ann",
    )
    rows = read_rows(out)
    by_path = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    assert set(by_path) == {*expected, "broken.jpg"}
    assert [r["status"] for r in by_path["broken.jpg"]] == ["error"]
    assert [r["status"] for r in by_path["empty.jpg"]] == ["no_face"]
    assert result.no_face == 1 and len(result.errors) == 1 and result.faces == "detect"
    for rel, placed in expected.items():
        if not placed:
            continue
        got = by_path[rel]
        assert [int(r["face"]) for r in got] == list(range(len(placed)))  # left to right
        for row, p in zip(got, sorted(placed, key=lambda p: p.truth().box[0])):
            box = row["box"] if suffix == ".jsonl" else [int(v) for v in row["box"].split(",")]
            want = p.truth().xywh()  # in the photo's own (upright) pixels, even when huge
            assert np.abs(np.subtract(box, want)).max() <= max(3, 0.01 * p.size), (rel, box, want)
            assert row["status"] == "ok" and float(row["face_score"]) == pytest.approx(0.99)
            assert int(row["face_size"]) == min(box[2:])  # the box's shorter side
            assert row["label"] in EXPRESSIONS
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert summary["faces"] == "detect" and summary["no_face"] == 1

    # --crops: DIR/<label>/<image>_<face>.png, the aligned faces, upright
    crops = sorted((tmp_path / "crops").rglob("*.png"))
    assert len(crops) == sum(len(p) for p in expected.values())
    row = by_path["group.jpg"][0]
    crop = tmp_path / "crops" / row["label"] / crop_name("group.jpg", 0)
    upright = Placed(synth_faces(1)[0], 200, 200, 150)  # pasted at 15 degrees in group.jpg
    reference = align(scene(400, 400, [upright]), upright.truth())
    assert corr(np.asarray(Image.open(crop)), reference) > 0.9
    assert (
        tmp_path / "crops" / by_path["sub/trio.png"][2]["label"] / "sub__trio.png_2.png"
    ).is_file()
    # --annotate: a copy of each photo searched, upright, boxes drawn in red
    drawn = sorted(
        p.relative_to(tmp_path / "ann").as_posix()
        for p in (tmp_path / "ann").rglob("*.*")
        if p.name != OUTPUT_MARKER
    )
    assert drawn == sorted(expected)
    copy = Image.open(tmp_path / "ann" / "turned.jpg").convert("RGB")
    assert copy.size == (600, 450)
    x, y, w, h = (
        int(v)
        for v in (
            by_path["turned.jpg"][0]["box"]
            if suffix == ".jsonl"
            else by_path["turned.jpg"][0]["box"].split(",")
        )
    )
    r, g, b = copy.getpixel((x + w // 2, y + h))  # the box's lower edge
    assert r > 180 and g < 120 and b < 120


def test_min_face_score_and_size_leave_faces_out(oracle, tmp_path, run_cli):
    """Faces below --min-face-score or --min-face-size are left out and the others numbered
    left to right again; a picture left with none is no_face."""
    truth, expected = oracle_folder(tmp_path / "in")
    truth = {  # the leftmost face of each picture scores 0.5
        k: [replace(f, score=0.5) if f is min(v, key=lambda g: g.box[0]) else f for f in v]
        for k, v in truth.items()
    }
    options = dict(faces="detect", detector=oracle(truth), workers=0)
    predict_dir(tmp_path / "in", tmp_path / "all.csv", **options)
    every = [r for r in read_rows(tmp_path / "all.csv") if r["status"] == "ok"]
    assert {r["face_score"] for r in every} == {"0.5", "0.99"}
    sizes = sorted(int(r["face_size"]) for r in every)
    cut = sizes[len(sizes) // 2]
    for name, kwargs, kept in (
        ("score", dict(min_face_score=0.6), lambda r: float(r["face_score"]) >= 0.6),
        ("size", dict(min_face_size=cut), lambda r: int(r["face_size"]) >= cut),
    ):
        out = tmp_path / f"{name}.csv"
        predict_dir(tmp_path / "in", out, **options, **kwargs)
        rows = read_rows(out)
        ok = [r for r in rows if r["status"] == "ok"]
        want = [r for r in every if kept(r)]
        assert 0 < len(ok) < len(every)
        assert [(r["path"], r["box"], r["face_size"]) for r in ok] == [
            (r["path"], r["box"], r["face_size"]) for r in want
        ]
        for path in {r["path"] for r in ok}:  # numbered 0, 1, ... again
            assert [r["face"] for r in ok if r["path"] == path] == [
                str(i) for i in range(sum(r["path"] == path for r in ok))
            ]
        emptied = {r["path"] for r in every} - {r["path"] for r in ok}
        assert emptied <= {r["path"] for r in rows if r["status"] == "no_face"}
        summary = json.loads((tmp_path / f"{name}.csv.summary.json").read_text())
        assert summary["made_with"] | kwargs == summary["made_with"]  # recorded for --resume
    bad = run_cli("predict-dir", tmp_path / "in", "--min-face-score", "1.5")
    assert bad.exit_code == 2 and "--min-face-score" in bad.output


def test_annotate_and_crops_inside_the_input_never_feed_back(oracle, tmp_path):
    truth, expected = oracle_folder(tmp_path / "in")
    name = oracle(truth)
    options = dict(faces="detect", detector=name, workers=0)
    inside = dict(annotate=tmp_path / "in" / "annotated", crops=tmp_path / "in" / "out" / "crops")
    first = predict_dir(tmp_path / "in", tmp_path / "1.csv", **options, **inside)
    assert any((tmp_path / "in" / "annotated").rglob("*.jpg"))  # copies of the photos...
    assert (tmp_path / "in" / "annotated" / OUTPUT_MARKER).is_file()  # ...marked as outputs
    second = predict_dir(tmp_path / "in", tmp_path / "2.csv", **options, **inside)
    assert read_rows(tmp_path / "2.csv") == read_rows(tmp_path / "1.csv")
    assert second.total == first.total and second.other_files == first.other_files
    # a folder of the user's own is written to but never marked; the input itself is read
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.jpg").write_bytes(b"x")
    predict_dir(tmp_path / "in", tmp_path / "3.csv", **options, annotate=tmp_path / "mine")
    assert not (tmp_path / "mine" / OUTPUT_MARKER).exists()
    assert "in/annotated/group.jpg" not in find_images(tmp_path)[0]
    assert "group.jpg" in find_images(tmp_path / "in" / "annotated")[0]
    # the input folder itself: its annotated copies would replace the photos
    before = {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()}
    with pytest.raises(FercliError, match="is the input folder: its copies would replace"):
        predict_dir(tmp_path / "in", tmp_path / "4.csv", **options, annotate=tmp_path / "in")
    assert {p: p.read_bytes() for p in (tmp_path / "in").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("where", ["after", "between"])
def test_resume_with_faces_appends_the_rest(oracle, tmp_path, where):
    """Cut after a picture's last face or between two of its faces (a kill can cut the file at
    any newline): the picture written last is predicted again, so the file ends as an
    uninterrupted run's, every picture whole and none twice."""
    truth, expected = oracle_folder(tmp_path / "in")
    name = oracle(truth)
    full = tmp_path / "full.csv"
    predict_dir(tmp_path / "in", full, faces="detect", detector=name, workers=0)
    lines = full.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "cut.csv"
    group = [i for i, line in enumerate(lines) if line.startswith("group.jpg")]
    assert len(group) >= 2  # a picture with several faces
    keep = group[-1] + 1 if where == "after" else group[0] + 1
    cut.write_text("".join(lines[:keep]), encoding="utf-8")
    result = predict_dir(
        tmp_path / "in", cut, faces="detect", detector=name, workers=0, resume=True
    )
    assert result.resumed == group[0] - 1  # the rows before group.jpg's
    assert cut.read_bytes() == full.read_bytes()


def test_faces_auto_leaves_fer_style_folders_as_they_were(synth_root, tmp_path, run_cli):
    folder = synth_root / "test"
    none, auto = tmp_path / "none.csv", tmp_path / "auto.csv"
    predict_dir(folder, none, faces="none", workers=0)
    predict_dir(folder, auto, faces="auto", workers=0)
    before, after = read_rows(none), read_rows(auto)
    assert len(before) == len(after) > 50
    for a, b in zip(before, after):
        assert {k: b[k] for k in a} == a  # the same path, status, label, probabilities
        assert (b["face"], b["box"], b["face_score"]) == ("", "", "")
    # --eval keeps working on class folders (auto is the command's default)
    result = run_cli("predict-dir", folder, "-o", tmp_path / "cli.csv", "--eval", "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


@pytest.mark.fer2013
def test_predict_dir_finds_fer2013_faces_with_mtcnn(detector, fer2013, tmp_path, run_cli):
    faces = fer_faces(fer2013)
    (tmp_path / "in").mkdir()
    placed = [
        Placed(faces[1], 170, 200, 160, 15),
        Placed(faces[2], 460, 180, 130),
        Placed(faces[5], 680, 300, 150, -15),
    ]
    scene(800, 500, placed).convert("RGB").save(tmp_path / "in" / "three.jpg", quality=95)
    backdrop(640, 480).save(tmp_path / "in" / "nobody.png")
    Image.fromarray(faces[0]).save(tmp_path / "in" / "fer.png")  # 48x48: the whole image
    result = run_cli(
        "predict-dir",
        tmp_path / "in",
        "-o",
        tmp_path / "p.csv",
        "--workers",
        "0",
        "--crops",
        tmp_path / "crops",
        "--detector",
        "mtcnn",  # no longer the default (yunet): this test is MTCNN's
    )
    assert result.exit_code == 0, result.output
    assert "No face found in 1 picture" in result.output
    rows = read_rows(tmp_path / "p.csv")
    assert [(r["path"], r["status"], r["face"]) for r in rows] == [
        ("fer.png", "ok", ""),
        ("nobody.png", "no_face", ""),
        ("three.jpg", "ok", "0"),
        ("three.jpg", "ok", "1"),
        ("three.jpg", "ok", "2"),
    ]
    for row, p in zip(rows[2:], placed):
        x, y, w, h = (int(v) for v in row["box"].split(","))
        assert abs(x + w / 2 - p.cx) < 0.2 * p.size and abs(y + h / 2 - p.cy) < 0.25 * p.size
        crop = tmp_path / "crops" / row["label"] / crop_name("three.jpg", int(row["face"]))
        upright = scene(400, 400, [q := Placed(p.face, 200, 200, p.size)])
        (alone,) = [f for f in detector.detect([np.asarray(upright)])[0] if q.contains(f)]
        assert corr(np.asarray(Image.open(crop)), align(upright, alone)) > 0.8


def test_no_face_in_a_photo_without_faces(tmp_path):
    (tmp_path / "in").mkdir()
    backdrop(640, 480, seed=5).save(tmp_path / "in" / "wall.jpg")
    predict_dir(tmp_path / "in", tmp_path / "p.jsonl", faces="detect", workers=0)
    (row,) = read_rows(tmp_path / "p.jsonl")
    assert (row["status"], row["face"], row["box"]) == ("no_face", None, None)


@pytest.mark.skipif(not (PHOTOS / "couple.jpg").is_file(), reason=f"no photos in {PHOTOS}")
def test_real_photo_with_two_faces(tmp_path):
    (tmp_path / "in").mkdir()
    os.symlink(PHOTOS / "couple.jpg", tmp_path / "in" / "couple.jpg")
    predict_dir(tmp_path / "in", tmp_path / "p.csv", faces="auto", workers=0)
    rows = read_rows(tmp_path / "p.csv")
    assert [r["face"] for r in rows] == ["0", "1"]
    # the default detector, YuNet, scores them 0.951 and 0.935 (MTCNN: both above 0.99)
    assert all(float(r["face_score"]) > 0.9 for r in rows)


def test_bad_face_options_are_one_line(tmp_path, run_cli):
    (tmp_path / "in").mkdir()
    backdrop(200, 200).save(tmp_path / "in" / "a.png")
    result = run_cli("predict-dir", tmp_path / "in", "-o", tmp_path / "p.csv", "--detector", "nope")
    assert result.exit_code == 2 and "unknown detector 'nope': choose one of" in result.output
    assert "Traceback" not in result.output
    result = run_cli(
        "predict-dir",
        tmp_path / "in",
        "-o",
        tmp_path / "p.csv",
        "--faces",
        "none",
        "--crops",
        tmp_path / "c",
    )
    assert result.exit_code == 2 and "need --faces auto or detect" in result.output
    (tmp_path / "file").write_text("")
    result = run_cli(
        "predict-dir",
        tmp_path / "in",
        "-o",
        tmp_path / "p.csv",
        "--crops",
        tmp_path / "file" / "crops",
    )
    assert result.exit_code == 2 and "cannot make the --crops folder" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(FercliError, match="--faces must be one of"):
        predict_dir(tmp_path / "in", tmp_path / "p.csv", faces="sometimes")


def test_detection_in_worker_processes_gives_the_same_rows(oracle, tmp_path):
    truth, _ = oracle_folder(tmp_path / "in")
    name = oracle(truth)
    for workers in (0, 2):  # batch size 2: three chunks, decoded by two workers
        predict_dir(
            tmp_path / "in",
            tmp_path / f"w{workers}.csv",
            faces="detect",
            detector=name,
            workers=workers,
            batch_size=2,
        )
    assert (tmp_path / "w0.csv").read_bytes() == (tmp_path / "w2.csv").read_bytes()


def test_a_detector_failing_on_one_picture_gives_an_error_row(register_failing, tmp_path):
    (tmp_path / "in").mkdir()
    backdrop(300, 200).save(tmp_path / "in" / "bad.png")  # the detector raises on 300x200
    backdrop(320, 200).save(tmp_path / "in" / "good.png")
    predict_dir(tmp_path / "in", tmp_path / "p.csv", faces="detect", detector=register_failing)
    rows = {r["path"]: r for r in read_rows(tmp_path / "p.csv")}
    assert rows["bad.png"]["status"] == "error"
    assert rows["bad.png"]["error"] == "RuntimeError: the detector broke"
    assert rows["good.png"]["status"] == "no_face"


@pytest.fixture
def register_failing():
    from fercli.hookspecs import hookimpl

    class Failing:
        def detect(self, images):
            if images[0].shape[:2] == (200, 300):
                raise RuntimeError("the detector broke")
            return [[] for _ in images]

    class Plugin:
        @hookimpl
        def register_detectors(self, register):
            register("failing", Failing, "Breaks on 300x200 pictures.")

    plugin = Plugin()
    pm.register(plugin, name="failing-plugin")
    yield "failing"
    pm.unregister(plugin)


def test_detecting_faces_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    (tmp_path / "in").mkdir()
    backdrop(400, 300).save(tmp_path / "in" / "wall.png")
    args = [
        "predict-dir",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "p.csv"),
        "--faces",
        "detect",
        "--crops",
        str(tmp_path / "c"),
        "--workers",
        "0",
    ]
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'))\n"
        "from fercli.cli import main\n"
        f"main({args!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("NO-TORCH")


# ----------------------------------------------------------------------------- draft decoding


def test_draft_scale_asks_for_the_smallest_size_still_as_long_as_the_search():
    from fercli.data.images import draft_scale

    assert draft_scale((4000, 3000), 1024) == (973, 730)  # 1024 less 5%: a 1/4 decode
    assert draft_scale((3000, 4000), 1024) == (730, 973)
    assert draft_scale((4000, 3000), 1100) == (1045, 784)  # a 1/2 decode
    assert draft_scale((1945, 1000), 1024) is None  # under twice the search: nothing to gain
    assert draft_scale((4000, 3000), None) is None


def test_open_scaled_decodes_a_large_jpeg_at_a_dct_scale(tmp_path):
    from fercli.data.images import open_raw, open_scaled

    path = tmp_path / "big.jpg"
    backdrop(4000, 3000).convert("RGB").save(path, quality=90)
    cases = ((1100, 2), (1024, 4), (600, 4), (500, 8), (300, 8), (2048, 2), (2200, 1), (None, 1))
    for side, scale in cases:
        im, got = open_scaled(path, side)
        assert got == scale and im.mode == "RGB"
        assert im.size == (-(-4000 // scale), -(-3000 // scale))
        assert max(im.size) >= 0.95 * (side or 0)
    im, got = open_scaled(path, lambda size: 1100 if size == (4000, 3000) else None)
    assert (got, im.size) == (2, (2000, 1500))
    full = np.asarray(open_raw(path), np.float32)
    half = np.asarray(open_scaled(path, 1100)[0], np.float32)
    means = full.reshape(1500, 2, 2000, 2, 3).mean(axis=(1, 3))
    assert np.abs(means - half).mean() < 2  # the same picture, at half size
    png = tmp_path / "big.png"
    backdrop(2400, 1800).save(png)
    assert open_scaled(png, 1024)[1] == 1  # only JPEGs have DCT scales


def test_draft_decoding_finds_the_same_faces_with_the_same_labels(tmp_path, monkeypatch):
    """A 2560x1920 JPEG with a large and a small face: decoded at half size for the search
    (YuNet's 1024-pixel copy), the boxes in the stored picture's pixels within 2% of the
    face's size of those of a full decode, the crops close and cut from a full decode (one
    more decode), the labels the same; from_draft would cut the large face alone from the
    draft decode at 4 samples per input pixel."""
    from fercli.data import images
    from fercli.predict import faces as predict_faces
    from fercli.predict.bundled import bundled_path
    from fercli.predict.onnx_model import OnnxModel

    faces = synth_faces(2, seed=3)
    model = OnnxModel(bundled_path("fast"), "cpu")
    real = images.open_raw
    for placed, full_decodes in (
        ([Placed(faces[0], 900, 960, 900)], 1),
        ([Placed(faces[0], 900, 960, 900), Placed(faces[1], 2000, 900, 160)], 1),
    ):
        path = tmp_path / f"scene{len(placed)}.jpg"
        scene(2560, 1920, placed).convert("RGB").save(path, quality=92)
        calls = []
        monkeypatch.setattr(predict_faces, "open_raw", lambda p, c=calls: c.append(p) or real(p))
        drafted, crops = predict_faces.find_faces(path, "detect", "yunet", 48, None)
        assert len(calls) == full_decodes
        monkeypatch.setattr(predict_faces, "open_scaled", lambda p, side: (real(p), 1))
        whole, full_crops = predict_faces.find_faces(path, "detect", "yunet", 48, None)
        monkeypatch.undo()
        assert len(drafted.faces) == len(whole.faces) == len(placed)
        assert predict_faces.from_draft(drafted.faces, 2, 48, 4) == (len(placed) == 1)
        assert not predict_faces.from_draft(drafted.faces, 2, 48)
        for a, b in zip(drafted.faces, whole.faces):
            side = b.box[2] - b.box[0]
            assert np.abs(np.subtract(a.box, b.box)).max() < 0.02 * side
        assert np.abs(crops.astype(int) - full_crops).mean() < 4
        labels = model.predict_proba(crops).argmax(1)
        assert labels.tolist() == model.predict_proba(full_crops).argmax(1).tolist()


@pytest.mark.skipif(not (PHOTOS / "couple.jpg").is_file(), reason=f"no photos in {PHOTOS}")
def test_draft_decoding_keeps_the_labels_of_the_photos(monkeypatch):
    """The development photos over twice YuNet's 1024-pixel search (4 of 12, 2 to 4.3 MP):
    the same faces and labels as with a full decode, boxes within 3 pixels."""
    from fercli.data import images
    from fercli.predict import faces as predict_faces
    from fercli.predict.bundled import bundled_path
    from fercli.predict.onnx_model import OnnxModel

    model = OnnxModel(bundled_path("fast"), "cpu")
    real = images.open_raw
    for name in ("couple.jpg", "img4.jpg"):
        drafted, crops = predict_faces.find_faces(PHOTOS / name, "detect", "yunet", 48, None)
        monkeypatch.setattr(predict_faces, "open_scaled", lambda p, side: (real(p), 1))
        whole, full_crops = predict_faces.find_faces(PHOTOS / name, "detect", "yunet", 48, None)
        monkeypatch.undo()
        assert [len(drafted.faces)] == [len(whole.faces)]
        for a, b in zip(drafted.faces, whole.faces):
            assert np.abs(np.subtract(a.xywh(), b.xywh())).max() <= 3
        labels = model.predict_proba(crops).argmax(1)
        assert labels.tolist() == model.predict_proba(full_crops).argmax(1).tolist()
