"""The README (and the other READMEs) tell the truth: the quick start's test command is what
CI runs, the commands shown exist with the options shown, and the synth example runs."""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from fercli.commands import ALL

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
COMMANDS = {command.name: command for command in ALL}
DOCS = ["README.md", "data/README.md", "exports/README.md", "plugins/README.md"]


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_lines(text: str) -> list[str]:
    """Command lines of the ```bash blocks, comments stripped."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def script_lines(path: Path) -> list[str]:
    text = path.read_text().replace("\\\n", " ")  # join continued lines
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def fercli_calls(lines, prefix="fercli "):
    """(command, tokens) for each `fercli COMMAND ...` line."""
    calls = []
    for line in lines:
        if line.startswith(prefix):
            tokens = shlex.split(line[len(prefix) :])
            while tokens and tokens[0].startswith("-"):  # group options: --config FILE, -v
                tokens = tokens[2:] if tokens[0] in ("--config", "--plugins-dir") else tokens[1:]
            if tokens:
                calls.append((tokens[0], tokens[1:]))
    return calls


def unknown_options(command_name: str, tokens: list[str]) -> list[str]:
    from fercli.cli import cli

    known = {"--help", "-h"}
    for param in cli.params:  # group options work after the command too: `train --config F`
        known.update(getattr(param, "opts", []))
    for param in COMMANDS[command_name].params:
        known.update(getattr(param, "opts", []))
        known.update(getattr(param, "secondary_opts", []))
    return [t.split("=")[0] for t in tokens if t.startswith("-") and t.split("=")[0] not in known]


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = code_lines(section(README, "Quick start"))
    assert commands == ["scripts/demo.sh", ".venv/bin/tox"]
    ci = script_lines(REPO / ".ci" / "run")
    assert ci[-1] == commands[1], "the last line of .ci/run must be the README's test command"
    assert ci[0] == "set -euo pipefail"


def test_scripts_are_executable_bash():
    for path in (REPO / "scripts" / "demo.sh", REPO / ".ci" / "run"):
        assert os.access(path, os.X_OK), f"{path} is not executable"
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_demo_uses_real_options():
    calls = fercli_calls(script_lines(REPO / "scripts" / "demo.sh"), prefix="$fercli ")
    assert [name for name, _ in calls] == [
        "synth", "clean", "train", "evaluate", "export-onnx", "predict-dir",
    ]  # fmt: skip
    for name, tokens in calls:
        assert unknown_options(name, tokens) == [], f"scripts/demo.sh: fercli {name}"


@pytest.mark.parametrize("doc", DOCS)
def test_examples_use_real_commands_and_options(doc):
    calls = fercli_calls(code_lines((REPO / doc).read_text()))
    assert calls, f"no fercli examples in {doc}"
    for name, tokens in calls:
        assert name in COMMANDS, f"{doc} shows `fercli {name}`: no such command"
        assert unknown_options(name, tokens) == [], f"{doc}: fercli {name} {tokens}"


def test_every_command_is_in_the_readme():
    for name in COMMANDS:
        assert f"fercli {name}" in README, f"the README does not show `fercli {name}`"


def test_synth_example_runs_and_matches_its_comment(run_cli, tmp_path, monkeypatch):
    example = next(line for line in code_lines(README) if line.startswith("fercli synth "))
    assert example == "fercli synth data/synth"
    assert "100 train + 25 test faces per class" in README
    monkeypatch.chdir(tmp_path)
    result = run_cli(*shlex.split(example)[1:])
    assert result.exit_code == 0, result.output
    for split, n in (("train", 100), ("test", 25)):
        assert len(list((tmp_path / "data/synth" / split / "sad").glob("sad_?????.jpg"))) == n


def test_tox_has_the_lint_and_test_environments():
    tox = (REPO / "tox.ini").read_text()
    assert "[testenv:lint]" in tox and "ruff check ." in tox and "ruff format --check ." in tox
    assert "commands = pytest {posargs}" in tox
