"""Rich tables of a classification report (fercli.metrics.classification), shared by train
and evaluate."""

from rich.table import Table


def per_class_table(report: dict, title: str) -> Table:
    table = Table("class", "precision", "recall", "f1", "support", title=title)
    for name, row in report["per_class"].items():
        table.add_row(
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return table


def confusion_table(report: dict) -> Table:
    classes = report["classes"]
    matrix = Table("true \\ predicted", *classes, title="Confusion matrix")
    for name, row in zip(classes, report["confusion_matrix"]):
        matrix.add_row(name, *(str(v) for v in row))
    return matrix
