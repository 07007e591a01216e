"""Scenes for the face tests: 48x48 faces (fercli.synth's, or FER-2013's where present)
scaled up, turned and pasted into larger pictures at known places, and a detector plugin
that knows where they are."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.faces.detect import Face
from fercli.hookspecs import hookimpl

# Where a FER-style 48x48 face has its landmarks, roughly (fercli.synth draws the eyes at
# +-0.38 face units, 0.18 above the centre, and the mouth 0.58 below, for a 20 px unit).
CANONICAL = np.array([[16.3, 20.4], [31.7, 20.4], [24.0, 28.0], [17.0, 35.7], [31.0, 35.7]])


@dataclass
class Placed:
    """A face pasted at centre (cx, cy), `size` pixels wide, turned `angle` degrees
    counter-clockwise (Pillow's rotate)."""

    face: np.ndarray
    cx: float
    cy: float
    size: int
    angle: float = 0.0

    def to_scene(self, p: np.ndarray) -> np.ndarray:
        """Points of the 48x48 face -> points of the scene."""
        a = np.radians(self.angle)
        q = (np.asarray(p, float) - 24) * self.size / 48
        x = np.cos(a) * q[:, 0] + np.sin(a) * q[:, 1]
        y = -np.sin(a) * q[:, 0] + np.cos(a) * q[:, 1]
        return np.stack([x + self.cx, y + self.cy], axis=1)

    def truth(self, factor: float = 1.0) -> Face:
        """The face as a perfect detector would report it (scaled by factor)."""
        marks = self.to_scene(CANONICAL)
        corners = self.to_scene(np.array([[8, 6], [40, 6], [8, 44], [40, 44]]))
        box = (*corners.min(axis=0), *corners.max(axis=0))
        return Face(tuple(float(v) for v in box), 0.99, marks).scaled(factor)

    def contains(self, face: Face) -> bool:
        """Whether a detected box's centre lies on this face."""
        x1, y1, x2, y2 = face.box
        return np.hypot((x1 + x2) / 2 - self.cx, (y1 + y2) / 2 - self.cy) < 0.25 * self.size


def backdrop(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random grey backdrop with a little noise: no face in it."""
    rng = np.random.default_rng(seed)
    grid = rng.uniform(60, 200, (3, 4)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(grid, "F").resize((width, height), Image.BICUBIC))
    noisy = smooth + rng.normal(0, 4, (height, width))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "L")


def scene(width: int, height: int, placed: list[Placed], seed: int = 0) -> Image.Image:
    picture = backdrop(width, height, seed)
    for p in placed:
        big = Image.fromarray(p.face).resize((p.size, p.size), Image.BICUBIC)
        turned = big.rotate(p.angle, Image.BICUBIC, expand=True)
        mask = Image.new("L", big.size, 255).rotate(p.angle, Image.BICUBIC, expand=True)
        picture.paste(
            turned, (round(p.cx - turned.width / 2), round(p.cy - turned.height / 2)), mask
        )
    return picture


def fer_faces(fer2013: Path, n: int = 7) -> list[np.ndarray]:
    """The first test image of each class (MTCNN finds each of them upright at 160 px)."""
    folders = sorted(p for p in (fer2013 / "test").iterdir() if p.is_dir())
    paths = [sorted(folder.glob("*.jpg"))[0] for folder in folders][:n]
    return [np.asarray(Image.open(p).convert("L")) for p in paths]


class Oracle:
    """A detector that knows the faces of each scene by the scene's size (w, h)."""

    def __init__(self, truth: dict[tuple[int, int], list[Face]]):
        self.truth = truth

    def detect(self, images):
        return [list(self.truth.get((a.shape[1], a.shape[0]), [])) for a in images]


class OraclePlugin:
    """A plugin registering the `oracle` detector, as any plugin would."""

    def __init__(self, truth):
        self.truth = truth

    @hookimpl
    def register_detectors(self, register):
        register("oracle", lambda **options: Oracle(self.truth), "Knows the test scenes.")
