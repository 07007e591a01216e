"""Batch prediction over a folder of images with onnxruntime (`fercli predict-dir`).

Files are decoded in worker processes with fercli.data.images (the training preprocessing); on
the CPU the workers also predict, elsewhere they decode a few batches ahead of this process's
session (fercli.predict.workers). Every image gets one output row,
CSV or JSON Lines by the output's suffix; an unreadable file gets `status=error` and the reason
and the run goes on. The output is written to a temporary file and renamed at the end, or,
with `resume`, appended batch by batch so that an interrupted run loses nothing. `Pipeline`
is the work without the output, which `predict_rows` (fercli.predict_dir, the Python API)
yields as rows instead.

No torch here (a test checks it): prediction needs only onnxruntime, numpy, Pillow and simplejpeg.
"""

import json
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from fercli import defaults
from fercli.data.dataset import QUARANTINE_DIR
from fercli.data.images import SUFFIXES, is_image_name
from fercli.errors import FercliError
from fercli.faces.detect import DEFAULT_DETECTOR, DEFAULT_MIN_FACE_SIZE
from fercli.predict import bundled, providers
from fercli.predict import record as predict_record
from fercli.predict.onnx_model import OnnxModel
from fercli.predict.output import (
    ENCODING,
    UNCERTAIN,
    abstain_rows,
    make_rows,
    output_format,
    read_existing,
)
from fercli.predict.workers import (
    Workers,
    chunked,
    decode_chunk,
    open_worker_session,
    predict_decoded,
    predict_in_worker,
    predictor,
)
from fercli.progress import bar, say, settings
from fercli.util import atomic_path, atomic_write_text

# Where the workers predict (on the CPU), they take at most this many images at a time: the
# first rows come sooner, and onnxruntime on one thread is no slower on such batches.
WORKER_CHUNK = 128
# A folder of fewer images than this is predicted (on the CPU, whole images) in this process
# with one session unless --workers says otherwise: starting the workers, each with a
# session of its own, costs more than they save on so few. Measured on 2 cores (the
# `fast` model, docs/benchmarks/predict.md): this process wins by 115 ms on 250 images,
# ties on 1,000-2,000, and the workers win on FER-2013's 3,589 test files.
SMALL_FOLDER = 1024
SMALL_SAMPLE = 8  # --faces auto: pictures looked at (their headers) to tell a small folder


# The file fercli leaves in the --annotate and --crops folders it writes to: find_images
# skips a subfolder holding it, so that one run's outputs are never the next run's photos.
OUTPUT_MARKER = ".fercli-output"


