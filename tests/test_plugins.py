"""The plugin system: one test per hook (named after it), discovery through entry points and
the plugins folder, broken plugins, clashing names, and `fercli plugins`."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fercli import hookspecs, plugins, registry
from fercli.clean.filters import Filter, ImageBatch
from fercli.errors import PluginError
from fercli.hookspecs import hookimpl
from fercli.plugins import pm
from fercli.plugins_report import plugins_report

REPO = Path(__file__).resolve().parent.parent
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs) if name.startswith("register_"))


@pytest.fixture
def register_plugin():
    """register_plugin(obj, name): put a throwaway plugin on the manager for one test."""
    added = []

    def register(plugin, name):
        pm.register(plugin, name=name)
        added.append(plugin)
        return plugin

    yield register
    for plugin in added:
        if pm.is_registered(plugin):
            pm.unregister(plugin)


def reload_plugins(monkeypatch, plugins_dir=None):
    monkeypatch.setattr(plugins, "_loaded", False)
    plugins.load_plugins(plugins_dir)


class DarkFilter(Filter):
    name = "dark"

    def __init__(self, level=10):
        self.level = level

    def check(self, batch):
        for i in batch.readable():
            if batch.images[i].mean() < self.level:
                yield i, f"mean {batch.images[i].mean():.0f} < {self.level}"


def test_hookspecs_are_the_five_documented_hooks():
    assert HOOKS == [
        "register_augmenters",
        "register_commands",
        "register_detectors",
        "register_filters",
        "register_models",
    ]


def test_every_hook_has_a_test_and_is_documented():
    guide = (REPO / "plugins" / "README.md").read_text()
    page = (REPO / "docs" / "plugins.md").read_text()
    for hook in HOOKS:
        assert f"test_{hook}" in globals(), f"no test named test_{hook}"
        assert f"`{hook}(" in guide, f"{hook} is not documented in plugins/README.md"
        assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"
        # docs/plugins.md: a section of its own, headed by the hook's name, that shows its call
        start = page.find(f"\n## {hook}\n")
        assert start >= 0, f"docs/plugins.md has no `## {hook}` section"
        end = page.find("\n## ", start + 1)
        assert f"`{hook}(" in page[start : end if end > 0 else None], f"docs/plugins.md: {hook}"


def test_register_filters(register_plugin):
    class Plugin:
        @hookimpl
        def register_filters(self, register):
            register("dark", DarkFilter, "Flags dark images.")

    register_plugin(Plugin(), "dark-plugin")
    assert "dark" in registry.names("filter")
    entry = registry.get("filter", "dark")
    assert (entry.plugin, entry.description) == ("dark-plugin", "Flags dark images.")
    images = np.stack([np.zeros((48, 48), np.uint8), np.full((48, 48), 200, np.uint8)] * 2)
    batch = ImageBatch(
        paths=["train/a/0.png", "train/a/1.png", "train/a/2.png", "train/a/3.png"],
        splits=["train"] * 4,
        labels=["a"] * 4,
        images=images,
        errors=[None, None, "truncated", None],
    )
    flagged = list(registry.create("filter", "dark", level=50).check(batch))
    assert flagged == [(0, "mean 0 < 50")]


def test_register_augmenters(register_plugin):
    import torch

    class Plugin:
        @hookimpl
        def register_augmenters(self, register):
            def invert(p=1.0):
                def augment(batch, generator):
                    keep = torch.rand(len(batch), generator=generator) >= p
                    return torch.where(keep[:, None, None, None], batch, 1 - batch)

                return augment

            register("invert", invert, "Inverts images.")

    register_plugin(Plugin(), "invert-plugin")
    assert registry.names("augmenter", "inv*") == ["invert"]
    batch = torch.rand(4, 1, 48, 48)
    out = registry.create("augmenter", "invert")(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(out, 1 - batch)


def test_register_models(register_plugin):
    import torch

    class Plugin:
        @hookimpl
        def register_models(self, register):
            def tiny(num_classes=7):
                return torch.nn.Sequential(
                    torch.nn.Flatten(), torch.nn.Linear(48 * 48, num_classes)
                )

            register("tiny", tiny, "One linear layer.")

    register_plugin(Plugin(), "tiny-plugin")
    model = registry.create("model", "tiny", num_classes=3)
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 3)
    assert "tiny" in registry.names("model") and "seed-cnn" in registry.names("model")


def test_model_factories_without_image_size_still_work(register_plugin):
    """A factory written before image_size: called without it; a size its model fails on is
    refused in one line, one it runs on (global pooling) is fine."""
    import torch

    from fercli.train.models import create_model

    class Plugin:
        @hookimpl
        def register_models(self, register):
            def flat(num_classes=7):
                return torch.nn.Sequential(
                    torch.nn.Flatten(), torch.nn.Linear(48 * 48, num_classes)
                )

            def pooled(num_classes=7):
                pool = torch.nn.AdaptiveAvgPool2d(1)
                head = torch.nn.Linear(1, num_classes)
                return torch.nn.Sequential(pool, torch.nn.Flatten(), head)

            register("flat", flat)
            register("pooled", pooled)

    register_plugin(Plugin(), "old-plugin")
    assert create_model("flat", num_classes=3, image_size=48)(torch.zeros(2, 1, 48, 48)).shape == (
        2,
        3,
    )
    with pytest.raises(PluginError, match=r"'flat' .*48x48 input only.*64x64"):
        create_model("flat", num_classes=3, image_size=64)
    model = create_model("pooled", num_classes=3, image_size=64)
    assert model.training and model(torch.zeros(2, 1, 64, 64)).shape == (2, 3)


def test_register_commands(register_plugin, run_cli):
    import click

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("hello")
            @click.argument("name")
            def hello(name):
                """Say hello."""
                click.echo(f"hello {name}")

    register_plugin(Plugin(), "hello-plugin")
    result = run_cli("hello", "world")
    assert (result.exit_code, result.stdout) == (0, "hello world\n")
    assert "hello" in run_cli("--help").stdout


def test_register_detectors(register_plugin, tmp_path, run_cli):
    from fercli.faces.detect import Face

    class Centre:
        """A detector that calls the middle half of every picture a face."""

        def __init__(self, score=0.5):
            self.score = score

        def detect(self, images):
            faces = []
            for image in images:
                h, w = image.shape[:2]
                faces.append([Face((w / 4, h / 4, 3 * w / 4, 3 * h / 4), self.score)])
            return faces

    class Plugin:
        @hookimpl
        def register_detectors(self, register):
            register("centre", Centre, "The middle of the picture.")

    register_plugin(Plugin(), "centre-plugin")
    assert sorted(registry.names("detector")) == ["centre", "mtcnn", "yunet"]
    entry = registry.get("detector", "centre")
    assert (entry.plugin, entry.description) == ("centre-plugin", "The middle of the picture.")
    assert registry.create("detector", "centre", score=0.7).detect([np.zeros((40, 80))]) == [
        [Face((20.0, 10.0, 60.0, 30.0), 0.7)]
    ]
    listed = {p["name"]: p["registers"] for p in plugins_report()}
    assert listed["centre-plugin"] == {"detectors": ["centre"]}
    assert listed["fercli.builtin.detectors"] == {"detectors": ["mtcnn", "yunet"]}
    # predict-dir uses it: one face per picture, its box in the picture's pixels
    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((200, 400), 90, np.uint8)).save(tmp_path / "in" / "wide.png")
    result = run_cli("predict-dir", tmp_path / "in", "-o", tmp_path / "p.jsonl",
                     "--faces", "detect", "--detector", "centre", "--workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads((tmp_path / "p.jsonl").read_text())
    assert (row["face"], row["box"], row["face_score"]) == (0, [100, 50, 200, 100], 0.5)


def test_unknown_name_lists_the_choices():
    with pytest.raises(PluginError, match="unknown model 'nope': choose one of seed-cnn"):
        registry.create("model", "nope")


def test_duplicate_names_name_both_plugins(register_plugin, run_cli):
    def plugin_registering(name):
        class Plugin:
            @hookimpl
            def register_filters(self, register):
                register("same", DarkFilter, name)

        return Plugin()

    register_plugin(plugin_registering("a"), "first-plugin")
    register_plugin(plugin_registering("b"), "second-plugin")
    with pytest.raises(PluginError) as err:
        registry.entries("filter")
    assert "'same'" in str(err.value)
    assert "'first-plugin'" in str(err.value) and "'second-plugin'" in str(err.value)
    result = run_cli("plugins")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: filter 'same' is registered by both plugin")
    assert "Traceback" not in result.stderr


ENTRY_POINT_PLUGIN = """
from fercli.hookspecs import hookimpl

