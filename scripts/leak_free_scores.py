"""Test accuracy with and without the test images that `fercli clean` finds in train too.

FER-2013's test split shares faces with its train split (exact and near duplicates, often
under the same label), which flatters any model trained on train. Given a clean report, this
scores each model on the whole test split and on the test images that have no copy in train.

    .venv/bin/fercli clean ../shared/fer2013 --report runs/clean.json
    .venv/bin/python scripts/leak_free_scores.py runs/clean.json --data ../shared/fer2013 \
        fercli/default_model/fercli-default.onnx runs/default-s0/best.pt
"""

import argparse
import json
from pathlib import Path

import numpy as np

from fercli.dataset import load_split
from fercli.evaluation import scorer_for
from fercli.progress import settings


def leaked_test_paths(report: dict) -> set[str]:
    """Test images in a duplicate group that reaches into another split."""
    return {
        member["path"]
        for group in report["groups"]
        if group["cross_split"]
        for member in group["members"]
        if member["split"] == "test"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="a `fercli clean --report FILE.json`")
    parser.add_argument("models", nargs="+", type=Path, help=".onnx files or checkpoints")
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args()
    settings["quiet"] = True

    leaked = leaked_test_paths(json.loads(args.report.read_text()))
    results = {}
    for path in args.models:
        scorer = scorer_for(path, "cpu")
        test = load_split(args.data, "test", classes=scorer.classes, size=scorer.image_size)
        clean = np.array([p not in leaked for p in test.paths])
        right = scorer.predict_proba(test.images).argmax(1) == test.labels
        results[str(path)] = {
            "all": float(right.mean()),
            "no_copy_in_train": float(right[clean].mean()),
            "leaked": float(right[~clean].mean()),
            "images": [int(len(right)), int(clean.sum())],
        }
        r = results[str(path)]
        print(
            f"{path}: all {r['all']:.4f} ({len(right)}), no copy in train "
            f"{r['no_copy_in_train']:.4f} ({clean.sum()}), with a copy {r['leaked']:.4f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
