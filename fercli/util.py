"""Small helpers shared across fercli."""

import os
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike):
    """Yield a temporary path beside `target`; rename it over `target` only on success. A
    kill by SIGTERM or SIGHUP removes the temporary file too (signals_raise)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with signals_raise():
        tmp = None
        try:
            with signals_held():  # a kill inside mkstemp would leave its file unnamed here
                where = {"prefix": f".{target.name}.", "suffix": ".tmp", "dir": target.parent}
                fd, name = tempfile.mkstemp(**where)
                tmp = Path(name)
                os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
            yield tmp
            os.replace(tmp, target)
        except BaseException:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise


class Terminated(SystemExit):
    """SIGTERM or SIGHUP, raised in the main thread (as Ctrl-C raises KeyboardInterrupt) so
    that `finally` blocks and context managers run: temporary files are removed, worker
    pools shut down, an appended output is closed after its last whole batch. The process
    then exits with status 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP)."""


def _raise_terminated(signum, frame) -> None:
    if _raising["held"]:
        _raising["pending"] = signum
        return
    raise Terminated(128 + signum)


TERMINATING = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
_raising = {"depth": 0, "saved": {}, "held": 0, "pending": None}  # for nested uses


def raise_on_signals() -> bool:
    """Make SIGTERM and SIGHUP raise Terminated, where they would kill this process at once
    (their default action; an ignored SIGHUP, under nohup, stays ignored, and a handler of
    someone else's stays). Nests: the last matching restore_signals() puts back what was
    there. Only the main thread can: elsewhere nothing changes and this returns False."""
    if threading.current_thread() is not threading.main_thread():
        return False
    _raising["depth"] += 1
    if _raising["depth"] == 1:
        for sig in TERMINATING:
            if signal.getsignal(sig) == signal.SIG_DFL:
                _raising["saved"][sig] = signal.signal(sig, _raise_terminated)
    return True


def restore_signals() -> None:
    """The end of a raise_on_signals() (one that returned True)."""
    _raising["depth"] -= 1
    if _raising["depth"] == 0:
        saved, _raising["saved"] = _raising["saved"], {}
        for sig, previous in saved.items():
            if signal.getsignal(sig) is _raise_terminated:
                signal.signal(sig, previous)


@contextmanager
def signals_raise():
    """raise_on_signals() for the block."""
    entered = raise_on_signals()
    try:
        yield
    finally:
        if entered:
            restore_signals()


@contextmanager
def signals_held():
    """A SIGTERM or SIGHUP that signals_raise would raise in the block is raised at its end,
    where the block's work (a temporary file made and named) can be undone. Signals are
    handled in the main thread: in another, this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _raising["held"] += 1
    try:
        yield
    finally:
        _raising["held"] -= 1
    if not _raising["held"] and _raising["pending"] is not None:
        signum, _raising["pending"] = _raising["pending"], None
        raise Terminated(128 + signum)


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
