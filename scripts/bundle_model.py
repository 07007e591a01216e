"""Build one of fercli's bundled models (`--name fast|accurate`) from finished training runs.

One run gives one model; several runs (the same recipe with other seeds) give one ensemble
that averages their class probabilities. The model is exported to ONNX in fp32 and int8 (both
verified by `export_onnx`), scored on the validation hold-out the runs share and on the test
split (with and without flip TTA); the better trade that fits the package's size limit ships
as fercli/bundled_models/NAME/fercli-NAME.onnx with its test metrics in the metadata, and
the model card (MODEL_CARD.md, model_card.json) is written beside it with each run's logs
and plots.

    .venv/bin/python scripts/bundle_model.py runs/default-s{0,1,2,3,4} --name accurate \
        --data ../shared/fer2013 --recipe recipes/default.toml
"""

import argparse
import json
import re
import shutil
from pathlib import Path

import onnx
from model_card import write_card  # scripts/model_card.py

from fercli import __version__, registry
from fercli.config import read_config
from fercli.evaluate.evaluation import evaluate
from fercli.export import export_onnx
from fercli.export.saturation import check_saturation
from fercli.predict.onnx_model import OnnxModel
from fercli.progress import settings
from fercli.train import TrainConfig, load_data
from fercli.train.checkpoint import load_checkpoint
from fercli.util import atomic_path, cpu_name

HERE = Path(__file__).resolve().parent.parent
BUNDLES = HERE / "fercli" / "bundled_models"
NAMES = ("fast", "accurate")
MAX_BYTES = 15_000_000  # the package data limit for the model
RUN_FILES = (
    "metrics.json",
    "history.csv",
    "curves.png",
    "confusion_matrix.png",
)  # not samples.png: it shows FER-2013 faces, which are never committed
MAX_INT8_LOSS = 0.005  # ship int8 only when it costs at most half a point of accuracy
MIN_AGREEMENT = 0.99  # and agrees with fp32 as export-onnx requires


def summary(result: dict) -> dict:
    keys = ("accuracy", "weighted_f1", "macro_f1", "count")
    return {k: result[k] for k in keys}


def with_test_metrics(src: Path, dest: Path, test: dict) -> None:
    """Copy the ONNX file, adding the test metrics to its `metrics` metadata entry."""
    proto = onnx.load(str(src))
    for entry in proto.metadata_props:
        if entry.key == "metrics":
            metrics = json.loads(entry.value) or {}
            metrics["test"] = test
            entry.value = json.dumps(metrics)
    with atomic_path(dest) as tmp:
        onnx.save(proto, str(tmp))


def validation_accuracy(model_path: Path, ckpt: dict, data_root: Path) -> float:
    """Accuracy on the runs' own hold-out of train (rebuilt from their config)."""
    config = TrainConfig.from_dict({**ckpt["config"], "data_dir": str(data_root)})
    data = load_data(config)
    probs = OnnxModel(model_path, "cpu").predict_proba(data.x_val[:, 0].numpy())
    return float((probs.argmax(1) == data.y_val.numpy()).mean())


def choose(scores: dict, quant, sizes: dict, min_agreement: float, ties: str) -> tuple[str, str]:
    """fp32 or int8, and why: int8 when it is within half a point, agrees with fp32 on at
    least min_agreement of the test images and is faster; fp32 otherwise, if it fits the size
    limit. ties: where the disagreements lie (near_ties)."""
    loss = scores["fp32"]["accuracy"] - scores["int8"]["accuracy"]
    speedup = quant.speed_int8 / quant.speed_fp32
    facts = (
        f"int8 changes the test accuracy by {-loss * 100:+.2f} points (at most -0.5 allowed), "
        f"agrees with fp32 on {quant.agreement:.2%} of the test images ({min_agreement:.1%} "
        f"required{'' if min_agreement == MIN_AGREEMENT else ', export-onnx asks 99%'}; "
        f"{ties}), runs {speedup:.1f}x faster (model only, CPU) and takes "
        f"{sizes['int8'] / 1e6:.1f} MB against {sizes['fp32'] / 1e6:.1f} MB (package limit "
        f"{MAX_BYTES / 1e6:.0f} MB)"
    )
    if loss <= MAX_INT8_LOSS and quant.agreement >= min_agreement and speedup > 1:
        if sizes["int8"] > MAX_BYTES:
            raise SystemExit(f"{facts}: even int8 is too large; bundle fewer runs.")
        return "int8", facts + ": int8 is the better trade"
    if sizes["fp32"] > MAX_BYTES:
        raise SystemExit(f"{facts}: int8 does not qualify and fp32 is too large.")
    return "fp32", facts + ": fp32 ships, as int8 does not qualify"


