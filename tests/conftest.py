"""Shared fixtures: an isolated cache and plugin state for every test, the synthetic dataset,
the real FER-2013 copy (skipped where absent), and ways to run the CLI."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FER2013_DEFAULT = REPO.parent / "shared" / "fer2013"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """Each test gets its own dataset cache, no stray plugin settings, default output settings."""
    from fercli.progress import settings

    monkeypatch.setenv("FERCLI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    for name in ("FERCLI_NO_ENTRY_POINTS", "FERCLI_PLUGINS_DIR", "FERCLI_TRACE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(settings, "quiet", False)
    monkeypatch.setitem(settings, "verbose", False)


@pytest.fixture(autouse=True)
def _restore_plugins():
    """Undo whatever a test registers on the plugin manager or adds to the command group."""
    from fercli import plugins
    from fercli.cli import cli

    registered = {plugins.pm.get_name(p): p for p in plugins.pm.get_plugins()}
    info, dirs, loaded = dict(plugins.plugin_info), set(plugins._loaded_dirs), plugins._loaded
    commands = dict(cli.commands)
    yield
    for plugin in plugins.pm.get_plugins():
        if plugins.pm.get_name(plugin) not in registered:
            plugins.pm.unregister(plugin)
    for name, plugin in registered.items():
        if not plugins.pm.is_registered(plugin):
            plugins.pm.register(plugin, name=name)
    plugins.plugin_info.clear()
    plugins.plugin_info.update(info)
    plugins._loaded_dirs.clear()
    plugins._loaded_dirs.update(dirs)
    plugins._loaded = loaded
    cli.commands.clear()
    cli.commands.update(commands)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: the tests share two cores with other work, and idle spinning threads
    cost several times the CPU of the work itself. Modules that train or export in process
    use it for the whole module, their module fixtures included:
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic dataset (40 faces per class in train, 10 in test, planted problems),
    made once per session. Read only: use `synth_copy` to change files."""
    from fercli.data.synth import make_synthetic

    root = tmp_path_factory.mktemp("synth") / "data"
    make_synthetic(root, per_class=40, seed=0)
    return root


@pytest.fixture
def synth_copy(synth_root, tmp_path) -> Path:
    """A fresh copy of the synthetic dataset that the test may change."""
    return Path(shutil.copytree(synth_root, tmp_path / "synth"))


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Make an installed-looking distribution without pip: a `*.dist-info` folder with
    METADATA and entry_points.txt on sys.path. fake_dist("my-plugin", "1.0", {"name":
    "module"}, modules={"module": "source"}, paths=[folder with the modules])."""
    from fercli import plugins

    def make(name, version, entry_points, modules=None, paths=()):
        site = tmp_path / f"site-{name}"
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = [f"{ep} = {target}" for ep, target in entry_points.items()]
        (info / "entry_points.txt").write_text("[fercli]\n" + "\n".join(lines) + "\n")
        for module, source in (modules or {}).items():
            (site / f"{module}.py").write_text(source)
        for path in (*paths, site):
            monkeypatch.syspath_prepend(str(path))
        for module in modules or {}:
            monkeypatch.delitem(sys.modules, module, raising=False)
        monkeypatch.setattr(plugins, "_loaded", False)  # discover again on next use
        return site

    return make


@pytest.fixture(scope="session")
def trained_onnx(trained_run, tmp_path_factory) -> Path:
    """trained_run's best.pt exported to ONNX (fp32), once for the whole test run. Read only:
    a test that changes a model copies it first."""
    import torch

    from fercli.export import export_onnx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("trained-onnx") / "seed-cnn.onnx"
        return export_onnx(trained_run[0] / "best.pt", out).output
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_run(synth_root, tmp_path_factory) -> tuple[Path, dict]:
    """A finished short training run of seed-cnn on the synthetic dataset, made once per
    session: (run folder, metrics returned by fercli.train.train). Read only."""
    import torch

    from fercli.train import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "run"
    config = TrainConfig(
        data_dir=str(synth_root),
        model="seed-cnn",
        optimizer="adamw",
        learning_rate=2e-3,
        batch_size=32,
        num_epochs=8,
        augment="flip",
        out=str(out),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # cheaper in CPU time on a shared 2-core machine
    try:
        return out, train(config)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def fer2013() -> Path:
    """The real FER-2013 copy (`FERCLI_FER2013`, else ../shared/fer2013), or skip."""
    path = Path(os.environ.get("FERCLI_FER2013") or FER2013_DEFAULT)
    if not (path / "train").is_dir():
        pytest.skip(f"FER-2013 not found at {path} (set FERCLI_FER2013)")
    return path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `fercli ARGS...` in this process: run_cli("synth", path) -> CliResult."""
    from fercli.cli import main

    def run(*args) -> CliResult:
        args = [str(a) for a in args]
        monkeypatch.setattr(sys, "argv", ["fercli", *args])
        capsys.readouterr()
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def run_fercli():
    """Run `python -m fercli ARGS...` in a subprocess (same environment, incl. the test's cache
    dir): run_fercli("plugins", "--json", cwd=..., env={...}) -> CompletedProcess (text)."""

    def run(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fercli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )

    return run


@pytest.fixture
def run_script():
    """Run one of the repository's scripts in a subprocess; it must succeed:
    run_script("benchmarks/bench_train.py", "--steps", 2, cwd=..., env={...}) -> its stdout."""

    def run(rel_path, *args, cwd=None, env=None) -> str:
        proc = subprocess.run(
            [sys.executable, str(REPO / rel_path), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    return run


@pytest.fixture
def oracle():
    """oracle({(w, h): [Face, ...]}): the `oracle` detector plugin for one test."""
    from faces_scenes import OraclePlugin

    from fercli.plugins import pm

    added = []

    def register(truth):
        plugin = OraclePlugin(truth)
        pm.register(plugin, name=f"oracle-plugin-{len(added)}")
        added.append(plugin)
        return "oracle"

    yield register
    for plugin in added:
        pm.unregister(plugin)


@pytest.fixture(scope="module")
def ray_cluster():
    from ray_helpers import needs_ray

    needs_ray()
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()
