"""Test accuracy with and without the test images that have a near duplicate in train.

FER-2013's test split shares faces with its train split (exact and near duplicates, often
under the same label), which flatters any model trained on train. This scores each model on
the whole test split and on the test images with no near duplicate in train, found by
fercli.clean.leakage (the hashes and threshold of `fercli clean`), the library function behind
`fercli evaluate ROOT --leak-free`; the test images are hashed once for all models.

    .venv/bin/python scripts/leak_free_scores.py --data ../shared/fer2013 \
        fercli/bundled_models/accurate/fercli-accurate.onnx runs/default-s0/best.pt
"""

import argparse
import json
from pathlib import Path

import numpy as np

from fercli.clean.leakage import leaked_paths
from fercli.data.dataset import load_split
from fercli.evaluate.evaluation import scorer_for
from fercli.progress import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help=".onnx files or checkpoints")
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    settings["quiet"] = True

    leaked = leaked_paths(args.data, "test")
    results = {}
    for path in args.models:
        scorer = scorer_for(path, "cpu")
        test = load_split(args.data, "test", classes=scorer.classes, size=scorer.image_size)
        clean = np.array([p not in leaked for p in test.paths], bool)
        right = scorer.predict_proba(test.images).argmax(1) == test.labels
        results[str(path)] = {
            "all": float(right.mean()),
            "no_copy_in_train": float(right[clean].mean()),
            "leaked": float(right[~clean].mean()) if (~clean).any() else None,
            "images": [int(len(right)), int(clean.sum())],
        }
        r = results[str(path)]
        copies = "-" if r["leaked"] is None else f"{r['leaked']:.4f}"
        print(
            f"{path}: all {r['all']:.4f} ({len(right)}), no copy in train "
            f"{r['no_copy_in_train']:.4f} ({clean.sum()}), with a copy {copies} ({(~clean).sum()})"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
