"""Check that a finished training run reproduces: train its exact configuration again for the
first few epochs and compare the epoch logs with the run's history.csv.

The trainer is deterministic for a given seed, thread count and machine, so on the same
hardware with the same FERCLI_THREADS the losses and accuracies must match to the digit; any
drift shows at once instead of after a full run. Epochs are run one call at a time (a tiny
time limit, then --resume), so resuming is checked on the way. The rerun uses the autocast
the run recorded (bf16 or fp32), not what `--amp auto` would pick on this machine.

    .venv/bin/python scripts/check_reproduction.py runs/RUN --epochs 2

For CPU runs: GPU kernels are not bit-for-bit deterministic, so a GPU run (such as the
members of the bundled default model) is checked across seeds instead (docs/benchmarks/accuracy.md).
"""

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

from fercli.progress import settings
from fercli.train import TrainConfig, train

COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc")


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder (or fercli/bundled_models/accurate)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    metrics = json.loads((args.run / "metrics.json").read_text())
    expected = read_history(args.run / "history.csv")[: args.epochs]
    settings["quiet"] = True
    with tempfile.TemporaryDirectory(prefix="fercli-repro-") as tmp:
        out = Path(tmp) / "run"
        config = TrainConfig.from_dict({**metrics["config"], "out": str(out)})
        if config.device != "cuda" and metrics.get("autocast") in ("bfloat16", "off"):
            # what `--amp auto` chose on the machine that trained it, not what it picks here
            config.amp = "on" if metrics["autocast"] == "bfloat16" else "off"
        config.max_minutes = 1e-6  # stop after every epoch; each --resume adds one
        train(config)
        for _ in range(len(expected) - 1):
            train(None, resume=str(out))
        got = read_history(out / "history.csv")

    worst = 0.0
    print(f"epoch  {'  '.join(f'{k:>21}' for k in COMPARED)}   (shipped run / this run)")
    for old, new in zip(expected, got):
        diffs = [abs(float(old[k]) - float(new[k])) for k in COMPARED]
        worst = max(worst, *diffs)
        cells = "  ".join(f"{float(old[k]):>10.5f}/{float(new[k]):<10.5f}" for k in COMPARED)
        print(f"{old['epoch']:>5}  {cells}")
    ok = len(got) == len(expected) and worst <= args.tolerance
    print(
        f"largest difference {worst:.2e} over {len(expected)} epoch(s): "
        + ("reproduced" if ok else f"NOT reproduced (tolerance {args.tolerance:g})")
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
