"""fercli's Python API (fercli.api): a Predictor gives, for a file, a Pillow image or an array,
the numbers `fercli predict-dir` writes for that file; fercli.predict_dir yields its rows and
fercli.clean_dataset returns clean's report, printing and writing nothing; `import fercli`
stays light; docs/python-api.md's examples run. All on the bundled `fast` model."""

import csv
import dataclasses
import inspect
import io
import json
import re
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from faces_scenes import OraclePlugin, Placed, scene
from PIL import Image

import fercli
from fercli import FER_CLASSES
from fercli.data.synth import draw_face
from fercli.plugins import pm
from fercli.predict.folder import predict_dir as write_predictions
from fercli.predict.onnx_model import OnnxModel

DOCS = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def synth_faces(n: int, seed: int = 0) -> list[np.ndarray]:
    return [draw_face(FER_CLASSES[i % 7], np.random.default_rng(seed + i)) for i in range(n)]


def resized(face: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(face).resize(size, Image.BICUBIC))


def tinted(face: np.ndarray, seed: int = 0) -> np.ndarray:
    """An RGB picture of a grey face: each channel scaled differently."""
    gains = np.random.default_rng(seed).uniform(0.6, 1.0, 3)
    return np.clip(face[:, :, None] * gains, 0, 255).astype(np.uint8)


def csv_rows(path: Path) -> dict[str, list[dict]]:
    """predict-dir's CSV rows by path."""
    by_path: dict[str, list[dict]] = {}
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")):
        by_path.setdefault(row["path"], []).append(row)
    return by_path


def as_predictions(rows: list[dict]) -> list[fercli.Prediction]:
    """The Predictions a CSV's rows for one file stand for (none for a no_face row)."""
    out = []
    for row in rows:
        assert row["status"] in ("ok", "no_face"), row
        if row["status"] != "ok":
            continue
        box = row.get("box") or None
        out.append(
            fercli.Prediction(
                label=row["label"],
                confidence=float(row["confidence"]),
                probabilities={c: float(row[f"prob_{c}"]) for c in FER_CLASSES},
                box=None if box is None else tuple(int(v) for v in box.split(",")),
                face_score=float(row["face_score"]) if row.get("face_score") else None,
                face_size=int(row["face_size"]) if row.get("face_size") else None,
            )
        )
    return out


@pytest.fixture(scope="module")
def none_predictor():
    return fercli.Predictor(faces="none")


@pytest.fixture
def oracle():
    """oracle({(w, h): [Face, ...]}): the `oracle` detector plugin (tests/faces_scenes.py)."""
    added = []

    def register(truth):
        plugin = OraclePlugin(truth)
        pm.register(plugin, name=f"api-oracle-{len(added)}")
        added.append(plugin)
        return "oracle"

    yield register
    for plugin in added:
        pm.unregister(plugin)


def pictures_folder(root: Path) -> dict[str, np.ndarray]:
    """Pictures of several sizes and modes, saved as PNG: {file name: the array saved}."""
    faces = synth_faces(4)
    pictures = {
        "fer.png": faces[0],  # 48x48: the whole picture is the face, under auto too
        "square100.png": resized(faces[1], (100, 100)),
        "wide.png": resized(faces[2], (90, 60)),
        "rgb.png": tinted(resized(faces[3], (80, 80))),
    }
    root.mkdir(parents=True)
    for name, array in pictures.items():
        Image.fromarray(array).save(root / name)
    return pictures


# ----------------------------------------------------------------------------- the package


