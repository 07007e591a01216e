"""Measure what each choice of a training recipe gains: train the recipe, then the recipe with
one choice undone at a time, and compare their best accuracy on the validation hold-out of
train (never the test split). Prints a Markdown table and writes ablation.json.

A full recipe takes most of an hour on a 2-core CPU, so the ablations run at a reduced budget
(`--model`, `--epochs`); the table says which. Every variant uses the recipe's seed, so the
hold-out and the initial weights are the same for all of them.

    .venv/bin/python scripts/ablate.py recipes/default.toml --model vgg-small --epochs 6
"""

import argparse
import json
import time
from pathlib import Path

from fercli.commands.train import train_command
from fercli.config import default_map, read_config
from fercli.progress import settings
from fercli.train import TrainConfig, train
from fercli.util import atomic_write_text

# name -> (what the recipe does, the overrides that undo or change it)
VARIANTS = {
    "recipe": ("the recipe as written", {}),
    "no-label-smoothing": ("label smoothing 0.1 -> 0", {"label_smoothing": 0.0}),
    "no-erase": ("random erasing off", {"augment": "flip,rotate,crop,jitter"}),
    "flip-only": ("augmentation: flip only", {"augment": "flip"}),
    "adamw": (
        "SGD Nesterov lr 0.05 -> AdamW lr 0.002",
        {"optimizer": "adamw", "learning_rate": 0.002, "weight_decay": 0.01},
    ),
    "cosine": ("one-cycle -> cosine schedule", {"schedule": "cosine"}),
    "mixup": ("adds mixup (alpha 0.2)", {"mixup": 0.2}),
}


def recipe_config(path: Path) -> dict:
    """The recipe's options for `fercli train`, merged as the CLI merges them."""
    config, _ = read_config(path)
    return default_map(config, {"train": train_command}).get("train", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--model", help="architecture for the ablations [default: the recipe's]")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data", help="dataset root [default: the recipe's data_dir]")
    parser.add_argument("--only", help="comma-separated variant names [default: all]")
    parser.add_argument("--out", type=Path, default=Path("runs/ablate"))
    args = parser.parse_args()

    base = recipe_config(args.recipe)
    base["num_epochs"] = args.epochs
    if args.model:
        base["model"] = args.model
    if args.data:
        base["data_dir"] = args.data
    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        choices = ", ".join(VARIANTS)
        parser.error(f"unknown variant(s) {', '.join(sorted(unknown))}: choose from {choices}")

    settings["quiet"] = True
    results = {}
    for name in names:
        what, overrides = VARIANTS[name]
        config = TrainConfig.from_dict({**base, **overrides, "out": str(args.out / name)})
        start = time.perf_counter()
        metrics = train(config, overwrite=True)  # a rerun redoes the variants
        results[name] = {
            "change": what,
            "overrides": overrides,
            "val_acc": metrics["val_report"]["accuracy"],
            "val_weighted_f1": metrics["val_report"]["weighted_f1"],
            "best_epoch": metrics["best"]["epoch"],
            "minutes": round((time.perf_counter() - start) / 60, 1),
        }
        print(f"{name}: val accuracy {results[name]['val_acc']:.4f}", flush=True)

    report = {
        "recipe": str(args.recipe),
        "model": base["model"],
        "epochs": args.epochs,
        "seed": base.get("seed", 0),
        "results": results,
    }
    atomic_write_text(args.out / "ablation.json", json.dumps(report, indent=2))
    ref = results.get("recipe", {}).get("val_acc")
    print(
        f"\n{base['model']}, {args.epochs} epochs, validation hold-out of train "
        f"({args.recipe} otherwise):\n"
    )
    print("| variant | change | val accuracy | vs recipe | weighted F1 | minutes |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        delta = f"{(r['val_acc'] - ref) * 100:+.2f}" if ref is not None else ""
        print(
            f"| {name} | {r['change']} | {r['val_acc']:.2%} | {delta} | "
            f"{r['val_weighted_f1']:.3f} | {r['minutes']} |"
        )


if __name__ == "__main__":
    main()
