"""Where predict-dir's files are decoded and predicted: chunk by chunk, in worker processes.

On the CPU every worker decodes its chunk *and* runs the model on it, with its own
onnxruntime session of `threads // workers` threads: decoding and inference then never
contend for a core, and onnxruntime's threads never wait for each other on small batches.
The bundled `fast` model runs end to end at 0.81-0.82 of its model-only speed over
FER-2013's 3,589 test files and 0.88-0.92 over its 28,709 train files (docs/benchmarks/predict.md,
benchmarks/bench_predict.py), where it ran at 0.51 when the workers only decoded and one
session with every core predicted (and Pillow decoded). On CUDA or OpenVINO
the workers only decode and this process predicts: one session holds the device. The Ray
actors (fercli.predict.ray) run the same `predict_files`, so every engine writes the same rows.
"""

import signal
from collections import deque
from functools import partial

import numpy as np

from fercli.data.images import load_many
from fercli.engines.local import start_pool
from fercli.predict.onnx_model import OnnxModel, mirror_averaged
from fercli.progress import say


def decode_chunk(paths: list[str], size: int):
    """Decode paths: (uint8 (n, size, size), {index: reason}). Never raises for one bad file."""
    try:
        images, errors = load_many(paths, size)
        return images, dict(errors)
    except Exception:  # a decoder bug (not an ImageError) in one file: isolate that file
        images = np.zeros((len(paths), size, size), np.uint8)
        errors = {}
        for i, path in enumerate(paths):
            try:
                one, errs = load_many([path], size)
                images[i] = one[0]
                if errs:
                    errors[i] = errs[0][1]
            except Exception as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"
        return images, errors


def predictor(model: OnnxModel, batch_size: int, tta: bool):
    """uint8 images -> class probabilities, in batches, mirror-averaged with tta."""
    predict = partial(model.predict_proba, batch_size=batch_size)
    return partial(mirror_averaged, predict) if tta else predict


def predict_decoded(images, errors: dict, predict_proba, n_classes: int):
    """(probabilities, errors) of a decoded chunk: the unreadable files get zeros."""
    good = [i for i in range(len(images)) if i not in errors]
    probs = np.zeros((len(images), n_classes), np.float32)
    if good:
        probs[good] = predict_proba(images[good])
    return probs, errors


def predict_files(model: OnnxModel, paths: list[str], batch_size: int, tta: bool):
    """(probabilities, {index: reason}) of the files, decoded and predicted in this process."""
    info = model.info
    images, errors = decode_chunk(paths, info.image_size)
    return predict_decoded(images, errors, predictor(model, batch_size, tta), len(info.classes))


_sessions: dict = {}  # a worker's own sessions (never one inherited), by (file, threads)


def worker_session(model_path: str, threads: int) -> OnnxModel:
    model = _sessions.get((model_path, threads))
    if model is None:
        model = _sessions[model_path, threads] = OnnxModel(model_path, "cpu", threads)
    return model


def open_worker_session(model_path: str, threads: int) -> None:
    """A worker's start: its session, run once on a blank image, before the first chunk
    comes, while the main process sets up (a larger warm-up only delays the first chunk). A
    failure is left for the first chunk to raise in the main process."""
    try:
        model = worker_session(model_path, threads)
        size = model.info.image_size
        model.predict_proba(np.zeros((1, size, size), np.uint8))
    except Exception:
        pass


def predict_in_worker(paths: list[str], model_path: str, threads: int, batch_size: int, tta: bool):
    """predict_files in a worker process, with its own session."""
    return predict_files(worker_session(model_path, threads), paths, batch_size, tta)


def chunked(items: list, size: int, workers: int) -> list[list]:
    """`items` in chunks of `size`, but the last `workers * size` in quarter chunks, so that
    the workers finish nearly together instead of one waiting on the other's last chunk."""
    chunks, i, tail = [], 0, len(items) - workers * size
    while i < len(items):
        step = size if i < tail else max(1, size // 4)
        chunks.append(items[i : i + step])
        i += step
    return chunks


def _start_worker(setup=None) -> None:
    # Ctrl-C is for the main process, which stops the workers; no traceback from each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if setup is not None:
        setup()


class Workers:
    """Runs a function over chunks in worker processes, `ahead` chunks in advance, yielding
    the results in order; with no workers, in this process.

    The workers are started before this process creates its onnxruntime session, and what
    they inherit of earlier ones is kept out of their collector (fercli.engines.local)."""

    def __init__(self, workers: int, setup=None):
        """setup: run in each worker as it starts (picklable)."""
        self.pool = None
        if workers > 0:
            try:
                self.pool = start_pool(workers, partial(_start_worker, setup))
            except (OSError, NotImplementedError) as exc:  # e.g. no semaphores in a sandbox
                say(f"Decoding in this process: cannot start worker processes ({exc}).")
                self.pool = None
        self.count = workers if self.pool else 0
        self.ahead = 2 * workers

    def map(self, function, chunks):
        if self.pool is None:
            for chunk in chunks:
                yield function(chunk)
            return
        chunks = iter(chunks)
        pending = deque(self.pool.submit(function, c) for _, c in zip(range(self.ahead), chunks))
        while pending:
            result = pending.popleft().result()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(self.pool.submit(function, nxt))
            yield result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
