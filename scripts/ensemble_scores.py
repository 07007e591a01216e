"""Score training runs alone and as ensembles (averaged class probabilities) on the validation
hold-out they share and on the test split, with and without flip TTA, and name the ensemble of
k runs that does best on the validation hold-out (the test split is only reported).

The runs must share the hold-out: the same data and split seed (the recipe's seeds differ
only in weights, shuffling and augmentation). Probabilities are cached in --cache.

    .venv/bin/python scripts/ensemble_scores.py runs/default-s{0,1,2,3,4,5,6} \
        --data ../shared/fer2013 --members 5
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from fercli.data.dataset import load_split
from fercli.evaluate.evaluation import CheckpointScorer
from fercli.predict.onnx_model import mirror_averaged
from fercli.progress import settings
from fercli.train import TrainConfig, load_data
from fercli.train.checkpoint import load_checkpoint


def score_runs(runs: list[Path], data_root, cache: Path | None = None):
    """({"<run>/<split>/<plain|tta>": probabilities}, {split: labels}) for val and test."""
    cached = dict(np.load(cache)) if cache and cache.exists() else {}
    first = load_checkpoint(runs[0] / "best.pt")
    config = TrainConfig.from_dict({**first["config"], "data_dir": str(data_root)})
    data = load_data(config)  # the runs' hold-out: same data, same split seed
    test = load_split(Path(data_root), "test", classes=data.classes, size=config.image_size)
    sets = {
        "val": (data.x_val[:, 0].numpy(), data.y_val.numpy()),
        "test": (test.images, test.labels),
    }
    for run in runs:
        ckpt = load_checkpoint(run / "best.pt")
        if (ckpt["config"].get("split_seed", 0), ckpt["data"]["file_list_hash"]) != (
            first["config"].get("split_seed", 0),
            first["data"]["file_list_hash"],
        ):
            raise SystemExit(f"{run} was validated on another hold-out than {runs[0]}")
        scorer = None
        for split, (x, _) in sets.items():
            for tta in ("plain", "tta"):
                key = f"{run.name}/{split}/{tta}"
                if key not in cached:  # as `fercli evaluate [--tta]` scores a checkpoint
                    scorer = scorer or CheckpointScorer(run / "best.pt", "cpu")
                    predict = scorer.predict_proba
                    cached[key] = mirror_averaged(predict, x) if tta == "tta" else predict(x)
        if cache and scorer:  # after each run: an interrupted scoring keeps the finished runs
            np.savez(cache, **cached)
    return cached, {split: y for split, (_, y) in sets.items()}


def accuracy(probs: dict, labels: dict, runs, split: str, tta: str = "plain") -> float:
    mean = np.mean([probs[f"{Path(r).name}/{split}/{tta}"] for r in runs], axis=0)
    return float((mean.argmax(1) == labels[split]).mean())


def best_subset(probs: dict, labels: dict, runs: list[Path], k: int) -> tuple[Path, ...]:
    """The k runs whose averaged probabilities are most accurate on the validation hold-out
    (ties: the earlier runs)."""
    return max(itertools.combinations(runs, k), key=lambda sub: accuracy(probs, labels, sub, "val"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", required=True, help="the dataset root the runs trained on")
    parser.add_argument("--members", type=int, default=0, help="also name the best k-subset")
    parser.add_argument("--cache", type=Path, default=Path("runs/ensemble-scores.npz"))
    args = parser.parse_args()
    settings["quiet"] = True

    probs, labels = score_runs(args.runs, args.data, args.cache)
    report = {}
    for split in ("val", "test"):
        for tta in ("plain", "tta"):
            alone = [accuracy(probs, labels, [r], split, tta) for r in args.runs]
            first_k = [
                accuracy(probs, labels, args.runs[:k], split, tta)
                for k in range(1, len(args.runs) + 1)
            ]
            report[f"{split}/{tta}"] = {"alone": alone, "first_k": first_k}
            print(
                f"{split:>4} {tta:>5}  alone: {' '.join(f'{a:.4f}' for a in alone)}"
                f"  | first k = 1..{len(args.runs)}: {' '.join(f'{a:.4f}' for a in first_k)}"
            )
    if args.members:
        best = best_subset(probs, labels, args.runs, args.members)
        chosen = {
            f"{split}/{tta}": accuracy(probs, labels, best, split, tta)
            for split in ("val", "test")
            for tta in ("plain", "tta")
        }
        report["best_subset"] = {"runs": [str(r) for r in best], **chosen}
        print(f"best {args.members} on validation: {' '.join(str(r) for r in best)}  {chosen}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
