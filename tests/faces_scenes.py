"""Scenes for the face tests: 48x48 faces (fercli.data.synth's, or FER-2013's where present)
scaled up, turned and pasted into larger pictures at known places, and a detector plugin
that knows where they are."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.data.synth import EXPRESSIONS, draw_face
from fercli.faces.detect import Face
from fercli.hookspecs import hookimpl

# Where a FER-style 48x48 face has its landmarks, roughly (fercli.data.synth draws the eyes at
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


# ----------------------------------------------------------------------------- benchmark sets
# The same scenes for tests/faces/test_faces.py's default-settings tests and
# benchmarks/bench_faces.py.

PASTE_SIZES = (60, 100, 160, 240, 300)  # pixels of the pasted 48x48 face's side
PASTE_ANGLES = (0, 15, -25)  # degrees, counter-clockwise
# The pictures they are pasted into: 0.3 MP (searched as it is) and 2 MP (searched on a
# smaller copy: a 60 px face is 38 px in a 1024 px copy, 24 px in a 640 px one).
PASTE_CANVASES = ((640, 480), (1600, 1200))


def synthetic_faces(n: int = 7) -> list[np.ndarray]:
    """fercli.data.synth's cartoon faces, one per expression (where FER-2013 is absent)."""
    from fercli.data.synth import EXPRESSIONS, draw_face

    names = list(EXPRESSIONS)
    return [draw_face(names[k % 7], np.random.default_rng(k)) for k in range(n)]


def pasted_scenes(faces, sizes=PASTE_SIZES, angles=PASTE_ANGLES, canvases=PASTE_CANVASES):
    """[(scene, [Placed])]: each face at each size and angle, alone on a backdrop of each
    canvas's width x height (grown to fit the face), a little off centre (the same for every
    run)."""
    out = []
    for (width, height), face_index in (
        (c, i) for c in canvases for i in range(len(faces))
    ):  # fmt: skip
        i, face = face_index, faces[face_index]
        for size in sizes:
            for angle in angles:
                w, h = max(width, round(size * 1.6)), max(height, round(size * 1.6))
                rng = np.random.default_rng([i, size, int(angle) % 360])
                slack_x, slack_y = (w - size * 1.45) / 2, (h - size * 1.45) / 2
                cx = w / 2 + rng.uniform(-slack_x, slack_x)
                cy = h / 2 + rng.uniform(-slack_y, slack_y)
                p = Placed(face, cx, cy, size, angle)
                out.append((scene(w, h, [p], seed=i), [p]))
    return out


NO_FACE_KINDS = (
    "noise", "gradient", "stripes", "checks", "flowers",
    "dots", "grain", "tiles", "crowd", "clutter",
)  # fmt: skip


def _colour(rng, low=0, high=256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))


def _blend(a: np.ndarray, b, c) -> np.ndarray:
    """Where a (0 to 1) is 0: colour b, where 1: colour c; (H, W, 3) uint8."""
    a = np.clip(a, 0, 1)[..., None]
    return (np.asarray(b, float) * (1 - a) + np.asarray(c, float) * a).astype(np.uint8)


