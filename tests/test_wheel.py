"""The wheel users install: built from the repository's tracked files without a warning, with
the licence, the bundled models, the detectors' weights and py.typed, no training logs, and
no path of any machine in any file it ships."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Absolute paths as machines write them (POSIX homes and build folders, Windows drives).
MACHINE_PATH = re.compile(
    rb"(?<![\w.])(/work/|/home/\w|/root/|/tmp/\w|/Users/\w|/opt/\w|/usr/lib/|site-packages/"
    rb"|[A-Z]:\\\\(Users|work))"
)


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the wheel is built from the tracked files")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The wheel built from a copy of the tracked files, and what the build printed."""
    src = tmp_path_factory.mktemp("src")
    for name in tracked_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    code = "import setuptools.build_meta as b, sys; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, str(dist)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wheel = dist / done.stdout.strip().splitlines()[-1]
    return zipfile.ZipFile(wheel), done.stdout + done.stderr


def test_the_wheel_builds_without_a_warning(built):
    _, log = built
    # Python warnings (SetuptoolsDeprecationWarning: the `project.license` table...), not
    # distutils' notes ("warning: build_py: byte-compiling is disabled")
    warnings = [
        line for line in log.splitlines() if re.search(r"\w+Warning\b|deprecat", line, re.I)
    ]
    assert not warnings, "\n".join(warnings[:10])


def test_the_wheel_ships_no_path_of_any_machine(built):
    wheel, _ = built
    found = []
    for name in wheel.namelist():
        data = wheel.read(name)
        found += [
            f"{name}: {m.group().decode(errors='replace')}" for m in MACHINE_PATH.finditer(data)
        ]
    assert not found, found[:10]


def test_the_wheel_has_what_fercli_reads_and_no_training_logs(built):
    wheel, _ = built
    names = set(wheel.namelist())
    for model in ("fast", "accurate"):
        for file in (f"fercli-{model}.onnx", "model_card.json", "MODEL_CARD.md"):
            assert f"fercli/bundled_models/{model}/{file}" in names
    assert "fercli/py.typed" in names
    assert {
        "fercli/faces/weights/mtcnn/pnet.onnx",
        "fercli/faces/weights/mtcnn/LICENSE.md",
    } <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "/runs/" in n or n.endswith(("history.csv", "curves.png"))]
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert extras == {"train", "openvino", "video", "ray"}  # test, bench: dependency groups


def test_the_pattern_finds_machine_paths():
    """The check above can fail: it finds the paths that once shipped."""
    for text in (b'File "/work/main/fercli/models.py"', b"/home/user/x", b"C:\\\\Users\\\\me"):
        assert MACHINE_PATH.search(text), text
    for text in (b"runs/<run>/", b".venv/bin/tox", b"../shared/fer2013", b"docs/model-runs"):
        assert not MACHINE_PATH.search(text), text
