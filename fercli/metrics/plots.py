"""PNG plots of a training run or an evaluation: learning curves, confusion matrix, class
distribution, sample faces per class.

matplotlib is imported only when a plot is drawn, and only its object-oriented API (Figure and
the Agg canvas), so no GUI backend or global pyplot state is involved. Every file is written
atomically (temporary file, then rename).
"""

from pathlib import Path

import numpy as np

from fercli.util import atomic_path

CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
DISTRIBUTION = "class_distribution.png"
SAMPLES = "samples.png"
RELIABILITY = "reliability.png"
RUN_PLOTS = (CURVES, CONFUSION, DISTRIBUTION, SAMPLES)


def figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no GUI), laid out by constrained
    layout: for any module's plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    """Write a figure from figure() to path as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def curves(history: list[dict], path: Path) -> Path:
    """Loss and accuracy per epoch, train against validation (with --ema, the validation of
    the average and of the step's own weights)."""
    epochs = [int(row["epoch"]) for row in history]
    fig = figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, title in ((loss_ax, "loss", "Loss"), (acc_ax, "acc", "Accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [float(row[f"{split}_{key}"]) for row in history]
            ax.plot(epochs, values, style, markersize=3, label=split)
        if key == "acc" and "val_acc_live" in history[0]:  # --ema: val is the average's
            values = [float(row["val_acc_live"]) for row in history]
            ax.plot(epochs, values, ":", linewidth=1, label="val, the step's own weights")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    best = max(history, key=lambda row: float(row["val_acc"]))
    acc_ax.axvline(int(best["epoch"]), color="gray", linestyle=":", linewidth=1)
    acc_ax.annotate(
        f"best {float(best['val_acc']):.3f}",
        (int(best["epoch"]), float(best["val_acc"])),
        textcoords="offset points",
        xytext=(4, -12),
        fontsize=8,
    )
    return save(fig, path)


def confusion(matrix, classes, path: Path, title: str = "Confusion matrix") -> Path:
    """Two heatmaps side by side: counts, and rows normalised to recall per true class."""
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = max(5.0, 0.6 * len(classes) + 2.5)
    fig = figure(2 * size, size)
    fig.suptitle(title)
    annotate = len(classes) <= 15
    for ax, values, label, fmt in (
        (fig.add_subplot(1, 2, 1), counts, "count", "d"),
        (fig.add_subplot(1, 2, 2), normalised, "fraction of the true class", ".2f"),
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if annotate:
            top = values.max() or 1
            for (i, j), v in np.ndenumerate(values):
                color = "white" if v > top / 2 else "black"
                ax.text(j, i, format(v, fmt), ha="center", va="center", color=color, fontsize=8)
    return save(fig, path)


def reliability(bins: dict, path: Path, title: str = "Reliability") -> Path:
    """A reliability diagram from fercli.metrics.calibration.reliability: accuracy per confidence
    bin against the diagonal of perfect calibration, and how many predictions each bin has."""
    edges = np.asarray(bins["edges"])
    width = np.diff(edges)
    filled = [a is not None for a in bins["accuracy"]]
    accuracy = np.array([a or 0.0 for a in bins["accuracy"]])
    confidence = np.array([c or 0.0 for c in bins["confidence"]])
    fig = figure(5.5, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.bar(edges[:-1], accuracy, width, align="edge", edgecolor="black", label="accuracy")
    gap = np.where(filled, confidence - accuracy, 0.0)
    top.bar(edges[:-1], gap, width, bottom=accuracy, align="edge", color="tab:red", alpha=0.3,
            label="gap to mean confidence")  # fmt: skip
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set(ylim=(0, 1), ylabel="accuracy", title=f"{title}\nECE {bins['ece']:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(edges[:-1], bins["count"], width, align="edge", edgecolor="black")
    bottom.set(xlim=(0, 1), xlabel="confidence (top class probability)", ylabel="predictions")
    return save(fig, path)


def class_distribution(classes, counts: dict[str, list[int]], path: Path) -> Path:
    """Images per class, one bar per split (e.g. {"train": [...], "val": [...]})."""
    x = np.arange(len(classes))
    width = 0.8 / max(1, len(counts))
    fig = figure(max(6.0, 0.9 * len(classes) + 2), 4)
    ax = fig.subplots()
    for k, (split, values) in enumerate(counts.items()):
        bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, values, width, label=split)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, classes, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_title("Class distribution")
    ax.legend()
    return save(fig, path)


def sample_grid(images, labels, classes, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """A row of randomly chosen images per class (a fixed seed: the same run, the same grid)."""
    images = np.asarray(images).reshape(len(labels), *np.asarray(images).shape[-2:])
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fig = figure(per_class * 0.9 + 1.2, len(classes) * 0.95)
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    for row, name in enumerate(classes):
        members = np.flatnonzero(labels == row)
        chosen = np.sort(rng.choice(members, min(per_class, len(members)), replace=False))
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(chosen):
                ax.imshow(images[chosen[col]], cmap="gray", vmin=0, vmax=255)
        axes[row][0].set_ylabel(f"{name} ({len(members)})", rotation=0, ha="right", va="center")
    return save(fig, path)


def training_plots(out, history, report, data) -> list[Path]:
    """The plots of a training run, in its folder. `data` is a fercli.train.Data and
    `report` the validation classification report of the best checkpoint."""
    out = Path(out)
    classes = list(data.classes)
    n = len(classes)
    return [
        curves(history, out / CURVES),
        confusion(
            report["confusion_matrix"],
            classes,
            out / CONFUSION,
            f"Validation, best checkpoint (accuracy {report['accuracy']:.3f})",
        ),
        class_distribution(
            classes,
            {
                "train": np.bincount(np.asarray(data.y_train), minlength=n).tolist(),
                "val": np.bincount(np.asarray(data.y_val), minlength=n).tolist(),
            },
            out / DISTRIBUTION,
        ),
        sample_grid(np.asarray(data.x_train), np.asarray(data.y_train), classes, out / SAMPLES),
    ]


def coverage(result: dict, path: Path, title: str = "Risk and coverage") -> Path:
    """Accuracy of the faces answered against their share (fercli.metrics.calibration.coverage), as
    --abstain P trades them, with the thresholds of its table marked."""
    curve = result["curve"]
    fig = figure(6, 4.5)
    ax = fig.subplots()
    ax.plot(curve["coverage"], curve["accuracy"], linewidth=1.8)
    for row in result["table"]:
        if row["accuracy"] is not None and row["answered"] > 0:
            ax.plot(row["answered"], row["accuracy"], "o", color="tab:red", markersize=4)
            ax.annotate(f"P={row['abstain']:g}", (row["answered"], row["accuracy"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="share of faces answered (coverage)",
           ylabel="accuracy of the faces answered", title=title)  # fmt: skip
    ax.grid(alpha=0.3)
    return save(fig, path)