def test_import_fercli_loads_nothing_heavy_until_asked():
    code = (
        "import sys\n"
        "import fercli\n"
        "heavy = ('numpy', 'PIL', 'onnxruntime', 'torch', 'rich', 'fercli.api')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "predictor = fercli.Predictor(faces='none')\n"
        "print([m for m in ('onnxruntime', 'torch') if m in sys.modules])\n"
        "from fercli.data.synth import draw_face\n"
        "import numpy as np\n"
        "print(predictor.predict(draw_face('happy', np.random.default_rng(0)))[0].label)\n"
        "print([m for m in ('onnxruntime', 'torch') if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[]"  # import fercli: nothing heavy
    assert lines[1] == "[]"  # a Predictor: onnxruntime only when the model first runs
    assert lines[2] in FER_CLASSES
    assert lines[3] == "['onnxruntime']"  # never torch
    assert proc.stderr == ""


def test_the_public_names_and_dir():
    for name in ("Predictor", "Prediction", "predict_dir", "clean_dataset", "FercliError"):
        assert name in dir(fercli) and name in fercli.__all__
    from fercli.errors import FercliError

    assert fercli.FercliError is FercliError
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        fercli.nothing  # noqa: B018


def test_the_package_is_typed_and_the_public_api_annotated():
    assert (Path(fercli.__file__).parent / "py.typed").is_file()
    functions = [
        fercli.Predictor.__init__,
        fercli.Predictor.predict,
        fercli.Predictor.predict_many,
        fercli.predict_dir,
        fercli.clean_dataset,
    ]
    for function in functions:
        hints = typing.get_type_hints(function)  # every annotation resolves
        params = [p for p in inspect.signature(function).parameters if p != "self"]
        assert set(params) <= set(hints) and "return" in hints, function
    assert set(typing.get_type_hints(fercli.Prediction)) >= {
        "box",
        "label",
        "confidence",
        "probabilities",
        "face_score",
    }


def test_a_prediction_is_frozen(none_predictor):
    (p,) = none_predictor.predict(synth_faces(1)[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.label = "happy"
    assert p.label == max(p.probabilities, key=p.probabilities.get)
    assert p.confidence == p.probabilities[p.label] and p.box is None and p.face_score is None
    assert tuple(p.probabilities) == none_predictor.classes == FER_CLASSES


# ------------------------------------------------------------------------- predict-dir's numbers


@pytest.mark.parametrize("faces", ["none", "auto"])
def test_files_pictures_and_arrays_give_predict_dirs_rows(faces, tmp_path):
    """Any size, grey or RGB, as a path, a Pillow image or an array: the numbers of the
    file's row in predict-dir's CSV (a 100x100 array resized as the file is, not cut)."""
    pictures = pictures_folder(tmp_path / "in")
    write_predictions(tmp_path / "in", tmp_path / "p.csv", faces=faces, workers=0)
    rows = csv_rows(tmp_path / "p.csv")
    predictor = fercli.Predictor(faces=faces)
    for name, array in pictures.items():
        want = as_predictions(rows[name])
        path = tmp_path / "in" / name
        assert predictor.predict(path) == want, name
        assert predictor.predict(str(path)) == want, name
        assert predictor.predict(array) == want, name
        with Image.open(path) as im:
            assert predictor.predict(im) == want, name
    whole = as_predictions(rows["fer.png"])
    assert len(whole) == 1 and whole[0].box is None  # a small picture is the face


def test_a_100x100_array_is_resized_not_centre_cropped(none_predictor):
    face = synth_faces(1, seed=3)[0]
    big = resized(face, (100, 100))
    shrunk = np.asarray(Image.fromarray(big).resize((48, 48), Image.BILINEAR))
    cut = big[26:74, 26:74]
    assert none_predictor.predict(big) == none_predictor.predict(shrunk)
    assert none_predictor.predict(big) != none_predictor.predict(cut)


def test_faces_on_a_pasted_scene_give_predict_dirs_rows(oracle, tmp_path):
    faces = synth_faces(3, seed=10)
    placed = [
        Placed(faces[0], 110, 150, 110),
        Placed(faces[1], 300, 140, 90, angle=12),
        Placed(faces[2], 470, 170, 70),
    ]
    picture = scene(560, 320, placed, seed=1)
    name = oracle({(560, 320): [p.truth() for p in placed], (200, 150): []})
    folder = tmp_path / "in"
    folder.mkdir()
    picture.save(folder / "group.png")
    Image.new("L", (200, 150), 128).save(folder / "empty.png")
    write_predictions(folder, tmp_path / "p.csv", faces="detect", detector=name, workers=0)
    rows = csv_rows(tmp_path / "p.csv")
    predictor = fercli.Predictor(faces="detect", detector=name)

    want = as_predictions(rows["group.png"])
    assert len(want) == 3 and [p.box for p in want] == sorted(p.box for p in want)  # left to right
    assert all(p.face_score == 0.99 and p.face_size == min(p.box[2:]) for p in want)
    assert predictor.predict(folder / "group.png") == want
    assert predictor.predict(np.asarray(picture)) == want
    assert predictor.predict(picture) == want
    assert [r["status"] for r in rows["empty.png"]] == ["no_face"]
    assert predictor.predict(folder / "empty.png") == []
    # auto looks for faces in a picture this large too
    assert fercli.Predictor(faces="auto", detector=name).predict(picture) == want


def test_min_face_size_leaves_small_faces_out(oracle):
    faces = synth_faces(2, seed=20)
    placed = [Placed(faces[0], 100, 100, 120), Placed(faces[1], 300, 100, 60)]
    picture = scene(400, 200, placed)
    name = oracle({(400, 200): [p.truth() for p in placed]})
    every = fercli.Predictor(faces="detect", detector=name).predict(picture)
    big = fercli.Predictor(faces="detect", detector=name, min_face_size=80).predict(picture)
    assert len(every) == 2 and big == every[:1]


# ----------------------------------------------------------------------------- conversions


def test_rgb_is_its_grey_conversion_as_files_are_converted(none_predictor, tmp_path):
    rgb = tinted(resized(synth_faces(1, seed=5)[0], (64, 64)), seed=1)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert none_predictor.predict(rgb) == none_predictor.predict(grey)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # transparency: flattened onto black, as a file's is
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert none_predictor.predict(rgba) == none_predictor.predict(tmp_path / "a.png")
    assert none_predictor.predict(rgb[:, :, :1]) == none_predictor.predict(rgb[:, :, 0])


def test_float_in_0_1_is_uint8(none_predictor):
    face = synth_faces(1, seed=7)[0]
    want = none_predictor.predict(face)
    assert none_predictor.predict(face / 255.0) == want
    assert none_predictor.predict((face / 255.0).astype(np.float32)) == want
    rgb = tinted(face)
    assert none_predictor.predict(rgb.astype(np.float64) / 255) == none_predictor.predict(rgb)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((48, 48, 2), np.uint8), "shape"),
        (np.zeros((48,), np.uint8), "shape"),
        (np.zeros((2, 48, 48, 3), np.uint8), "shape"),
        (np.zeros((0, 48), np.uint8), "shape"),
        (np.zeros((48, 48), np.int64), "int64"),
        (np.zeros((48, 48), bool), "bool"),
        (np.full((48, 48), 255.0), "0-1"),
        (np.full((48, 48), -0.5), "0-1"),
        (np.full((48, 48), np.nan), "0-1"),
        (b"\x89PNG", "bytes"),
        ([[0, 1], [2, 3]], "list"),
    ],
    ids=lambda v: getattr(v, "dtype", type(v).__name__) if not isinstance(v, str) else v,
)
def test_what_cannot_be_read_is_one_fercli_error(none_predictor, bad, message):
    with pytest.raises(fercli.FercliError) as caught:
        none_predictor.predict(bad)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_unreadable_files_are_one_fercli_error(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    for faces in ("none", "auto"):
        predictor = fercli.Predictor(faces=faces)
        for name, reason in [
            ("missing.png", "file not found"),
            ("text.png", "not an image"),
            ("folder.png", "is a directory"),
        ]:
            with pytest.raises(fercli.FercliError) as caught:
                predictor.predict(tmp_path / name)
            text = str(caught.value)
            assert name in text and reason in text and "\n" not in text


def test_bad_options_are_one_fercli_error(tmp_path):
    for options, message in [
        ({"faces": "some"}, "faces must be one of auto, detect, none"),
        ({"provider": "tpu"}, "provider must be one of"),
        ({"detector": "nobody"}, "unknown detector 'nobody'"),
        ({"model": tmp_path / "absent.onnx"}, "absent.onnx not found"),
        ({"model": "huge"}, "huge not found"),
        ({"threads": 0}, "threads must be at least 1"),
    ]:
        with pytest.raises(fercli.FercliError, match=re.escape(message)):
            fercli.Predictor(**options)


# ----------------------------------------------------------------------------- batches, threads


def test_predict_many_is_predict_each_in_one_model_call_per_batch(none_predictor, monkeypatch):
    images = [resized(f, (40 + 7 * i, 40 + 7 * i)) for i, f in enumerate(synth_faces(10))]
    each = [none_predictor.predict(image) for image in images]
    calls = []
    logits = OnnxModel.logits

    def counting(self, x):
        calls.append(len(x))
        return logits(self, x)

    monkeypatch.setattr(OnnxModel, "logits", counting)
    many = none_predictor.predict_many(iter(images), batch_size=4)  # any iterable
    assert not calls  # lazy: nothing until asked
    assert list(many) == each
    assert calls == [4, 4, 2]


def test_predict_many_yields_the_good_pictures_before_a_bad_one(none_predictor):
    faces = synth_faces(3)
    got = []
    with pytest.raises(fercli.FercliError, match=r"^image 2: expected .*shape"):
        for result in none_predictor.predict_many([*faces[:2], np.zeros(3), faces[2]], 8):
            got.append(result)
    assert got == [none_predictor.predict(f) for f in faces[:2]]
    with pytest.raises(fercli.FercliError, match="batch_size"):
        none_predictor.predict_many(faces, batch_size=0)


def test_predict_many_with_faces_detect_and_tta(oracle):
    faces = synth_faces(2, seed=30)
    placed = [Placed(faces[0], 100, 100, 100), Placed(faces[1], 260, 110, 90)]
    picture = np.asarray(scene(360, 220, placed))
    name = oracle({(360, 220): [p.truth() for p in placed]})
    predictor = fercli.Predictor(faces="detect", detector=name, tta=True)
    items = [picture, np.zeros((150, 150), np.uint8), picture]
    each = [predictor.predict(item) for item in items]
    assert [len(e) for e in each] == [2, 0, 2]
    assert list(predictor.predict_many(items, batch_size=2)) == each
    plain = fercli.Predictor(faces="detect", detector=name).predict(picture)
    assert [p.box for p in plain] == [p.box for p in each[0]]
    assert plain != each[0]  # the mirror images' probabilities are averaged in


def test_one_predictor_from_several_threads():
    images = [resized(f, (60, 60)) for f in synth_faces(16, seed=40)]
    sequential = [fercli.Predictor(faces="none").predict(image) for image in images]
    shared = fercli.Predictor(faces="none", threads=1)  # opened by whichever thread is first
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(shared.predict, images))
        batched = list(pool.map(lambda chunk: list(shared.predict_many(chunk)), [images] * 3))
    assert threaded == sequential
    assert batched == [sequential] * 3