def find_images(root: str | os.PathLike, recursive: bool = True) -> tuple[list[str], int]:
    """Image files under root as sorted "/"-separated paths relative to root, and the number
    of other (non-image) files seen. Hidden files and folders, the quarantine and fercli's
    own output folders (those holding OUTPUT_MARKER) below root are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise FercliError(f"{root} is not a folder: pass the folder of images to predict.")
    found, others = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        if OUTPUT_MARKER in filenames and dirpath != str(root):
            dirnames[:] = []  # an --annotate or --crops folder: none of it is input
            continue
        dirnames[:] = (
            []
            if not recursive
            else sorted(d for d in dirnames if not d.startswith(".") and d != QUARANTINE_DIR)
        )
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if is_image_name(name):
                found.append(prefix + name)
            elif not name.startswith("."):
                others += 1
    return sorted(found), others


# ----------------------------------------------------------------------------- predict-dir


class Tally:
    """Counts per label, errors and (for --eval) true/predicted pairs, row by row: nothing
    per image is kept beyond that, so a folder of any size fits in memory."""

    def __init__(self, classes, evaluate: bool, below: float = 0.0):
        self.classes, self.below = classes, below  # below: --abstain
        self.index = {c: i for i, c in enumerate(classes)}
        self.counts = {c: 0 for c in classes}
        self.errors: list[tuple[str, str]] = []
        self.rows = 0
        self.no_face = 0  # --faces: pictures in which no face was found
        self.evaluate = evaluate
        self.y_true: list[int] = []
        self.y_pred: list[int] = []

    def add(self, row: dict) -> None:
        self.rows += 1
        if row["status"] == "no_face":
            self.no_face += 1
            return
        if row["status"] != "ok":
            self.errors.append((row["path"], row.get("error", "")))
            return
        self.counts[row["label"]] = self.counts.get(row["label"], 0) + 1
        if self.evaluate and row["label"] in self.index:
            self._pair(row["path"], self.index[row["label"]])

    def add_predicted(self, paths, probs, errors: dict) -> None:
        """add() for every row of a predicted chunk (make_rows' rows), a chunk at once."""
        self.rows += len(paths)
        self.errors += [(paths[i], reason) for i, reason in sorted(errors.items())]
        good = [i for i in range(len(paths)) if i not in errors]
        if not good:
            return
        labels = probs[good].argmax(axis=1)  # make_rows' label: the first largest
        answered = np.ones(len(good), bool)
        if self.below > 0:  # abstain_rows' rule, on the confidence as written
            answered = probs[good].max(axis=1).round(6) >= self.below
            self.counts[UNCERTAIN] = self.counts.get(UNCERTAIN, 0) + int((~answered).sum())
        counts = np.bincount(labels[answered], minlength=len(self.classes)).tolist()
        for c, n in zip(self.classes, counts):
            self.counts[c] += n
        if self.evaluate:
            for i, k, ok in zip(good, labels.tolist(), answered.tolist()):
                if ok:
                    self._pair(paths[i], k)

    def _pair(self, path: str, predicted: int) -> None:
        """--eval: the true class is the top folder's name, where it is one of the classes."""
        folder = path.split("/", 1)[0] if "/" in path else None
        if folder in self.index:
            self.y_true.append(self.index[folder])
            self.y_pred.append(predicted)

    def report(self) -> dict:
        """Accuracy, F1 and confusion matrix against the top folder's name
        (fercli.metrics.classification)."""
        from fercli.metrics.classification import classification_report

        if not self.y_true:
            raise FercliError(
                "--eval needs DIR laid out as DIR/<class>/<image> with class folders named "
                f"{', '.join(self.classes)}; none of the images is in such a folder."
            )
        report = classification_report(self.y_true, self.y_pred, self.classes)
        report["excluded"] = self.rows - len(self.y_true)
        return report


@dataclass
class PredictResult:
    output: Path
    model: Path
    provider: str
    classes: tuple[str, ...]
    total: int  # rows in the output
    new: int  # images predicted by this run
    resumed: int  # rows already in the output before this run
    errors: list[tuple[str, str]]  # (path, reason) over the whole output
    counts: dict[str, int]  # predicted label -> images, over the whole output
    other_files: int  # non-image files skipped
    seconds: float
    tta: bool = False  # probabilities averaged with the mirror images'
    eval: dict | None = None  # fercli.metrics.classification.classification_report, plus `excluded`
    summary_path: Path | None = None
    faces: str = "none"  # --faces: none (a row per image), auto or detect (a row per face)
    no_face: int = 0  # status=no_face rows (pictures without a face)
    new_images: int | None = None  # files read by this run (with --faces, rows are faces)
    engine: str = "local"  # local, or ray (fercli.predict.ray)

    @property
    def images_per_s(self) -> float:
        images = self.new if self.new_images is None else self.new_images
        return images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class PredictDirOptions:
    """What `fercli predict-dir` does besides naming the folder, the output and the model
    (its options, less --strict), checked when made: a wrong one is a FercliError in one
    line, worded as the command line's. The command builds one from its options; predict_dir
    and predict_rows take one, or its fields as keywords."""

    provider: str = defaults.PROVIDER  # auto, cpu, cuda or openvino (fercli.predict.providers)
    batch_size: int = defaults.BATCH_SIZE
    workers: int | None = None  # None: one per CPU core (a small folder: none)
    recursive: bool = True
    topk: int = defaults.TOPK
    resume: bool = False  # append to the output, skipping the images already in it
    evaluate: bool = False  # --eval: against the top folder's name
    threads: int | None = None  # onnxruntime's; None: all cores
    tta: bool = False  # average with the mirror image's probabilities
    write_summary: bool = True  # OUTPUT.summary.json
    faces: str = "none"  # the command line's default is defaults.FACES
    detector: str = DEFAULT_DETECTOR
    min_face_score: float | None = defaults.MIN_FACE_SCORE  # None: the detector's own
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    annotate: str | os.PathLike | None = None
    crops: str | os.PathLike | None = None
    engine: str = "local"  # or ray (fercli.predict.ray)
    ray_address: str | None = None
    actors: int | None = None
    threads_per_actor: int = defaults.THREADS_PER_ACTOR
    abstain: float = defaults.ABSTAIN  # label "uncertain" below this top probability

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """FercliError for an option out of its range or one that needs another."""
        if self.batch_size < 1:
            raise FercliError("--batch-size must be at least 1.")
        if not 0 <= self.abstain < 1:
            raise FercliError(
                "--abstain must be at least 0 (off) and below 1 (a probability), "
                f"not {self.abstain}."
            )
        if self.engine not in ("local", "ray"):
            raise FercliError(f"unknown engine {self.engine!r}: choose local or ray.")
        if self.engine == "local" and self.workers is not None and self.workers < 0:
            raise FercliError("--workers must be 0 (decode in this process) or more.")
        if self.faces == "none" and (self.annotate or self.crops):
            raise FercliError("--annotate and --crops need --faces auto or detect.")


def with_changes(options: PredictDirOptions | None, changes: dict) -> PredictDirOptions:
    """`options` (None: the defaults) with the fields in `changes` changed, checked."""
    return replace(options or PredictDirOptions(), **changes)


def ray_module(options: PredictDirOptions):
    """fercli.predict.ray for --engine ray, once its checks are passed (None for local): the
    local engine's sizes are refused, a missing extra is said before any work."""
    if options.engine != "ray":
        return None
    from fercli.predict import ray

    ray.refuse_local_sizes(
        "set --actors and --threads-per-actor", workers=options.workers, threads=options.threads
    )
    ray.import_ray()
    return ray


def images_to_predict(root: Path, recursive: bool) -> tuple[list[str], int]:
    """find_images, or FercliError where root holds no image."""
    paths, other_files = find_images(root, recursive)
    if not paths:
        raise FercliError(
            f"no images in {root} (looked for {', '.join(sorted(SUFFIXES))}"
            f"{'' if recursive else '; subfolders too with --recursive'})."
        )
    return paths, other_files


def face_stage(root: Path, options: PredictDirOptions, ray):
    """The face stage (fercli.predict.faces.FaceStage) of --faces auto or detect, None for
    none; with the Ray engine, its stand-in (the actors find the faces and write --annotate
    and --crops)."""
    if options.faces == "none":
        return None
    from fercli.predict.faces import FaceStage, keep_faces

    annotate = options.annotate
    if annotate and Path(annotate).resolve() == root.resolve():
        raise FercliError(
            f"--annotate {annotate} is the input folder: its copies would replace your "
            "photos; pass another folder."
        )
    keep = partial(keep_faces, min_score=options.min_face_score, min_size=options.min_face_size)
    stage = FaceStage(
        options.faces, options.detector, annotate, options.crops, keep=keep, below=options.abstain
    )
    if ray:
        ray.detector_plugins_dir(options.detector)  # one the actors cannot make: one line
        stage = ray.RemoteFaces(stage)
    return stage


# The code paths of predict-dir: each is a Route, which sizes the chunks and the workers,
# says what each worker opens as it starts, cuts the images into chunks and computes each
# chunk's outcome. Pipeline picks one; the loop over the outcomes is the same for all.


class Route:
    """A code path of predict-dir; a route keeps the chunk size and the workers asked for
    and cuts the images in chunks of that size, unless it says otherwise."""

    in_workers = False  # the workers also predict: this process reads only the metadata

    def __init__(self, run: "Pipeline"):
        self.run = run

    def sizes(self, batch_size: int, workers: int) -> tuple[int, int]:
        """The chunk size and the workers this route wants, of those asked for."""
        return batch_size, workers

    def setup(self, workers: int):
        """What each of the `workers` opens as it starts (None: nothing)."""
        return None

    def started(self, pool: Workers) -> "Route":
        """The route that runs on `pool`, as it started."""
        return self

    def cut(self, todo: list[str], batch_size: int) -> list[list[str]]:
        return [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        """Each chunk's outcome, in order, computed as asked for."""
        raise NotImplementedError


class Here(Route):
    """The workers decode (with none, this process does) and this process's session
    predicts: a small folder, and --faces none off the CPU."""

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        run = self.run
        info = run.onnx.info
        decoded = run.pool.map(partial(decode_chunk, size=info.image_size), run.files(chunks))
        n = len(info.classes)
        return (predict_decoded(*d, run.predict_proba, n) for d in decoded)


class CpuWorkers(Route):
    """--faces none on the CPU with workers: each decodes and predicts its chunks with a
    session of its own, opened as it starts (while this process sets up)."""

    in_workers = True

    def __init__(self, run: "Pipeline"):
        super().__init__(run)
        self.threads: int | None = None  # each worker's onnxruntime threads, once set up

    def sizes(self, batch_size: int, workers: int) -> tuple[int, int]:
        return min(batch_size, WORKER_CHUNK), workers

    def setup(self, workers: int):
        if workers <= 1:
            return None
        self.threads = max(1, (self.run.options.threads or os.cpu_count() or 1) // workers)
        return partial(open_worker_session, str(self.run.model_path), self.threads)

    def started(self, pool: Workers) -> Route:
        # one worker, or none: this process predicts (its chunks as cut for the workers)
        return self if self.threads is not None and pool.count > 1 else Here(self.run)

    def cut(self, todo: list[str], batch_size: int) -> list[list[str]]:
        return chunked(todo, batch_size, self.run.pool.count)

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        run = self.run
        work = partial(
            predict_in_worker, model_path=str(run.model_path), threads=self.threads,
            batch_size=run.batch_size, tta=run.options.tta,
        )  # fmt: skip
        return run.pool.map(work, run.files(chunks))


class LocalFaces(Route):
    """--faces auto or detect here: each worker finds the faces of its chunk (detection is
    slow: smaller chunks keep every worker busy), this process predicts them."""

    def sizes(self, batch_size: int, workers: int) -> tuple[int, int]:
        return self.run.stage.chunk_size(len(self.run.paths), batch_size, workers), workers

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        run = self.run
        return run.pool.map(run.stage.decode(run.onnx.info.image_size), run.files(chunks))


class RayFiles(Route):
    """--engine ray, --faces none: the actors decode and predict (fercli.predict.ray)."""

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        run = self.run
        files = [str(run.root / p) for chunk in chunks for p in chunk]
        classes = len(run.onnx.info.classes)
        return run.ray.predict_chunks(chunks, files, run.model_path, classes, run.actor_settings())


class RayFaces(Route):
    """--engine ray with faces: the actors find, align and predict the faces, a chunk per
    actor call, cut as small as for as many local workers as there are actors."""

    def sizes(self, batch_size: int, workers: int) -> tuple[int, int]:
        run, options = self.run, self.run.options
        gpus = 1 if options.provider == "cuda" else 0
        actors = run.ray.actor_count(options.actors, options.threads_per_actor, gpus)
        return run.stage.chunk_size(len(run.paths), batch_size, actors), 0

    def outcomes(self, chunks: list[list[str]]) -> Iterator:
        run = self.run
        return run.ray.face_chunks(
            chunks, run.root, run.stage.stage, run.model_path, run.actor_settings()
        )


class Pipeline:
    """What predict_dir and `fercli.predict_dir` (fercli.api) share, without an output file
    or a word printed: the checks, the images found under root, the model, the face stage,
    then (`start`) the route, the workers and the session, and (`results`) each chunk's
    outcome, in order. `options`: a PredictDirOptions, or its fields as keywords."""

    def __init__(
        self,
        root: str | os.PathLike,
        model: str | os.PathLike | None = None,
        options: PredictDirOptions | None = None,
        **changes,
    ):
        self.options = options = with_changes(options, changes)
        self.root = root = Path(root)
        self.ray = ray_module(options)
        workers = 0 if self.ray else options.workers  # with Ray the actors decode
        self.workers_given = workers is not None
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.paths, self.other_files = images_to_predict(root, options.recursive)
        self.model_path = bundled.model_path(model)
        self.stage = face_stage(root, options, self.ray)

    def start(self, stack: ExitStack) -> OnnxModel:
        """Start the workers (before onnxruntime) and open the session, both closed with
        `stack`: the session, whose `fallback` is for the caller to say."""
        options = self.options
        if self.ray:
            stack.enter_context(self.ray.cluster(options.ray_address))
        chosen = None  # providers.choose's answer, asked once (OnnxModel asks where not here)
        if self.workers > 1 and not self.stage and not self.ray:
            chosen = providers.choose(options.provider, self.model_path)
        on_cpu = chosen is not None and chosen[0] == "cpu"
        workers = self.workers
        if not self.workers_given and self.small_folder(on_cpu):
            workers = 0  # one session here: cheaper than starting workers (with theirs)
        route = self.pick_route(cpu_workers=workers > 1 and on_cpu)
        batch_size, workers = route.sizes(options.batch_size, workers)
        # One chunk is done in this process; more go to workers, started before onnxruntime.
        n_chunks = -(-len(self.paths) // batch_size)
        workers = min(workers, n_chunks) if n_chunks > 1 else 0
        self.pool = stack.enter_context(closing(Workers(workers, route.setup(workers))))
        self.route = route.started(self.pool)
        self.onnx = OnnxModel(
            self.model_path, options.provider, options.threads,
            metadata_only=self.route.in_workers, chosen=chosen,
        )  # fmt: skip
        self.batch_size = batch_size
        self.predict_proba = predictor(self.onnx, batch_size, options.tta)
        return self.onnx

    def pick_route(self, cpu_workers: bool) -> Route:
        """The code path of this run (cpu_workers: workers would predict on the CPU)."""
        if self.ray:
            return RayFaces(self) if self.stage else RayFiles(self)
        if self.stage:
            return LocalFaces(self)
        return CpuWorkers(self) if cpu_workers else Here(self)

    def small_folder(self, cpu_workers: bool) -> bool:
        """Whether the folder is small enough to predict here, without workers: fewer than
        SMALL_FOLDER images, whole (on the CPU, where each worker would open a session), or
        with --faces auto where a sample spread over the files holds only pictures that
        auto takes whole (FER-2013's 48x48: no face detection, which needs the workers)."""
        paths, stage = self.paths, self.stage
        if len(paths) >= SMALL_FOLDER or self.ray:
            return False
        if not stage:
            return cpu_workers
        if stage.mode != "auto":
            return False
        from PIL import Image

        from fercli.predict.faces import AUTO_MIN_SIDE

        step = max(1, len(paths) // SMALL_SAMPLE)
        for rel in paths[step // 2 :: step][:SMALL_SAMPLE]:
            try:
                with warnings.catch_warnings():  # Pillow's, for a huge picture: said where read
                    warnings.simplefilter("ignore")
                    with Image.open(self.root / rel) as im:  # its header only
                        if min(im.size) > AUTO_MIN_SIDE:
                            return False
            except Exception:  # unreadable: an error row, wherever it is read
                continue
        return True

    def actor_settings(self):
        """How the Ray actors run (fercli.predict.ray.ActorSettings)."""
        options = self.options
        return self.ray.ActorSettings(
            options.provider, self.batch_size, options.tta, options.actors,
            options.threads_per_actor,
        )  # fmt: skip

    def files(self, chunks: list[list[str]]) -> Iterator[list[str]]:
        """Each chunk's files, as paths to read."""
        return ([os.path.join(self.root, p) for p in chunk] for chunk in chunks)

    def whole_chunk(self, outcome):
        """A chunk's (probabilities, {index: reason}) where it needs no face rows: without
        --faces, or with --faces auto where every picture was taken whole or is unreadable (a
        FER-2013 folder); None where the stage makes its rows (the same rows, one by one)."""
        if not self.stage:
            return outcome
        from fercli.predict.faces import FaceStage

        if type(self.stage) is not FaceStage:  # the Ray engine's: its actors predicted
            return None
        crops, found = outcome
        if any(item.error is None and not item.whole for item in found):
            return None
        errors = {i: item.error for i, item in enumerate(found) if item.error is not None}
        probs = np.zeros((len(found), len(self.onnx.info.classes)), np.float32)
        if len(crops):  # one crop a picture taken whole, in order (as face_rows reads them)
            probs[[i for i, item in enumerate(found) if item.whole]] = self.predict_proba(crops)
        return probs, errors

    def results(self, todo: list[str]):
        """(chunk of todo, outcome) for every chunk, in order, computed as they are asked
        for: the outcome is (probabilities, {index: reason}), or with faces the stage's
        decoded chunk, for `stage.rows`."""
        chunks = self.route.cut(todo, self.batch_size)
        return zip(chunks, self.route.outcomes(chunks))


def check_topk(topk: int, classes) -> None:
    if not 0 <= topk <= len(classes):
        raise FercliError(f"--topk must be between 0 and {len(classes)} (the classes).")


def predict_rows(
    root: str | os.PathLike,
    model: str | os.PathLike | None = None,
    options: PredictDirOptions | None = None,
    **changes,
) -> Iterator[dict]:
    """predict_dir's rows, as dicts (its JSON Lines records), in its order, one chunk at a
    time, written nowhere and printed nowhere (resume, evaluate and write_summary are not
    looked at). The checks and the scan of root are done on the call, the workers and the
    model are started on the first row asked for."""
    run = Pipeline(root, model, options, **changes)
    topk, abstain = run.options.topk, run.options.abstain

    def rows():
        with ExitStack() as stack:
            classes = run.start(stack).info.classes
            check_topk(topk, classes)
            for chunk, done in run.results(run.paths):
                if run.stage:
                    yield from run.stage.rows(chunk, done, run.predict_proba, classes, topk)
                else:
                    yield from abstain_rows(make_rows(chunk, *done, classes, topk), abstain)

    return rows()


class NewOutput:
    """The output written anew: to a temporary file, renamed over it at the end."""

    def __init__(self, path: Path):
        self.path = path

    def prepare(self, record: dict | None, write_summary: bool) -> None:
        """Before any work: the checks of what is already there."""

    def done(self, fmt, tally: Tally, faces: bool) -> set[str]:
        """The images already in the output (their rows added to `tally`)."""
        return set()

    def open(self, stack: ExitStack):
        tmp = stack.enter_context(atomic_path(self.path))
        return stack.enter_context(open(tmp, "w", newline="", **ENCODING))

    def written(self, f) -> None:
        """A chunk's rows are written to `f`."""


class ResumedOutput(NewOutput):
    """--resume: the rows already in the output kept and counted, the new ones appended
    batch by batch, each batch flushed, so that an interrupted run loses nothing."""

    def prepare(self, record: dict | None, write_summary: bool) -> None:
        predict_record.check_resume(self.path, record)
        if write_summary:
            predict_record.write_started(self.path, record)

    def done(self, fmt, tally: Tally, faces: bool) -> set[str]:
        return read_existing(self.path, fmt, tally.add, faces=faces)

    def open(self, stack: ExitStack):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return stack.enter_context(open(self.path, "a", newline="", **ENCODING))

    def written(self, f) -> None:
        f.flush()  # every finished batch is safe on disk


def made_with(run: Pipeline) -> dict:
    """How the output is made (fercli.predict.record), which --resume checks; a missing model
    file is said first, in its one line."""
    options = run.options
    if not run.model_path.is_file():
        OnnxModel(run.model_path, "cpu", metadata_only=True)  # its one line
    # --topk changes the columns, which read_existing checks
    found_by = (options.detector, options.min_face_score, options.min_face_size)
    found_by = found_by if run.stage else (None, None, None)
    return predict_record.made_with(
        run.root, run.model_path, tta=options.tta, faces=options.faces,
        recursive=options.recursive,
        **dict(zip(("detector", "min_face_score", "min_face_size"), found_by)),
        **({"abstain": options.abstain} if options.abstain else {}),  # older records have none
    )  # fmt: skip


class Writing:
    """predict_dir's loop, one for every route: each chunk's rows written to the output,
    in order, and counted."""

    def __init__(self, run: Pipeline, output: NewOutput, onnx: OnnxModel):
        options, self.run, self.output = run.options, run, output
        self.classes, self.topk = onnx.info.classes, options.topk
        check_topk(self.topk, self.classes)
        columns = run.stage.columns if run.stage else ()
        self.fmt = output_format(output.path, self.classes, self.topk, columns, options.abstain)
        self.tally = Tally(self.classes, options.evaluate, options.abstain)
        done = output.done(self.fmt, self.tally, faces=bool(run.stage))
        self.resumed = self.tally.rows
        self.todo = [p for p in run.paths if p not in done]

    def write(self, stack: ExitStack) -> None:
        f = self.output.open(stack)
        self.fmt.start(f, new_file=f.tell() == 0)
        results = self.run.results(self.todo)
        with bar(len(self.todo), "Predicting") as progress:
            for chunk, outcome in results:
                whole = self.run.whole_chunk(outcome)  # every picture taken whole: as --faces none
                if whole is None:
                    self.faces(f, chunk, outcome)
                else:
                    probs, errors = whole
                    f.write(self.fmt.predicted_text(chunk, probs, errors))
                    self.tally.add_predicted(chunk, probs, errors)
                    self.output.written(f)
                progress.advance(len(chunk))
        f.close()

    def faces(self, f, chunk: list[str], outcome) -> None:
        """A chunk's face rows, in one write: Ctrl-C never splits a picture's faces."""
        stage = self.run.stage
        rows = stage.rows(chunk, outcome, self.run.predict_proba, self.classes, self.topk)
        f.write(self.fmt.text(rows))
        for row in rows:
            self.tally.add(row)
        self.output.written(f)
        stage.save_extras(self.run.root, chunk, rows, outcome)


def predict_dir(
    root: str | os.PathLike,
    output: str | os.PathLike,
    model: str | os.PathLike | None = None,
    options: PredictDirOptions | None = None,
    **changes,
) -> PredictResult:
    """Predict every image under root and write one row per image to output; `options`: a
    PredictDirOptions, or its fields as keywords. With tta, each image's probabilities are
    averaged with its mirror image's (twice the model time).

    faces="auto" or "detect": one row per face found by `detector` instead (see
    fercli.predict.faces), with copies of the pictures with the faces drawn in
    `annotate` and the aligned faces in `crops` where given, leaving out faces scoring below
    min_face_score or smaller than min_face_size pixels. abstain P (0 < P < 1): a row whose
    top probability is below P gets the label "uncertain" (fercli.predict.output.abstain_rows).
    resume: append to output the images not in it yet. engine "ray" decodes (and finds
    the faces) and predicts on a Ray cluster (fercli.predict.ray) instead of here; the output
    is the same, byte for byte."""
    start_time = time.perf_counter()
    options = with_changes(options, changes)
    root, output = Path(root), Path(output)
    if output.is_dir():
        raise FercliError(f"the output {output} is a folder: pass a file name ending in .csv.")
    run = Pipeline(root, model, options)
    out = (ResumedOutput if options.resume else NewOutput)(output)
    record = made_with(run) if options.write_summary or options.resume else None
    out.prepare(record, options.write_summary)

    with ExitStack() as stack:
        onnx = run.start(stack)
        if onnx.fallback and (not onnx.fallback_expected or settings["verbose"]):
            say(f"{onnx.fallback}: running on the CPU.")
        writing = Writing(run, out, onnx)
        todo, tally, paths = writing.todo, writing.tally, run.paths
        say(
            f"Predicting {len(todo)} images in {root} with {onnx.describe()}"
            + (", flip TTA" if options.tta else "")
            + (f" ({len(paths) - len(todo)} already in {output})" if len(todo) < len(paths) else "")
        )
        writing.write(stack)

    result = PredictResult(
        output=output,
        model=run.model_path,
        provider=onnx.provider,
        tta=options.tta,
        classes=writing.classes,
        total=tally.rows,
        new=tally.rows - writing.resumed,
        resumed=writing.resumed,
        errors=tally.errors,
        counts=tally.counts,
        other_files=run.other_files,
        seconds=time.perf_counter() - start_time,
        faces=options.faces,
        no_face=tally.no_face,
        new_images=len(todo),
        engine=options.engine,
    )
    if options.evaluate:
        result.eval = tally.report()
    if options.write_summary:
        result.summary_path = write_summary_file(result, onnx, record)
    return result


def write_summary_file(result: PredictResult, onnx: OnnxModel, record: dict | None) -> Path:
    """`OUTPUT.summary.json`: which model and provider made the output, counts, errors, speed,
    and how it was made (fercli.predict.record, which `--resume` checks)."""
    path = predict_record.summary_path(result.output)
    summary = {
        "output": str(result.output),
        "complete": True,
        "made_with": record,
        "model": str(result.model),
        "model_name": onnx.info.model,
        "precision": onnx.info.precision,
        "provider": result.provider,
        "provider_fallback": onnx.fallback or None,  # why auto did not take CUDA or OpenVINO
        "engine": result.engine,
        "tta": result.tta,
        "faces": result.faces,
        "no_face": result.no_face,
        "rows": result.total,
        "new": result.new,
        "resumed": result.resumed,
        "counts": result.counts,
        "errors": [{"path": p, "reason": r} for p, r in result.errors],
        "other_files_skipped": result.other_files,
        "seconds": round(result.seconds, 3),
        "images_per_s": round(result.images_per_s, 1),
        "eval": result.eval,
    }
    atomic_write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return path
