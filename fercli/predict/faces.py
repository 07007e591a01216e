"""`predict-dir --faces auto|detect|none`: one row per face found in each photo.

Worker processes decode each file, find its faces (on a copy at most the detector's max_side
pixels long: fercli.faces.detect.search_side) and cut them from the full-size picture with
fercli.faces.align; the main process predicts the 48x48 faces in batches and writes the rows:

- a face: status ok, `face` (0, 1, ... left to right), `box` (x, y, width, height in the
  picture's own pixels, EXIF orientation applied), `face_score`, `face_size` (the box's
  shorter side, in those pixels), label and probabilities; faces scoring below
  `min_score` or smaller than `min_size` pixels (keep_faces) are left out;
- a photo with no face: one row, status no_face;
- `auto` looks for faces only in pictures whose shorter side exceeds AUTO_MIN_SIDE pixels;
  a smaller one (a FER-2013 image) is the face, read exactly as `--faces none` reads it,
  and its row has no face, box or score;
- an unreadable file: one row, status error, as without --faces.
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from fercli.data.images import (
    ImageError,
    load_shortcut,
    open_raw,
    open_scaled,
    to_array,
    to_gray,
    upright_gray,
)
from fercli.data.images import upright as turned
from fercli.faces.align import align, framing
from fercli.faces.detect import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_FACE_SIZE,
    Face,
    default_min_score,
    detect_scaled,
    search_side,
)
from fercli.predict.output import abstain_rows, make_rows
from fercli.util import atomic_path

MODES = ("auto", "detect", "none")
AUTO_MIN_SIDE = 96  # auto detects faces in pictures whose shorter side exceeds this
COLUMNS = ("face", "box", "face_score", "face_size")
NO_FACE = "no_face"
MIN_CHUNK = 2  # pictures per worker task, at least
# Pillow's formats by suffix, to save --annotate copies in the photo's own format.
_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}

_detectors: dict = {}  # one detector per process and name, made on first use in a run


def reset_detectors() -> None:
    """Forget the detectors made so far: each run builds its own (plugins may change)."""
    _detectors.clear()


def detector(name: str):
    if name not in _detectors:
        from fercli import registry

        _detectors[name] = registry.create("detector", name)
    return _detectors[name]


def upright(path) -> Image.Image:
    """A picture decoded and turned by its EXIF orientation (fercli.data.images' rules)."""
    raw = open_raw(path)
    try:
        return ImageOps.exif_transpose(raw)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(str(exc) or type(exc).__name__) from None


def colour(im: Image.Image, gray: Image.Image) -> Image.Image:
    """What the detector sees: RGB where the picture has colour, else the grey image."""
    return im.convert("RGB") if im.mode in ("RGB", "CMYK", "YCbCr") else gray.convert("RGB")


def keep_faces(
    faces: list[Face],
    min_score: float | None = None,
    min_size: int = DEFAULT_MIN_FACE_SIZE,
    detector=None,
) -> list[Face]:
    """The faces that --min-face-score and --min-face-size keep, left to right (face 0, 1,
    ...): photos and video frames alike, whatever the detector. min_score None: the
    detector's own default (its min_face_score; fercli.faces.detect.default_min_score)."""
    if min_score is None:
        min_score = default_min_score(detector)
    kept = [f for f in faces if f.score >= min_score and face_size(f) >= min_size]
    return sorted(kept, key=lambda f: (f.box[0], f.box[1]))


def face_size(face: Face) -> int:
    """The `face_size` column: the box's shorter side, in the picture's own pixels."""
    _, _, w, h = face.xywh()
    return min(w, h)


def face_columns(number: int, face: Face) -> dict:
    """A face row's own columns (COLUMNS), for photos and video frames alike."""
    return {
        "face": number,
        "box": face.xywh(),
        "face_score": round(face.score, 4),
        "face_size": face_size(face),
    }


@dataclass
class Found:
    """One picture's outcome in a worker: an error, the whole image, or its faces."""

    error: str | None = None
    whole: bool = False
    faces: list[Face] = field(default_factory=list)


def find_faces(path, mode: str, detector_name: str, size: int, max_side, keep=keep_faces):
    """(Found, crops (n, size, size) uint8) for one file; raises ImageError."""
    return read_faces(path, mode, partial(detector, detector_name), size, max_side, keep)


def read_faces(path, mode: str, get_detector, size: int, max_side, keep=keep_faces):
    """find_faces with the detector that get_detector() gives, asked for only where a
    picture is searched. A large JPEG is decoded at a DCT scale (fercli.data.images.open_scaled)
    no smaller than the detector's searched copy (search_side), which it would be shrunk to
    anyway; the faces found are cut from a full decode (DRAFT_ALIGN_SAMPLES, faces_in)."""
    quick = load_shortcut(path, size, AUTO_MIN_SIDE) if mode == "auto" else None
    if quick is not None:  # a small plain gray JPEG, by the shared loader's shortcut
        return Found(whole=True), quick[0][None]

    def side(stored):  # the decode's smallest longer side: the searched copy's
        if mode == "auto" and min(stored) <= AUTO_MIN_SIDE:
            return None  # taken whole, at its own size
        return search_side(get_detector(), max_side)

    raw, scale = open_scaled(path, side)
    return faces_in(raw, mode, get_detector, size, max_side, keep, scale, partial(open_raw, path))


# The faces are cut from a full decode of the photo (read_faces). Cutting them from the
# DCT-scaled decode where the crop spans at least N times the model's input there
# (fercli.faces.align samples a crop at up to 4 times the input: N = 4 reads as many
# samples) saves that decode, but with N = 4 it changed the label of one of the 13 faces of
# the development photos (couple.jpg, `fast`), so it is off: None.
DRAFT_ALIGN_SAMPLES = None


def from_draft(faces: list[Face], scale: int, size: int, samples=DRAFT_ALIGN_SAMPLES) -> bool:
    """Whether faces (in the stored picture's pixels) found in a picture decoded at 1/scale
    can be cut from that decode: each crop spans at least `samples` times the model's input
    there (None: never)."""
    if scale == 1:
        return True
    return samples is not None and all(framing(f)[2] / scale >= samples * size for f in faces)


def colour_of(im: Image.Image) -> Image.Image:
    """colour(im, ...) without copying an RGB picture (the detector only reads it)."""
    return im if im.mode == "RGB" else colour(im, to_gray(im))


def faces_in(
    raw: Image.Image,
    mode: str,
    get_detector,
    size: int,
    max_side,
    keep=keep_faces,
    scale: int = 1,
    full=None,
):
    """read_faces for a picture decoded as open_raw decodes a file (its own mode, not yet
    turned by its EXIF orientation): a file's, or one given to fercli.Predictor. max_side:
    the searched copy's longer side (None: the detector's own; search_side). scale: raw
    was decoded at 1/scale of the stored size (fercli.data.images.open_scaled); full() then
    gives the full-size decode, for faces too small to cut from raw (from_draft)."""
    if scale == 1 and mode == "auto" and min(raw.size) <= AUTO_MIN_SIDE:
        # EXIF turns keep the shorter side
        return Found(whole=True), to_array(upright_gray(raw), size)[None]  # = load_image
    im = turned(raw)
    found = get_detector()
    faces = detect_scaled(found, colour_of(im), max_side)
    if scale > 1:
        faces = [f.scaled(scale) for f in faces]  # the stored picture's pixels
    faces = keep(faces, detector=found)
    if not faces:
        return Found(faces=faces), None
    if not from_draft(faces, scale, size):  # only the faces kept count
        im, scale = turned(full()), 1
    gray = to_gray(im)
    crops = np.stack([align(gray, f.scaled(1 / scale) if scale > 1 else f, size) for f in faces])
    return Found(faces=faces), crops


def decode_faces(paths, size: int, mode: str, detector_name: str, max_side, keep=keep_faces):
    """A worker's chunk: (crops (m, size, size) uint8, [Found per path]). Never raises for
    one bad file: an unexpected exception becomes that file's error."""
    found, crops = [], []
    for path in paths:
        try:
            item, arrays = find_faces(path, mode, detector_name, size, max_side, keep)
        except ImageError as exc:
            item, arrays = Found(error=str(exc)), None
        except Exception as exc:
            item, arrays = Found(error=f"{type(exc).__name__}: {exc}"), None
        found.append(item)
        if arrays is not None:
            crops.append(arrays)
    empty = np.zeros((0, size, size), np.uint8)
    return (np.concatenate(crops) if crops else empty), found


def face_rows(chunk, decoded, predict_proba, classes, topk: int) -> list[dict]:
    """The rows of a chunk decoded by decode_faces (FaceStage.rows; fercli.Predictor's
    too): one per face, per picture without a face, per error."""
    crops, found = decoded
    probs = predict_proba(crops) if len(crops) else np.zeros((0, len(classes)), np.float32)
    rows, k = [], 0
    for rel, item in zip(chunk, found):
        blank = dict.fromkeys(COLUMNS)
        if item.error is not None:
            rows += [{**r, **blank} for r in make_rows([rel], None, {0: item.error}, (), 0)]
        elif item.whole:
            rows += [{**r, **blank} for r in make_rows([rel], probs[k : k + 1], {}, classes, topk)]
            k += 1
        elif not item.faces:
            rows.append({"path": rel, "status": NO_FACE, "error": "", **blank})
        else:
            n = len(item.faces)
            for i, (face, row) in enumerate(
                zip(item.faces, make_rows([rel] * n, probs[k : k + n], {}, classes, topk))
            ):
                row.update(face_columns(i, face))
                rows.append(row)
            k += n
    return rows


def mark_output_folder(folder: Path) -> None:
    """Make an --annotate or --crops folder and, where fercli makes it or finds it empty,
    leave fercli.predict.folder.OUTPUT_MARKER in it: a later scan of a folder holding it then
    skips it (its pictures are outputs, not photos). A folder with the user's own files in
    it is written to but not marked."""
    from fercli.predict.folder import OUTPUT_MARKER

    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        return
    fresh = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if fresh or not any(folder.iterdir()):
        marker.write_text(
            "Written by fercli predict-dir (--annotate or --crops): predict-dir skips this "
            "folder when it scans a folder above it.\n",
            encoding="utf-8",
        )


class FaceStage:
    """What predict_dir does differently with --faces auto or detect."""

    def __init__(
        self,
        mode,
        detector_name=DEFAULT_DETECTOR,
        annotate=None,
        crops=None,
        max_side=None,
        keep=keep_faces,
        below=0.0,
    ):
        """below: --abstain's threshold (0: off), for the rows' labels, the annotated
        pictures and the crops' folders."""
        from fercli import registry
        from fercli.errors import FercliError

        if mode not in MODES[:2]:
            raise FercliError(f"--faces must be one of {', '.join(MODES)}.")
        registry.get("detector", detector_name)  # an unknown name: one line naming the choices
        reset_detectors()  # before the workers start (they inherit the empty cache)
        for option, folder in (("--annotate", annotate), ("--crops", crops)):
            if folder:
                try:
                    mark_output_folder(Path(folder))
                except OSError as exc:
                    raise FercliError(
                        f"cannot make the {option} folder {folder}: {exc.strerror or exc}."
                    ) from None
        self.mode, self.detector_name, self.max_side = mode, detector_name, max_side
        self.keep = keep  # picklable: keep_faces, or a partial of it
        self.below = below
        self.annotate = Path(annotate) if annotate else None
        self.crops = Path(crops) if crops else None
        self.columns = COLUMNS

    def chunk_size(self, images: int, batch_size: int, workers: int) -> int:
        """Pictures per worker task (and at most per model batch): detection is slow, so
        each worker gets about four tasks; never more than batch_size (which FER-style
        folders of many small images reach)."""
        return max(1, min(batch_size, max(MIN_CHUNK, -(-images // (4 * max(workers, 1))))))

    def decode(self, size: int):
        """The workers' decoding function (picklable)."""
        return partial(
            decode_faces,
            size=size,
            mode=self.mode,
            detector_name=self.detector_name,
            max_side=self.max_side,
            keep=self.keep,
        )

    def rows(self, chunk, decoded, predict_proba, classes, topk) -> list[dict]:
        """The rows of a chunk: one per face, per picture without a face, per error."""
        return abstain_rows(face_rows(chunk, decoded, predict_proba, classes, topk), self.below)

    def save_extras(self, root: Path, chunk, rows: list[dict], decoded) -> None:
        """--crops and --annotate for the pictures of a chunk in which faces were looked
        for (not the unreadable ones, nor the small ones `auto` takes whole)."""
        crops, found = decoded
        faces_of: dict[str, list[dict]] = {}
        for row in rows:
            if row["status"] == "ok" and row["face"] is not None:
                faces_of.setdefault(row["path"], []).append(row)
        k = 0
        for rel, item in zip(chunk, found):
            if item.error is not None or item.whole:
                k += item.whole
                continue
            face_rows = faces_of.get(rel, [])
            if self.crops:
                for row, crop in zip(face_rows, crops[k : k + len(face_rows)]):
                    save_crop(self.crops, rel, row, crop)
            if self.annotate:
                try:
                    annotate(root / rel, self.annotate / rel, face_rows)
                except (ImageError, OSError) as exc:
                    from fercli.progress import say

                    say(f"  --annotate: cannot write a copy of {rel!r}: {exc}")
            k += len(face_rows)


def crop_name(rel: str, face: int) -> str:
    """`<image>_<face>.png`: the picture's path with "/" as "__", its suffix kept (two
    pictures never share a name)."""
    return f"{rel.replace('/', '__')}_{face}.png"


def save_crop(folder: Path, rel: str, row: dict, crop: np.ndarray) -> None:
    target = folder / row["label"] / crop_name(rel, row["face"])
    with atomic_path(target) as tmp:
        Image.fromarray(crop).save(tmp, "PNG")


def annotate(source: Path, target: Path, face_rows: list[dict]) -> None:
    """A copy of the picture (upright) with each face's box, label and confidence drawn."""
    im = upright(source).convert("RGB")
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 400))
    font_size = max(12, round(max(im.size) / 50))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(font_size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = None
    for row in face_rows:
        x, y, w, h = row["box"]
        draw.rectangle((x, y, x + w, y + h), outline=(255, 40, 40), width=width)
        text = f"{row['face']}: {row['label']} {row['confidence']:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_h = bottom - top + 2 * width
        ly = y - label_h if y >= label_h else y  # above the box, else inside its top
        draw.rectangle((x, ly, x + right - left + 2 * width, ly + label_h), fill=(255, 40, 40))
        draw.text((x + width - left, ly + width - top), text, fill=(255, 255, 255), font=font)
    fmt = _FORMATS.get(source.suffix.lower(), "PNG")
    if fmt == "GIF":
        im = im.convert("P")
    with atomic_path(target) as tmp:
        im.save(tmp, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
