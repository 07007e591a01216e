"""What a face detector returns, and running one on a downscaled copy of a large photo.

A detector (registered with the `register_detectors` hook) is an object with
`detect(images) -> list[list[Face]]`: `images` is a list of uint8 arrays, each (H, W) grey or
(H, W, 3) RGB, of any size; the result has one list of faces per image, best first. A
detector may also carry `max_side` (the longer side of the copy it searches, where it wants
another than DETECT_MAX_SIDE) and `min_face_score` (the --min-face-score it gets by default:
its scores are on its own scale).

This module is also the one place of the face path's defaults (no torch, no onnxruntime):
the detector that predict-dir, predict-video, evaluate and fercli.api use unless told.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

# The default face detector (benchmarks/bench_faces.py chose it: docs/detectors.md).
DEFAULT_DETECTOR = "yunet"
# Detection runs on a copy whose longer side is at most this (unless the detector has its own
# max_side); boxes are scaled back.
DETECT_MAX_SIDE = 1024
# The default --min-face-size: faces whose box's shorter side is below this many pixels of the
# picture are left out (--min-face-score's default is the detector's own: default_min_score).
DEFAULT_MIN_FACE_SIZE = 0


@dataclass(frozen=True)
class Face:
    """A face: its box (x1, y1, x2, y2) in pixels of the image it was found in, the
    detector's score in [0, 1], and five landmarks where the detector has them: (5, 2)
    x, y of the left eye, right eye, nose, left and right mouth corners (left and right
    as seen in the image)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def scaled(self, factor: float) -> "Face":
        box = tuple(float(v) * factor for v in self.box)
        marks = None if self.landmarks is None else np.asarray(self.landmarks) * factor
        return Face(box, self.score, marks)

    def xywh(self) -> list[int]:
        """The box as rounded x, y, width, height (the `box` column)."""
        x1, y1, x2, y2 = self.box
        return [round(x1), round(y1), round(x2 - x1), round(y2 - y1)]


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) -> (H, W, 3)."""
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) uint8 image, got shape {image.shape}")


def search_side(detector, max_side: int | None = None) -> int:
    """The longer side of the copy a detector searches: max_side where given, else the
    detector's own `max_side`, else DETECT_MAX_SIDE."""
    return int(max_side or getattr(detector, "max_side", None) or DETECT_MAX_SIDE)


def default_min_score(detector) -> float:
    """The --min-face-score a detector gets by default: its own `min_face_score`, else 0."""
    return float(getattr(detector, "min_face_score", 0.0) or 0.0)


def detect_scaled(detector, image: Image.Image, max_side: int | None = None) -> list[Face]:
    """Faces in a Pillow image, found on a copy at most max_side pixels long (None: the
    detector's own max_side, else DETECT_MAX_SIDE; search_side), in the image's own pixels."""
    max_side = search_side(detector, max_side)
    factor = max(image.size) / max_side
    small = image
    if factor > 1:
        size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
        small = image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    faces = detector.detect([np.asarray(small)])[0]
    if factor > 1:
        fx = image.width / small.width
        faces = [f.scaled(fx) for f in faces]
    return faces