# ----------------------------------------------------------------------------- predict_dir, clean


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_predict_dir_yields_the_rows_predict_dir_writes(tmp_path, capfd):
    folder = tmp_path / "in"
    pictures_folder(folder / "sub")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "notes.txt").write_text("skipped")
    before = listing(tmp_path)
    capfd.readouterr()
    for faces, workers in [("none", 0), ("none", 2), ("auto", 0)]:
        rows = fercli.predict_dir(folder, faces=faces, workers=workers, topk=2, batch_size=3)
        assert not isinstance(rows, list)  # a generator: row by row
        rows = list(rows)
        assert listing(tmp_path) == before  # nothing written
        out = tmp_path / "out" / f"{faces}-{workers}.jsonl"
        write_predictions(folder, out, faces=faces, workers=0, topk=2)
        assert rows == jsonl(out), (faces, workers)
        assert [r["status"] for r in rows if r["path"] == "broken.jpg"] == ["error"]
        (tmp_path / "out").rename(tmp_path / f"out-{faces}-{workers}")
        before = listing(tmp_path)
        capfd.readouterr()  # what predict-dir itself printed
    assert rows[0].keys() >= {"face", "box", "face_score", "face_size"}
    out, err = capfd.readouterr()
    assert out == err == ""


def test_predict_dir_checks_on_the_call_and_can_stop_early(tmp_path):
    with pytest.raises(fercli.FercliError, match="is not a folder"):
        fercli.predict_dir(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(fercli.FercliError, match="no images"):
        fercli.predict_dir(tmp_path / "empty")
    with pytest.raises(fercli.FercliError, match="faces must be one of"):
        fercli.predict_dir(tmp_path, faces="all")
    pictures_folder(tmp_path / "in")
    rows = fercli.predict_dir(tmp_path / "in", faces="none", workers=2, batch_size=1)
    first = next(rows)
    rows.close()  # the workers stop
    assert first["path"] == "fer.png" and first["status"] == "ok"
    with pytest.raises(fercli.FercliError, match="--topk must be between 0 and 7"):
        list(fercli.predict_dir(tmp_path / "in", topk=9))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    from fercli.data.synth import make_synthetic

    root = tmp_path_factory.mktemp("clean") / "data"
    make_synthetic(root, per_class=4, seed=1)
    return root


def test_clean_dataset_returns_the_report_clean_writes(small_dataset, tmp_path, run_cli, capsys):
    result = run_cli("clean", small_dataset, "--report", tmp_path / "r.json", "--json")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "r.json").read_text())
    before = listing(small_dataset)
    capsys.readouterr()
    report = fercli.clean_dataset(small_dataset, workers=1)
    out, err = capsys.readouterr()
    assert out == err == ""  # no "Scanning" line either
    assert listing(small_dataset) == before
    assert report["flags"] and report["flags"] == written["flags"]
    assert report["groups"] == written["groups"]
    for summary in (report["summary"], written["summary"]):
        summary.pop("seconds")
    written["summary"].pop("report")
    assert report["summary"] == written["summary"]
    json.dumps(report)  # plain JSON, as the file is
    with pytest.raises(fercli.FercliError):
        fercli.clean_dataset(tmp_path / "absent")


