#!/usr/bin/env python
"""How much of the model's accuracy survives detection and alignment: FER-2013 test faces
blown up, turned, pasted into larger pictures, found again and cut out by fercli.faces,
then predicted with the bundled model, against the same faces predicted as they are.

    python scripts/faces_roundtrip_fer.py ../shared/fer2013 --per-class 100

Each face is scaled 4x (bicubic), turned by a random angle in [-max-angle, max-angle]
degrees and pasted at a random place into a 400x400 grey picture with noise; the detector
(--detector: the default one, YuNet, unless given) runs on it as `predict-dir --faces
detect` runs it (its copy at most its max_side long, its default --min-face-score), the
face nearest to the pasted place is aligned (fercli.faces.align) and predicted. Printed:
how many faces were found, the accuracy of the original 48x48 images (all, and those
found), and the accuracy after detection and alignment (those found; NaN when none is); the
same two on the leak-free faces, those with no near duplicate in train (fercli.clean.leakage, as
`fercli evaluate --leak-free`).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fercli.clean.leakage import leaked_paths  # noqa: E402
from fercli.faces.align import align  # noqa: E402
from fercli.faces.detect import DEFAULT_DETECTOR, detect_scaled  # noqa: E402
from fercli.predict.bundled import bundled_path  # noqa: E402
from fercli.predict.faces import detector as make_detector  # noqa: E402
from fercli.predict.faces import keep_faces  # noqa: E402
from fercli.predict.onnx_model import OnnxModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fer2013", type=Path)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--max-angle", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        default="accurate",
        help="bundled model (fast, accurate) [accurate: the documented figures]",
    )
    parser.add_argument(
        "--detector", default=DEFAULT_DETECTOR, help=f"face detector [{DEFAULT_DETECTOR}]"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    model = OnnxModel(bundled_path(args.model), "cpu")
    classes = list(model.info.classes)
    detector = make_detector(args.detector)
    leaked = leaked_paths(args.fer2013)
    originals, crops, labels, found, clean = [], [], [], [], []
    start = time.perf_counter()
    for label in classes:
        for path in sorted((args.fer2013 / "test" / label).glob("*.*"))[: args.per_class]:
            face = Image.open(path).convert("L")
            angle = float(rng.uniform(-args.max_angle, args.max_angle))
            big = face.resize((192, 192), Image.BICUBIC).rotate(angle, Image.BICUBIC, expand=True)
            mask = Image.new("L", (192, 192), 255).rotate(angle, Image.BICUBIC, expand=True)
            noise = rng.normal(128, 6, (400, 400)).clip(0, 255).astype(np.uint8)
            picture = Image.fromarray(noise, "L")
            x, y = (int(v) for v in rng.integers(0, 400 - big.width, 2))
            picture.paste(big, (x, y), mask)
            cx, cy = x + big.width / 2, y + big.height / 2
            faces = keep_faces(detect_scaled(detector, picture), detector=detector)
            near = [
                f
                for f in faces
                if np.hypot((f.box[0] + f.box[2]) / 2 - cx, (f.box[1] + f.box[3]) / 2 - cy) < 48
            ]
            originals.append(np.asarray(face))
            labels.append(classes.index(label))
            found.append(bool(near))
            clean.append(path.relative_to(args.fer2013).as_posix() not in leaked)
            crops.append(align(picture, near[0]) if near else np.zeros((48, 48), np.uint8))
    labels, found, clean = np.array(labels), np.array(found), np.array(clean)
    pred_orig = model.predict_proba(np.stack(originals)).argmax(1)
    pred_crop = model.predict_proba(np.stack(crops)).argmax(1)
    print(
        json.dumps(
            {
                "detector": args.detector,
                "faces": len(labels),
                "found": int(found.sum()),
                "max_angle": args.max_angle,
                "accuracy_original_all": round(float((pred_orig == labels).mean()), 4),
                "accuracy_original_found": round(float((pred_orig == labels)[found].mean()), 4),
                "accuracy_detected_aligned": round(float((pred_crop == labels)[found].mean()), 4),
                "same_label_as_original": round(float((pred_crop == pred_orig)[found].mean()), 4),
                "found_leak_free": int((found & clean).sum()),
                "accuracy_original_found_leak_free": round(
                    float((pred_orig == labels)[found & clean].mean()), 4
                ),
                "accuracy_detected_aligned_leak_free": round(
                    float((pred_crop == labels)[found & clean].mean()), 4
                ),
                "seconds": round(time.perf_counter() - start, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