@hookimpl
def register_models(register):
    register("ep-model", lambda num_classes=7: None, "From an entry point.")
"""


def test_entry_point_discovery(fake_dist, monkeypatch):
    fake_dist(
        "fercli-epdemo", "1.2.3", {"epdemo": "fercli_epdemo"}, {"fercli_epdemo": ENTRY_POINT_PLUGIN}
    )
    plugins.load_plugins()
    info = plugins.plugin_info["epdemo"]
    assert (info.origin, info.version, info.source) == ("entry point", "1.2.3", "fercli-epdemo")
    assert registry.get("model", "ep-model").plugin == "epdemo"


def test_entry_points_can_be_turned_off(fake_dist, monkeypatch):
    fake_dist(
        "fercli-epoff", "1.0", {"epoff": "fercli_epoff"}, {"fercli_epoff": ENTRY_POINT_PLUGIN}
    )
    monkeypatch.setenv("FERCLI_NO_ENTRY_POINTS", "1")
    plugins.load_plugins()
    assert "epoff" not in plugins.plugin_info
    assert "ep-model" not in registry.names("model")


def test_broken_entry_point_warns_once_and_the_rest_works(fake_dist, capsys):
    fake_dist(
        "fercli-broken",
        "0.1",
        {"broken": "fercli_broken_ep", "fine": "fercli_fine_ep"},
        {"fercli_broken_ep": "import no_such_module_xyz\n", "fercli_fine_ep": ENTRY_POINT_PLUGIN},
    )
    plugins.load_plugins()
    err = capsys.readouterr().err
    assert err.count("Warning:") == 1
    assert "plugin 'broken' (fercli_broken_ep) failed to load" in err
    assert "no_such_module_xyz" in err
    assert "ep-model" in registry.names("model") and "seed-cnn" in registry.names("model")


WRONG_SIGNATURE_PLUGIN = """
from fercli.hookspecs import hookimpl

