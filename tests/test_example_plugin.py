"""The example plugin package plugins/fercli-blur: found through its entry point (a fake
installed distribution, and one real `pip install`), its filter and augmenter, and both
driven through the CLI."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fercli import FER_CLASSES, plugins, registry
from fercli.clean.filters import ImageBatch
from fercli.config import tomllib
from fercli.data.synth import draw_face

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugins" / "fercli-blur"
PROJECT = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]


@pytest.fixture
def blur_installed(fake_dist):
    """The example plugin as if pip-installed: its own entry points, version and module."""
    fake_dist(
        PROJECT["name"], PROJECT["version"], PROJECT["entry-points"]["fercli"], paths=[PLUGIN_DIR]
    )
    import fercli_blur

    return fercli_blur


def faces(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([draw_face(FER_CLASSES[i % 7], rng) for i in range(n)])


def blurred(images, radius=2.5):
    return np.stack(
        [np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius))) for a in images]
    )


def test_found_through_its_entry_point(blur_installed):
    plugins.load_plugins()
    info = plugins.plugin_info["blur"]
    assert (info.origin, info.version, info.source) == ("entry point", "0.1.0", "fercli-blur")
    assert registry.get("filter", "blur").plugin == "blur"
    assert registry.get("augmenter", "gaussian-blur").plugin == "blur"


def test_blur_filter_flags_blank_and_blurred_faces_only(blur_installed):
    sharp = faces(6)
    images = np.concatenate([sharp, blurred(sharp[:3]), np.full((1, 48, 48), 128, np.uint8)])
    n = len(images)
    batch = ImageBatch(
        paths=[f"train/happy/{i}.jpg" for i in range(n)],
        splits=["train"] * n,
        labels=["happy"] * n,
        images=images,
        errors=[None] * n,
    )
    flagged = dict(registry.create("filter", "blur").check(batch))
    assert sorted(flagged) == [6, 7, 8, 9]
    assert flagged[9] == "blurry: variance of the Laplacian 0.0 < 100"
    # a lower threshold keeps the blurred faces but not the flat one
    assert sorted(dict(registry.create("filter", "blur", threshold=1).check(batch))) == [9]


def test_blur_filter_skips_unreadable_images(blur_installed):
    batch = ImageBatch(["a.jpg"], ["train"], ["happy"], np.zeros((1, 48, 48), np.uint8), ["bad"])
    assert list(registry.create("filter", "blur").check(batch)) == []


def test_gaussian_blur_augmenter(blur_installed):
    import torch
    from fercli_blur import laplacian_variance

    batch = torch.from_numpy(faces(8)).float()[:, None] / 255
    augment = registry.create("augmenter", "gaussian-blur", p=1.0)
    out = augment(batch, torch.Generator().manual_seed(1))
    again = augment(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert torch.equal(out, again)
    assert 0 <= out.min() and out.max() <= 1
    before = laplacian_variance((batch[:, 0] * 255).numpy())
    after = laplacian_variance((out[:, 0] * 255).numpy())
    assert (after < before).all()
    never = registry.create("augmenter", "gaussian-blur", p=0.0)
    assert torch.equal(never(batch, torch.Generator().manual_seed(1)), batch)


def test_listed_by_fercli_plugins(blur_installed, run_cli):
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    blur = next(p for p in json.loads(result.stdout) if p["name"] == "blur")
    assert blur["origin"] == "entry point" and blur["version"] == "0.1.0"
    assert blur["registers"] == {"filters": ["blur"], "augmenters": ["gaussian-blur"]}


def test_augmenter_drives_fercli_train(blur_installed, run_cli, synth_root, tmp_path, monkeypatch):
    import fercli_blur

    calls, original = [], fercli_blur.gaussian_blur

    def counting(**options):
        augment = original(**options)

        def wrapped(batch, generator):
            calls.append(len(batch))
            return augment(batch, generator)

        return wrapped

    monkeypatch.setattr(fercli_blur, "gaussian_blur", counting)
    out = tmp_path / "run"
    result = run_cli(
        "-q", "train", synth_root, "--model", "seed-cnn", "--epochs", "1", "--batch-size", "64",
        "--augment", "flip,gaussian-blur", "--device", "cpu", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls and sum(calls) > 100
    assert any(out.glob("*.pt"))


def test_filter_drives_fercli_clean(blur_installed, run_cli, synth_copy, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli("clean", synth_copy, "--filters", "blur", "--report", report, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["filters"] == ["blur"]
    planted = json.loads((synth_copy / "planted.json").read_text())["planted"]
    blanks = {p["path"] for p in planted if p["kind"] == "blank"}
    flags = json.loads(report.read_text())["flags"]
    assert {f["path"] for f in flags} == blanks  # the synthetic faces are all sharp enough
    assert all(f["filter"] == "blur" and "variance of the Laplacian" in f["reason"] for f in flags)


def test_pip_install(tmp_path, run_fercli):
    """A real `pip install` of the example package (into a --target folder, offline)."""
    import importlib.util

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the example plugin without network")
    source = shutil.copytree(PLUGIN_DIR, tmp_path / "src", ignore=shutil.ignore_patterns("build"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    pip += ["--no-build-isolation", "--target", str(target), str(source)]
    installed = subprocess.run(pip, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    result = run_fercli("plugins", "--json", env={"PYTHONPATH": str(target)})
    assert result.returncode == 0, result.stderr
    blur = next(p for p in json.loads(result.stdout) if p["name"] == "blur")
    assert (blur["origin"], blur["version"], blur["source"]) == (
        "entry point",
        "0.1.0",
        "fercli-blur",
    )
