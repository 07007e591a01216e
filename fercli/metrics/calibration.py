"""Calibrated confidences: temperature scaling and the expected calibration error (ECE).

A network trained with cross-entropy is usually overconfident: among predictions made with
90% confidence fewer than 90% are right. Temperature scaling (Guo et al., 2017) divides the
logits by one number T > 0, fitted on held-out data by minimising the negative
log-likelihood; the arg max, so accuracy, does not change. A fercli ONNX file carries T as
its `temperature` metadata (fercli.predict.onnx_model.ModelInfo, default 1.0), and OnnxModel applies
it in predict_proba, for predict-dir and evaluate alike.

A fitted T is used only where it can be trusted: `choose_temperature` refuses to fit on a
hold-out of fewer than MIN_IMAGES images, searches T only in TEMPERATURE_RANGE, and keeps
T = 1 (with the reason) where the fitted T does not lower the hold-out's ECE: the NLL optimum
of a small or unusual hold-out can make the confidences worse, and T = 1 is what the network
was trained to give.

ECE: the predictions sorted into BINS equal-width bins of confidence (the top class
probability; bin b holds (b/BINS, (b+1)/BINS]); the mean over bins, weighted by their share of
the predictions, of |accuracy - mean confidence| in the bin.
"""

from dataclasses import dataclass

import numpy as np

BINS = 15
TEMPERATURE_RANGE = (0.5, 5.0)  # the search interval for T
MIN_IMAGES = 200  # the smallest hold-out a temperature is fitted on


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature)."""
    logp = log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in TEMPERATURE_RANGE minimising `nll(logits, labels, T)` on a
    hold-out (not the data the network was trained on), from the logits themselves. The NLL
    is smooth in log T, so a bounded scalar search on log T finds its minimum (at a bound
    where the minimum lies outside the range). Where it is used: `choose_temperature`."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ValueError("fit_temperature needs logits (n, classes) and n labels, n > 0")
    lo, hi = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.clip(np.exp(found.x), *TEMPERATURE_RANGE))


@dataclass
class TemperatureChoice:
    temperature: float  # the one to use: the fitted T, or 1.0 where it was kept
    fitted: float | None  # what the NLL search found (None: the hold-out was too small)
    images: int
    ece_before: float  # at temperature 1
    ece_after: float  # at `temperature`
    reason: str = ""  # why T = 1 was kept; empty where the fitted T is used


def choose_temperature(
    logits: np.ndarray, labels: np.ndarray, min_images: int | None = None
) -> TemperatureChoice:
    """The temperature to write for a hold-out's logits and labels: `fit_temperature`'s, or
    1.0 with the reason where the hold-out has fewer than `min_images` (MIN_IMAGES) images or
    the fitted T does not lower its expected calibration error."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    min_images = MIN_IMAGES if min_images is None else min_images
    n = len(labels)
    before = expected_calibration_error(_softmax(logits), labels) if n else 0.0
    if n < min_images:
        reason = f"the hold-out has {n} images, under the {min_images} needed to fit one"
        return TemperatureChoice(1.0, None, n, before, before, reason)
    t = fit_temperature(logits, labels)
    after = expected_calibration_error(_softmax(logits / t), labels)
    if not after < before:
        reason = (
            f"the fitted T = {t:.3f} would not lower the hold-out's expected calibration "
            f"error ({before:.3f} -> {after:.3f})"
        )
        return TemperatureChoice(1.0, t, n, before, before, reason)
    return TemperatureChoice(t, t, n, before, after)


def _softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Per confidence bin: its edges, how many predictions, their accuracy and mean
    confidence (None where empty); and the ECE over them."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    # Bin b holds (b / bins, (b + 1) / bins]: ceil(c * bins) - 1.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    hits = np.bincount(which, weights=right, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    filled = count > 0
    accuracy = np.divide(hits, count, out=np.zeros(bins), where=filled)
    mean_conf = np.divide(conf_sum, count, out=np.zeros(bins), where=filled)
    total = max(int(count.sum()), 1)
    ece = float((count / total * np.abs(accuracy - mean_conf)).sum())
    return {
        "bins": bins,
        "edges": np.linspace(0, 1, bins + 1).tolist(),
        "count": count.tolist(),
        "accuracy": [float(a) if f else None for a, f in zip(accuracy, filled)],
        "confidence": [float(c) if f else None for c, f in zip(mean_conf, filled)],
        "ece": ece,
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE of class probabilities (n, classes) against labels (n,); see the module docstring."""
    return reliability(probs, labels, bins)["ece"]


# --abstain thresholds the coverage table reports (predict-dir --abstain P).
COVERAGE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def coverage(confidence: np.ndarray, correct: np.ndarray, thresholds=COVERAGE_THRESHOLDS) -> dict:
    """What `--abstain P` trades, from each face's confidence (its top probability; 0 for a
    face not found) and whether its label is right: for each P, the share of faces answered
    (confidence >= P, as rounded in the output) and the accuracy on those; and the
    risk-coverage curve, the accuracy of the most confident k faces for every k."""
    confidence = np.round(np.asarray(confidence, np.float64), 6)
    correct = np.asarray(correct, bool)
    n = len(confidence)
    rows = []
    for p in thresholds:
        answered = confidence >= p
        k = int(answered.sum())
        rows.append(
            {
                "abstain": p,
                "answered": k / n if n else 0.0,
                "accuracy": float(correct[answered].mean()) if k else None,
            }
        )
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    shown = np.arange(1, n + 1)
    return {
        "faces": n,
        "table": rows,
        "curve": {
            "coverage": (shown / n).round(4).tolist() if n else [],
            "accuracy": (hits / shown).round(4).tolist() if n else [],
            "confidence": confidence[order].tolist(),
        },
    }
