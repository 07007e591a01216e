"""`fercli evaluate`: score a model (a training checkpoint or an ONNX file) on a dataset split.

Both kinds of model see the images through the same preprocessing (fercli.data.images via the
cached split of fercli.data.dataset) and are scored by the same report
(fercli.metrics.classification), so their numbers compare directly. Checkpoints run in full
fp32 precision, as the exported ONNX model does.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercli.data.dataset import load_split
from fercli.defaults import DEVICE, EVALUATE_SPLIT, SPLIT_FILE_FACES, SPLIT_FILE_PART
from fercli.errors import FercliError
from fercli.faces.detect import DEFAULT_DETECTOR
from fercli.predict.onnx_model import mirror_averaged
from fercli.progress import say
from fercli.util import atomic_write_text

METRICS = "metrics.json"


@dataclass
class EvaluateOptions:
    """What `fercli evaluate` scores: `model` on data_dir/<split> (evaluate's parameters), or
    with `split_file` on one part of a person-level split (evaluate_part's). `given` names the
    options set explicitly (on the command line): part and faces go with split_file only."""

    model: str | Path | None = None
    data_dir: str | Path | None = None
    split: str = EVALUATE_SPLIT
    tta: bool = False
    device: str = DEVICE
    provider: str | None = None
    leak_free: bool = False
    coverage_plot: str | Path | None = None
    split_file: str | Path | None = None
    part: str = SPLIT_FILE_PART
    faces: str = SPLIT_FILE_FACES
    given: frozenset[str] = field(default_factory=frozenset)

    def check(self) -> None:
        """Refuse a combination of options that does not go together."""
        if self.split_file:
            return
        for name in ("part", "faces"):
            if name in self.given:
                raise FercliError(f"--{name} goes with --split-file.")


def run_evaluation(options: EvaluateOptions) -> dict:
    """evaluate, or evaluate_part with a split file, with `options` (checked first)."""
    options.check()
    if options.split_file:
        return evaluate_part(
            options.model,
            options.data_dir,
            options.split_file,
            part=options.part,
            faces=options.faces,
            provider=options.provider,
            coverage_plot=options.coverage_plot,
        )
    return evaluate(
        options.model,
        options.data_dir,
        split=options.split,
        tta=options.tta,
        device=options.device,
        leak_free=options.leak_free,
        provider=options.provider,
        coverage_plot=options.coverage_plot,
    )


def resolve_model(model: str | Path | None) -> Path:
    """The model file: a bundled model by name (None: the default), the given file, or a run
    folder's best.pt."""
    from fercli.predict import bundled

    if model is None or str(model) in bundled.BUNDLED:
        return bundled.model_path(model)
    path = Path(model)
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt"
        raise FercliError(f"{path} is a folder without best.pt: pass a checkpoint or .onnx file.")
    if not path.is_file():
        raise FercliError(f"model {path} not found: pass a checkpoint (.pt) or an .onnx file.")
    return path


def check_classes(root, split: str, classes) -> None:
    """Every class folder of the split must be one of the model's classes; classes without
    a folder only get a warning (their recall is reported as 0)."""
    folder = Path(root) / split
    if not folder.is_dir():
        return  # load_split says what is missing
    present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [c for c in present if c not in classes]
    if unknown:
        raise FercliError(
            f"{folder} has class folder(s) {', '.join(unknown)} that the model does not know "
            f"(its classes: {', '.join(classes)}): evaluate on data labelled with those classes."
        )
    missing = [c for c in classes if c not in present]
    if missing:
        say(f"Warning: {folder} has no folder for class(es) {', '.join(missing)}.")


def evaluate(
    model: str | Path | None,
    root: str | Path,
    split: str = EVALUATE_SPLIT,
    tta: bool = False,
    device: str = DEVICE,
    leak_free: bool = False,
    provider: str | None = None,
    coverage_plot: str | Path | None = None,
) -> dict:
    """Accuracy, macro and weighted F1, per-class scores and the confusion matrix of a model
    on ROOT/<split>, with provenance (model, data, skipped files), and how well its
    confidences are calibrated (ECE and the reliability bins, fercli.metrics.calibration; an ONNX
    model's probabilities use its temperature). With tta, the class probabilities are
    averaged with those of the mirrored images. With leak_free, the same scores again under
    "leak_free" for the images with no near duplicate in ROOT/train (fercli.clean.leakage).
    "coverage": what `predict-dir --abstain P` trades (fercli.metrics.calibration.coverage), drawn
    to coverage_plot (a PNG) where given.

    An .onnx model runs on `provider` (fercli.predict.providers; default: `device`), a checkpoint on
    the torch `device`; "provider" in the result names what ran it."""
    from fercli.metrics.calibration import reliability
    from fercli.metrics.classification import classification_report

    if leak_free:
        check_leak_split(root, split)
    path = resolve_model(model)
    scorer = scorer_for(path, device, provider)
    kind = "onnx" if isinstance(scorer, OnnxScorer) else "checkpoint"
    check_classes(root, split, scorer.classes)
    data = load_split(root, split, classes=scorer.classes, size=scorer.image_size)
    for rel, reason in data.errors:
        say(f"Warning: skipped unreadable {rel}: {reason} (run `fercli clean {root}` to find all)")
    if tta:
        probs = mirror_averaged(scorer.predict_proba, data.images)
    else:
        probs = scorer.predict_proba(data.images)
    predicted = probs.argmax(1)
    report = classification_report(data.labels, predicted, scorer.classes)
    bins = reliability(probs, data.labels)
    result = {
        "model": str(path),
        "model_format": kind,
        "root": str(Path(root)),
        "split": split,
        "tta": tta,
        **report,
        "ece": bins["ece"],
        "temperature": scorer.temperature,
        "provider": scorer.provider,
        "provider_fallback": scorer.fallback or None,  # why `auto` did not take another
        "reliability": bins,
        "coverage": coverage_of(probs.max(1), predicted == data.labels, coverage_plot, path),
        "file_list_hash": data.file_list_hash,
        "skipped": [{"path": rel, "reason": reason} for rel, reason in data.errors],
    }
    if leak_free:
        from fercli.clean.leakage import LeakCheck, leaked_paths

        check = LeakCheck()
        leaked = leaked_paths(root, split, check)
        keep = np.array([p not in leaked for p in data.paths], bool)
        result["leak_free"] = {
            **check.describe(),
            "left_out": int((~keep).sum()),
            **classification_report(data.labels[keep], predicted[keep], scorer.classes),
            "ece": reliability(probs[keep], data.labels[keep])["ece"],
        }
    return result


def check_leak_split(root, split: str) -> None:
    """--leak-free compares a split with ROOT/train: the split must be another, and train
    must be there."""
    if split == "train":
        raise FercliError("--leak-free scores a split against train: use --split test or val.")
    if not (Path(root) / "train").is_dir():
        raise FercliError(
            f"--leak-free needs the training split {Path(root) / 'train'} to look for "
            "near duplicates in; there is none."
        )


def scorer_for(path: Path, device: str = DEVICE, provider: str | None = None):
    """An .onnx file in onnxruntime (on `provider`, default `device`), anything else as a
    training checkpoint in PyTorch (on `device`; a provider is refused)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return OnnxScorer(path, provider or device)
    if provider:
        raise FercliError(
            f"--provider is for .onnx models; {path} is a checkpoint, scored by PyTorch: "
            "use --device."
        )
    return CheckpointScorer(path, device)


class CheckpointScorer:
    """A training checkpoint in PyTorch, fp32: class probabilities for uint8 images."""

    def __init__(self, path: Path, device: str = DEVICE):
        from fercli.train import resolve_device
        from fercli.train.checkpoint import build_model, load_checkpoint

        ckpt = load_checkpoint(path)
        self.classes = tuple(ckpt["classes"])
        self.image_size = int(ckpt.get("image_size", 48))
        self.device = resolve_device(device)
        self.model = build_model(ckpt).to(self.device)
        self.temperature = 1.0  # a checkpoint is scored as trained
        self.provider, self.fallback = f"torch-{self.device.type}", ""

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        import torch

        from fercli.train import predict_logits

        x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
        return predict_logits(self.model, x, self.device).softmax(1).numpy()


class OnnxScorer:
    """A fercli .onnx file in onnxruntime (fercli.predict.onnx_model, shared with predict-dir)."""

    def __init__(self, path: Path, device: str = DEVICE):
        from fercli.predict.onnx_model import OnnxModel

        self.onnx = OnnxModel(path, provider=device)
        self.classes = self.onnx.info.classes
        self.image_size = self.onnx.info.image_size
        self.temperature = self.onnx.info.temperature  # applied by predict_proba
        self.provider, self.fallback = self.onnx.provider, self.onnx.fallback

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.onnx.predict_proba(images)


def coverage_of(confidence, correct, plot: str | Path | None, model: Path) -> dict:
    """fercli.metrics.calibration.coverage's table (the curve only in the plot, where asked for)."""
    from fercli.metrics.calibration import coverage

    found = coverage(confidence, correct)
    if plot:
        from fercli.metrics import plots

        plots.coverage(found, Path(plot), f"{Path(model).name}: accuracy against coverage")
    return {"faces": found["faces"], "table": found["table"]}


def write_outputs(result: dict, out_dir: str | Path) -> list[Path]:
    """metrics.json, confusion_matrix.png and reliability.png in out_dir (atomically)."""
    from fercli.metrics import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / METRICS, json.dumps(result, indent=2))
    title = (
        f"{Path(result['model']).name} on {result['split']}"
        f"{' (TTA)' if result['tta'] else ''}: accuracy {result['accuracy']:.3f}"
    )
    png = plots.confusion(
        result["confusion_matrix"], result["classes"], out_dir / plots.CONFUSION, title
    )
    diagram = plots.reliability(
        result["reliability"],
        out_dir / plots.RELIABILITY,
        f"{Path(result['model']).name} on {result['split']}{' (TTA)' if result['tta'] else ''}, "
        f"temperature {result['temperature']:g}",
    )
    return [out_dir / METRICS, png, diagram]


def evaluate_part(
    model: str | Path | None,
    root: str | Path,
    split_file: str | Path,
    part: str = SPLIT_FILE_PART,
    faces: str = "auto",
    provider: str | None = None,
    detector: str = DEFAULT_DETECTOR,
    coverage_plot: str | Path | None = None,
) -> dict:
    """Score an ONNX model on one part of a person-level split (fercli.data.splits) of the photo
    folder ROOT/<class>/<image>, through predict-dir's own pipeline (fercli.predict.folder.
    predict_dir with `faces`: detection and alignment, as a user runs it) on a temporary
    folder of links to the part's files. A photo with several faces is scored by its largest
    face; a photo with no face found, or unreadable, counts as wrong. Returns accuracy,
    macro recall (over the classes with photos) and per-class recall with counts."""
    import csv
    import re
    import tempfile

    from fercli.data.splits import load_split as load_person_split
    from fercli.data.splits import part_files
    from fercli.predict.folder import predict_dir

    split = load_person_split(split_file)
    chosen = part_files(split, root, part)
    if chosen.unknown:
        say(chosen.unknown_line())
    if not chosen.files:
        raise FercliError(f"no photos of part {part} of {split_file} in {root}/<class>/.")
    with tempfile.TemporaryDirectory(prefix="fercli-part-") as tmp:
        links = Path(tmp) / "photos"
        for cls, path in chosen.files:
            (links / cls).mkdir(parents=True, exist_ok=True)
            (links / cls / path.name).symlink_to(path.resolve())
        out = Path(tmp) / "predictions.csv"
        run = predict_dir(
            links, out, model, provider=provider or "auto", faces=faces, detector=detector,
            write_summary=False,
        )  # fmt: skip
        best: dict[str, tuple[float, str, float]] = {}  # path -> (face area, label, confidence)
        with out.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["status"] != "ok":
                    continue
                numbers = [float(v) for v in re.findall(r"[\d.]+", row.get("box") or "")]
                area = numbers[2] * numbers[3] if len(numbers) >= 4 else float("inf")
                if row["path"] not in best or area > best[row["path"]][0]:
                    best[row["path"]] = (area, row["label"], float(row["confidence"]))
    classes = list(run.classes)
    support = {c: 0 for c in classes}
    correct = {c: 0 for c in classes}
    confidences, rights = [], []  # per photo; a photo without a face: confidence 0, wrong
    for cls, path in chosen.files:
        if cls not in support:
            continue
        support[cls] += 1
        found = best.get(f"{cls}/{path.name}")
        correct[cls] += bool(found and found[1] == cls)
        confidences.append(found[2] if found else 0.0)
        rights.append(bool(found and found[1] == cls))
    count = sum(support.values())
    scored = [c for c in classes if support[c]]
    return {
        "model": str(run.model),
        "root": str(Path(root)),
        "split_file": str(split_file),
        "part": part,
        "faces": faces,
        "provider": run.provider,
        "count": count,
        "accuracy": sum(correct.values()) / count if count else 0.0,
        "macro_recall": sum(correct[c] / support[c] for c in scored) / len(scored)
        if scored
        else 0.0,
        "per_class": {
            c: {
                "recall": correct[c] / support[c] if support[c] else 0.0,
                "correct": correct[c],
                "support": support[c],
            }
            for c in classes
        },
        "coverage": coverage_of(np.array(confidences), np.array(rights), coverage_plot, run.model),
        "no_face": run.no_face,
        "errors": len(run.errors),
        "unknown_persons": chosen.unknown,
        "seconds": run.seconds,
    }
