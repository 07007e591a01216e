"""The README, the other READMEs and the documentation pages (docs/) tell the truth: the quick
start's test command is what CI runs, the commands shown exist with the options shown, every
command has a page, every page is in the site's navigation, and the synth example runs."""

import ast
import inspect
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
BUNDLED_CARDS = sorted((REPO / "fercli" / "bundled_models").glob("*/MODEL_CARD.md"))
READMES = ["README.md", "data/README.md", "exports/README.md", "plugins/README.md"]
PAGES = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md"))
DOCS = READMES + PAGES
MKDOCS = (REPO / "mkdocs.yml").read_text()
# Pages being written now, which mkdocs.yml's nav will list once they are in: until then a
# page may be missing, or present without a nav entry (mkdocs only notes that, even --strict).
PENDING: set[str] = set()
# The page that documents each command (its examples in ```bash blocks).
COMMAND_PAGES = {
    "plugins": "docs/plugins.md",
    "synth": "docs/data.md",
    "import-csv": "docs/data.md",
    "clean": "docs/clean.md",
    "train": "docs/train.md",
    "evaluate": "docs/evaluate.md",
    "export-onnx": "docs/export.md",
    "predict-dir": "docs/predict.md",
    "predict-video": "docs/video.md",
    "models": "docs/models.md",
}
README_MAX_LINES = 150


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def code_lines(text: str) -> list[str]:
    """Command lines of the ```bash blocks, comments stripped, continued lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
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


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's nav lists, as paths from the repository root."""
    nav = MKDOCS[MKDOCS.index("\nnav:") :]
    return ["docs/" + page for page in re.findall(r"([\w./-]+\.md)\s*$", nav, re.M)]


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    commands = code_lines(section(README, "Quick start"))
    assert commands == ["scripts/demo.sh", ".venv/bin/tox"]
    home = (REPO / "docs" / "index.md").read_text()
    assert section(home, "Quick start") == section(README, "Quick start"), "docs/index.md"
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
    if doc in READMES or doc in COMMAND_PAGES.values():
        assert calls, f"no fercli examples in {doc}"
    for name, tokens in calls:
        assert name in COMMANDS, f"{doc} shows `fercli {name}`: no such command"
        assert unknown_options(name, tokens) == [], f"{doc}: fercli {name} {tokens}"


def test_every_command_has_a_page_that_shows_it():
    assert set(COMMAND_PAGES) == set(COMMANDS), "a command without a page, or a page's gone"
    for name, page in COMMAND_PAGES.items():
        shown = [n for n, _ in fercli_calls(code_lines((REPO / page).read_text()))]
        assert name in shown, f"{page} has no `fercli {name}` example"


def test_the_readme_is_short_and_links_to_pages_that_exist():
    assert len(README.splitlines()) <= README_MAX_LINES, "details belong in docs/"
    links = re.findall(r"\]\(((?:docs|plugins)/[^)#]+)", README)
    assert "docs/index.md" in links
    for link in links:
        assert (REPO / link).is_file(), f"the README links to {link}: no such file"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = nav_pages()
    cards = {f"docs/models/{card.parent.name}.md" for card in BUNDLED_CARDS}
    for page in nav:
        assert page in PAGES or page in cards, f"mkdocs.yml's nav lists {page}: no such page"
    for page in PAGES:
        if not page.startswith("docs/model-runs/"):  # the bundled models' logs, not pages
            assert page in nav or page in PENDING, f"{page} is not in mkdocs.yml's nav"
    # docs/hooks/model_cards.py makes a page of each bundled model's card
    assert cards and cards <= set(nav), "mkdocs.yml's nav lacks a bundled model's card"
    assert "docs/hooks/model_cards.py" in MKDOCS and "strict: true" in MKDOCS


def test_python_examples_are_valid_python():
    for doc in DOCS:
        for block in python_blocks((REPO / doc).read_text()):
            ast.parse(block, filename=doc)


def test_readme_python_example_uses_the_api():
    """The README's Python lines are not run (they need a photo): they use fercli.Predictor
    as it is called, where it exists."""
    import fercli

    (block,) = python_blocks(section(README, "Using it"))
    assert 'fercli.Predictor(model="fast", faces="auto")' in block
    if not hasattr(fercli, "Predictor"):
        pytest.skip("fercli.Predictor does not exist yet")
    signature = inspect.signature(fercli.Predictor)
    assert {"model", "faces"} <= set(signature.parameters), signature
    assert callable(getattr(fercli.Predictor, "predict", None))


@pytest.mark.parametrize("doc", ["README.md", "docs/data.md"])
def test_synth_example_runs_and_matches_its_comment(doc, run_cli, tmp_path, monkeypatch):
    text = (REPO / doc).read_text()
    example = next(line for line in code_lines(text) if line.startswith("fercli synth "))
    assert example == "fercli synth data/synth"
    assert "100 train + 25 test faces per class" in text
    monkeypatch.chdir(tmp_path)
    result = run_cli(*shlex.split(example)[1:])
    assert result.exit_code == 0, result.output
    for split, n in (("train", 100), ("test", 25)):
        assert len(list((tmp_path / "data/synth" / split / "sad").glob("sad_?????.jpg"))) == n


def test_tox_has_the_lint_docs_and_test_environments():
    tox = (REPO / "tox.ini").read_text()
    assert "[testenv:lint]" in tox and "ruff check ." in tox and "ruff format --check ." in tox
    assert "commands = pytest {posargs}" in tox
    env_list = re.search(r"^env_list = (.*)$", tox, re.M).group(1).replace(" ", "").split(",")
    assert {"lint", "docs", "py"} <= set(env_list), "`.venv/bin/tox` must run all three"
    assert "[testenv:docs]" in tox and "mkdocs build --strict" in tox
    assert "mkdocs==" in tox and "mkdocs-material==" in tox, "pin the documentation's tools"
    assert "site/" in (REPO / ".gitignore").read_text().splitlines()
