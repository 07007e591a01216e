"""predict-dir: every file gets one row (mixed formats, modes, sizes, broken files, awkward
names), resume after an interruption, --eval, providers, unusable models, no torch."""

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import fercli.predict.providers
from fercli.data.images import load_image
from fercli.errors import FercliError
from fercli.predict.bundled import BUNDLED, bundled_path
from fercli.predict.folder import predict_dir
from fercli.predict.onnx_model import OnnxModel, read_metadata_props
from fercli.predict.providers import EP, Unavailable, available_providers, cuda_failure
from fercli.util import native_stderr_captured


def cuda_starts() -> bool:
    """Whether onnxruntime runs a model on CUDA here: onnxruntime-gpu alone is not enough,
    it also needs a GPU, its driver, and the CUDA and cuDNN libraries it was built for."""
    if EP["cuda"] not in available_providers():
        return False
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x, y = ([helper.make_tensor_value_info(n, TensorProto.FLOAT, [1])] for n in "xy")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", x, y)
    with native_stderr_captured():
        session = ort.InferenceSession(
            helper.make_model(
                graph, ir_version=8, opset_imports=[helper.make_opsetid("", 13)]
            ).SerializeToString(),
            providers=[EP["cuda"], EP["cpu"]],
        )
    return session.get_providers()[0] == EP["cuda"]


HAS_CUDA = cuda_starts()
OPENVINO_MISSING = fercli.predict.providers.openvino_unavailable()  # why not, on this machine
HAS_OPENVINO = OPENVINO_MISSING is None
NO_OPENVINO = f"OpenVINO cannot run here: {OPENVINO_MISSING and OPENVINO_MISSING.what}"


@pytest.fixture
def fresh_openvino(monkeypatch):
    """Forget what this process found out about the OpenVINO plugin (it is kept per process)."""
    monkeypatch.setattr(fercli.predict.providers, "_openvino", {})


@pytest.fixture(scope="module")
def model_path(trained_onnx) -> Path:
    """The session's short seed-cnn run on the synthetic faces, exported to ONNX."""
    return trained_onnx


def face(rng, shape=(48, 48)):
    return rng.integers(0, 256, shape, dtype=np.uint8)


