"""predict-dir, predict-video and clean on Ray Data (`fercli predict-dir DIR --engine ray`,
`fercli predict-video FILE... --engine ray`, `fercli clean ROOT --engine ray`): `map_files`
runs a pool of actors over the files, `cluster` joins or starts the cluster, for every command.

The image paths become a Ray dataset; `map_batches` runs a pool of actors, each holding one
onnxruntime session made from the model's bytes (sent from the driver, so the workers need no
copy of the .onnx file), decoding and predicting a batch of files per call. A file that cannot
be read becomes a row with its reason, as with the local engine: an exception inside a map
step would abort the whole job. The driver gets the results in order and writes the one output
file itself, row for row what the local engine writes. For clean, each actor does what a local
decoding process does (fercli.cleaning.decode_chunk: 48x48 arrays, digests, hashes); the
driver gets them back in path order and runs the filters and the duplicate search itself.

With predict-dir --faces auto or detect, each dataset row is one chunk of pictures, cut as the
local engine cuts them: a FacePredictor actor finds the faces (the detector made on its node
by name), aligns and predicts them and writes the chunk's --annotate and --crops files; the
driver makes the rows from the probabilities and faces it sends back (RemoteFaces). For
predict-video each row is one video, which a VideoPredictor reads, tracks and predicts as
fercli.faces.video.VideoRun does locally; the driver writes its rows in the order given.

The images are read where the actors run: on a cluster of several machines they must be at
the same path on every node (a shared filesystem).
"""

import json
import logging
import os
import socket
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fercli.errors import FercliError
from fercli.progress import settings
from fercli.util import first_line

EXTRA = "pip install 'fercli[ray]'"


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise FercliError(
            f"--engine ray needs Ray Data, which is not installed here: {EXTRA}."
        ) from None
    return ray


def refuse_local_sizes(hint: str, **sizes) -> None:
    """--workers and --threads size this machine's pool, which --engine ray does not use: say
    so rather than silently ignore them. sizes: option name -> value (None: not given)."""
    given = ["--" + name.replace("_", "-") for name, value in sizes.items() if value is not None]
    if given:
        raise FercliError(
            f"{' and '.join(given)} size{'s' if len(given) == 1 else ''} the local engine; "
            f"with --engine ray the actors do the work: {hint}."
        )


class Predictor:
    """A Ray Data actor: one onnxruntime session, a batch of files per call."""

    def __init__(self, model, provider: str, threads: int, batch_size: int, tta: bool):
        """model: the .onnx file's bytes, or a Ray object reference to them."""
        from fercli.onnx_model import OnnxModel

        if not isinstance(model, bytes):
            import ray

            model = ray.get(model)

        handle, path = tempfile.mkstemp(suffix=".onnx", prefix="fercli-actor-")
        with os.fdopen(handle, "wb") as f:
            f.write(model)
        try:
            self.model = OnnxModel(path, provider, threads)
        finally:
            os.unlink(path)  # the session has read it
        self.batch_size, self.tta = batch_size, tta

    def __call__(self, batch: dict) -> dict:
        from fercli.predict_workers import predict_files

        paths = [str(p) for p in batch["path"]]
        # as fercli.predict does it, so that the rows come out the same
        probs, errors = predict_files(self.model, paths, self.batch_size, self.tta)
        return {
            "index": batch["index"],
            "probs": probs,
            "error": np.array([errors.get(i, "") for i in range(len(paths))], dtype=object),
            "failed": np.array([i in errors for i in range(len(paths))]),
        }


