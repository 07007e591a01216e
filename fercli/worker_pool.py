"""Worker processes (decoding, hashing, predicting), started by fork where the system has it:
what clean's, train's and predict-dir's worker pools share."""

import gc
import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def start_pool(workers: int, initializer=None) -> ProcessPoolExecutor:
    """A pool of `workers` processes, every one forked now where fork is used (the
    `initializer` then runs in each while this process goes on).

    Fork is fast, but a child inherits every object of this process. One left for the
    garbage collector (an onnxruntime session of an earlier call, in a long-lived process
    such as a test run or a notebook) would be destroyed in the child, where its native
    threads do not exist, and hang it (seen: pthread_cond_destroy on a session's condition
    variable). So what the children inherit is frozen out of their collector (gc.freeze,
    which costs nothing; this process collects its own garbage as before)."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    gc.freeze()
    try:
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=initializer)
        pool.submit(int)  # with fork, the first task forks every worker, in this call
    finally:
        gc.unfreeze()
    return pool
