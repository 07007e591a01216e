"""The rows that `predict-dir` writes, as CSV or JSON Lines, and reading them back for --resume.

One row per image: path (relative to the folder, "/"-separated), status (ok or error), error
(the reason), label, confidence, every class probability, and optionally the top-k classes.
CSV flattens the probabilities into `prob_<class>` columns and the top-k into
`top<i>_label`/`top<i>_confidence`; JSON Lines keeps them as an object and a list.
"""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from fercli.errors import FercliError
from fercli.util import atomic_path

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
# UTF-8; a file name that is not valid UTF-8 (possible on Linux) survives the round trip to
# the output and back through surrogateescape.
ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}


UNCERTAIN = "uncertain"  # --abstain P: the label of a face whose top probability is below P


def abstain_rows(rows: list[dict], below: float) -> list[dict]:
    """--abstain P: each predicted row whose confidence (its top probability, as written) is
    below P gets the label "uncertain"; its confidence and probabilities stay. 0: off."""
    if below > 0:
        for row in rows:
            if row.get("status") == "ok" and row["confidence"] < below:
                row["label"] = UNCERTAIN
    return rows


def make_rows(paths, probs, errors: dict, classes, topk: int) -> list[dict]:
    """One row per path; `errors` maps an index in `paths` to the reason it could not be read."""
    if len(paths) > len(errors):  # whole-chunk numpy, then Python floats: far faster per row
        order, values = ranked(probs, topk), probs.tolist()
    rows = []
    for i, path in enumerate(paths):
        if i in errors:
            rows.append({"path": path, "status": "error", "error": errors[i]})
            continue
        p, top = [round(v, 6) for v in values[i]], order[i]
        rows.append(
            {
                "path": path,
                "status": "ok",
                "error": "",
                "label": classes[top[0]],
                "confidence": p[top[0]],
                "probabilities": dict(zip(classes, p)),
                "topk": [{"label": classes[j], "confidence": p[j]} for j in top[:topk]],
            }
        )
    return rows


def ranked(probs, topk: int) -> list[list[int]]:
    """Each row's class indices, most probable first (the first of equals first), the top
    max(topk, 1): the label and the top-k of make_rows and CsvOut.predicted_text."""
    return np.argsort(-probs, axis=1, kind="stable")[:, : max(topk, 1)].tolist()


def _at(errors: dict, i: int) -> dict:
    """Row i's error, for a chunk of that one row."""
    return {0: errors[i]} if i in errors else {}


def damaged(path, where: str) -> FercliError:
    return FercliError(
        f"the existing output {path} is damaged ({where}): write to a new file with -o."
    )


class RowFormat:
    """What CsvOut and JsonlOut share: the classes and top-k they write, and the text of a
    whole batch of rows, for one write to the file, so that Ctrl-C never splits a batch."""

    def __init__(self, classes, topk: int, extra: tuple[str, ...] = (), below: float = 0.0):
        self.classes, self.topk, self.extra = tuple(classes), topk, extra
        self.below = below  # --abstain

    def predicted_text(self, paths, probs, errors: dict) -> str:
        """The records of a predicted chunk: make_rows' rows (with --abstain's label), as
        text(), the `extra` columns empty (predict-dir --faces auto: pictures taken whole,
        unreadable files)."""
        rows = abstain_rows(make_rows(paths, probs, errors, self.classes, self.topk), self.below)
        if self.extra:
            blank = dict.fromkeys(self.extra)
            rows = [{**row, **blank} for row in rows]
        return self.text(rows)


# A field the csv module writes as it is (QUOTE_MINIMAL: no delimiter, quote or line end).
_PLAIN = re.compile(r'[^,"\r\n]*\Z')


class CsvOut(RowFormat):
    def __init__(self, classes, topk: int, extra: tuple[str, ...] = (), below: float = 0.0):
        super().__init__(classes, topk, extra, below)
        self.columns = ["path", "status", "error", "label", "confidence"]
        self.columns += [f"prob_{c}" for c in classes]
        for i in range(1, topk + 1):
            self.columns += [f"top{i}_label", f"top{i}_confidence"]
        self.columns += list(extra)  # more columns at the end (predict-dir --faces: face, box, ...)
        # predicted_text's %-format of an "ok" row, its extra cells empty; None where a cell
        # needs the csv module
        self.line = None
        if all(map(_PLAIN.match, self.classes)):
            self.line = "%s,ok,,%s,%.6f" + ",%.6f" * len(classes) + ",%s,%.6f" * topk
            self.line += "," * len(extra) + "\r\n"

    def start(self, f, new_file: bool) -> None:
        self.writer = csv.writer(f)
        if new_file:
            self.writer.writerow(self.columns)

    def record(self, row: dict) -> list:
        record = [row["path"], row["status"], row["error"]]
        if row["status"] == "ok":
            record += [row["label"], f"{row['confidence']:.6f}"]
            record += [f"{v:.6f}" for v in row["probabilities"].values()]
            for top in row["topk"]:
                record += [top["label"], f"{top['confidence']:.6f}"]
        record += [""] * (len(self.columns) - len(self.extra) - len(record))
        for c in self.extra:  # a list is written comma-separated, None as an empty cell
            value = row.get(c)
            record.append(",".join(map(str, value)) if isinstance(value, list) else value)
        return record

    def text(self, rows) -> str:
        batch = io.StringIO(newline="")
        csv.writer(batch).writerows(map(self.record, rows))
        return batch.getvalue()

    def predicted_text(self, paths, probs, errors: dict) -> str:
        """The same text as RowFormat's, several times faster, one %-format a row: predict-dir's
        main process formats every row, time that its workers lose on 2 cores. "%.6f" of a
        probability gives the digits of make_rows' round(p, 6) written with .6f: both round
        the float's exact value half to even (a test compares the two)."""
        line = self.line
        if line is None or probs.dtype.kind != "f":
            return super().predicted_text(paths, probs, errors)
        order, values, labels, text = ranked(probs, self.topk), probs.tolist(), self.classes, []
        for i, path in enumerate(paths):
            if i in errors or not _PLAIN.match(path):  # the csv module quotes such a path
                text.append(super().predicted_text([path], probs[i : i + 1], _at(errors, i)))
                continue
            p, top = values[i], order[i]
            tops = [x for j in top[: self.topk] for x in (labels[j], p[j])]
            label = labels[top[0]]
            if self.below > 0 and round(p[top[0]], 6) < self.below:  # abstain_rows' rule
                label = UNCERTAIN
            text.append(line % (path, label, p[top[0]], *p, *tops))
        return "".join(text)

    def copy(self, record: list[str]) -> None:
        self.writer.writerow(record)

    def records(self, f, path):
        """(row as a dict, raw record) for every record; the last may be cut short, and a
        csv.Error at the very end means the file ends inside a quoted field."""
        reader = csv.reader(f, strict=True)
        header = next(reader, None)
        if header != self.columns:
            raise FercliError(
                f"the existing output {path} has other columns (another model, --topk or --faces): "
                "write to a new file with -o, or resume with the same model and options."
            )
        for record in reader:
            yield dict(zip(self.columns, record)), record

    def complete(self, row: dict, record: list[str]) -> bool:
        return len(record) == len(self.columns)


