"""fercli.engines.local: decoding workers started by fork must not die with what this process
leaves to its garbage collector (a long-lived process: a test run, a notebook)."""

import gc
import os
import signal

import pytest

from fercli.engines.local import start_pool


def _collect() -> int:
    gc.collect()  # in the child: would destroy what the parent left uncollected
    return os.getpid()


def _garbage_session() -> None:
    """An onnxruntime session in a reference cycle, unreachable but not yet collected: its
    thread pool's idle thread waits on a condition variable when the pool forks."""
    import numpy as np

    from fercli.predict.bundled import bundled_path
    from fercli.predict.onnx_model import OnnxModel

    model = OnnxModel(bundled_path(), "cpu", threads=2)
    model.predict_proba(np.zeros((4, 48, 48), np.uint8))
    model.cycle = model  # only the collector can free it


def test_workers_survive_garbage_onnxruntime_sessions():
    enabled = gc.isenabled()
    gc.disable()  # keep the session uncollected until the pool forks
    try:
        _garbage_session()
        pool = start_pool(1)
    finally:
        if enabled:
            gc.enable()
    pids = [p.pid for p in pool._processes.values()]
    try:
        assert pool.submit(_collect).result(timeout=60) in pids
    except TimeoutError:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        pytest.fail("a worker hung collecting the parent's onnxruntime session")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