def near_ties(fp32: Path, int8: Path, data: Path) -> str:
    """Where int8 and fp32 disagree on the test split: how close fp32's top two classes are
    there (a disagreement on a near tie is a coin toss either way)."""
    import numpy as np

    from fercli.data.dataset import load_split

    a, b = (OnnxModel(p, "cpu") for p in (fp32, int8))
    test = load_split(data, "test", classes=a.info.classes, size=a.info.image_size)
    pa, pb = a.predict_proba(test.images), b.predict_proba(test.images)
    top2 = np.sort(pa, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    differ = pa.argmax(1) != pb.argmax(1)
    if not differ.any():
        return "no disagreement"
    return (
        f"where they disagree, fp32's top two probabilities are at most "
        f"{margin[differ].max():.3f} apart (median {np.median(margin[differ]):.3f}; median "
        f"over all test images {np.median(margin):.3f})"
    )


def run_logs(name: str, dest: Path) -> Path:
    """Where a bundle's training runs keep their logs and plots: for a bundled model (dest
    fercli/bundled_models/NAME), docs/model-runs/NAME/ in the repository (they document the
    model; no code reads them, so the wheel has none); for a bundle made elsewhere (--dest),
    DEST/runs/."""
    if Path(dest).resolve() == (BUNDLES / name).resolve():
        return HERE / "docs" / "model-runs" / name
    return Path(dest) / "runs"


def add_name_and_dest(parser) -> None:
    """--name and --dest, which every script that makes or remakes a bundle takes."""
    parser.add_argument("--name", choices=NAMES, required=True, help="the bundled model")
    parser.add_argument(
        "--dest", type=Path, help="its folder [default: fercli/bundled_models/NAME]"
    )


def parse_bundle_args(parser):
    args = parser.parse_args()
    args.dest = args.dest or BUNDLES / args.name
    args.file = args.dest / f"fercli-{args.name}.onnx"
    settings["quiet"] = True
    return args


def bundle_args(doc: str):
    """--name, --data and --dest, as the scripts that remake a bundle in place take them, and
    the bundle's card: (args, card); args.file is the bundle's .onnx file."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the dataset root")
    add_name_and_dest(parser)
    args = parse_bundle_args(parser)
    return args, json.loads((args.dest / "model_card.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (several: an ensemble)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset root")
    parser.add_argument("--recipe", type=Path, required=True)
    add_name_and_dest(parser)
    parser.add_argument(
        "--members",
        type=int,
        default=0,
        help="ensemble the K runs that do best together on the validation hold-out",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=MIN_AGREEMENT,
        help="int8 ships only if it agrees with fp32 on this share of the test images",
    )
    parser.add_argument(
        "--script", help="the script that trains every run and bundles them, if there is one"
    )
    parser.add_argument(
        "--hardware", help="what trained the runs, where their metrics.json does not say"
    )
    args = parse_bundle_args(parser)
    dest, runs = args.dest, args.runs
    args.candidates = [str(r) for r in runs]
    if args.members and args.members < len(runs):
        from ensemble_scores import best_subset, score_runs  # scripts/ensemble_scores.py

        probs, labels = score_runs(runs, args.data, HERE / "runs" / "ensemble-scores.npz")
        runs = list(best_subset(probs, labels, runs, args.members))
        print(f"chosen on the validation hold-out: {' '.join(str(r) for r in runs)}")
    args.runs = runs

    ckpts = [load_checkpoint(run / "best.pt") for run in runs]
    run_metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    exports = HERE / "exports"
    name = runs[0].name + (f"-ens{len(runs)}" if len(runs) > 1 else "")
    best = [run / "best.pt" for run in runs]
    fp32 = export_onnx(best, exports / f"{name}-fp32.onnx", data_root=args.data)
    # min_agreement=0: the int8 file is made whatever its agreement, to be weighed here.
    int8 = export_onnx(
        best, exports / f"{name}-int8.onnx", quantize="int8", data_root=args.data, min_agreement=0
    )
    scores = {}
    for precision, path in (("fp32", fp32.output), ("int8", int8.output)):
        for tta in (False, True):
            result = evaluate(path, args.data, "test", tta=tta, device="cpu")
            scores[precision + ("_tta" if tta else "")] = summary(result)
    sizes = {"fp32": fp32.output.stat().st_size, "int8": int8.output.stat().st_size}
    ties = near_ties(fp32.output, int8.output, args.data)
    shipped, reason = choose(scores, int8.quant, sizes, args.min_agreement, ties)
    chosen = int8.output if shipped == "int8" else fp32.output

    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.iterdir():  # the previous bundle's logs and plots
        if old.is_dir():
            shutil.rmtree(old)
        elif old.name not in (args.file.name, "MODEL_CARD.md", "model_card.json"):
            old.unlink()
    model_file = args.file
    with_test_metrics(chosen, model_file, scores[shipped])
    logs = run_logs(args.name, dest)  # a bundled model's: in the docs, not in the wheel
    if logs.exists():
        shutil.rmtree(logs)
    for run in runs + init_runs(ckpts):  # a fine-tuned run's starting run too
        (logs / run.name).mkdir(parents=True, exist_ok=True)
        for file in RUN_FILES:
            if (run / file).exists():
                shutil.copyfile(run / file, logs / run.name / file)

    card = make_card(args, ckpts, run_metrics, scores, shipped, reason, model_file, int8.quant)
    card["metrics"]["measured_on"] = cpu_name()
    if shipped == "int8":
        products = check_saturation(model_file)
        card["quantization"] = {
            "weights": "int8 per channel, 7 bits (|q| <= 64)",
            "activations": "uint8, ranges calibrated on 1000 training images (min/max)",
            "saturation_check": f"{len(products)} integer products, largest pair sum "
            f"{max(p.pair_max for p in products)} <= 32767",
        }
    card["metrics"]["validation_accuracy"] = validation_accuracy(fp32.output, ckpts[0], args.data)
    write_card(dest, card)
    print(json.dumps(card["metrics"], indent=2))
    print(f"shipped {shipped}: {reason}")


def init_chain(config: dict) -> list[dict]:
    """The runs a fine-tuned run started from (`fercli train --init`), nearest first: the
    checkpoint, its run folder and, from that run's metrics.json, its epochs, time and
    validation accuracy (and so on back, where that run was fine-tuned too)."""
    chain, init = [], config.get("init")
    while init and len(chain) < 20:
        folder = Path(init).parent
        record = {"checkpoint": init, "run": folder.name, "folder": str(folder)}
        init = None
        if (folder / "metrics.json").is_file():
            m = json.loads((folder / "metrics.json").read_text())
            record.update(
                model=m["config"]["model"],
                epochs_run=m["epochs_run"],
                validation_accuracy=m["best"]["val_acc"],
                wall_time_min=round(m["elapsed_s"] / 60, 1),
            )
            init = m["config"].get("init")
        chain.append(record)
    return chain


def init_runs(ckpts) -> list[Path]:
    """The run folders of every run the bundled runs started from, whose logs are here."""
    chains = (init_chain(c["config"]) for c in ckpts)
    return sorted({Path(r["folder"]) for chain in chains for r in chain if "epochs_run" in r})


def make_card(args, ckpts, run_metrics, scores, shipped, reason, model_file, quant) -> dict:
    first = ckpts[0]
    network = registry.create("model", first["model"], num_classes=len(first["classes"]))
    per_member = sum(p.numel() for p in network.parameters())
    seeds = [c["config"]["seed"] for c in ckpts]
    fallback = args.hardware or f"{cpu_name()} (not recorded)"
    hardware = sorted({m.get("hardware") or fallback for m in run_metrics})
    device = f" --device {first['config']['device']}" if first["config"]["device"] != "auto" else ""
    recipe_data = read_config(args.recipe)[0].get("data_dir")
    return {
        "name": f"fercli-{args.name}",
        "fercli_version": __version__,
        "architecture": {
            "model": first["model"],
            "description": registry.get("model", first["model"]).description,
            "members": len(ckpts),
            "parameters_per_member": per_member,
            "parameters": per_member * len(ckpts),
            "input": f"1x{first['input_size']}x{first['input_size']} grayscale",
            "normalization": first["normalization"],
            "classes": first["classes"],
        },
        "training": {
            "command": f"fercli train --config {args.recipe.as_posix()}{device} --seed S "
            f"--out runs/{re.sub(r'[0-9]+$', 'S', args.runs[0].name)}",
            "seeds": seeds,
            "bundle_command": "scripts/bundle_model.py "
            + " ".join(args.candidates)
            + f" --name {args.name}"
            + f" --data {args.data} --recipe {args.recipe.as_posix()}"
            + (f" --members {args.members}" if args.members else "")
            + (
                f" --min-agreement {args.min_agreement}"
                if args.min_agreement != MIN_AGREEMENT
                else ""
            ),
            "candidates": args.candidates,
            "script": args.script,
            "teacher": run_metrics[0].get("teacher"),
            "init": init_chain(first["config"]),
            "recipe": args.recipe.as_posix(),
            "recipe_data_dir": recipe_data,
            "config": first["config"],
            "epochs_run": [m["epochs_run"] for m in run_metrics],
            "best_epoch": [m["best"]["epoch"] for m in run_metrics],
            "member_validation_accuracy": [m["best"]["val_acc"] for m in run_metrics],
            "wall_time_min": [round(m["elapsed_s"] / 60, 1) for m in run_metrics],
            "hardware": hardware,
        },
        "data": {
            "dataset": "FER-2013 (Kaggle layout), train split only",
            "train_files": first["data"]["count"],
            "file_list_hash": first["data"]["file_list_hash"],
            "trained_on": first["data"]["train_images"],
            "validation": f"{first['data']['val_images']} images, {first['data']['val_source']}",
        },
        "metrics": {
            "test": scores,
            "test_split": "FER-2013 test (PublicTest), 3,589 images",
        },
        "shipped": {
            "file": model_file.name,
            "precision": shipped,
            "reason": reason,
            "size_mb": round(model_file.stat().st_size / 1e6, 2),
            "int8_top1_agreement": quant.agreement,
            "int8_speedup_model_only": round(quant.speed_int8 / quant.speed_fp32, 2),
        },
    }


if __name__ == "__main__":
    main()
