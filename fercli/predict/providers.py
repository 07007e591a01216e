"""Which onnxruntime execution provider runs a model: `auto`, `cpu`, `cuda` or `openvino`.

`cuda` comes with the onnxruntime-gpu package. `openvino` comes with Intel's plugin package
`onnxruntime-ep-openvino` (`pip install 'fercli[openvino]'`), which onnxruntime (1.23 or newer)
loads at run time; on x86 CPUs its int8 convolutions are faster than onnxruntime's own.
`auto` takes the first of cuda, openvino and cpu that is installed and, for a model with a
card (the bundled ones), that the card verified to give the CPU provider's labels.
"""

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from fercli import defaults
from fercli.errors import FercliError
from fercli.util import cache_dir, cpu_name, first_line

CHOICES = defaults.PROVIDERS
EP = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
NAMES = {ep: name for name, ep in EP.items()}
OPENVINO_INSTALL = "pip install 'fercli[openvino]'"


class Unavailable(FercliError):
    """A provider that cannot run here: `what` is wrong, `fix` says what to do. `expected`:
    nothing is broken (Intel's plugin offers no device on this CPU), so `auto` moves on to
    the CPU provider without a word (the reason is shown with -v and kept in the summary)."""

    def __init__(self, what: str, fix: str, expected: bool = False):
        super().__init__(f"{what}: {fix}")
        self.what = what
        self.expected = expected


def available_providers() -> list[str]:
    """The providers built into this onnxruntime (plugins such as OpenVINO's not included)."""
    import onnxruntime as ort

    return ort.get_available_providers()


def cpu_providers() -> list[str]:
    """The providers that can run on the CPU here: cpu, and openvino where its plugin is
    installed and offers this CPU as a device."""
    return ["cpu"] + (["openvino"] if openvino_unavailable() is None else [])


def openvino_plugin():
    """Intel's plugin module, or None where it is not installed."""
    try:
        import onnxruntime_ep_openvino
    except ImportError:
        return None
    return onnxruntime_ep_openvino


# The plugin is registered in onnxruntime once per process (a second registration fails), and
# what it offers does not change: the outcome is kept here.
_openvino: dict = {}


def openvino_device():
    """The OpenVINO plugin's CPU device; Unavailable says why where it cannot be had."""
    if "device" not in _openvino:
        try:
            _openvino["device"] = _find_openvino_device()
        except Unavailable as exc:
            _openvino["device"] = exc
    if isinstance(_openvino["device"], Unavailable):
        raise _openvino["device"]
    return _openvino["device"]


def openvino_unavailable() -> Unavailable | None:
    """Why the OpenVINO provider cannot run here, or None where it can."""
    try:
        openvino_device()
    except Unavailable as exc:
        return exc
    return None


def _find_openvino_device():
    import onnxruntime as ort

    plugin = openvino_plugin()
    if plugin is None:
        raise Unavailable(
            "the OpenVINO execution provider is not installed",
            f"`{OPENVINO_INSTALL}`, or use --provider cpu.",
            expected=True,
        )
    if not hasattr(ort, "get_ep_devices"):
        raise Unavailable(
            f"onnxruntime {ort.__version__} cannot load execution provider plugins",
            "`pip install -U 'onnxruntime>=1.23'`, or use --provider cpu.",
        )

    def devices():
        return [d for d in ort.get_ep_devices() if d.ep_name == EP["openvino"]]

    if not devices():
        try:
            ort.register_execution_provider_library("fercli-openvino", plugin.get_library_path())
        except Exception as exc:  # onnxruntime raises its own exception types
            raise Unavailable(
                f"onnxruntime could not load the OpenVINO plugin ({first_line(str(exc))})",
                f"reinstall it with `{OPENVINO_INSTALL}`, or use --provider cpu.",
            ) from None
    cpus = [d for d in devices() if d.ep_metadata.get("ov_device") == "CPU"]
    if not cpus:
        # Seen on AMD EPYC CPUs (plugin 1.8.1): it loads and offers no device there.
        raise Unavailable(
            f"Intel's OpenVINO plugin offers no device on this CPU ({cpu_name()})",
            "use --provider cpu (onnxruntime's own CPU provider gives the same answers).",
            expected=True,
        )
    return cpus[0]


