"""Small helpers shared across fercli."""

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path beside `target`; rename it over `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def cache_dir() -> Path:
    """Where fercli keeps what it can make again (decoded splits, compiled models)."""
    if os.environ.get("FERCLI_CACHE_DIR"):
        return Path(os.environ["FERCLI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fercli"


def first_line(text: str, limit: int = 200) -> str:
    """The first line of a (library's) message, for one-line errors."""
    text = text.strip()
    return text.splitlines()[0][:limit] if text else ""


def cpuinfo() -> str:
    """Linux's /proc/cpuinfo (model name, flags), or "" where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    import platform

    for line in cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# The instruction sets that change what fercli's engines do: onnxruntime's int8 kernels (VNNI
# adds in 32 bits, AVX2 alone in 16), OpenVINO, and bf16 autocast in training (AMX).
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_description() -> str:
    """One line naming this CPU, its relevant instruction sets and cores, for benchmark
    output: every figure is tied to the CPU it was measured on."""
    flags = next((line for line in cpuinfo().splitlines() if line.startswith("flags")), "")
    words = set(flags.split())
    has = [f for f in CPU_FLAGS if f in words]
    lacks = [f for f in CPU_FLAGS if f not in words]
    return (
        f"CPU: {cpu_name()}; {os.cpu_count()} cores; has {' '.join(has) or '-'}; "
        f"lacks {' '.join(lacks) or '-'}"
    )


@contextmanager
def native_stderr_captured(enabled: bool = True):
    """Redirect file descriptor 2 (where C++ libraries such as onnxruntime log) to a
    temporary file for the block; yields a list that holds the captured text afterwards.
    Python's own sys.stderr is flushed first, so nothing of ours is swallowed."""
    captured: list[str] = []
    if not enabled:
        yield captured
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))