class JsonlOut(RowFormat):
    def start(self, f, new_file: bool) -> None:
        self.f = f

    def text(self, rows) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def copy(self, line: str) -> None:
        self.f.write(line)

    def records(self, f, path):
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None  # a damaged line; fatal unless it is the cut last one
            if isinstance(row, dict) and row.get("probabilities") is not None:
                if tuple(row["probabilities"]) != self.classes:
                    raise FercliError(
                        f"the existing output {path} was written for other classes (another "
                        "model): write to a new file with -o."
                    )
            yield row, line

    def complete(self, row, line: str) -> bool:
        return isinstance(row, dict) and "path" in row and "status" in row


def output_format(path: Path, classes, topk: int, extra: tuple[str, ...] = (), below: float = 0.0):
    """The writer of `path`'s format; `below`: --abstain's threshold (0: off)."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise FercliError(
            f"cannot tell the output format of {path.name}: name it .csv or .jsonl (JSON Lines)."
        )
    return (CsvOut if kind == "csv" else JsonlOut)(classes, topk, extra, below)


def read_existing(path: Path, fmt, on_row, faces: bool = False) -> set[str]:
    """Paths already in an output (for --resume); `on_row(row)` sees each complete row.

    The file is streamed, not loaded. A last record cut short by an interruption is dropped,
    and the file rewritten without it (to a temporary file, renamed) so appending stays
    valid. With `faces` (a row per face), the last picture's face rows are dropped too: a
    kill can cut the file between two faces of one picture at a newline, which no record
    shows, and only the file's end can be cut (it is written in order), so that picture is
    predicted again and every other one is whole."""
    if not path.exists() or path.stat().st_size == 0:
        return set()
    try:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            cut = f.read(1) != b"\n"  # the writers end every record with a newline
        done, dropped = set(), []
        for row, _ in _whole_pictures(_complete(path, fmt, cut, dropped), faces, dropped):
            done.add(row["path"])
            on_row(row)
        if dropped:
            with atomic_path(path) as tmp, open(tmp, "w", newline="", **ENCODING) as out:
                fmt.start(out, new_file=True)
                for _, raw in _whole_pictures(_complete(path, fmt, cut, []), faces, []):
                    fmt.copy(raw)
    except OSError as exc:
        raise FercliError(f"cannot read the existing output {path}: {exc.strerror}.") from None
    return done


def _whole_pictures(items, faces: bool, dropped: list):
    """The records, less the last picture's face rows where rows are faces (to `dropped`)."""
    if not faces:
        yield from items
        return
    held: list = []  # the rows of the picture read last
    for item in items:
        if held and item[0]["path"] != held[0][0]["path"]:
            yield from held
            held = []
        held.append(item)
    if held and held[0][0]["status"] == "ok":  # face rows: perhaps not all of them
        dropped.extend(held)
    else:  # one no_face or error row: whole
        yield from held


def _complete(path, fmt, cut: bool, dropped: list):
    """(row, raw record) for every complete record; a last one cut short goes to `dropped`."""

    def whole(item):
        if not fmt.complete(*item):
            raise damaged(path, f"record {str(item[1])[:80]!r}")
        return item

    with open(path, newline="", **ENCODING) as f:
        held = None
        try:
            for item in fmt.records(f, path):
                if held is not None:
                    yield whole(held)
                held = item
        except csv.Error as exc:
            if f.readline():  # not at the end: bad quoting in the middle of the file
                raise damaged(path, str(exc)) from None
            dropped.append(True)  # the file ends inside a quoted field: a cut record
            if held is not None:
                yield whole(held)
            return
        if held is not None:
            if cut:
                dropped.append(held)
            else:
                yield whole(held)
