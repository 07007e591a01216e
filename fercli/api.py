"""fercli's Python API: `fercli.Predictor`, `fercli.predict_dir`, `fercli.clean_dataset`.

`import fercli` stays light: these names are loaded from here on first use (the package's
module-level __getattr__), and onnxruntime only when a model is first run. Nothing here
prints: what the command line would say goes to the `fercli` logger (fercli.progress.logged),
and nothing is written but what is asked for. docs/python-api.md has the examples.

Every image goes through the preprocessing that `fercli predict-dir` applies to a file
(fercli.data.images; with faces, fercli.predict.faces), so a picture gives the numbers
predict-dir writes for it, whether it comes as a file, a Pillow image or a numpy array.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Union

import numpy as np
from PIL import Image

from fercli import defaults, registry
from fercli.data.images import ImageError, load_image, to_array, upright_gray
from fercli.errors import FercliError
from fercli.faces.detect import DEFAULT_DETECTOR, DEFAULT_MIN_FACE_SIZE
from fercli.predict import bundled, providers
from fercli.predict import folder as predict
from fercli.predict.faces import MODES, Found, face_rows, faces_in, keep_faces, read_faces
from fercli.predict.output import abstain_rows
from fercli.progress import logged
from fercli.util import first_line

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # Python 3.10: typing_extensions' where installed (type checkers, typing.get_type_hints)
    try:
        from typing_extensions import Unpack
    except ImportError:
        pass

if TYPE_CHECKING:
    from fercli.predict.onnx_model import OnnxModel

__all__ = ["Prediction", "Predictor", "predict_dir", "clean_dataset", "FercliError"]

log = logging.getLogger("fercli")
log.addHandler(logging.NullHandler())  # quiet unless the application configures logging

# What Predictor.predict takes: a file, a Pillow image, or a numpy array.
ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

# predict-dir's own defaults (fercli.defaults), so that the two never drift apart.
DEFAULT_BATCH_SIZE: int = defaults.BATCH_SIZE
DEFAULT_MODEL = bundled.DEFAULT


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """One face's prediction: the numbers of its row in `fercli predict-dir`'s output.

    box: (x, y, width, height) of the face in the picture's own pixels (EXIF orientation
    applied), or None where the whole picture was taken as the face (faces="none", or a
    small picture under faces="auto"); face_score and face_size (the box's shorter side)
    likewise. probabilities: every class's, rounded to 6 digits as predict-dir writes them;
    label and confidence: the most probable class (the first of equals) and its
    probability; label "uncertain" where that is below the Predictor's abstain."""

    label: str
    confidence: float
    probabilities: dict[str, float] = field(hash=False)
    box: tuple[int, int, int, int] | None = None
    face_score: float | None = None
    face_size: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Prediction:
        """The Prediction of an `ok` row as predict-dir makes it (fercli.predict.output)."""
        box = row.get("box")
        return cls(
            label=row["label"],
            confidence=row["confidence"],
            probabilities=dict(row["probabilities"]),
            box=None if box is None else (int(box[0]), int(box[1]), int(box[2]), int(box[3])),
            face_score=row.get("face_score"),
            face_size=row.get("face_size"),
        )


def _check_choice(what: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise FercliError(f"{what} must be one of {', '.join(choices)}, not {value!r}.")


def _check_keywords(function: str, given: dict[str, Any], allowed: type) -> None:
    """The TypeError Python raises for a keyword `function` does not take (`allowed`: the
    TypedDict of its **options)."""
    for name in given:
        if name not in allowed.__optional_keys__:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")


class FaceChoice(TypedDict, total=False):
    """Predictor's keyword-only options: which faces count, and where it abstains."""

    min_face_score: float | None  # None: the detector's own (defaults.MIN_FACE_SCORE)
    min_face_size: int  # fercli.faces.detect.DEFAULT_MIN_FACE_SIZE
    abstain: float  # 0: off (defaults.ABSTAIN)


class FolderOptions(TypedDict, total=False):
    """fercli.predict_dir's options: predict-dir's, with its defaults (faces "auto")."""

    model: str | os.PathLike[str]
    faces: str
    provider: str
    detector: str
    threads: int | None
    tta: bool
    min_face_score: float | None
    min_face_size: int
    topk: int
    recursive: bool
    batch_size: int
    workers: int | None
    engine: str
    ray_address: str | None
    actors: int | None
    threads_per_actor: int


class Predictor:
    """A model ready to predict pictures, one at a time (`predict`) or in batches
    (`predict_many`), as `fercli predict-dir` predicts files.

    model: a bundled model's name ("fast", "accurate") or a .onnx file from `fercli
    export-onnx`. faces: "auto" (predict-dir's default: look for faces in pictures whose
    shorter side exceeds 96 pixels, take a smaller one, such as a FER-2013 image, as the
    face), "detect" (always look) or "none" (the whole picture is the face, its centre
    square). provider: onnxruntime's execution provider (auto, cpu, cuda, openvino).
    detector: the face detector (built in or a plugin's; `fercli plugins`). threads:
    onnxruntime threads (None: all cores). tta: average each face's probabilities with its
    mirror image's. min_face_score, min_face_size: leave out faces the detector scores
    lower or whose box is smaller (predict-dir's --min-face-score, --min-face-size;
    min_face_score None: the detector's own default, fercli.faces.detect.default_min_score).
    abstain: a face whose top probability is below it gets the label "uncertain" (its
    probabilities kept; predict-dir's --abstain; 0: off).

    The model and the detector are opened on first use; one Predictor may be used from
    several threads at once."""

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        faces: str = defaults.FACES,
        provider: str = defaults.PROVIDER,
        detector: str = DEFAULT_DETECTOR,
        threads: int | None = None,
        tta: bool = False,
        **choice: Unpack[FaceChoice],
    ) -> None:
        _check_keywords("Predictor", choice, FaceChoice)
        abstain = choice.get("abstain", defaults.ABSTAIN)
        _check_choice("faces", faces, MODES)
        if not 0 <= abstain < 1:
            raise FercliError(f"abstain must be at least 0 (off) and below 1, not {abstain}.")
        self.abstain = abstain
        _check_choice("provider", provider, providers.CHOICES)
        if threads is not None and threads < 1:
            raise FercliError(f"threads must be at least 1 (or None: all cores), not {threads}.")
        self.model_path: Path = bundled.model_path(model)
        if not self.model_path.is_file():
            raise FercliError(
                f"model {self.model_path} not found: pass a bundled model's name "
                f"({', '.join(bundled.BUNDLED)}) or a .onnx file made by `fercli export-onnx`."
            )
        self.faces, self.provider, self.detector_name = faces, provider, detector
        self.threads, self.tta = threads, tta
        if faces != "none":
            logged(registry.get, "detector", detector)  # unknown: one line naming the choices
        self._keep = partial(
            keep_faces,
            min_score=choice.get("min_face_score", defaults.MIN_FACE_SCORE),
            min_size=choice.get("min_face_size", DEFAULT_MIN_FACE_SIZE),
        )
        self._lock = threading.Lock()
        self._model: OnnxModel | None = None
        self._detector: Any = None

    def __repr__(self) -> str:
        return (
            f"Predictor(model={str(self.model_path)!r}, faces={self.faces!r}, "
            f"provider={self.provider!r}, detector={self.detector_name!r}, tta={self.tta})"
        )

    # ------------------------------------------------------------------ opened on first use

    @property
    def model(self) -> OnnxModel:
        """The onnxruntime session (fercli.predict.onnx_model.OnnxModel), opened on first use."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = logged(self._open_model)
        return self._model

    def _open_model(self) -> OnnxModel:
        from fercli.predict.onnx_model import OnnxModel

        model = OnnxModel(self.model_path, self.provider, self.threads)
        if model.fallback:  # what predict-dir says on stderr
            level = logging.INFO if model.fallback_expected else logging.WARNING
            log.log(level, "%s: running on the CPU.", model.fallback)
        return model

    def _get_detector(self) -> Any:
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    self._detector = logged(registry.create, "detector", self.detector_name)
        return self._detector

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's classes, in the order of its probabilities."""
        return self.model.info.classes

    # ------------------------------------------------------------------ predicting

    def predict(self, image: ImageInput) -> list[Prediction]:
        """The faces of one picture, left to right: a file (str or Path), a Pillow image,
        or a numpy array, grey (H, W) or RGB/RGBA (H, W, 3 or 4), uint8 or float in 0-1, of
        any size. An empty list where faces are looked for and none is found. Raises
        FercliError for what cannot be read."""
        results, failure = self._predict_batch([image])
        if failure is not None:
            raise failure
        return results[0]

    def predict_many(
        self, images: Iterable[ImageInput], batch_size: int = 64
    ) -> Iterator[list[Prediction]]:
        """predict() for each picture, in order, batch_size pictures at a time, each batch's
        faces in one call of the model. A picture that cannot be read raises FercliError
        (naming its position) once those before it are yielded."""
        if batch_size < 1:
            raise FercliError(f"batch_size must be at least 1, not {batch_size}.")
        return self._batches(iter(images), batch_size)

    def _batches(self, images: Iterator[ImageInput], batch_size: int) -> Iterator[list[Prediction]]:
        first = 0
        while batch := list(islice(images, batch_size)):
            results, failure = self._predict_batch(batch)
            yield from results
            if failure is not None:
                raise FercliError(f"image {first + len(results)}: {failure}")
            first += len(batch)

    def _predict_batch(
        self, images: list[ImageInput]
    ) -> tuple[list[list[Prediction]], FercliError | None]:
        """The predictions of the pictures up to the first that cannot be read, and its
        error (None where all can be)."""
        size = self.model.info.image_size
        found: list[Found] = []
        crops: list[np.ndarray] = []
        failure = None
        for image in images:
            try:
                item, arrays = self._decode(image, size)
            except FercliError as exc:
                failure = exc
                break
            found.append(item)
            if arrays is not None:
                crops.append(arrays)
        results: list[list[Prediction]] = [[] for _ in found]
        if found:
            model = self.model
            faces = np.concatenate(crops) if crops else np.zeros((0, size, size), np.uint8)
            predict_proba = predict.predictor(model, max(1, len(faces)), self.tta)  # one call
            rows = face_rows(range(len(found)), (faces, found), predict_proba, self.classes, 0)
            rows = abstain_rows(rows, self.abstain)
            for row in rows:
                if row["status"] == "ok":
                    results[row["path"]].append(Prediction.from_row(row))
        return results, failure

    def _decode(self, image: ImageInput, size: int) -> tuple[Found, np.ndarray | None]:
        """(Found, crops) as predict-dir's workers decode a file (decode_chunk, decode_faces)."""
        try:
            if isinstance(image, (str, os.PathLike)):
                if self.faces == "none":
                    return Found(whole=True), load_image(image, size)[None]
                return read_faces(image, self.faces, self._get_detector, size, None, self._keep)
            picture = as_picture(image)
            if self.faces == "none":
                return Found(whole=True), to_array(upright_gray(picture), size)[None]
            return faces_in(picture, self.faces, self._get_detector, size, None, self._keep)
        except (ImageError, OSError, SyntaxError, ValueError) as exc:  # OSError...: Pillow's
            reason = first_line(str(exc)).rstrip(".") or type(exc).__name__
            raise FercliError(f"cannot read {_name(image)}: {reason}.") from None


def _name(image: object) -> str:
    if isinstance(image, (str, os.PathLike)):
        return repr(os.fspath(image))
    return "the image" if isinstance(image, Image.Image) else "the array"


def as_picture(image: object) -> Image.Image:
    """A Pillow image or numpy array as the Pillow image a file of those pixels decodes to:
    uint8 (H, W) as "L", (H, W, 1) likewise, (H, W, 3) as "RGB", (H, W, 4) as "RGBA"; float
    arrays in 0-1 are scaled to 0-255 and rounded. FercliError for anything else."""
    if isinstance(image, Image.Image):
        return image
    if not isinstance(image, np.ndarray):
        raise FercliError(
            "expected an image file's path, a PIL image or a numpy array, not "
            f"{type(image).__name__}."
        )
    shape, dtype = image.shape, image.dtype
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))) or 0 in shape[:2]:
        raise FercliError(
            f"expected an array of shape (H, W) (grey) or (H, W, 3|4) (RGB, RGBA), not {shape}."
        )
    if dtype.kind == "f":
        values = image.astype(np.float64)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            low, high = values.min(), values.max()
            raise FercliError(
                f"a float array must hold values in 0-1, this one from {low:g} to {high:g} "
                "(pass uint8 for 0-255)."
            )
        image = np.floor(values * 255.0 + 0.5).astype(np.uint8)
    elif dtype != np.uint8:
        raise FercliError(
            f"expected a uint8 array (0-255) or a float array (0-1), not {dtype} (use "
            ".astype(numpy.uint8) for 0-255 values)."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    mode = "L" if image.ndim == 2 else "RGB" if image.shape[2] == 3 else "RGBA"
    return Image.fromarray(np.ascontiguousarray(image), mode)


def predict_dir(
    root: str | os.PathLike[str], **options: Unpack[FolderOptions]
) -> Iterator[dict[str, Any]]:
    """The rows `fercli predict-dir ROOT -o rows.jsonl` writes, as dicts, in its order,
    without printing or writing anything: path (relative to root, "/"-separated), status
    (ok, error or no_face), error (the reason), label, confidence, probabilities, topk; with
    faces auto or detect also face, box, face_score and face_size (None where the whole
    picture is the face). The options are predict-dir's, with its defaults (FolderOptions:
    model, faces, provider, detector, threads, tta, min_face_score, min_face_size, topk,
    recursive, batch_size, workers, engine, ray_address, actors, threads_per_actor).

    The folder is scanned on the call (FercliError for a missing or empty one); the worker
    processes and the model start on the first row asked for, and stop when the rows are
    all read or the iterator is closed."""
    _check_keywords("predict_dir", options, FolderOptions)
    faces = options.pop("faces", defaults.FACES)
    _check_choice("faces", faces, MODES)
    model = bundled.model_path(options.pop("model", DEFAULT_MODEL))
    return logged(predict.predict_rows, root, model, faces=faces, **options)


class CleanOptions(TypedDict, total=False):
    """fercli.clean_dataset's options: `fercli clean`'s (fercli.clean.pipeline.CleanSettings;
    None: the filter's default)."""

    filters: list[str] | None
    hash: str
    hash_size: int
    threshold: int | None
    blank_std: float | None
    drop_conflicts: bool
    workers: int | None
    engine: str
    ray_address: str | None
    actors: int | None


def clean_dataset(root: str | os.PathLike[str], **options: Unpack[CleanOptions]) -> dict[str, Any]:
    """The report of `fercli clean ROOT --report report.json` (a dry run: nothing is moved
    or written), as a dict: "summary" (counts before and after, per filter, duplicates,
    examples), "flags" (path, filter, reason, group, kept), "groups" (the duplicate
    groups), and "unreadable" where files could not be read. ROOT is laid out as
    ROOT/<split>/<class>/<image>; the options are `fercli clean`'s (None: the filter's
    default). To quarantine what it flags, run `fercli clean ROOT --apply`."""
    from fercli.clean.pipeline import CleanSettings, run_clean

    _check_keywords("clean_dataset", options, CleanOptions)
    settings = CleanSettings(**options)
    result = logged(run_clean, Path(root), settings)
    report = result.report()
    report["summary"]["mode"] = "dry-run"
    return report