@hookimpl
def register_models(register, device):
    register("never", lambda num_classes=7: None)
"""


def test_entry_point_with_a_wrong_hook_signature_is_skipped(fake_dist, capsys, run_cli):
    fake_dist(
        "fercli-wrongsig",
        "0.1",
        {"wrongsig": "fercli_wrongsig_ep", "fine": "fercli_fine_ep2"},
        {"fercli_wrongsig_ep": WRONG_SIGNATURE_PLUGIN, "fercli_fine_ep2": ENTRY_POINT_PLUGIN},
    )
    plugins.load_plugins()
    err = capsys.readouterr().err
    assert err.count("Warning:") == 1 and err.count("\n") == 1
    assert "plugin 'wrongsig' (fercli-wrongsig) is skipped" in err
    assert "register_models" in err and "device" in err
    assert "wrongsig" not in plugins.plugin_info
    assert "never" not in registry.names("model") and "ep-model" in registry.names("model")
    result = run_cli("models", "--json")
    assert result.exit_code == 0, result.output


def test_plugin_file_with_a_wrong_hook_signature_is_skipped(tmp_path, run_cli):
    (tmp_path / "wrongsig.py").write_text(WRONG_SIGNATURE_PLUGIN)
    (tmp_path / "dirdemo.py").write_text(DIR_PLUGIN)
    result = run_cli("--plugins-dir", tmp_path, "plugins", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("Warning:") == 1
    assert "plugin 'wrongsig'" in result.stderr and "register_models" in result.stderr
    found = {p["name"] for p in json.loads(result.stdout)}
    assert "dirdemo" in found and "wrongsig" not in found


DIR_PLUGIN = """
__version__ = "2.0"