class FacePredictor(Predictor):
    """A Ray Data actor for predict-dir --faces auto|detect: a chunk of pictures per call
    (one dataset row, the chunk the local engine would cut), whose faces it finds with the
    detector made here by name (fercli.faces.predict_faces.decode_faces, as a local worker
    finds them), aligns and predicts with its own session, and whose --annotate and --crops
    files it writes itself (atomically, as the local engine names them)."""

    def __init__(self, model, provider, threads, batch_size, tta, stage, root, plugins_dir=None):
        """stage: the driver's FaceStage (its mode, detector name, filters and folders);
        root: the input folder (absolute); plugins_dir: the folder of the plugin file that
        registers the detector, loaded here too."""
        super().__init__(model, provider, threads, batch_size, tta)
        from fercli.faces.predict_faces import reset_detectors
        from fercli.predict_workers import predictor

        if plugins_dir:
            from fercli.plugins import load_plugins_dir

            load_plugins_dir(plugins_dir)
        reset_detectors()
        self.stage, self.root = stage, root
        self.decode = stage.decode(self.model.info.image_size)
        self.predict_proba = predictor(self.model, batch_size, tta)

    def __call__(self, batch: dict) -> dict:
        import pickle

        from fercli.faces.predict_faces import face_rows
        from fercli.predict_output import abstain_rows
        from fercli.progress import console

        results = []
        for encoded in batch["chunk"]:
            chunk = json.loads(encoded)
            decoded = self.decode([os.path.join(self.root, rel) for rel in chunk])
            crops, found = decoded
            classes = self.model.info.classes
            probs = (
                self.predict_proba(crops) if len(crops) else np.zeros((0, len(classes)), np.float32)
            )
            said = ""
            if self.stage.annotate or self.stage.crops:  # label, box and face, as locally
                rows = face_rows(chunk, decoded, lambda _, p=probs: p, classes, 0)
                rows = abstain_rows(rows, self.stage.below)
                with console.capture() as captured:  # its lines go back to the driver
                    self.stage.save_extras(Path(self.root), chunk, rows, decoded)
                said = captured.get()
            results.append(pickle.dumps((probs, found, said), protocol=pickle.HIGHEST_PROTOCOL))
        return {"index": batch["index"], "result": np.array(results, dtype=object)}


class RemoteFaces:
    """The driver's stand-in for a FaceStage whose work the FacePredictor actors do:
    fercli.predict's loop asks it for each chunk's rows (made from the probabilities and
    faces the actors found, as FaceStage.rows makes them) and to save the extras (already
    written by the actors: it only says what they said)."""

    def __init__(self, stage):
        self.stage, self.columns = stage, stage.columns

    def chunk_size(self, images: int, batch_size: int, actors: int) -> int:
        return self.stage.chunk_size(images, batch_size, actors)

    def rows(self, chunk, outcome, predict_proba, classes, topk) -> list[dict]:
        from fercli.faces.predict_faces import face_rows
        from fercli.predict_output import abstain_rows

        probs, found, _ = outcome
        rows = face_rows(chunk, (probs, found), lambda _: probs, classes, topk)
        return abstain_rows(rows, self.stage.below)

    def save_extras(self, root, chunk, rows, outcome) -> None:
        from fercli.progress import say

        for line in outcome[2].splitlines():
            say(line)


def detector_plugins_dir(name: str) -> str | None:
    """Where the actors find the detector `name`: None for a built-in or an installed
    plugin's (an entry point, imported on each node), the folder of a plugins-dir file
    (which the actors load too: on a cluster, a shared folder); a detector registered only
    in this process is refused in one line (the actors make it by name)."""
    from fercli import registry
    from fercli.plugins import plugin_info

    entry = registry.get("detector", name)
    info = plugin_info.get(entry.plugin)
    if info is None:
        raise FercliError(
            f"--detector {name} is registered in this process only (plugin {entry.plugin!r}): "
            "--engine ray makes the detector on each node by name, from fercli's built-in ones, "
            "installed plugins (entry points) and --plugins-dir files."
        )
    return str(Path(info.source).parent) if info.origin == "plugins dir" else None