def no_face_scene(index: int) -> Image.Image:
    """Scene `index` (0, 1, ...) of a deterministic set with no face in it, RGB, 480 to 1280
    pixels wide: index % 10 chooses the kind (NO_FACE_KINDS: noise, gradients, stripes, checks,
    a flower print, dots, wood grain, tiles, a crowd-like background of heads and shoulders
    seen from behind, clutter of shapes), index // 10 the variant."""
    from PIL import ImageDraw, ImageFilter

    rng = np.random.default_rng([25, index])
    kind = NO_FACE_KINDS[index % len(NO_FACE_KINDS)]
    w = int(rng.choice([480, 640, 800, 1024, 1280]))
    h = int(w * rng.choice([0.75, 0.5625, 1.333]))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = _colour(rng), _colour(rng)
    if kind == "noise":
        scale = int(rng.choice([1, 2, 4, 8, 16]))
        small = rng.uniform(0, 255, (max(1, h // scale), max(1, w // scale), 3)).astype(np.uint8)
        im = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    elif kind == "gradient":
        t = rng.uniform(0, np.pi)
        ramp = (x * np.cos(t) + y * np.sin(t)) / np.hypot(w, h) + 0.5
        if index // 10 % 2:
            ramp = np.hypot(x - rng.uniform(0, w), y - rng.uniform(0, h)) / max(w, h)
        im = Image.fromarray(_blend(ramp + rng.normal(0, 0.01, ramp.shape), a, b))
    elif kind == "stripes":
        t, period = rng.uniform(0, np.pi), rng.uniform(6, 80)
        wave = np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / period)
        im = Image.fromarray(_blend(wave > 0 if index // 10 % 2 else (wave + 1) / 2, a, b))
    elif kind == "checks":
        cell, t = rng.uniform(8, 90), rng.uniform(0, np.pi / 4)
        u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
        im = Image.fromarray(_blend(((u // cell + v // cell) % 2).astype(float), a, b))
    elif kind in ("flowers", "dots", "tiles", "crowd", "clutter"):
        im = Image.new("RGB", (w, h), a)
        draw = ImageDraw.Draw(im)
        if kind == "flowers":  # a dress print: petals around a disc, leaves
            for _ in range(int(rng.integers(15, 60))):
                cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 70)
                petal, heart = _colour(rng), _colour(rng)
                n = int(rng.integers(4, 9))
                for k in range(n):
                    t = 2 * np.pi * k / n + rng.uniform(0, 0.3)
                    px, py = cx + np.cos(t) * r * 0.6, cy + np.sin(t) * r * 0.6
                    draw.ellipse((px - r * 0.4, py - r * 0.4, px + r * 0.4, py + r * 0.4), petal)
                draw.ellipse((cx - r * 0.25, cy - r * 0.25, cx + r * 0.25, cy + r * 0.25), heart)
        elif kind == "dots":
            step, r = rng.uniform(20, 90), rng.uniform(3, 25)
            for gy in np.arange(step / 2, h, step):
                for gx in np.arange(step / 2 + (gy // step % 2) * step / 2, w, step):
                    draw.ellipse((gx - r, gy - r, gx + r, gy + r), b)
        elif kind == "tiles":
            tw, th = rng.uniform(30, 140), rng.uniform(20, 80)
            for row, ty in enumerate(np.arange(0, h, th)):
                for tx in np.arange(-(row % 2) * tw / 2, w, tw):
                    shade = np.clip(np.asarray(b) + rng.normal(0, 18, 3), 0, 255).astype(int)
                    draw.rectangle((tx + 2, ty + 2, tx + tw - 2, ty + th - 2), tuple(shade))
        elif kind == "crowd":  # people seen from behind: hair over shoulders, no face
            for _ in range(int(rng.integers(6, 30))):
                r = rng.uniform(18, 70)
                cx, cy = rng.uniform(0, w), rng.uniform(h * 0.2, h)
                coat = _colour(rng)
                hair = tuple(int(v) for v in rng.integers(10, 90, 3))
                draw.rounded_rectangle(
                    (cx - 1.8 * r, cy + 0.8 * r, cx + 1.8 * r, cy + 5 * r), r * 0.8, coat
                )
                draw.ellipse((cx - r * 0.85, cy - r, cx + r * 0.85, cy + r), hair)
        else:  # clutter: polygons, lines and circles of every colour
            for _ in range(int(rng.integers(20, 80))):
                shape = int(rng.integers(0, 3))
                pts = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(3)]
                if shape == 0:
                    draw.polygon(pts, _colour(rng))
                elif shape == 1:
                    draw.line(pts, _colour(rng), int(rng.integers(1, 12)))
                else:
                    (cx, cy), r = pts[0], rng.uniform(5, 80)
                    draw.ellipse((cx - r, cy - r, cx + r, cy + r), _colour(rng))
        if index // 10 % 3 == 1:
            im = im.filter(ImageFilter.GaussianBlur(1.5))
    else:  # grain: wood or marble, a sine of a distorted coordinate
        turbulence = np.asarray(
            Image.fromarray(rng.uniform(0, 255, (h // 32 + 2, w // 32 + 2)).astype(np.uint8))
            .resize((w, h), Image.BICUBIC), np.float32,
        ) / 255  # fmt: skip
        period = rng.uniform(10, 60)
        grain = (np.sin((x + y * rng.uniform(-0.5, 0.5)) / period + 6 * turbulence) + 1) / 2
        im = Image.fromarray(_blend(grain, a, b))
    noisy = np.asarray(im, np.float32) + rng.normal(0, 3, (h, w, 1))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def synth_faces(n: int, seed: int = 0) -> list[np.ndarray]:
    names = list(EXPRESSIONS)
    return [draw_face(names[i % 7], np.random.default_rng(seed + i)) for i in range(n)]


def oracle_folder(root: Path) -> dict:
    """Scenes of synthetic faces (two photos with several, one without, one turned by
    EXIF, one huge, an unreadable file): {(w, h) as the detector sees it: [Face]} and
    the expected faces per file."""
    root.mkdir(parents=True)
    faces = synth_faces(6)
    scenes = {
        "group.jpg": (
            640,
            480,
            [Placed(faces[0], 150, 200, 150, 15), Placed(faces[1], 450, 250, 180, -10)],
        ),
        "sub/trio.png": (
            700,
            400,
            [
                Placed(faces[2], 120, 200, 120),
                Placed(faces[3], 350, 200, 140),
                Placed(faces[4], 580, 190, 130, 25),
            ],
        ),
        "empty.jpg": (500, 300, []),
        "turned.jpg": (600, 450, [Placed(faces[5], 300, 200, 200)]),  # stored on its side
        "huge.jpg": (
            3200,
            2400,
            [Placed(faces[0], 800, 1200, 700), Placed(faces[1], 2300, 1000, 600, 10)],
        ),
    }
    truth, expected = {}, {}
    for rel, (w, h, placed) in scenes.items():
        picture = scene(w, h, placed, seed=len(rel))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        factor = min(1.0, 1024 / max(w, h))  # detection runs on a copy <= 1024 px
        truth[(round(w * factor), round(h * factor))] = [p.truth(factor) for p in placed]
        expected[rel] = placed
        if rel == "turned.jpg":
            exif = Image.Exif()
            exif[0x0112] = 6  # shown turned 90 degrees clockwise
            picture.rotate(90, expand=True).save(path, exif=exif, quality=95)
        else:
            picture.save(path, quality=95)
    (root / "broken.jpg").write_bytes(b"not a picture")
    return truth, expected
