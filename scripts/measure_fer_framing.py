#!/usr/bin/env python
"""Measure how FER-2013 frames its faces, for fercli.faces.align: MTCNN on upscaled train
images, each fit in units of the 48x48 crop.

    python scripts/measure_fer_framing.py ../shared/fer2013 --per-class 200

Each image is upscaled 4x (bicubic) and padded by half its side in mid grey on every side
(faces in FER-2013 touch the crop's edges), and the best face kept when MTCNN finds one.
Printed as JSON, quartiles (25, 50, 75%): the crop side over the eye-to-mouth distance, over
the face scale (the geometric mean of the eye distance and the eye-to-mouth distance: it
does not change when the face turns in the picture) and over the detector's box width and
height; where the crop's centre lies from the eyes' midpoint in the eye-level frame (in
face scales; x to the right, y down) and from the box's centre (in box widths and heights).
fercli/faces/align.py's constants are these medians (docs/notes/face-framing.md).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fercli.faces.mtcnn import MTCNN  # noqa: E402

UP = 4  # 48 -> 192 pixels
PAD = 0.5  # of the upscaled side, on each side


def measure(face, side: float, offset: float) -> dict:
    """One detection, in crop units (the crop is [0, 1] x [0, 1])."""
    marks = (np.asarray(face.landmarks) - offset) / side
    box = (np.asarray(face.box) - offset) / side
    eyes = (marks[0] + marks[1]) / 2
    mouth = (marks[3] + marks[4]) / 2
    angle = np.arctan2(marks[1, 1] - marks[0, 1], marks[1, 0] - marks[0, 0])
    d_em = float(np.linalg.norm(mouth - eyes))
    d_ee = float(np.linalg.norm(marks[1] - marks[0]))
    scale = np.sqrt(d_em * d_ee)  # the face's size, whatever its angle in the picture
    c, s = np.cos(-angle), np.sin(-angle)
    v = np.array([0.5, 0.5]) - eyes  # to the crop centre, turned into the eye-level frame
    v = np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
    bw, bh = box[2] - box[0], box[3] - box[1]
    return {
        "side_over_eye_mouth": 1 / d_em,
        "side_over_face_scale": 1 / scale,
        "centre_from_eyes_x": v[0] / scale,
        "centre_from_eyes_y": v[1] / scale,
        "side_over_box_w": 1 / bw,
        "side_over_box_h": 1 / bh,
        "centre_from_box_x": (0.5 - (box[0] + box[2]) / 2) / bw,
        "centre_from_box_y": (0.5 - (box[1] + box[3]) / 2) / bh,
        "eye_angle_deg": float(np.degrees(angle)),
        "eye_distance": d_ee,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fer2013", type=Path)
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()
    detector = MTCNN()
    side = 48 * UP
    pad = int(side * PAD)
    rows, tried = [], 0
    start = time.perf_counter()
    for folder in sorted((args.fer2013 / "train").iterdir()):
        for path in sorted(folder.glob("*.*"))[: args.per_class]:
            tried += 1
            gray = Image.open(path).convert("L").resize((side, side), Image.BICUBIC)
            canvas = Image.new("L", (side + 2 * pad, side + 2 * pad), 128)
            canvas.paste(gray, (pad, pad))
            faces = detector.detect([np.asarray(canvas)])[0]
            if faces:
                rows.append(measure(faces[0], side, pad))
    keys = rows[0].keys() if rows else ()
    stats = {
        k: [round(float(q), 4) for q in np.percentile([r[k] for r in rows], [25, 50, 75])]
        for k in keys
    }
    print(
        json.dumps(
            {
                "images": tried,
                "detected": len(rows),
                "seconds": round(time.perf_counter() - start, 1),
                "quartiles_25_50_75": stats,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
