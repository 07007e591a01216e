"""The package layout is the architecture (docs/development.md): a subpackage per stage and
only the CLI, API and plugin machinery at the top; no module reaches into another package's
private names; each stage's __init__ says what each of its modules is. (The layers themselves
are import-linter's contracts, checked by tox's lint environment.)"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fercli"

STAGES = {
    "builtin",
    "clean",
    "commands",
    "data",
    "engines",
    "evaluate",
    "export",
    "faces",
    "metrics",
    "predict",
    "train",
}
TOP_MODULES = {
    "__init__",
    "__main__",
    "api",
    "cli",
    "config",
    "defaults",
    "errors",
    "hookspecs",
    "plugins",
    "plugins_report",
    "progress",
    "registry",
    "util",
}


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def package_of(path: Path) -> str:
    """fercli.<stage> for a module inside a stage, else the module itself."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts if rel.name != "__init__" else rel.parts[:-1]
    return ".".join(parts[:2])


def test_the_top_level_is_the_stages_and_the_machinery():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    files = {p.stem for p in PACKAGE.glob("*.py")}
    assert folders == STAGES
    assert files == TOP_MODULES


def test_no_module_imports_another_packages_private_names():
    reaching = []
    for path in modules():
        own = package_of(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("fercli"):
                continue
            target = ".".join(node.module.split(".")[:2])
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    if target != own:
                        reaching.append(f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}")
    assert reaching == []


def test_the_private_name_check_can_fail(tmp_path, monkeypatch):
    """The check above sees a reach across packages (and not one inside a package)."""
    (tmp_path / "fercli" / "predict").mkdir(parents=True)
    (tmp_path / "fercli" / "data").mkdir()
    (tmp_path / "fercli" / "predict" / "x.py").write_text("from fercli.data.dataset import _a\n")
    (tmp_path / "fercli" / "data" / "y.py").write_text("from fercli.data.dataset import _b\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "fercli")
    with pytest.raises(AssertionError, match=r"predict/x.py: fercli.data.dataset._a"):
        test_no_module_imports_another_packages_private_names()


@pytest.mark.parametrize("stage", sorted(STAGES - {"commands", "builtin"}))
def test_each_stage_says_what_its_modules_are(stage):
    """A newcomer finds each module where its name says: the stage's docstring names them."""
    folder = PACKAGE / stage
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    assert doc, f"fercli/{stage}/__init__.py has no docstring"
    unnamed = [p.stem for p in folder.glob("*.py") if p.stem != "__init__" and p.stem not in doc]
    assert unnamed == []
