"""Worker processes (decoding, hashing, predicting), started by fork where the system has it:
what clean's, train's and predict-dir's worker pools share.

The workers never outlive this process. While a pool is open, SIGTERM and SIGHUP raise
fercli.util.Terminated here, so that the pool is shut down and temporary files removed as
after Ctrl-C; and each worker dies with this process however it ends (a SIGKILL too): on
Linux the kernel kills it (prctl PR_SET_PDEATHSIG), elsewhere a thread of its own sees that
its parent is gone. Without this, workers blocked on their pipe would wait forever."""

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from fercli.util import raise_on_signals, restore_signals

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class _Pool(ProcessPoolExecutor):
    """A ProcessPoolExecutor whose shutdown also ends start_pool's signal handling."""

    _signals = False

    def shutdown(self, wait=True, *, cancel_futures=False):
        try:
            super().shutdown(wait=wait, cancel_futures=cancel_futures)
        finally:
            if self._signals:
                self._signals = False
                restore_signals()


def start_pool(workers: int, initializer=None) -> ProcessPoolExecutor:
    """A pool of `workers` processes, every one forked now where fork is used (the
    `initializer` then runs in each while this process goes on). Shut it down (its
    `shutdown`), which also restores this process's SIGTERM and SIGHUP handling.

    Fork is fast, but a child inherits every object of this process. One left for the
    garbage collector (an onnxruntime session of an earlier call, in a long-lived process
    such as a test run or a notebook) would be destroyed in the child, where its native
    threads do not exist, and hang it (seen: pthread_cond_destroy on a session's condition
    variable). So what the children inherit is frozen out of their collector (gc.freeze,
    which costs nothing; this process collects its own garbage as before)."""
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods else "spawn"
    context = multiprocessing.get_context(method)
    # The kernel's parent-death signal follows the thread that forked: only the main
    # thread, which lives as long as the process, may be relied on (with fork, every worker
    # is forked in this call).
    kernel = method == "fork" and threading.current_thread() is threading.main_thread()
    start = partial(_start_worker, os.getpid(), kernel, initializer)
    signals, pool = raise_on_signals(), None  # before the fork: each worker puts back the defaults
    gc.freeze()
    try:
        pool = _Pool(workers, mp_context=context, initializer=start)
        pool._signals = signals
        pool.submit(int)  # with fork, the first task forks every worker, in this call
    except BaseException:
        if signals:
            restore_signals()
            if pool is not None:
                pool._signals = False
        raise
    finally:
        gc.unfreeze()
    return pool


def _start_worker(parent: int, kernel: bool, initializer=None) -> None:
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_DFL, signal.SIG_IGN):
            signal.signal(sig, signal.SIG_DFL)  # a handler inherited from this process
    die_with_parent(parent, kernel)
    if initializer is not None:
        initializer()


def die_with_parent(parent: int, kernel: bool = True) -> None:
    """End this (worker) process when the process `parent` ends."""
    if not (kernel and sys.platform.startswith("linux") and _parent_death_signal()):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(1)


def _parent_death_signal() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, every: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)
