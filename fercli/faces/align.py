"""Cut a detected face out of a photo the way FER-2013 cut its faces: eyes level, the same
margin around the face, grey, 48x48.

The framing was measured with scripts/measure_fer_framing.py (MTCNN on 1400 upscaled
FER-2013 train images, 200 per class, 1283 faces found; medians, quartiles in brackets):
the crop side is 2.54 [2.31, 2.79] face scales, the face scale being the geometric mean of
the eye distance and the eye-to-mouth distance, and the crop's centre lies 0.298 [0.243,
0.380] face scales below the eyes' midpoint (and 0.013 to its left: taken as 0, FER-2013's
faces look either way). Without landmarks the box is used: the crop side is 1.23 [1.12,
1.34] box widths, centred 0.018 box widths right of and 0.003 box heights above the box's
centre (taken as 0 across, as above).
"""

import numpy as np
from PIL import Image

from fercli.faces.detect import Face

SIDE_PER_FACE_SCALE = 2.54
CENTRE_BELOW_EYES = 0.298  # face scales
SIDE_PER_BOX_WIDTH = 1.23
CENTRE_BELOW_BOX_CENTRE = -0.003  # box heights


def framing(face: Face) -> tuple[float, float, float, float]:
    """(centre x, centre y, side, angle in radians) of the crop for a face, in the pixels
    of the image the face was found in; the angle turns the crop so the eyes are level."""
    if face.landmarks is not None:
        marks = np.asarray(face.landmarks, np.float64)
        left, right = marks[0], marks[1]
        eyes = (left + right) / 2
        mouth = (marks[3] + marks[4]) / 2
        d_ee = float(np.linalg.norm(right - left))
        d_em = float(np.linalg.norm(mouth - eyes))
        if d_ee > 0 and d_em > 0:
            angle = float(np.arctan2(right[1] - left[1], right[0] - left[0]))
            scale = np.sqrt(d_ee * d_em)
            down = np.array([-np.sin(angle), np.cos(angle)])  # "down" in the face's frame
            cx, cy = eyes + down * CENTRE_BELOW_EYES * scale
            return float(cx), float(cy), float(SIDE_PER_FACE_SCALE * scale), angle
    x1, y1, x2, y2 = face.box
    w, h = x2 - x1, y2 - y1
    return (x1 + x2) / 2, (y1 + y2) / 2 + CENTRE_BELOW_BOX_CENTRE * h, SIDE_PER_BOX_WIDTH * w, 0.0


def align(gray: Image.Image, face: Face, size: int = 48) -> np.ndarray:
    """The face as a (size, size) uint8 array from a grey Pillow image: turned so the eyes
    are level, framed as FER-2013 frames its faces; outside the photo is black."""
    cx, cy, side, angle = framing(face)
    # Sample at up to 4x the output, then shrink with Pillow's antialiased bilinear filter,
    # as fercli.data.images resizes every image.
    inner = int(min(max(round(side), size), 4 * size))
    step = side / inner
    cos, sin = np.cos(angle) * step, np.sin(angle) * step
    half = inner / 2
    # Output pixel (u, v) comes from input (cx + cos*(u-half) - sin*(v-half), ...); +0.5: the
    # detector's coordinates count pixels, Pillow's transform runs over pixel edges.
    ox, oy = cx + 0.5, cy + 0.5
    data = (cos, -sin, ox - cos * half + sin * half, sin, cos, oy - sin * half - cos * half)
    patch = gray.transform((inner, inner), Image.AFFINE, data, resample=Image.BILINEAR)
    if inner != size:
        patch = patch.resize((size, size), Image.BILINEAR)
    return np.asarray(patch, dtype=np.uint8)
