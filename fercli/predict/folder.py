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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

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

DEFAULT_BATCH_SIZE = 256
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


class Pipeline:
    """What predict_dir and `fercli.predict_dir` (fercli.api) share, without an output file
    or a word printed: the checks, the images found under root, the model, the face stage,
    then (`start`) the workers and the session, and (`results`) each chunk's outcome, in
    order. The options are predict_dir's."""

    def __init__(
        self,
        root: str | os.PathLike,
        model: str | os.PathLike | None = None,
        *,
        provider: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        workers: int | None = None,
        recursive: bool = True,
        threads: int | None = None,
        tta: bool = False,
        faces: str = "none",
        detector: str = DEFAULT_DETECTOR,
        min_face_score: float | None = None,
        min_face_size: int = DEFAULT_MIN_FACE_SIZE,
        annotate: str | os.PathLike | None = None,
        crops: str | os.PathLike | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        actors: int | None = None,
        threads_per_actor: int = 1,
        abstain: float = 0.0,
    ):
        root = Path(root)
        if not 0 <= abstain < 1:
            raise FercliError(
                f"--abstain must be at least 0 (off) and below 1 (a probability), not {abstain}."
            )
        if batch_size < 1:
            raise FercliError("--batch-size must be at least 1.")
        if engine not in ("local", "ray"):
            raise FercliError(f"unknown engine {engine!r}: choose local or ray.")
        if engine == "ray":
            from fercli.predict import ray as ray_engine

            ray_engine.refuse_local_sizes(
                "set --actors and --threads-per-actor", workers=workers, threads=threads
            )
            ray_engine.import_ray()  # a missing extra is said before any work
            workers = 0  # the actors decode
        else:
            ray_engine = None
        self.workers_given = workers is not None
        workers = (os.cpu_count() or 1) if workers is None else workers
        if workers < 0:
            raise FercliError("--workers must be 0 (decode in this process) or more.")
        paths, other_files = find_images(root, recursive)
        if not paths:
            raise FercliError(
                f"no images in {root} (looked for {', '.join(sorted(SUFFIXES))}"
                f"{'' if recursive else '; subfolders too with --recursive'})."
            )
        model_path = bundled.model_path(model)
        stage = None
        if faces != "none":
            from fercli.predict.faces import FaceStage, keep_faces

            if annotate and Path(annotate).resolve() == Path(root).resolve():
                raise FercliError(
                    f"--annotate {annotate} is the input folder: its copies would replace your "
                    "photos; pass another folder."
                )
            keep = partial(keep_faces, min_score=min_face_score, min_size=min_face_size)
            stage = FaceStage(faces, detector, annotate, crops, keep=keep, below=abstain)
            if ray_engine:  # the actors find the faces, and write --annotate and --crops
                ray_engine.detector_plugins_dir(detector)  # one they cannot make: one line
                stage = ray_engine.RemoteFaces(stage)
        elif annotate or crops:
            raise FercliError("--annotate and --crops need --faces auto or detect.")
        self.root, self.paths, self.other_files = root, paths, other_files
        self.model_path, self.stage, self.ray_engine = model_path, stage, ray_engine
        self.provider, self.batch_size, self.workers, self.threads = (
            provider,
            batch_size,
            workers,
            threads,
        )
        self.tta, self.engine, self.ray_address = tta, engine, ray_address
        self.abstain = abstain
        self.actors, self.threads_per_actor = actors, threads_per_actor

    def start(self, stack: ExitStack) -> OnnxModel:
        """Start the workers (before onnxruntime) and open the session, both closed with
        `stack`: the session, whose `fallback` is for the caller to say."""
        stage, ray_engine, paths = self.stage, self.ray_engine, self.paths
        batch_size, workers, threads = self.batch_size, self.workers, self.threads
        if ray_engine:
            stack.enter_context(ray_engine.cluster(self.ray_address))
        chosen = None  # providers.choose's answer, asked once (OnnxModel asks where not here)
        if workers > 1 and not stage and not ray_engine:
            chosen = providers.choose(self.provider, self.model_path)
        on_cpu = chosen is not None and chosen[0] == "cpu"
        if not self.workers_given and self.small_folder(on_cpu):
            workers = 0  # one session here: cheaper than starting workers (with theirs)
        # One chunk is done in this process; more go to workers, started before onnxruntime.
        if stage:  # detection is slow: smaller chunks keep every worker (or actor) busy
            if ray_engine:
                gpus = 1 if self.provider == "cuda" else 0
                workers = ray_engine.actor_count(self.actors, self.threads_per_actor, gpus)
            batch_size = stage.chunk_size(len(paths), batch_size, workers)
            workers = 0 if ray_engine else workers
        cpu_workers = workers > 1 and on_cpu  # the workers will predict
        if cpu_workers:
            batch_size = min(batch_size, WORKER_CHUNK)
        n_chunks = -(-len(paths) // batch_size)
        workers = min(workers, n_chunks) if n_chunks > 1 else 0
        setup = None
        if cpu_workers and workers > 1:  # each opens its session now, while this one sets up
            self.worker_threads = max(1, (threads or os.cpu_count() or 1) // workers)
            setup = partial(open_worker_session, str(self.model_path), self.worker_threads)
        self.pool = stack.enter_context(closing(Workers(workers, setup)))
        self.in_workers = setup is not None and self.pool.count > 1  # each decodes and predicts
        self.onnx = OnnxModel(
            self.model_path, self.provider, threads, metadata_only=self.in_workers, chosen=chosen
        )
        self.batch_size = batch_size
        self.predict_proba = predictor(self.onnx, batch_size, self.tta)
        return self.onnx

    def small_folder(self, cpu_workers: bool) -> bool:
        """Whether the folder is small enough to predict here, without workers: fewer than
        SMALL_FOLDER images, whole (on the CPU, where each worker would open a session), or
        with --faces auto where a sample spread over the files holds only pictures that
        auto takes whole (FER-2013's 48x48: no face detection, which needs the workers)."""
        paths, stage = self.paths, self.stage
        if len(paths) >= SMALL_FOLDER or self.ray_engine:
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
        root, info, pool, batch_size = self.root, self.onnx.info, self.pool, self.batch_size
        if self.in_workers:
            chunks = chunked(todo, batch_size, pool.count)
        else:
            chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        files = ([os.path.join(root, p) for p in chunk] for chunk in chunks)
        if self.engine == "ray" and self.stage:  # the actors find, align and predict faces
            predicted = self.ray_engine.face_chunks(
                chunks, root, self.stage.stage, self.model_path, provider=self.provider,
                batch_size=batch_size, tta=self.tta, actors=self.actors,
                threads_per_actor=self.threads_per_actor,
            )  # fmt: skip
        elif self.engine == "ray":
            predicted = self.ray_engine.predict_chunks(
                chunks, [str(root / p) for p in todo], self.model_path, len(info.classes),
                provider=self.provider, batch_size=batch_size, tta=self.tta, actors=self.actors,
                threads_per_actor=self.threads_per_actor,
            )  # fmt: skip
        elif self.stage:  # each worker finds the faces of its chunk
            predicted = pool.map(self.stage.decode(info.image_size), files)
        elif self.in_workers:
            work = partial(
                predict_in_worker, model_path=str(self.model_path), threads=self.worker_threads,
                batch_size=batch_size, tta=self.tta,
            )  # fmt: skip
            predicted = pool.map(work, files)
        else:  # the workers decode, this process's session predicts
            decoded = pool.map(partial(decode_chunk, size=info.image_size), files)
            n = len(info.classes)
            predicted = (predict_decoded(*d, self.predict_proba, n) for d in decoded)
        return zip(chunks, predicted)


def check_topk(topk: int, classes) -> None:
    if not 0 <= topk <= len(classes):
        raise FercliError(f"--topk must be between 0 and {len(classes)} (the classes).")


def predict_rows(
    root: str | os.PathLike, model: str | os.PathLike | None = None, *, topk: int = 0, **options
) -> Iterator[dict]:
    """predict_dir's rows, as dicts (its JSON Lines records), in its order, one chunk at a
    time, written nowhere and printed nowhere; the options are Pipeline's. The checks and
    the scan of root are done on the call, the workers and the model are started on the
    first row asked for."""
    run = Pipeline(root, model, **options)

    def rows():
        with ExitStack() as stack:
            classes = run.start(stack).info.classes
            check_topk(topk, classes)
            for chunk, done in run.results(run.paths):
                if run.stage:
                    yield from run.stage.rows(chunk, done, run.predict_proba, classes, topk)
                else:
                    yield from abstain_rows(make_rows(chunk, *done, classes, topk), run.abstain)

    return rows()


def predict_dir(
    root: str | os.PathLike,
    output: str | os.PathLike,
    model: str | os.PathLike | None = None,
    *,
    provider: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    recursive: bool = True,
    topk: int = 0,
    resume: bool = False,
    evaluate: bool = False,
    threads: int | None = None,
    tta: bool = False,
    write_summary: bool = True,
    faces: str = "none",
    detector: str = DEFAULT_DETECTOR,
    min_face_score: float | None = None,
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
    annotate: str | os.PathLike | None = None,
    crops: str | os.PathLike | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int | None = None,
    threads_per_actor: int = 1,
    abstain: float = 0.0,
) -> PredictResult:
    """Predict every image under root and write one row per image to output; with tta, each
    image's probabilities are averaged with its mirror image's (twice the model time).

    faces="auto" or "detect": one row per face found by `detector` instead (see
    fercli.predict.faces), with copies of the pictures with the faces drawn in
    `annotate` and the aligned faces in `crops` where given, leaving out faces scoring below
    min_face_score or smaller than min_face_size pixels. abstain P (0 < P < 1): a row whose
    top probability is below P gets the label "uncertain" (fercli.predict.output.abstain_rows).
    engine "ray" decodes (and finds
    the faces) and predicts on a Ray cluster (fercli.predict.ray) instead of here; the output
    is the same, byte for byte."""
    start_time = time.perf_counter()
    root, output = Path(root), Path(output)
    if batch_size < 1:
        raise FercliError("--batch-size must be at least 1.")
    if output.is_dir():
        raise FercliError(f"the output {output} is a folder: pass a file name ending in .csv.")
    run = Pipeline(
        root, model, provider=provider, batch_size=batch_size, workers=workers,
        recursive=recursive, threads=threads, tta=tta, faces=faces, detector=detector,
        min_face_score=min_face_score, min_face_size=min_face_size, annotate=annotate,
        crops=crops, engine=engine, ray_address=ray_address, actors=actors,
        threads_per_actor=threads_per_actor, abstain=abstain,
    )  # fmt: skip
    paths, model_path, stage = run.paths, run.model_path, run.stage

    record = None
    if write_summary or resume:
        if not model_path.is_file():
            OnnxModel(model_path, "cpu", metadata_only=True)  # its one line
        # --topk changes the columns, which read_existing checks
        found_by = (detector, min_face_score, min_face_size) if stage else (None, None, None)
        record = predict_record.made_with(
            root, model_path, tta=tta, faces=faces, recursive=recursive,
            **dict(zip(("detector", "min_face_score", "min_face_size"), found_by)),
            **({"abstain": abstain} if abstain else {}),  # older records have none
        )  # fmt: skip
    if resume:
        predict_record.check_resume(output, record)
        if write_summary:
            predict_record.write_started(output, record)

    with ExitStack() as stack:
        onnx = run.start(stack)
        if onnx.fallback and (not onnx.fallback_expected or settings["verbose"]):
            say(f"{onnx.fallback}: running on the CPU.")
        classes = onnx.info.classes
        check_topk(topk, classes)
        fmt = output_format(output, classes, topk, stage.columns if stage else (), abstain)
        tally = Tally(classes, evaluate, abstain)
        done = read_existing(output, fmt, tally.add, faces=bool(stage)) if resume else set()
        resumed = tally.rows
        todo = [p for p in paths if p not in done]
        say(
            f"Predicting {len(todo)} images in {root} with {onnx.describe()}"
            + (", flip TTA" if tta else "")
            + (f" ({len(paths) - len(todo)} already in {output})" if len(todo) < len(paths) else "")
        )
        if resume:
            output.parent.mkdir(parents=True, exist_ok=True)
            f = stack.enter_context(open(output, "a", newline="", **ENCODING))
        else:
            tmp = stack.enter_context(atomic_path(output))
            f = stack.enter_context(open(tmp, "w", newline="", **ENCODING))
        fmt.start(f, new_file=f.tell() == 0)
        results = run.results(todo)
        with bar(len(todo), "Predicting") as progress:
            for chunk, outcome in results:
                whole = run.whole_chunk(outcome)  # every picture taken whole: as --faces none
                if whole is None:
                    # one write per batch: Ctrl-C never splits a picture's faces
                    rows = stage.rows(chunk, outcome, run.predict_proba, classes, topk)
                    f.write(fmt.text(rows))
                    for row in rows:
                        tally.add(row)
                    if resume:
                        f.flush()
                    stage.save_extras(root, chunk, rows, outcome)
                else:
                    probs, errors = whole
                    f.write(fmt.predicted_text(chunk, probs, errors))
                    tally.add_predicted(chunk, probs, errors)
                    if resume:
                        f.flush()  # every finished batch is safe on disk
                progress.advance(len(chunk))
        f.close()

    result = PredictResult(
        output=output,
        model=model_path,
        provider=onnx.provider,
        tta=tta,
        classes=classes,
        total=tally.rows,
        new=tally.rows - resumed,
        resumed=resumed,
        errors=tally.errors,
        counts=tally.counts,
        other_files=run.other_files,
        seconds=time.perf_counter() - start_time,
        faces=faces,
        no_face=tally.no_face,
        new_images=len(todo),
        engine=engine,
    )
    if evaluate:
        result.eval = tally.report()
    if write_summary:
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
