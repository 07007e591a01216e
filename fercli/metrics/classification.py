"""Classification metrics shared by train, evaluate and predict-dir (no torch import)."""

import numpy as np


def classification_report(y_true, y_pred, classes) -> dict:
    """Accuracy, macro and weighted F1, per-class precision/recall/F1/support, confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "count": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        },
        "classes": list(classes),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