def test_what_the_api_would_say_goes_to_the_fercli_logger(tmp_path, small_dataset, caplog):
    from fercli.progress import logged, say

    with caplog.at_level("INFO", logger="fercli"):
        logged(say, "a line")
        fercli.clean_dataset(small_dataset, workers=1)
    messages = [r.getMessage() for r in caplog.records if r.name == "fercli"]
    assert messages[0] == "a line"
    assert any(m.startswith("Scanning: ") for m in messages)


def test_a_broken_plugins_warning_is_logged_not_printed(fake_dist, caplog, capsys):
    fake_dist("fercli-broken", "0.1", {"broken": "fercli_broken_ep"}, {"fercli_broken_ep": "1/0\n"})
    with caplog.at_level("WARNING", logger="fercli"):
        fercli.Predictor(faces="auto")  # loads the plugins, for the detector's name
    assert capsys.readouterr().err == ""
    (record,) = [r for r in caplog.records if r.name == "fercli"]
    assert "plugin 'broken' (fercli_broken_ep) failed to load" in record.getMessage()


# ----------------------------------------------------------------------------- the docs


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_python_api_docs_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(DOCS.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the examples write only in their own temporary folders
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOCS.name} block {i + 1}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"block {i + 1} of {DOCS.name} fails:\n{block}") from exc
    assert listing(tmp_path) == []
