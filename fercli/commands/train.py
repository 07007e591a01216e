"""`fercli train`: train a model on ROOT/train, validate on val or a hold-out of train."""

import click


class SourceType(click.ParamType):
    """--data ROOT[:WEIGHT] on the command line; a [[train.data]] table from a config file."""

    name = "ROOT[:WEIGHT]"

    def convert(self, value, param, ctx):
        from fercli.train.sources import parse_source, source_entry

        return source_entry(value) if isinstance(value, dict) else parse_source(value)


@click.command("train")
@click.argument("data_dir", required=False, type=click.Path(file_okay=False))
@click.option(
    "--data",
    "data",
    multiple=True,
    type=SourceType(),
    help="Another data root, sampled with this weight (default 1): each source's share of an "
    "epoch's samples is its weight over the sum (docs/train.md). Repeatable; DATA_DIR counts "
    "as one of weight 1. A config file's [[train.data]] tables add name and split.",
)
@click.option(
    "--model", default="vgg", show_default=True, help="Registered model name (`fercli plugins`)."
)
@click.option("--epochs", "num_epochs", default=30, show_default=True, type=click.IntRange(1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@click.option(
    "--lr", "learning_rate", default=0.05, show_default=True, type=float, help="Peak learning rate."
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--weight-decay", default=5e-4, show_default=True, type=float)
@click.option(
    "--schedule",
    type=click.Choice(["onecycle", "cosine", "plateau", "none"]),
    default="onecycle",
    show_default=True,
)
@click.option(
    "--augment",
    default="flip,rotate,crop,jitter",
    show_default=True,
    help="Comma-separated augmenter names, or none.",
)
@click.option(
    "--balance",
    type=click.Choice(["none", "oversample", "weights"]),
    default="none",
    show_default=True,
    help="Class balancing for minority classes.",
)
@click.option("--label-smoothing", default=0.0, show_default=True, type=click.FloatRange(0, 0.5))
@click.option(
    "--mixup",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Mixup alpha; 0 is off.",
)
@click.option(
    "--val-fraction",
    default=0.1,
    show_default=True,
    type=float,
    help="Stratified hold-out of train for validation when there is no val split.",
)
@click.option(
    "--patience",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Early stopping after this many epochs without a better val accuracy; 0 is off.",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Weights, shuffling, augmentation."
)
@click.option(
    "--split-seed",
    default=0,
    show_default=True,
    type=int,
    help="The validation hold-out; runs that share it can be compared and ensembled.",
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@click.option(
    "--amp",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Mixed precision: bf16 on CPUs with AMX, fp16 on CUDA.",
)
@click.option("--image-size", default=48, show_default=True, type=click.IntRange(16))
@click.option(
    "--max-minutes",
    default=0.0,
    show_default=True,
    type=float,
    help="Stop after the epoch that passes this wall time; 0 is no limit.",
)
@click.option(
    "--teacher",
    type=click.Path(dir_okay=False),
    help="Distil from this exported model (.onnx, the same classes): the loss mixes the "
    "labels' with the KL to its softened probabilities.",
)
@click.option(
    "--distill-weight",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Weight of the teacher's term (the labels' gets 1 minus it).",
)
@click.option(
    "--distill-temperature",
    default=4.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Softens the teacher's and the student's probabilities in the KL term.",
)
@click.option(
    "--teacher-targets",
    type=click.Choice(["cached", "batch"]),
    default="cached",
    show_default=True,
    help="cached: the teacher's probabilities of each unaugmented image and its mirror, "
    "computed once; batch: of every augmented batch, as the student sees it (slower).",
)
@click.option(
    "--init",
    type=click.Path(dir_okay=False),
    help="Start from this checkpoint's weights (the same model and classes): fine-tuning.",
)
@click.option(
    "--ema",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Keep a moving average of the weights with this decay per step (e.g. 0.999) and "
    "validate, checkpoint and export it instead of the last step's weights; 0 is off.",
)
@click.option(
    "--out", type=click.Path(file_okay=False), help="Run folder (default runs/<time>-<model>)."
)
@click.option("--resume", type=click.Path(), help="Continue a run folder (or its last.pt).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Train into an --out folder that already holds a run, replacing its files.",
)
def train_command(resume, overwrite, **options):
    """Train a model on DATA_DIR/train and write checkpoints, metrics and plots."""
    from pathlib import Path

    from fercli.errors import FercliError
    from fercli.progress import say
    from fercli.train import TrainConfig, run_folder, train
    from fercli.train.sources import is_multi, source_list

    given = source_list(options["data_dir"], options.pop("data"))
    if resume is None and not given:
        raise FercliError(
            "missing DATA_DIR: `fercli train DATA_DIR` or --data ROOT (or data_dir in fercli.toml)."
        )
    if given:
        options.update(data_dir=given[0]["root"], sources=given if is_multi(given) else [])
    config = TrainConfig.from_dict(options) if given else None  # resume: checked against the run
    if not resume:
        config.out = str(run_folder(config))
    try:
        metrics = train(config, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        out = Path(resume or config.out)
        if (out / "last.pt").is_file() or out.name == "last.pt":
            say(f"Interrupted: `fercli train --resume {out}` continues after the last saved epoch.")
        raise
    if metrics is not None:  # None: a torchrun process other than rank 0, which stays silent
        _summary(metrics)


def _summary(metrics: dict) -> None:
    from rich.console import Console

    from fercli.commands.tables import per_class_table

    report = metrics["val_report"]
    console = Console(stderr=True)
    console.print(per_class_table(report, "Validation (best epoch)"))
    console.print(
        f"best epoch {metrics['best']['epoch']}: val accuracy {report['accuracy']:.4f}, "
        f"macro F1 {report['macro_f1']:.4f}, weighted F1 {report['weighted_f1']:.4f}; "
        f"{metrics['epochs_run']} epochs in {metrics['elapsed_s'] / 60:.1f} min; "
        f"run folder {metrics['out']}"
    )
    for name, part in metrics.get("val_sources", {}).items():
        console.print(
            f"  source {name}: val accuracy {part['accuracy']:.4f}, macro recall "
            f"{part['macro_recall']:.4f} ({part['count']} images)"
        )