def bomb_png() -> bytes:
    """A tiny PNG whose header claims 100000 x 100000 pixels."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


AWKWARD = [
    "comma, name.png",
    'quote "name".png',
    "new\nline.png",
    "émotion ☺ 表情.png",
    "semi;colon 'single'.png",
]


def make_mixed_folder(root: Path) -> dict[str, str]:
    """Images in many formats, modes and sizes, broken files and awkward names.
    Returns {relative path: expected status} for every file that must get a row."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    expected = {}

    def save(rel, im, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path, **kw)
        expected[rel] = "ok"

    save("gray.png", Image.fromarray(face(rng)))
    save("photo big.jpg", Image.fromarray(face(rng, (480, 640, 3))), quality=90)
    save("rgba.png", Image.fromarray(face(rng, (60, 60, 4)), "RGBA"))
    save("palette.gif", Image.fromarray(face(rng)).convert("P"))
    save("sixteen.png", Image.fromarray(face(rng).astype(np.uint16) * 257))
    save("tiny.bmp", Image.fromarray(face(rng, (10, 7))))
    save("cmyk.jpg", Image.fromarray(face(rng, (50, 40, 3))).convert("CMYK"))
    save("bilevel.png", Image.fromarray(face(rng) > 128))
    save("photo.tiff", Image.fromarray(face(rng, (30, 30, 3))))
    save("UPPER.JPEG", Image.fromarray(face(rng)))
    save("sub/dir/deep.webp", Image.fromarray(face(rng)))
    for name in AWKWARD:
        save(f"odd/{name}", Image.fromarray(face(rng)))
    # Broken files: a row each with status=error, and the run goes on.
    (root / "empty.jpg").write_bytes(b"")
    good = io.BytesIO()
    Image.fromarray(face(rng, (200, 200))).save(good, "JPEG")
    (root / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (root / "text.jpg").write_text("this is not a picture")
    (root / "bomb.png").write_bytes(bomb_png())
    expected.update({n: "error" for n in ("empty.jpg", "truncated.jpg", "text.jpg", "bomb.png")})
    (root / "dangling.png").symlink_to(root / "moved-away.png")
    expected["dangling.png"] = "error"
    if hasattr(os, "mkfifo"):  # reading a pipe would wait for a writer forever
        os.mkfifo(root / "pipe.jpg")
        expected["pipe.jpg"] = "error"
    # Skipped: hidden files and folders, the clean quarantine, non-image files.
    for rel in (".hidden.png", ".cache/x.png", ".fercli-quarantine/y.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face(rng)).save(root / rel)
    (root / "notes.txt").write_text("not an image")
    return expected


def read_rows(path: Path) -> list[dict]:
    text = path.read_bytes().decode("utf-8")  # strict UTF-8
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return [json.loads(line) for line in text.splitlines()]


def probabilities(row, classes) -> np.ndarray:
    if "probabilities" in row:
        return np.array([row["probabilities"][c] for c in classes])
    return np.array([float(row[f"prob_{c}"]) for c in classes])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_every_file_gets_one_row(model_path, tmp_path, suffix):
    expected = make_mixed_folder(tmp_path / "in")
    out = tmp_path / f"out{suffix}"
    result = predict_dir(
        tmp_path / "in", out, model_path, provider="cpu", batch_size=4, workers=2, topk=2
    )
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(expected)  # each exactly once, names intact
    assert {r["path"]: r["status"] for r in rows} == expected
    assert result.total == len(expected) and result.other_files == 1 and result.provider == "cpu"
    assert sorted(p for p, _ in result.errors) == sorted(
        p for p, s in expected.items() if s == "error"
    )
    model = OnnxModel(model_path, "cpu")
    classes = model.info.classes
    for row in rows:
        if row["status"] == "error":
            assert row["error"] and not row.get("label")
            continue
        probs = probabilities(row, classes)
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == classes[probs.argmax()]
        assert float(row["confidence"]) == pytest.approx(probs.max(), abs=1e-6)
        # The same preprocessing as training: fercli.data.images, then the model's normalization.
        direct = model.predict_proba(load_image(tmp_path / "in" / row["path"])[None])[0]
        np.testing.assert_allclose(probs, direct, atol=2e-6)
    reasons = {r["path"]: r["error"] for r in rows if r["status"] == "error"}
    assert "not an image" in reasons["text.jpg"]
    assert "bomb" in reasons["bomb.png"].lower() or "exceeds" in reasons["bomb.png"]
    assert sum(result.counts.values()) == len(rows) - len(reasons)
    summary = json.loads(Path(f"{out}.summary.json").read_text())
    assert summary["provider"] == "cpu" and summary["rows"] == len(rows)


@pytest.mark.parametrize("tta", [False, True], ids=["plain", "tta"])
def test_workers_that_predict_give_the_rows_of_this_process(model_path, tmp_path, tta):
    """On the CPU with two workers or more, every worker decodes and predicts its chunks with a
    session of its own (fercli.predict.workers); with none, this process does it all."""
    make_mixed_folder(tmp_path / "in")
    pids = tmp_path / "pids"
    pids.mkdir()
    original = OnnxModel.predict_proba

    def predict(self, images, batch_size=256):  # forked workers inherit the patch
        (pids / str(os.getpid())).touch()
        return original(self, images, batch_size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OnnxModel, "predict_proba", predict)
        a = predict_dir(
            tmp_path / "in",
            tmp_path / "a.csv",
            model_path,
            provider="cpu",
            batch_size=5,
            workers=2,
            tta=tta,
        )  # the CPU provider: workers predict on it alone, whatever `auto` would pick here
    assert a.provider == "cpu" and a.errors
    predicted_in = [p.name for p in pids.iterdir()]
    assert predicted_in and str(os.getpid()) not in predicted_in
    predict_dir(
        tmp_path / "in",
        tmp_path / "b.csv",
        model_path,
        provider="cpu",
        batch_size=5,
        workers=0,
        tta=tta,
    )
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_this_process_opens_the_model_for_its_metadata_only_when_workers_predict(
    model_path, tmp_path, monkeypatch
):
    make_mixed_folder(tmp_path / "in")
    opened = []
    original = OnnxModel.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append((os.getpid(), self.metadata_only))

    monkeypatch.setattr(OnnxModel, "__init__", spy)
    for out, workers in (("a.csv", 2), ("b.csv", 0)):  # the CPU provider: workers predict
        predict_dir(
            tmp_path / "in",
            tmp_path / out,
            model_path,
            provider="cpu",
            batch_size=5,
            workers=workers,
        )
    assert [meta for pid, meta in opened if pid == os.getpid()] == [True, False]
    meta = OnnxModel(model_path, "cpu", metadata_only=True)
    assert meta.info == OnnxModel(model_path, "cpu").info
    with pytest.raises(RuntimeError, match="metadata only"):
        meta.predict_proba(np.zeros((1, meta.info.image_size, meta.info.image_size), np.uint8))


@pytest.mark.parametrize("name", ["fast", "accurate", "exported"])
def test_metadata_is_read_from_the_file_as_onnxruntime_reads_it(name, model_path, tmp_path):
    import onnxruntime as ort

    path = model_path if name == "exported" else bundled_path(name)
    expected = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
    assert read_metadata_props(path) == expected and "classes" in expected
    model = onnx.load(str(path))  # entries anywhere in the file, odd keys and values
    model.metadata_props.add(key="é\n\x00", value="")
    onnx.helper.set_model_props(model, {**expected, "late": "ü" * 300})
    model.producer_name = "moved"
    onnx.save(model, str(tmp_path / "m.onnx"))
    again = ort.InferenceSession(str(tmp_path / "m.onnx")).get_modelmeta().custom_metadata_map
    assert read_metadata_props(tmp_path / "m.onnx") == again and again["late"] == "ü" * 300
    data = path.read_bytes()
    for cut in (1, 40, len(data) // 2, len(data) - 3):  # truncated anywhere: never a silent {}
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        with pytest.raises(ValueError):
            read_metadata_props(tmp_path / "cut.onnx")


def test_a_model_opened_for_its_metadata_only_refuses_a_file_that_is_no_onnx(tmp_path):
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(FercliError, match="is not a usable ONNX model"):
        OnnxModel(tmp_path / "text.onnx", "cpu", metadata_only=True)


def test_tta_averages_each_image_with_its_mirror(model_path, tmp_path, run_cli):
    rng = np.random.default_rng(3)
    folder = tmp_path / "in"
    folder.mkdir()
    image = face(rng)
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(image[:, ::-1])).save(folder / "b.png")
    predict_dir(folder, tmp_path / "plain.csv", model_path)
    result = run_cli(
        "predict-dir", folder, "--model", model_path, "--tta", "-o", tmp_path / "tta.csv"
    )
    assert result.exit_code == 0 and "flip TTA" in result.output
    classes = OnnxModel(model_path, "cpu").info.classes
    plain = {r["path"]: probabilities(r, classes) for r in read_rows(tmp_path / "plain.csv")}
    tta = {r["path"]: probabilities(r, classes) for r in read_rows(tmp_path / "tta.csv")}
    assert not np.allclose(plain["a.png"], plain["b.png"], atol=1e-4)  # the model is not symmetric
    mean = (plain["a.png"] + plain["b.png"]) / 2
    np.testing.assert_allclose(tta["a.png"], mean, atol=2e-6)
    np.testing.assert_allclose(tta["b.png"], mean, atol=2e-6)
    summary = json.loads((tmp_path / "tta.csv.summary.json").read_text())
    assert summary["tta"] is True


def test_no_recursive_and_topk(model_path, tmp_path):
    make_mixed_folder(tmp_path / "in")
    out = tmp_path / "out.csv"
    predict_dir(tmp_path / "in", out, model_path, recursive=False, topk=3, workers=0)
    rows = read_rows(out)
    assert all("/" not in r["path"] for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    for row in ok:
        assert row["top1_label"] == row["label"]
        confs = [float(row[f"top{i}_confidence"]) for i in (1, 2, 3)]
        assert confs == sorted(confs, reverse=True)
    with pytest.raises(FercliError, match="--topk"):
        predict_dir(tmp_path / "in", out, model_path, topk=8)


def interrupt_after(monkeypatch, calls_before_interrupt):
    """Raise KeyboardInterrupt in this process, as a Ctrl-C would, when the rows of a given
    batch are made (whether the workers or this process ran the model)."""
    from fercli.predict.output import CsvOut, JsonlOut

    calls = []
    for cls in (CsvOut, JsonlOut):

        def predicted_text(self, paths, *args, original=cls.predicted_text):
            calls.append(len(paths))
            if len(calls) > calls_before_interrupt:
                raise KeyboardInterrupt
            return original(self, paths, *args)

        monkeypatch.setattr(cls, "predicted_text", predicted_text)
    return calls


def flat_folder(root: Path, n=21) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir()
    for i in range(n):
        Image.fromarray(face(rng)).save(root / f"face_{i:02d}.png")
    (root / "face_05.png").write_bytes(b"broken")
    return root


def test_a_file_it_may_not_read_gets_an_error_row(model_path, tmp_path, monkeypatch):
    folder = flat_folder(tmp_path / "in", n=3)
    locked = folder / "face_01.png"
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: refuse it as the OS would
        real_open = os.open

        def refuse(path, *args, **kwargs):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    result = predict_dir(folder, tmp_path / "p.csv", model_path, workers=0)
    rows = {r["path"]: r for r in read_rows(tmp_path / "p.csv")}
    assert (rows["face_01.png"]["status"], rows["face_01.png"]["error"]) == (
        "error",
        "permission denied",
    )
    assert rows["face_00.png"]["status"] == "ok" and result.total == len(rows) == 4


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_an_interrupted_run(model_path, tmp_path, monkeypatch, suffix):
    folder = flat_folder(tmp_path / "in")
    fresh = tmp_path / f"fresh{suffix}"
    predict_dir(folder, fresh, model_path, batch_size=4, workers=0)

    out = tmp_path / f"resumed{suffix}"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        predict_dir(folder, out, model_path, batch_size=4, workers=2, resume=True)
    assert len(read_rows(out)) == 8  # the two finished batches are on disk
    # A kill in the middle of writing leaves half a record: resume drops it.
    with open(out, "a", encoding="utf-8") as f:
        f.write("face_99.png,ok,,hap" if suffix == ".csv" else '{"path": "face_9')
    monkeypatch.undo()
    calls = interrupt_after(monkeypatch, 1000)
    result = predict_dir(folder, out, model_path, batch_size=4, workers=2, resume=True)
    assert (result.resumed, result.new, result.total) == (8, 13, 21)
    assert sum(calls) == 13  # no image predicted twice: only the 13 new rows were made
    assert out.read_bytes() == fresh.read_bytes()  # same as a run without interruption
    again = predict_dir(folder, out, model_path, resume=True)
    assert again.new == 0 and out.read_bytes() == fresh.read_bytes()


def test_interrupted_run_without_resume_leaves_nothing(model_path, tmp_path, monkeypatch):
    folder = flat_folder(tmp_path / "in")
    out = tmp_path / "out" / "p.csv"
    out.parent.mkdir()
    out.write_text("old results\n")
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        predict_dir(folder, out, model_path, batch_size=4, workers=2)
    assert out.read_text() == "old results\n"  # not overwritten, no temporary file left
    assert sorted(p.name for p in out.parent.iterdir()) == ["p.csv"]


def test_resume_refuses_an_output_made_with_another_model_folder_or_options(
    model_path, tmp_path, monkeypatch, run_cli
):
    """The summary records what made the output (fercli.predict.record); a `--resume` run
    writes it before its first row, so an output cut short is checked too."""
    folder = flat_folder(tmp_path / "in")
    out = tmp_path / "p.csv"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        predict_dir(folder, out, model_path, batch_size=4, workers=0, resume=True)
    monkeypatch.undo()
    started = json.loads((tmp_path / "p.csv.summary.json").read_text())
    assert started["complete"] is False and started["made_with"]["tta"] is False
    cut = out.read_bytes()
    other_model = tmp_path / "other.onnx"
    model = onnx.load(str(model_path))
    onnx.helper.set_model_props(model, {**read_metadata_props(model_path), "note": "retrained"})
    onnx.save(model, str(other_model))
    shutil.copytree(folder, tmp_path / "elsewhere")
    refusals = [
        (["--model", other_model], "another model file (" + Path(model_path).name),
        (["--model", model_path, "--tta"], "--tta False (this run: True)"),
        (["--model", model_path, "--faces", "auto"], "--faces 'none' (this run: 'auto')"),
    ]
    for args, message in refusals:
        result = run_cli("predict-dir", folder, "-o", out, "--resume", "--workers", 0, *args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert out.read_bytes() == cut
    moved = run_cli(
        "predict-dir", tmp_path / "elsewhere", "-o", out, "--resume", "--model", model_path
    )
    assert moved.exit_code == 2 and "another input folder" in moved.stderr
    # the same bytes under another name, the same folder and options: it goes on
    shutil.copy(model_path, tmp_path / "renamed.onnx")
    result = predict_dir(folder, out, tmp_path / "renamed.onnx", batch_size=4, resume=True)
    predict_dir(folder, tmp_path / "whole.csv", model_path, batch_size=4, workers=0)
    assert result.resumed == 4 and read_rows(out) == read_rows(tmp_path / "whole.csv")
    done = json.loads((tmp_path / "p.csv.summary.json").read_text())
    assert done["complete"] is True and done["made_with"] == started["made_with"] | {
        "model_file": "renamed.onnx"
    }


def test_resume_of_an_output_with_no_record_says_it_cannot_check(model_path, tmp_path, capfd):
    folder = flat_folder(tmp_path / "in")
    out = tmp_path / "p.csv"
    predict_dir(folder, out, model_path, workers=0)
    (tmp_path / "p.csv.summary.json").unlink()
    assert predict_dir(folder, out, model_path, workers=0, resume=True).new == 0
    assert "--resume cannot check that its rows came from this model" in capfd.readouterr().err


def test_resume_refuses_an_output_with_other_columns(model_path, tmp_path):
    folder = flat_folder(tmp_path / "in")
    out = tmp_path / "p.csv"
    predict_dir(folder, out, model_path, workers=0)
    with pytest.raises(FercliError, match="other columns"):
        predict_dir(folder, out, model_path, workers=0, topk=2, resume=True)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names")
def test_undecodable_file_name_round_trips(model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"bad\xffname.png")
    Image.fromarray(face(np.random.default_rng(2))).save(os.fsdecode(raw), format="PNG")
    out = tmp_path / "p.csv"
    predict_dir(folder, out, model_path, workers=0, resume=True)
    assert predict_dir(folder, out, model_path, workers=0, resume=True).new == 0
    assert b"bad\xffname.png" in out.read_bytes()


def test_eval_against_folder_names(model_path, synth_root, tmp_path, run_cli):
    out = tmp_path / "p.csv"
    result = predict_dir(synth_root / "test", out, model_path, evaluate=True, workers=0)
    report = result.eval
    rows = [r for r in read_rows(out) if r["status"] == "ok"]
    truth = [r["path"].split("/")[0] for r in rows]
    accuracy = np.mean([r["label"] == t for r, t in zip(rows, truth)])
    assert report["accuracy"] == pytest.approx(accuracy)
    assert report["accuracy"] > 0.5  # the trained model clearly beats chance (1/7)
    assert sum(map(sum, report["confusion_matrix"])) == report["count"] == len(rows)
    assert report["excluded"] == len(result.errors)
    assert 0 < report["macro_f1"] <= 1 and 0 < report["weighted_f1"] <= 1
    cli = run_cli("predict-dir", synth_root / "test", "--model", model_path, "-o", out, "--eval")
    assert cli.exit_code == 0, cli.output
    assert "accuracy" in cli.stdout and "Confusion matrix" in cli.stdout
    assert "happy" in cli.stdout


def test_eval_needs_class_folders(model_path, tmp_path):
    with pytest.raises(FercliError, match="--eval needs"):
        predict_dir(flat_folder(tmp_path / "in"), tmp_path / "p.csv", model_path, evaluate=True)


def test_strict_fails_on_unreadable_images(model_path, tmp_path, run_cli):
    folder = flat_folder(tmp_path / "in")
    out = tmp_path / "p.csv"
    lenient = run_cli("predict-dir", folder, "--model", model_path, "-o", out)
    assert lenient.exit_code == 0, lenient.output
    assert "unreadable" in lenient.output and "face_05.png" in lenient.output
    strict = run_cli("predict-dir", folder, "--model", model_path, "-o", out, "--strict")
    assert strict.exit_code == 2 and "--strict" in strict.stderr
    assert len(read_rows(out)) == 21  # the output is still written


def write_model(path: Path, model_path: Path, *, metadata=True, channels=1):
    """A small ONNX model with fercli's metadata (or none) and a chosen input shape."""
    from onnx import TensorProto, helper, numpy_helper

    size = 48
    weights = np.zeros((channels * size * size, 7), np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "g",
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", channels, size, size]
            )
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(weights, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    if metadata:
        for p in onnx.load(str(model_path)).metadata_props:
            entry = proto.metadata_props.add()
            entry.key, entry.value = p.key, p.value
    onnx.save(proto, str(path))
    return path


def test_hand_made_model_with_metadata_works(model_path, tmp_path):
    path = write_model(tmp_path / "ok.onnx", model_path)
    result = predict_dir(flat_folder(tmp_path / "in"), tmp_path / "p.csv", path, workers=0)
    assert result.total == 21


def test_unusable_model_is_one_line_when_the_workers_predict(model_path, tmp_path, run_fercli):
    """The workers try to open the model as they start; only the main process says why not."""
    folder = flat_folder(tmp_path / "in", n=24)
    (tmp_path / "m.onnx").write_text("hello")
    args = ("--model", tmp_path / "m.onnx", "--batch-size", 4, "--workers", 2, "--provider", "cpu")
    result = run_fercli("predict-dir", folder, *args, "-o", tmp_path / "p.csv")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and result.stderr.strip().count("\n") == 0
    assert "not a usable ONNX model" in result.stderr


@pytest.mark.parametrize("n", [0, 1, 7, 40, 41, 200])
def test_chunks_of_the_workers_end_in_quarters(n):
    from fercli.predict.workers import chunked

    items = list(range(n))
    chunks = chunked(items, 8, workers=2)
    assert [i for c in chunks for i in c] == items  # every item once, in order
    full = -(-max(0, n - 16) // 8)  # chunks of 8 until the last workers * size = 16 items
    rest = n - 8 * full  # in quarter chunks of 2
    assert [len(c) for c in chunks] == [8] * full + [2] * (rest // 2) + [1] * (rest % 2)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "not found"),
        ("text", "not a usable ONNX model"),
        ("no-metadata", "no fercli metadata"),
        ("wrong-input", "wrong input"),
    ],
)
def test_unusable_model_is_one_line(model_path, tmp_path, run_cli, case, message):
    folder = flat_folder(tmp_path / "in", n=3)
    path = tmp_path / "m.onnx"
    if case == "text":
        path.write_text("hello")
    elif case == "no-metadata":
        write_model(path, model_path, metadata=False)
    elif case == "wrong-input":
        write_model(path, model_path, channels=3)
    result = run_cli("predict-dir", folder, "--model", path, "-o", tmp_path / "p.csv")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and result.stderr.strip().count("\n") == 0
    assert message in result.stderr
    assert not (tmp_path / "p.csv").exists()


def test_missing_default_model_says_what_to_do(tmp_path, run_cli, monkeypatch):
    import fercli.predict.bundled

    absent = {name: f"bundled_models/{name}/absent.onnx" for name in fercli.predict.bundled.BUNDLED}
    monkeypatch.setattr(fercli.predict.bundled, "BUNDLED", absent)
    result = run_cli("predict-dir", flat_folder(tmp_path / "in", n=2), "-o", tmp_path / "p.csv")
    assert result.exit_code == 2 and "--model" in result.stderr
    assert (
        f"the bundled model {fercli.predict.bundled.DEFAULT!r} is not in this install"
        in result.stderr
    )


def test_model_picks_a_bundled_model_by_name(tmp_path):
    from fercli.predict import bundled

    folder = flat_folder(tmp_path / "in", n=3)
    for name in bundled.BUNDLED:
        result = predict_dir(folder, tmp_path / f"{name}.csv", name, faces="none")
        assert result.model == bundled_path(name) and result.total >= 3


def test_bad_output_suffix_and_empty_folder(model_path, tmp_path, run_cli):
    folder = flat_folder(tmp_path / "in", n=2)
    result = run_cli("predict-dir", folder, "--model", model_path, "-o", tmp_path / "p.txt")
    assert result.exit_code == 2 and ".jsonl" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run_cli("predict-dir", tmp_path / "empty", "--model", model_path)
    assert result.exit_code == 2 and "no images" in result.stderr


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime runs on CUDA here")
def test_cuda_unusable_is_one_line(model_path, tmp_path, run_fercli):
    """Whether onnxruntime lacks the CUDA provider (the CPU package) or has it but cannot
    start it (onnxruntime-gpu without a GPU or its libraries): one line, exit 2, and none of
    onnxruntime's own log, which a subprocess shows (it writes past Python's sys.stderr)."""
    folder = flat_folder(tmp_path / "in", n=2)
    out = tmp_path / "p.csv"
    args = ["predict-dir", folder, "--model", model_path, "--provider", "cuda", "-o", out]
    result = run_fercli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA execution provider" in lines[0], result.stderr
    assert "--provider cpu" in lines[0] and not out.exists()


@pytest.fixture
def failing_cuda(monkeypatch):
    """onnxruntime-gpu on a machine without the driver: the provider is listed, the session
    logs an error on fd 2 (as onnxruntime does, past Python) and runs on the CPU."""
    import onnxruntime as ort

    real = ort.InferenceSession
    log = (
        "\x1b[1;31m2026-11-26 02:38:11.3 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 "
        "operator()] Failed to load library libonnxruntime_providers_cuda.so with error: "
        "libcuda.so.1: cannot open shared object file: No such file or directory\n\x1b[m\n"
    )

    def session(path, options=None, providers=None):
        os.write(2, log.encode())
        return real(path, options, providers=[EP["cpu"]])

    monkeypatch.setattr(
        fercli.predict.providers, "available_providers", lambda: [EP["cuda"], EP["cpu"]]
    )
    monkeypatch.setattr(ort, "InferenceSession", session)


def test_cuda_that_does_not_start_is_named_not_hidden(failing_cuda, model_path, tmp_path, capfd):
    with pytest.raises(FercliError, match="could not start the CUDA.*libcuda.so.1: cannot open"):
        OnnxModel(model_path, "cuda")
    auto = OnnxModel(model_path, "auto")
    assert auto.provider == "cpu"
    assert auto.fallback.startswith("CUDA provider not started (libcuda.so.1: cannot open")
    assert "onnxruntime" not in capfd.readouterr().err  # its log was kept for our one line

    result = predict_dir(flat_folder(tmp_path / "in", n=2), tmp_path / "p.csv", model_path)
    assert result.provider == "cpu"
    assert "CUDA provider not started (libcuda.so.1" in capfd.readouterr().err


def test_cuda_failure_reason_from_onnxruntime_log():
    loaded = "[E:onnxruntime:Default, x.cc:1 f()] Failed to create CUDAExecutionProvider"
    assert cuda_failure(f"\x1b[0;93m{loaded}\x1b[m") == "Failed to create CUDAExecutionProvider"
    assert (
        cuda_failure("... with error: libcudnn.so.9: cannot open\n") == "libcudnn.so.9: cannot open"
    )
    assert "-v" in cuda_failure("")


def test_auto_provider_takes_cuda_then_openvino_then_cpu(model_path):
    expected = "cuda" if HAS_CUDA else "openvino" if HAS_OPENVINO else "cpu"
    assert OnnxModel(model_path, "auto").provider == expected


# CUDA (onnxruntime-gpu) and OpenVINO (Intel's plugin: the `openvino` extra, which tox
# installs) against onnxruntime's own CPU provider.
PROVIDERS = [
    pytest.param(
        "cuda",
        1e-3,  # float32 sums in another order on the GPU
        marks=pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime cannot run on CUDA here"),
    ),
    pytest.param(
        "openvino",
        1e-5,  # each layer keeps its precision: no bfloat16 on CPUs that have it
        marks=pytest.mark.skipif(not HAS_OPENVINO, reason=NO_OPENVINO),
    ),
]


@pytest.mark.parametrize("provider, atol", PROVIDERS)
def test_provider_predicts_what_the_cpu_provider_predicts(provider, atol, model_path, tmp_path):
    folder = flat_folder(tmp_path / "in")
    result = predict_dir(folder, tmp_path / "p.csv", model_path, provider=provider, workers=0)
    predict_dir(folder, tmp_path / "cpu.csv", model_path, provider="cpu", workers=0)
    assert result.provider == provider
    assert json.loads((tmp_path / "p.csv.summary.json").read_text())["provider"] == provider
    classes = OnnxModel(model_path, "cpu").info.classes
    rows = list(zip(read_rows(tmp_path / "p.csv"), read_rows(tmp_path / "cpu.csv")))
    assert len(rows) == 21 and sum(a["status"] == "ok" for a, _ in rows) == 20  # one broken
    for a, b in rows:
        assert (a["path"], a["status"], a["label"]) == (b["path"], b["status"], b["label"])
        if a["status"] == "ok":
            np.testing.assert_allclose(
                probabilities(a, classes), probabilities(b, classes), atol=atol
            )


@pytest.mark.skipif(not HAS_OPENVINO, reason=NO_OPENVINO)
def test_openvino_caches_the_compiled_model_where_it_can(model_path, tmp_path, monkeypatch):
    OnnxModel(model_path, "openvino")
    assert list((Path(os.environ["FERCLI_CACHE_DIR"]) / "openvino").iterdir())
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("FERCLI_CACHE_DIR", str(blocked))  # cache_dir()/openvino cannot be made
    assert fercli.predict.providers.openvino_cache() is None
    assert OnnxModel(model_path, "openvino").provider == "openvino"  # compiled every time


def test_openvino_missing_is_one_line(model_path, tmp_path, run_cli, monkeypatch, fresh_openvino):
    monkeypatch.setattr(fercli.predict.providers, "openvino_plugin", lambda: None)
    folder = flat_folder(tmp_path / "in", n=2)
    out = tmp_path / "p.csv"
    args = ["predict-dir", folder, "--model", model_path, "--provider", "openvino", "-o", out]
    result = run_cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OpenVINO execution provider is not installed" in lines[0]
    assert "fercli[openvino]" in lines[0] and not out.exists()
    monkeypatch.setattr(fercli.predict.providers, "available_providers", lambda: [EP["cpu"]])
    assert OnnxModel(model_path, "auto").provider == "cpu"  # not installed: no word about it


def test_openvino_that_cannot_load_is_named_and_auto_runs_on_the_cpu(
    model_path, tmp_path, monkeypatch, capfd, fresh_openvino
):
    def unloadable():
        raise Unavailable("onnxruntime could not load the OpenVINO plugin (boom)", "reinstall it.")

    monkeypatch.setattr(fercli.predict.providers, "available_providers", lambda: [EP["cpu"]])
    monkeypatch.setattr(fercli.predict.providers, "openvino_plugin", lambda: object())
    monkeypatch.setattr(fercli.predict.providers, "openvino_device", unloadable)
    with pytest.raises(FercliError, match=r"could not load the OpenVINO plugin \(boom\)"):
        OnnxModel(model_path, "openvino")
    result = predict_dir(flat_folder(tmp_path / "in", n=2), tmp_path / "p.csv", model_path)
    assert result.provider == "cpu"
    assert (
        "onnxruntime could not load the OpenVINO plugin (boom): running on the CPU."
        in capfd.readouterr().err
    )


@pytest.fixture
def openvino_without_devices(monkeypatch, fresh_openvino):
    """Intel's plugin as it behaves on AMD EPYC CPUs: it loads and offers no device."""
    import onnxruntime as ort

    class Plugin:
        @staticmethod
        def get_library_path():
            return "/nonexistent/libopenvino_plugin.so"

    registered = []
    monkeypatch.setattr(fercli.predict.providers, "openvino_plugin", lambda: Plugin)
    monkeypatch.setattr(fercli.predict.providers, "available_providers", lambda: [EP["cpu"]])
    monkeypatch.setattr(ort, "get_ep_devices", lambda: [], raising=False)
    monkeypatch.setattr(
        ort, "register_execution_provider_library", lambda *a: registered.append(a), raising=False
    )
    return registered


def test_openvino_without_a_device_is_registered_once_and_auto_says_nothing(
    openvino_without_devices, model_path, tmp_path, run_cli
):
    for _ in range(3):
        assert OnnxModel(model_path, "auto").provider == "cpu"
    assert len(openvino_without_devices) == 1  # once per process: a second one would fail
    assert fercli.predict.providers.cpu_providers() == ["cpu"]
    folder = flat_folder(tmp_path / "in", n=2)
    quiet = run_cli("predict-dir", folder, "--model", model_path, "-o", tmp_path / "p.csv")
    assert quiet.exit_code == 0 and "OpenVINO" not in quiet.stderr
    summary = json.loads((tmp_path / "p.csv.summary.json").read_text())
    assert summary["provider"] == "cpu"
    assert summary["provider_fallback"].startswith("Intel's OpenVINO plugin offers no device")
    verbose = run_cli("-v", "predict-dir", folder, "--model", model_path, "-o", tmp_path / "v.csv")
    assert verbose.exit_code == 0
    assert "offers no device on this CPU" in verbose.stderr  # the reason, with -v


def test_openvino_without_a_device_refuses_provider_openvino_in_one_line(
    openvino_without_devices, model_path, tmp_path, run_cli
):
    out = tmp_path / "p.csv"
    folder = flat_folder(tmp_path / "in", n=2)
    result = run_cli(
        "predict-dir", folder, "--model", model_path, "--provider", "openvino", "-o", out
    )
    assert result.exit_code == 2 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Intel's OpenVINO plugin offers no device on this CPU" in lines[0]
    assert "--provider cpu" in lines[0]


@pytest.mark.fer2013
@pytest.mark.skipif(not HAS_OPENVINO, reason=NO_OPENVINO)
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_bundled_model_gives_the_cpu_labels_wherever_auto_runs_it(name, fer2013):
    """A bundled model runs on OpenVINO under `auto` only where its card verified the CPU
    provider's labels; there they must be identical on every FER-2013 test image. Elsewhere
    `auto` keeps it on the CPU provider and says why (with -v, and in the summary)."""
    from fercli.data.dataset import load_split

    path = bundled_path(name)
    auto = OnnxModel(path, "auto")
    if "openvino" not in fercli.predict.providers.card_verified(path)[0]:
        assert auto.provider == "cpu" and auto.fallback_expected
        assert auto.fallback.startswith(f"openvino is not used for {path.name}: ")
        return
    images = load_split(fer2013, "test").images
    cpu = OnnxModel(path, "cpu")
    assert auto.provider == "openvino" and auto.info.precision == "int8"
    differ = (auto.predict_proba(images).argmax(1) != cpu.predict_proba(images).argmax(1)).sum()
    assert differ == 0, f"{differ} of {len(images)} labels differ"


@pytest.fixture
def accelerators_offered(monkeypatch, fresh_openvino):
    """CUDA and an OpenVINO device, as `auto` would find them on an Intel machine with a GPU."""
    monkeypatch.setattr(fercli.predict.providers, "openvino_plugin", lambda: object())
    monkeypatch.setattr(fercli.predict.providers, "openvino_unavailable", lambda: None)
    monkeypatch.setattr(fercli.predict.providers, "openvino_device", lambda: "CPU")
    offered = [EP["cuda"], EP["cpu"]]
    monkeypatch.setattr(fercli.predict.providers, "available_providers", lambda: offered)
    return offered


def test_auto_picks_only_the_providers_a_bundled_models_card_verified(
    accelerators_offered, model_path
):
    from fercli.predict.providers import card_verified, choose

    for name in BUNDLED:
        path = bundled_path(name)
        verified, why = card_verified(path)
        assert "cpu" in verified and set(why).isdisjoint(verified)
        engine, refused = choose("auto", path)
        first = next((e for e in ("cuda", "openvino") if e in verified), "cpu")
        assert engine == first, (name, engine)
        if engine == "cpu":  # said with -v only: nothing to fix
            assert refused.expected and refused.what.startswith(f"cuda is not used for {path.name}")
        assert choose("cpu", path) == ("cpu", None)
        assert choose("openvino", path) == ("openvino", None)  # asked for by name: it runs there
    assert choose("auto", model_path) == ("cuda", None)  # no card: wherever it can
    accelerators_offered.remove(EP["cuda"])
    assert choose("auto", model_path) == ("openvino", None)
    assert choose("auto", bundled_path("fast"))[0] == "cpu"  # 44 of 3,589 labels differ there


def test_a_card_without_a_providers_record_keeps_the_model_on_the_cpu(
    accelerators_offered, model_path, tmp_path
):
    from fercli.predict.providers import choose

    shutil.copy(model_path, tmp_path / "m.onnx")
    (tmp_path / "model_card.json").write_text(json.dumps({"name": "new"}))
    engine, refused = choose("auto", tmp_path / "m.onnx")
    assert engine == "cpu" and "does not record the same labels" in refused.what
    (tmp_path / "model_card.json").write_text(
        json.dumps({"providers": {"verified": {"cpu": "", "openvino": "checked"}}})
    )
    accelerators_offered.remove(EP["cuda"])
    assert choose("auto", tmp_path / "m.onnx") == ("openvino", None)


def test_verbose_says_why_auto_keeps_a_bundled_model_on_the_cpu(
    accelerators_offered, tmp_path, run_cli, monkeypatch
):
    # the decision alone, not a session on devices this machine may lack
    monkeypatch.setattr(fercli.predict.providers, "available_providers", lambda: [EP["cpu"]])
    folder = flat_folder(tmp_path / "in", n=2)
    quiet = run_cli("predict-dir", folder, "-o", tmp_path / "q.csv")
    assert quiet.exit_code == 0 and "openvino is not used" not in quiet.stderr
    summary = json.loads((tmp_path / "q.csv.summary.json").read_text())
    assert summary["provider"] == "cpu"
    assert summary["provider_fallback"].startswith("openvino is not used for fercli-fast.onnx")
    verbose = run_cli("-v", "predict-dir", folder, "-o", tmp_path / "v.csv")
    assert "openvino is not used for fercli-fast.onnx: its labels differ" in verbose.stderr


def test_predict_dir_does_not_import_torch(model_path, tmp_path):
    folder = flat_folder(tmp_path / "in", n=3)
    args = [
        "predict-dir",
        str(folder),
        "--model",
        str(model_path),
        "-o",
        str(tmp_path / "p.csv"),
        "--eval",
    ]
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'NO-TORCH'))\n"
        "from fercli.cli import main\n"
        f"main({args!r})\n"
    )
    (folder / "happy").mkdir()
    Image.fromarray(face(np.random.default_rng(3))).save(folder / "happy" / "x.png")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("NO-TORCH")


def test_resume_when_cut_inside_a_quoted_name(model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a.png", "b\nnewline.png", "c.png"):
        Image.fromarray(face(rng)).save(folder / name, format="PNG")
    fresh = tmp_path / "fresh.csv"
    predict_dir(folder, fresh, model_path, workers=0)
    content = fresh.read_bytes()
    out = tmp_path / "out.csv"
    out.write_bytes(content[: content.index(b'"b\n') + 3])  # ends inside the quoted path
    result = predict_dir(folder, out, model_path, workers=0, resume=True)
    assert (result.resumed, result.new) == (1, 2)
    assert out.read_bytes() == content


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_refuses_a_damaged_output(model_path, tmp_path, suffix):
    folder = flat_folder(tmp_path / "in", n=4)
    out = tmp_path / f"p{suffix}"
    predict_dir(folder, out, model_path, workers=0)
    lines = out.read_text().splitlines(keepends=True)
    lines.insert(2, 'x,"bad"quote,\r\n' if suffix == ".csv" else "{not json\n")
    out.write_text("".join(lines))
    before = out.read_bytes()
    with pytest.raises(FercliError, match="damaged"):
        predict_dir(folder, out, model_path, workers=0, resume=True)
    assert out.read_bytes() == before  # nothing dropped or rewritten