from fercli.hookspecs import hookimpl

@hookimpl
def register_augmenters(register):
    register("dir-aug", lambda **options: (lambda batch, generator: batch), "From a folder.")
"""


def test_plugins_dir_with_the_option(tmp_path, run_cli):
    (tmp_path / "dirdemo.py").write_text(DIR_PLUGIN)
    (tmp_path / "notes.txt").write_text("not a plugin")
    result = run_cli("--plugins-dir", tmp_path, "plugins", "--json")
    assert result.exit_code == 0, result.output
    found = {p["name"]: p for p in json.loads(result.stdout)}
    assert found["dirdemo"]["origin"] == "plugins dir"
    assert found["dirdemo"]["version"] == "2.0"
    assert found["dirdemo"]["registers"] == {"augmenters": ["dir-aug"]}
    assert set(found) >= {"fercli.builtin.filters", "fercli.builtin.models"}


def test_plugins_dir_from_the_environment(tmp_path, monkeypatch, run_cli):
    (tmp_path / "envdemo.py").write_text(DIR_PLUGIN)
    monkeypatch.setenv("FERCLI_PLUGINS_DIR", str(tmp_path))
    reload_plugins(monkeypatch)
    assert plugins.plugin_info["envdemo"].origin == "plugins dir"
    assert registry.get("augmenter", "dir-aug").plugin == "envdemo"


def test_missing_plugins_dir_is_a_user_error(tmp_path, run_cli):
    result = run_cli("--plugins-dir", tmp_path / "nope", "plugins")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: plugins folder") and "does not exist" in result.stderr


def test_broken_plugin_file_warns_once_and_the_rest_works(tmp_path, run_cli):
    (tmp_path / "a_broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "b_syntax.py").write_text("def (:\n")
    (tmp_path / "c_good.py").write_text(DIR_PLUGIN)
    result = run_cli("--plugins-dir", tmp_path, "plugins", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2
    assert "a_broken.py" in warnings[0] and "boom" in warnings[0]
    assert "b_syntax.py" in warnings[1] and "SyntaxError" in warnings[1]
    names = {p["name"] for p in json.loads(result.stdout)}
    assert "c_good" in names and "a_broken" not in names


def test_plugins_command_lists_builtins(run_cli):
    result = run_cli("plugins")
    assert result.exit_code == 0, result.output
    for text in ("fercli.builtin.models", "built-in", "seed-cnn", "vgg"):
        assert text in result.stdout


def test_plugins_json_matches_the_report(run_cli):
    result = run_cli("plugins", "--json")
    listed = json.loads(result.stdout)
    assert listed == plugins_report()
    models = next(p for p in listed if p["name"] == "fercli.builtin.models")
    assert models["origin"] == "built-in" and "seed-cnn" in models["registers"]["models"]
    assert set(models) == {"name", "origin", "version", "source", "hooks", "registers"}


def test_plugins_command_does_not_import_torch():
    code = (
        "import sys; from fercli.cli import main\n"
        "try:\n    main(['plugins', '--json'])\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert 'torch' not in sys.modules, 'fercli plugins imported torch'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_trace_plugins(run_fercli):
    result = run_fercli("plugins", env={"FERCLI_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert "[fercli trace] register_filters -> " in result.stderr
    assert "fercli.builtin.models" in result.stderr


def test_plugins_dir_is_read_by_a_fresh_process(tmp_path, run_fercli):
    (tmp_path / "procdemo.py").write_text(DIR_PLUGIN)
    result = run_fercli("plugins", "--json", env={"FERCLI_PLUGINS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "procdemo" in {p["name"] for p in json.loads(result.stdout)}
