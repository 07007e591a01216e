"""CLI conventions: --version, `python -m fercli`, one-line user errors with exit status 2
and no traceback (unless -v), and option defaults from a TOML config file."""

import json

import click
import pytest

from fercli import __version__
from fercli.cli import cli
from fercli.config import default_map
from fercli.hookspecs import hookimpl
from fercli.plugins import pm


def test_version(run_cli):
    result = run_cli("--version")
    assert (result.exit_code, result.stdout) == (0, f"fercli, version {__version__}\n")


def test_python_m_fercli(run_fercli):
    version = run_fercli("--version")
    assert (version.returncode, version.stdout) == (0, f"fercli, version {__version__}\n")
    helped = run_fercli("--help")
    assert helped.returncode == 0
    for word in ("--verbose", "--quiet", "--config", "--plugins-dir", "synth", "plugins"):
        assert word in helped.stdout


def test_commands_that_exist_are_listed(run_cli):
    out = run_cli("--help").stdout
    from fercli.commands import ALL

    for command in ALL:
        assert command.name in out
    assert {"synth", "import-csv", "plugins"} <= {c.name for c in ALL}


@pytest.mark.parametrize("command", ["clean", "train"])
def test_missing_dataset_is_one_line_exit_2(run_fercli, tmp_path, command):
    """A real process: the whole of stderr is one line, with what to do."""
    missing = tmp_path / "nope"
    result = run_fercli(command, missing)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"Error: no dataset at {missing}")
    assert f"{missing}/train/<class>/<image>" in line  # the layout
    assert "https://www.kaggle.com/datasets/msambare/fer2013" in line  # the download
    assert f"fercli synth {missing}" in line  # the synthetic default
    assert "Traceback" not in result.stderr


@pytest.fixture
def register_plugin_command():
    """A plugin command `explode` that raises a programming error (not a user error)."""

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("explode")
            def explode():
                raise RuntimeError("boom")

    plugin = Plugin()
    pm.register(plugin, name="explode-plugin")
    yield
    pm.unregister(plugin)


def test_unexpected_error_is_one_line_exit_1(run_cli, register_plugin_command):
    result = run_cli("explode")
    assert result.exit_code == 1
    assert result.stderr == "Error: RuntimeError: boom (run with -v for the traceback)\n"


def test_verbose_shows_the_traceback(run_cli, register_plugin_command):
    result = run_cli("-v", "explode")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise RuntimeError("boom")' in result.stderr


def test_user_error_with_verbose_has_traceback_and_the_line(run_cli, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("x")
    quiet = run_cli("synth", tmp_path / "d")
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr
    loud = run_cli("-v", "synth", tmp_path / "d")
    assert loud.exit_code == 2
    assert "Traceback" in loud.stderr and loud.stderr.rstrip().endswith(
        "(fercli never overwrites existing files)."
    )


def test_usage_errors_exit_2(run_cli):
    for args in (["no-such-command"], ["synth"], ["synth", "x", "--per-class", "many"], ["--nope"]):
        result = run_cli(*args)
        assert result.exit_code == 2, args
        assert "Traceback" not in result.stderr
        assert "Error" in result.stderr


def test_unknown_plugin_name_is_a_user_error(run_cli, synth_root, tmp_path):
    result = run_cli("train", synth_root, "--model", "no-such-model", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown model 'no-such-model': choose one of")
    assert "seed-cnn" in result.stderr


def test_missing_config_file(run_cli, tmp_path):
    result = run_cli("--config", tmp_path / "missing.toml", "synth", tmp_path / "d")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: config file") and "not found" in result.stderr
    assert not (tmp_path / "d").exists()


def test_invalid_config_file(run_cli, tmp_path):
    (tmp_path / "bad.toml").write_text("per_class = [unclosed\n")
    result = run_cli("--config", tmp_path / "bad.toml", "synth", tmp_path / "d")
    assert result.exit_code == 2 and "is not valid TOML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_key_in_a_command_table(run_cli, tmp_path):
    (tmp_path / "c.toml").write_text("[synth]\nper_klass = 3\n")
    result = run_cli("--config", tmp_path / "c.toml", "synth", tmp_path / "d")
    assert result.exit_code == 2
    assert "unknown key(s) per_klass in the [synth] config table" in result.stderr


def _per_class(root):
    return len(list((root / "train" / "happy").glob("happy_*[0-9].jpg")))


def test_config_values_reach_options_and_flags_win(run_cli, tmp_path, monkeypatch):
    from fercli.data.synth import make_synthetic

    make_synthetic(tmp_path / "expected", per_class=3, seed=7)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fercli.toml").write_text("seed = 7\n[synth]\nper_class = 3\n")
    assert run_cli("synth", "from-cwd").exit_code == 0  # ./fercli.toml
    assert _per_class(tmp_path / "from-cwd") == 3
    for rel in ("train/happy/happy_00002.jpg", "planted.json"):
        assert (tmp_path / "from-cwd" / rel).read_bytes() == (
            tmp_path / "expected" / rel
        ).read_bytes()
    (tmp_path / "other.toml").write_text("[synth]\nper_class = 5\n")
    assert run_cli("--config", "other.toml", "synth", "from-option").exit_code == 0
    assert _per_class(tmp_path / "from-option") == 5
    assert run_cli("synth", "flag-wins", "--per-class", "4").exit_code == 0
    assert _per_class(tmp_path / "flag-wins") == 4


def test_seed_config_keys_reach_train_options():
    """The seed notebook's CONFIG keys, top level, become `fercli train` defaults."""
    from fercli.commands import ALL

    commands = {c.name: c for c in ALL}
    config = {
        "data_dir": "data/fer2013",
        "batch_size": 32,
        "num_epochs": 3,
        "learning_rate": 0.01,
        "image_size": 48,
    }
    defaults = default_map(config, commands)["train"]
    assert defaults == config
    ctx = commands["train"].make_context("train", [], default_map=defaults)
    assert {k: ctx.params[k] for k in config} == config
    ctx = commands["train"].make_context("train", ["--epochs", "9"], default_map=defaults)
    assert ctx.params["num_epochs"] == 9 and ctx.params["batch_size"] == 32


def test_quiet_and_verbose_flags_set_the_output_settings(run_cli, tmp_path):
    from fercli.progress import settings

    @click.command("peek")
    def peek():
        click.echo(f"{settings['quiet']} {settings['verbose']}")

    cli.add_command(peek)
    assert run_cli("-q", "peek").stdout == "True False\n"
    assert run_cli("-v", "peek").stdout == "False True\n"


def test_evaluate_a_folder_that_does_not_exist(run_cli, tmp_path):
    missing = tmp_path / "nosuch_dir"
    result = run_cli("evaluate", missing)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {missing} does not exist: pass a data folder ROOT")
    assert len(result.stderr.strip().splitlines()) == 1 and "missing ROOT" not in result.stderr


def test_models_pattern_matching_nothing_says_so(run_cli):
    result = run_cli("models", "zzz*")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: no model matches 'zzz*': choose from seed-cnn, vgg")
    assert len(result.stderr.strip().splitlines()) == 1
    assert run_cli("models", "--json", "zzz*").exit_code == 2
    matched = run_cli("models", "--json", "vgg*")
    assert matched.exit_code == 0
    assert [a["name"] for a in json.loads(matched.stdout)["architectures"]] == ["vgg", "vgg-small"]
