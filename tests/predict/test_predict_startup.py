"""What `fercli predict-dir` does before its first image, kept small (issue #26): one
command's module imported, no plugins loaded without faces, no workers (and one session)
for a small folder unless --workers says so, --faces auto's FER-style chunks formatted as
--faces none's rows, the model's sha256 remembered; the rows the same bytes throughout."""

import hashlib
import json
import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fercli.predict.folder
from fercli import commands
from fercli.predict import record as predict_record
from fercli.predict.bundled import bundled_path
from fercli.predict.folder import Pipeline, predict_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    """40 random 48x48 grey JPEGs in two class folders, and one unreadable file."""
    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    for i in range(40):
        folder = root / ("happy" if i % 2 else "sad")
        folder.mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.jpg", quality=90)
    (root / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_the_command_list_names_every_command():
    assert [c.name for c in commands.ALL] == list(commands.MODULES)
    for name in commands.MODULES:
        assert commands.command(name).name == name


def test_predict_dir_imports_its_command_only_and_no_plugins(small_folder, tmp_path):
    """A whole process: predict-dir's module, not the others; with --faces none neither
    pluggy nor the entry points (importlib.metadata) nor rich.progress off a terminal."""
    script = (
        "import sys\n"
        "from fercli.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "finally:\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith(('fercli.commands.',"
        " 'pluggy', 'importlib.metadata', 'rich.progress', 'torch')))\n"
        "    print('LOADED', ' '.join(loaded), file=sys.stderr)\n"
    )
    out = tmp_path / "p.csv"
    args = ["predict-dir", small_folder, "-o", out, "--faces", "none"]
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stderr.split("LOADED", 1)[1].split()
    assert loaded == ["fercli.commands.face_options", "fercli.commands.predict_dir",
                      "fercli.commands.ray_options"]  # fmt: skip
    assert out.read_text().count("\n") == 42


@pytest.mark.parametrize(
    ("faces", "workers", "expected"),
    [("none", None, 0), ("auto", None, 0), ("none", 2, 2), ("auto", 2, 2)],
)
def test_a_small_folder_is_predicted_here_unless_workers_are_asked_for(
    small_folder, monkeypatch, faces, workers, expected
):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    run = Pipeline(small_folder, "fast", faces=faces, workers=workers, batch_size=8)
    with ExitStack() as stack:
        onnx = run.start(stack)
        assert run.pool.count == expected
        assert onnx.metadata_only == (faces == "none" and expected > 1)  # one session here


def test_a_folder_of_photos_keeps_its_workers_with_faces_auto(small_folder, tmp_path, monkeypatch):
    """--faces auto detects faces in pictures above 96 pixels: slow, so the workers stay."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.new("L", (320, 240), 100 + i).save(photos / f"{i}.jpg")
    assert Pipeline(photos, "fast", faces="auto", batch_size=2).small_folder(True) is False
    run = Pipeline(small_folder, "fast", faces="auto", batch_size=8)
    assert run.small_folder(True) is True
    monkeypatch.setattr(fercli.predict.folder, "SMALL_FOLDER", 10)  # 41 files: not small
    assert run.small_folder(True) is False


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("topk", [0, 2])
def test_faces_auto_on_small_pictures_writes_the_rows_of_faces_none(
    small_folder, tmp_path, suffix, topk
):
    """The chunks where every picture is taken whole are formatted as --faces none's rows
    (with the face columns empty), the same bytes as the face stage's rows made one by one."""
    rows = {}
    for faces in ("auto", "none"):
        out = tmp_path / f"{faces}{suffix}"
        predict_dir(small_folder, out, "fast", faces=faces, topk=topk, workers=0, batch_size=8)
        rows[faces] = out.read_text(encoding="utf-8").splitlines()
    assert len(rows["auto"]) == len(rows["none"]) > 40
    for auto, none in zip(rows["auto"], rows["none"]):
        if suffix == ".csv":
            assert auto in (none + ",,,,", none + ",face,box,face_score,face_size")
        else:
            extra = dict.fromkeys(("face", "box", "face_score", "face_size"))
            assert json.loads(auto) == {**json.loads(none), **extra}
    # and the same bytes as the stage's own rows (whole_chunk turned off)
    out = tmp_path / f"stage{suffix}"
    original = Pipeline.whole_chunk
    Pipeline.whole_chunk = lambda self, outcome: outcome if not self.stage else None
    try:
        predict_dir(small_folder, out, "fast", faces="auto", topk=topk, workers=0, batch_size=8)
    finally:
        Pipeline.whole_chunk = original
    assert out.read_text(encoding="utf-8").splitlines() == rows["auto"]


def test_the_model_sha256_is_remembered_by_path_size_and_time(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(bundled_path("fast").read_bytes())
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert predict_record.file_sha256(model) == digest
    cache = Path(os.environ["FERCLI_CACHE_DIR"]) / predict_record.SHA256_CACHE
    assert digest in json.loads(cache.read_text()).values()
    assert predict_record.file_sha256(model) == digest  # from the cache
    model.write_bytes(b"other bytes")  # another size and time: read again
    assert predict_record.file_sha256(model) == hashlib.sha256(b"other bytes").hexdigest()
    cache.write_text("{damaged")
    assert predict_record.file_sha256(model) == hashlib.sha256(b"other bytes").hexdigest()
