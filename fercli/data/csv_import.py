"""Convert the original FER-2013 challenge CSV (`emotion,pixels,Usage`) to the folder layout.

Each row becomes a lossless PNG `DEST/<split>/<class>/<Usage>_<row>.png`, where <row> is
the row's 0-based index among the data rows (the header is not counted) and the split is
train for Training, val for PublicTest and test for PrivateTest. The file is read as a
stream, one row at a time (the real CSV is 300 MB).

Existing files are never overwritten: a file that already holds the same pixels is left
alone (so an interrupted import can simply be run again), one with other pixels is reported
and skipped. Malformed rows are reported with their line numbers and skipped.
"""

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fercli.data.images import IMAGE_SIZE
from fercli.errors import FercliError
from fercli.progress import bar
from fercli.util import atomic_write_bytes

# The challenge's label ids (not alphabetical).
CSV_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
COLUMNS = ("emotion", "pixels", "usage")
PIXELS = IMAGE_SIZE * IMAGE_SIZE


@dataclass
class ImportReport:
    written: int = 0
    unchanged: int = 0  # already there with the same pixels
    conflicts: list[str] = field(default_factory=list)  # existing files with other pixels
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    counts: dict[str, int] = field(default_factory=dict)  # images per split, written or not


class BadRow(ValueError):
    pass


def parse_row(row: list[str], columns: dict[str, int]) -> tuple[str, str, np.ndarray]:
    """(split, class name, (48, 48) uint8 image) of one data row; raises BadRow."""
    if len(row) != len(columns):
        raise BadRow(f"{len(row)} fields instead of {len(columns)}")
    label, usage = row[columns["emotion"]].strip(), row[columns["usage"]].strip()
    if not label.isdigit() or int(label) >= len(CSV_LABELS):
        raise BadRow(f"emotion {label!r} is not a label id 0-{len(CSV_LABELS) - 1}")
    if usage not in USAGE_SPLITS:
        raise BadRow(f"Usage {usage!r} is not one of {', '.join(USAGE_SPLITS)}")
    try:
        values = np.array(row[columns["pixels"]].split(), dtype=np.int64)
    except ValueError:
        raise BadRow("pixels are not all whole numbers") from None
    if values.size != PIXELS:
        raise BadRow(f"{values.size} pixel values instead of {PIXELS}")
    if values.min() < 0 or values.max() > 255:
        raise BadRow("pixel values outside 0-255")
    image = values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
    return USAGE_SPLITS[usage], CSV_LABELS[int(label)], image


def _header_columns(header: list[str] | None, path: Path) -> dict[str, int]:
    names = [h.strip().lower() for h in header or []]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise FercliError(
            f"{path} is not a FER-2013 CSV: its first line must name the columns "
            f"emotion, pixels and Usage (missing: {', '.join(missing)})."
        )
    return {name: i for i, name in enumerate(names)}


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, "L").save(buf, "PNG")
    return buf.getvalue()


def _same_pixels(path: Path, image: np.ndarray) -> bool:
    try:
        with Image.open(path) as im:
            return im.mode == "L" and np.array_equal(np.asarray(im), image)
    except (OSError, ValueError):
        return False


def import_csv(csv_path: str | os.PathLike, dest: str | os.PathLike) -> ImportReport:
    """Write every valid row of the CSV as a PNG under dest; see the module docstring."""
    csv_path, dest = Path(csv_path), Path(dest)
    if not csv_path.is_file():
        raise FercliError(
            f"no CSV file at {csv_path}: give the path of fer2013.csv (columns emotion, pixels, "
            f"Usage)."
        )
    report = ImportReport()
    with open(csv_path, "rb") as raw, bar(csv_path.stat().st_size, "Importing (bytes)") as prog:

        def lines():
            for line in raw:
                prog.advance(len(line))
                yield line.decode("utf-8", errors="replace")

        reader = csv.reader(lines())
        columns = _header_columns(next(reader, None), csv_path)
        row_index = -1
        for row in reader:
            if not row:  # a blank line
                continue
            row_index += 1
            try:
                split, name, image = parse_row(row, columns)
            except BadRow as exc:
                report.bad_rows.append((reader.line_num, str(exc)))
                continue
            usage = row[columns["usage"]].strip()
            target = dest / split / name / f"{usage}_{row_index:05d}.png"
            report.counts[split] = report.counts.get(split, 0) + 1
            if target.exists():
                if _same_pixels(target, image):
                    report.unchanged += 1
                else:
                    report.conflicts.append(str(target))
                continue
            atomic_write_bytes(target, png_bytes(image))
            report.written += 1
    if not report.counts:
        raise FercliError(
            f"no valid rows in {csv_path} ({len(report.bad_rows)} malformed): expected rows of "
            f"emotion id, {PIXELS} space-separated pixel values and Usage."
        )
    return report