def actor_count(actors: int | None, threads_per_actor: int = 1, gpus_per_actor: float = 0) -> int:
    """--actors, or as many as the cluster's CPUs (and GPUs, for CUDA actors) hold."""
    if actors is not None:
        return actors
    resources = import_ray().cluster_resources()
    actors = max(1, int(resources.get("CPU", 1)) // threads_per_actor)
    if gpus_per_actor:
        actors = max(1, min(actors, int(resources.get("GPU", 0) // gpus_per_actor)))
    return actors


def face_chunks(
    chunks: list[list[str]],
    root,
    stage,
    model_path,
    *,
    provider: str,
    batch_size: int,
    tta: bool,
    actors: int | None,
    threads_per_actor: int,
):
    """(probabilities of the faces, [Found per picture], lines the actor said) for each
    chunk of `root`'s pictures (paths relative to it), in order, one chunk per actor call:
    RemoteFaces.rows' outcome. Runs on the cluster joined with `cluster()`."""
    import pickle

    ray = import_ray()
    batches = map_files(
        [json.dumps(chunk) for chunk in chunks],
        FacePredictor,
        dict(
            model=ray.put(_read_bytes(model_path)),
            provider=provider,
            threads=threads_per_actor,
            batch_size=batch_size,
            tta=tta,
            stage=stage,
            root=os.path.abspath(root),  # the actors' working folder is not this one's
            plugins_dir=detector_plugins_dir(stage.detector_name),
        ),
        batch_size=1,
        actors=actors,
        threads_per_actor=threads_per_actor,
        gpus_per_actor=1 if provider == "cuda" else 0,
        key="chunk",
    )
    for batch in batches:
        for result in batch["result"]:
            yield pickle.loads(result)


class VideoPredictor:
    """A Ray Data actor for predict-video --engine ray: one video per call, read, its faces
    found, tracked and predicted as fercli.faces.video.VideoRun does it locally (this actor
    holds one: the model from the driver's bytes, the detector made here by name)."""

    def __init__(self, model, output_name: str, options, threads: int, plugins_dir=None):
        from dataclasses import replace

        from fercli.faces.video import VideoRun

        if not isinstance(model, bytes):
            import ray

            model = ray.get(model)
        if plugins_dir:
            from fercli.plugins import load_plugins_dir

            load_plugins_dir(plugins_dir)
        handle, path = tempfile.mkstemp(suffix=".onnx", prefix="fercli-actor-")
        with os.fdopen(handle, "wb") as f:
            f.write(model)
        try:  # the output's name only chooses the format
            self.run = VideoRun(path, Path(output_name), replace(options, threads=threads))
        finally:
            os.unlink(path)  # the session has read it

    def __call__(self, batch: dict) -> dict:
        import io
        import pickle

        from fercli.faces.video import VideoResult
        from fercli.progress import console

        results = []
        for path in batch["path"]:
            text, result = io.StringIO(newline=""), VideoResult(Path(), 1, 0, 0, 0)
            with console.capture() as captured:  # its lines go back to the driver
                log = self.run.video(str(path), text, result)
            done = (text.getvalue(), result, log, captured.get())
            results.append(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
        return {"index": batch["index"], "result": np.array(results, dtype=object)}


def video_logs(paths, run, f, result, *, model_path, output, actors, threads_per_actor):
    """predict-video's loop over the videos, one video per actor call: each video's rows
    written to `f` in the order given, its counts added to `result` (a VideoResult), as
    VideoRun.video does them locally; the TrackLogs, in order. `run`: the driver's VideoRun
    (its options and format). Runs on the cluster joined with `cluster()`."""
    import pickle

    from fercli.progress import say

    ray = import_ray()
    options = run.options
    batches = map_files(
        [str(p) for p in paths],
        VideoPredictor,
        dict(
            model=ray.put(_read_bytes(model_path)),
            output_name=Path(output).name,
            options=options,
            threads=threads_per_actor,
            plugins_dir=detector_plugins_dir(options.detector),
        ),
        batch_size=1,
        actors=actors,
        threads_per_actor=threads_per_actor,
        gpus_per_actor=1 if options.provider == "cuda" else 0,
    )
    logs = []
    for batch in batches:
        for done in batch["result"]:
            text, one, log, said = pickle.loads(done)
            for line in said.splitlines():
                say(line)
            f.write(text)
            result.frames += one.frames
            result.faces += one.faces
            result.no_face += one.no_face
            result.errors += one.errors
            result.tracks += len(log.tracks)
            logs.append(log)
    return logs


@contextmanager
def cluster(address: str | None):
    """Joined to the Ray cluster at `address` (None: a new local one) for the block, and left
    after it; a cluster this process had already joined is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        yield
        return
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise FercliError(
            f"cannot reach {where} ({first_line(str(exc))}): start one with `ray start --head` "
            "and pass its address with --ray-address, or leave --ray-address out for a local one."
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """A host:port that answers, checked in seconds (ray.init waits much longer)."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise FercliError(
            f"--ray-address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)."
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise FercliError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start one with "
            "`ray start --head` there, or leave --ray-address out for a local one."
        ) from None


def predict_chunks(
    chunks: list[list[str]],
    files: list[str],
    model_path,
    num_classes: int,
    *,
    provider: str,
    batch_size: int,
    tta: bool,
    actors: int | None,
    threads_per_actor: int,
):
    """(probabilities, {index in chunk: reason}) for each chunk of `files`, in order, as the
    local engine yields them; `chunks` are the files' output paths, cut as the output is.
    Runs on the cluster joined with `cluster()`."""
    ray = import_ray()
    batches = map_files(
        files,
        Predictor,
        dict(
            model=ray.put(_read_bytes(model_path)),  # once into the object store
            provider=provider,
            threads=threads_per_actor,
            batch_size=batch_size,
            tta=tta,
        ),
        batch_size=batch_size,
        actors=actors,
        threads_per_actor=threads_per_actor,
        gpus_per_actor=1 if provider == "cuda" else 0,  # a CUDA session wants its GPU
    )
    for part in _regroup(batches, [len(c) for c in chunks]):
        failed = part["failed"]
        errors = {i: str(part["error"][i]) for i in range(len(failed)) if failed[i]}
        yield np.asarray(part["probs"], np.float32).reshape(-1, num_classes), errors


def map_files(
    files: list[str],
    actor_class,
    constructor_kwargs: dict,
    *,
    batch_size: int,
    actors: int | None,
    threads_per_actor: int = 1,
    gpus_per_actor: float = 0,
    key: str = "path",
):
    """The batches (dicts of numpy columns, "index" among them) that a pool of `actor_class`
    actors returns for `files`, in the files' order: the Ray Data part of every command run
    with --engine ray. `actor_class(**constructor_kwargs)` is made once per actor and called
    with {"index", key} batches (key: "path", or what the items are); a file it cannot read
    must become a row, not an exception (one would abort the whole job). Runs on the cluster
    joined with `cluster()`."""
    ray = import_ray()
    from ray.data import ActorPoolStrategy, DataContext

    if not files:
        return

    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in the files' order
    context.enable_progress_bars = False  # fercli's own bar counts the rows
    if not settings["verbose"]:  # Ray Data's plan and timing lines, with -v only
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    actors = actor_count(actors, threads_per_actor, gpus_per_actor)
    dataset = ray.data.from_items([{"index": i, key: f} for i, f in enumerate(files)])
    # The arguments (the model's bytes among them) go into the object store once, held here
    # for the run, so that an actor Ray restarts after a crash reads them again.
    shipped = ray.put(constructor_kwargs)
    options = dict(
        fn_constructor_kwargs={"actor_class": actor_class, "shipped": [shipped]},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=actors),
        num_cpus=threads_per_actor,  # Ray's resources by name: CPUs, and GPUs for CUDA
        **({"num_gpus": gpus_per_actor} if gpus_per_actor else {}),
    )
    # A lost actor (a crash, the out-of-memory killer, a lost node) is restarted and its
    # batches run again: Ray Data's defaults, bounded (an actor that dies on every try
    # fails the run instead of retrying for ever). Ray 2.60 deprecates passing them so,
    # due to go in 2.64 with no other way yet; the `ray` extra stays below 2.61.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
        mapped = dataset.map_batches(
            _Shipped, max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS, **options
        )
    expected = 0
    for batch in mapped.iter_batches(batch_format="numpy"):
        index = np.asarray(batch["index"])
        if len(index) and (index[0] != expected or np.any(np.diff(index) != 1)):
            raise RuntimeError("Ray Data returned the rows out of order")
        expected += len(index)
        yield batch
    if expected != len(files):
        raise RuntimeError(f"Ray Data returned {expected} rows of {len(files)}")


class Cleaner:
    """A Ray Data actor for `fercli clean --engine ray`: fercli.cleaning.decode_chunk on a
    batch of files per call (48x48 arrays, pixel digests, perceptual hashes, errors)."""

    def __init__(self, hash_specs: list[tuple[str, int]]):
        from fercli.dataset import _one_thread
        from fercli.hashing import preload

        _one_thread()  # one CPU per actor, as one local decoding process
        preload([kind for kind, _ in hash_specs])
        self.hash_specs = [tuple(spec) for spec in hash_specs]

    def __call__(self, batch: dict) -> dict:
        from fercli.cleaning import decode_chunk

        paths = [str(p) for p in batch["path"]]
        images, errors, digests, hashes = decode_chunk(paths, self.hash_specs)
        failed = np.array([e is not None for e in errors])
        digest_bytes = np.zeros((len(paths), DIGEST_SIZE), np.uint8)
        for i, digest in enumerate(digests):
            if digest is not None:
                digest_bytes[i] = np.frombuffer(digest, np.uint8)
        columns = {
            "index": batch["index"],
            "images": images,
            "error": np.array([e or "" for e in errors], dtype=object),
            "failed": failed,
            "digest": digest_bytes,
        }
        for number, spec in enumerate(self.hash_specs):
            columns[f"hash{number}"] = hashes[spec]
        return columns


DIGEST_SIZE = 16  # fercli.cleaning.decode_chunk's blake2b digests


def clean_chunks(files: list[str], hash_specs: list[tuple[str, int]], *, chunk: int,
                 actors: int | None):  # fmt: skip
    """(first index, decode_chunk's result) for every `chunk` files, in order, as
    fercli.dataset.map_chunks yields them for decode_chunk locally."""
    batches = map_files(
        files, Cleaner, dict(hash_specs=hash_specs), batch_size=chunk, actors=actors
    )
    sizes = [min(chunk, len(files) - s) for s in range(0, len(files), chunk)]
    first = 0
    for part in _regroup(batches, sizes):
        failed = part["failed"]
        errors = [str(e) if bad else None for e, bad in zip(part["error"], failed)]
        digests = [None if bad else bytes(d) for d, bad in zip(part["digest"], failed)]
        hashes = {
            spec: np.asarray(part[f"hash{number}"], bool) for number, spec in enumerate(hash_specs)
        }
        images = np.asarray(part["images"], np.uint8)
        yield first, (images, errors, digests, hashes)
        first += len(images)


ACTOR_RESTARTS = 3  # times Ray restarts a lost actor, and retries a batch it was running


class _Shipped:
    """`actor_class(**kwargs)`, its kwargs read from the object store (see map_files): passed
    by reference inside a list, they are no constructor argument of Ray's, which would log
    that a restarted actor may find them gone."""

    def __init__(self, actor_class, shipped):
        import ray

        self.inner = actor_class(**ray.get(shipped[0]))

    def __call__(self, batch):
        return self.inner(batch)


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _regroup(batches, sizes: list[int]):
    """The actors' batches (dicts of columns) cut again into parts of `sizes` rows."""
    pending: dict[str, list] = {}
    held = 0
    for size in sizes:
        while held < size:
            batch = next(batches, None)
            if batch is None:
                raise RuntimeError(f"Ray Data returned fewer rows than {sum(sizes)}")
            for key, column in batch.items():
                pending.setdefault(key, []).append(np.asarray(column))
            held += len(batch["index"])
        joined = {key: np.concatenate(parts) for key, parts in pending.items()}
        yield {key: column[:size] for key, column in joined.items()}
        pending = {key: [column[size:]] for key, column in joined.items()}
        held -= size
    if held or next(batches, None) is not None:  # also runs map_files' count check
        raise RuntimeError(f"Ray Data returned more rows than {sum(sizes)}")