def choose(provider: str, model: str | Path | None = None) -> tuple[str, Unavailable | None]:
    """(engine, fallback): the engine to run `provider` on, and for `auto`, why the CUDA or
    OpenVINO provider that is installed is not used. `cuda` and `openvino` never fall back
    silently: where they are missing, a FercliError says so.

    `auto` picks CUDA or OpenVINO for `model` only where its card allows it (card_verified):
    a bundled model runs there only where the same labels as the CPU provider's were
    verified, so it gives the labels of its card wherever `auto` runs it."""
    if provider not in CHOICES:
        raise FercliError(f"unknown provider {provider!r}: choose {', '.join(CHOICES)}.")
    available = available_providers()
    if provider == "auto":
        return choose_auto(model, available)
    return chosen(provider, available), None


def chosen(provider: str, available: list[str]) -> str:
    """The engine of a provider asked for by name, or a FercliError saying why it cannot run."""
    if provider == "cuda" and EP["cuda"] not in available:
        raise FercliError(
            "the CUDA execution provider is not available in this onnxruntime "
            f"(available: {', '.join(available)}): install onnxruntime-gpu with a matching "
            "CUDA, or use --provider cpu."
        )
    if provider == "openvino":
        openvino_device()
    return provider


def installed(available: list[str]) -> Iterator[str]:
    """The engines `auto` tries before the CPU, in order, each looked for when asked for:
    cuda where this onnxruntime has it, openvino where Intel's plugin is installed."""
    if EP["cuda"] in available:
        yield "cuda"
    if openvino_plugin() is not None:
        yield "openvino"


def choose_auto(model: str | Path | None, available: list[str]) -> tuple[str, Unavailable | None]:
    """choose("auto"): the first installed engine that runs here and that `model`'s card
    verified, else the CPU with the reason."""
    verified, reasons = card_verified(model)
    refused = None
    for engine in installed(available):
        if engine == "openvino" and (reason := openvino_unavailable()) is not None:
            return "cpu", reason  # what the plugin's absence of a device says comes first
        if verified is None or engine in verified:
            return engine, None
        refused = refused or Unavailable(
            f"{engine} is not used for {Path(model).name}: {reasons.get(engine, NOT_VERIFIED)}",
            f"pass --provider {engine} to run it there anyway",
            expected=True,
        )
    return "cpu", refused


NOT_VERIFIED = "its model card does not record the same labels as the CPU provider's there"


def card_verified(model: str | Path | None) -> tuple[set[str] | None, dict[str, str]]:
    """The providers that `model`'s card (model_card.json beside the file, as bundled models
    have) verified to give the CPU provider's labels, and why the others are not: (None, {})
    for a model with no card, which `auto` runs wherever it can."""
    if model is None:
        return None, {}
    path = Path(model).parent / "model_card.json"
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, {}
    record = card.get("providers") if isinstance(card, dict) else None
    if not isinstance(record, dict):
        return {"cpu"}, {}
    return set(record.get("verified", ["cpu"])), dict(record.get("not_verified", {}))


def configure(engine: str, options, threads: int | None):
    """Set up onnxruntime session options for the engine; returns the `providers` argument of
    InferenceSession (None where the options carry the provider, as plugins need)."""
    if engine == "openvino":
        config = {
            # OpenVINO would run a model's float layers in bfloat16 on CPUs that have it; keep
            # each layer's own precision so that it predicts what the CPU provider predicts.
            "INFERENCE_PRECISION_HINT": "f32",
            **({"INFERENCE_NUM_THREADS": str(threads)} if threads else {}),
            **({"CACHE_DIR": str(cache)} if (cache := openvino_cache()) else {}),
        }
        options.add_provider_for_devices(
            [openvino_device()], {"load_config": json.dumps({"CPU": config})}
        )
        return None
    return [EP["cuda"], EP["cpu"]] if engine == "cuda" else [EP["cpu"]]


def openvino_cache() -> Path | None:
    """OpenVINO compiles a model for the CPU on every start (0.3 s for the bundled model) unless
    it finds the result in its cache: cache_dir()/openvino, where it can be written."""
    path = cache_dir() / "openvino"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cuda_failure(log: str) -> str:
    """The reason in onnxruntime's log for a CUDA provider that did not start, in a few words:
    the library that failed to load, else its first error message."""
    log = ANSI.sub("", log)
    missing = re.search(r"with error: ([^\n]+)", log)
    if missing:
        return first_line(missing.group(1))
    errors = [line.rsplit("] ", 1)[-1] for line in log.splitlines() if "[E:" in line]
    return first_line(errors[0]) if errors else "no reason given; run with -v to see its log"
