"""predict-dir and predict-video on Ray Data (`--engine ray`): the actors and the driver's
side of them, over fercli.engines.ray's `map_files`.

For predict-dir --faces none each actor holds one onnxruntime session made from the model's
bytes (sent from the driver, so the workers need no copy of the .onnx file) and decodes and
predicts a batch of files per call; the driver gets the results in order and writes the one
output file itself, row for row what the local engine writes.

With --faces auto or detect, each dataset row is one chunk of pictures, cut as the local
engine cuts them: a FacePredictor actor finds the faces (the detector made on its node by
name), aligns and predicts them and writes the chunk's --annotate and --crops files; the
driver makes the rows from the probabilities and faces it sends back (RemoteFaces). For
predict-video each row is one video, which a VideoPredictor reads, tracks and predicts as
fercli.predict.video.VideoRun does locally; the driver writes its rows in the order given.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fercli.engines.ray import (
    actor_count,
    cluster,
    import_ray,
    map_files,
    read_bytes,
    refuse_local_sizes,
    regroup,
)
from fercli.errors import FercliError

__all__ = [  # the engine's own parts that predict-dir and predict-video call, and this module's
    "ActorSettings",
    "FacePredictor",
    "Predictor",
    "RemoteFaces",
    "VideoPredictor",
    "actor_count",
    "cluster",
    "detector_plugins_dir",
    "face_chunks",
    "import_ray",
    "predict_chunks",
    "refuse_local_sizes",
    "video_logs",
]


class Predictor:
    """A Ray Data actor: one onnxruntime session, a batch of files per call."""

    def __init__(self, model, provider: str, threads: int, batch_size: int, tta: bool):
        """model: the .onnx file's bytes, or a Ray object reference to them."""
        from fercli.predict.onnx_model import OnnxModel

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
        from fercli.predict.workers import predict_files

        paths = [str(p) for p in batch["path"]]
        # as fercli.predict.folder does it, so that the rows come out the same
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
    detector made here by name (fercli.predict.faces.decode_faces, as a local worker
    finds them), aligns and predicts with its own session, and whose --annotate and --crops
    files it writes itself (atomically, as the local engine names them)."""

    def __init__(self, model, provider, threads, batch_size, tta, stage, root, plugins_dir=None):
        """stage: the driver's FaceStage (its mode, detector name, filters and folders);
        root: the input folder (absolute); plugins_dir: the folder of the plugin file that
        registers the detector, loaded here too."""
        super().__init__(model, provider, threads, batch_size, tta)
        from fercli.predict.faces import reset_detectors
        from fercli.predict.workers import predictor

        if plugins_dir:
            from fercli.plugins import load_plugins_dir

            load_plugins_dir(plugins_dir)
        reset_detectors()
        self.stage, self.root = stage, root
        self.decode = stage.decode(self.model.info.image_size)
        self.predict_proba = predictor(self.model, batch_size, tta)

    def __call__(self, batch: dict) -> dict:
        import pickle

        from fercli.predict.faces import face_rows
        from fercli.predict.output import abstain_rows
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
    fercli.predict.folder's loop asks it for each chunk's rows (made from the probabilities and
    faces the actors found, as FaceStage.rows makes them) and to save the extras (already
    written by the actors: it only says what they said)."""

    def __init__(self, stage):
        self.stage, self.columns = stage, stage.columns

    def chunk_size(self, images: int, batch_size: int, actors: int) -> int:
        return self.stage.chunk_size(images, batch_size, actors)

    def rows(self, chunk, outcome, predict_proba, classes, topk) -> list[dict]:
        from fercli.predict.faces import face_rows
        from fercli.predict.output import abstain_rows

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


@dataclass(frozen=True)
class ActorSettings:
    """How predict-dir's actors run: each one's provider, batch size, flip TTA and threads,
    and how many there are (None: as many as the cluster holds)."""

    provider: str
    batch_size: int
    tta: bool
    actors: int | None = None
    threads_per_actor: int = 1

    @property
    def gpus(self) -> int:
        return 1 if self.provider == "cuda" else 0  # a CUDA session wants its GPU

    def session(self) -> dict:
        """Predictor's arguments (besides the model)."""
        return dict(
            provider=self.provider,
            threads=self.threads_per_actor,
            batch_size=self.batch_size,
            tta=self.tta,
        )


def face_chunks(
    chunks: list[list[str]], root, stage, model_path, settings: ActorSettings | None = None, **given
):
    """(probabilities of the faces, [Found per picture], lines the actor said) for each
    chunk of `root`'s pictures (paths relative to it), in order, one chunk per actor call:
    RemoteFaces.rows' outcome. `settings`, or its fields as keywords. Runs on the cluster
    joined with `cluster()`."""
    import pickle

    settings = settings or ActorSettings(**given)
    ray = import_ray()
    batches = map_files(
        [json.dumps(chunk) for chunk in chunks],
        FacePredictor,
        dict(
            model=ray.put(read_bytes(model_path)),
            **settings.session(),
            stage=stage,
            root=os.path.abspath(root),  # the actors' working folder is not this one's
            plugins_dir=detector_plugins_dir(stage.detector_name),
        ),
        batch_size=1,
        actors=settings.actors,
        threads_per_actor=settings.threads_per_actor,
        gpus_per_actor=settings.gpus,
        key="chunk",
    )
    for batch in batches:
        for result in batch["result"]:
            yield pickle.loads(result)


class VideoPredictor:
    """A Ray Data actor for predict-video --engine ray: one video per call, read, its faces
    found, tracked and predicted as fercli.predict.video.VideoRun does it locally (this actor
    holds one: the model from the driver's bytes, the detector made here by name)."""

    def __init__(self, model, output_name: str, options, threads: int, plugins_dir=None):
        from dataclasses import replace

        from fercli.predict.video import VideoRun

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

        from fercli.predict.video import VideoResult
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
            model=ray.put(read_bytes(model_path)),
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


def predict_chunks(
    chunks: list[list[str]],
    files: list[str],
    model_path,
    num_classes: int,
    settings: ActorSettings | None = None,
    **given,
):
    """(probabilities, {index in chunk: reason}) for each chunk of `files`, in order, as the
    local engine yields them; `chunks` are the files' output paths, cut as the output is.
    `settings`, or its fields as keywords. Runs on the cluster joined with `cluster()`."""
    settings = settings or ActorSettings(**given)
    ray = import_ray()
    batches = map_files(
        files,
        Predictor,
        dict(model=ray.put(read_bytes(model_path)), **settings.session()),  # once into the store
        batch_size=settings.batch_size,
        actors=settings.actors,
        threads_per_actor=settings.threads_per_actor,
        gpus_per_actor=settings.gpus,
    )
    for part in regroup(batches, [len(c) for c in chunks]):
        failed = part["failed"]
        errors = {i: str(part["error"][i]) for i in range(len(failed)) if failed[i]}
        yield np.asarray(part["probs"], np.float32).reshape(-1, num_classes), errors
