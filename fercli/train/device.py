"""Where a run computes: the device, mixed precision, CPU threads, the hardware it records."""

import os

import torch

from fercli.errors import FercliError
from fercli.util import cpu_name, cpuinfo

from .config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FercliError("--device cuda: no CUDA GPU is usable here; use --device cpu or auto.")
    if name not in ("cpu", "cuda"):
        raise FercliError(f"unknown device {name!r}: choose auto, cpu or cuda.")
    return torch.device(name)


def amp_dtype(config: TrainConfig, device: torch.device):
    """The autocast dtype, or None for full fp32."""
    if config.amp == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if config.amp == "on" or (torch.backends.mkldnn.is_available() and _cpu_has_amx()):
        return torch.bfloat16
    return None


def _cpu_has_amx() -> bool:
    """bf16 autocast pays on CPUs with AMX tiles; with AVX-512 bf16 alone it is slower than
    fp32 (vgg at 0.77x on a 2-core Xeon without AMX, `benchmarks/bench_train.py --model vgg
    --steps 10 --compare-amp`), so `--amp auto` uses it only with AMX."""
    return "amx_bf16" in cpuinfo()


def hardware(device: torch.device, world=None) -> str:
    """What a run trains on, for its metrics and the model card."""
    processes = world.size if world is not None else 1
    if device.type == "cuda":
        gpus = f"{processes} x " if processes > 1 else ""
        return f"{gpus}{torch.cuda.get_device_name(device)} (CUDA), {os.cpu_count()} CPU cores"
    threads = f"{torch.get_num_threads()} threads"
    if processes > 1:
        per = torch.get_num_threads()
        threads = f"{processes} processes x {per} thread{'s' if per > 1 else ''}"
    return f"{cpu_name()}, {os.cpu_count()} cores, {threads}, no GPU"


def flush_denormals() -> None:
    """Compute with denormal floats as zero on the CPU. On real faces some batch-norm gradients
    become denormal, which x86 CPUs process many times slower: vgg trains about 1.5x faster
    with this. Call it before torch's first parallel operation: its worker threads copy the
    setting when they start."""
    torch.set_flush_denormal(True)


def default_threads() -> int:
    """CPU threads: FERCLI_THREADS when set (the trainer then uses it), else one per core."""
    value = os.environ.get("FERCLI_THREADS", "0")
    if not value.isdigit():
        raise FercliError(f"FERCLI_THREADS={value!r}: set it to a whole number of threads.")
    return int(value) or os.cpu_count() or 1
