"""predict-dir's rows as text: the fast CSV path of a predicted chunk writes the bytes that
make_rows' rows written one by one through the csv module do, and Tally counts a chunk as it
counts those rows."""

import numpy as np
import pytest

from fercli.predict.folder import Tally
from fercli.predict.output import CsvOut, JsonlOut, make_rows

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# Paths the csv module writes as they are, and paths it quotes (comma, quote, line ends),
# a file name that is not valid UTF-8 (surrogateescape), spaces and tabs kept as they are.
PATHS = [
    "happy/a.jpg", "sad/b c.png", " lead.jpg", "tab\there.jpg", "é/ü.jpg",
    "comma,name.jpg", 'quote"d.jpg', "new\nline.jpg", "carriage\rreturn.jpg",
    "bad\udce9byte.jpg", "angry/x.jpg", "x/y/z.jpg",
]  # fmt: skip


def probabilities(n: int, seed: int, dtype) -> np.ndarray:
    """Random rows, plus the hard cases of rounding to 6 places: exact halves (k/128 is
    0.0078125, whose 7th place is a 5), 0, 1, ties between classes, tiny values."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(CLASSES)) * 0.3, n).astype(dtype)
    probs[0] = np.arange(1, len(CLASSES) + 1) / 128
    probs[1] = [1, 0, 0, 0, 0, 0, 0]
    probs[2] = [0.25, 0.25, 0.125, 0.125, 0.125, 0.0625, 0.0625]
    probs[3] = [5e-7, 1.5e-6, 2.5e-6, 0.9999955, 0, 0, 0]
    return probs


def slow_text(fmt, paths, probs, errors) -> str:
    """make_rows' rows through text(): a row at a time, through the csv or json module."""
    return fmt.text(make_rows(paths, probs, errors, fmt.classes, fmt.topk))


@pytest.mark.parametrize("topk", [0, 1, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt_class", [CsvOut, JsonlOut])
def test_predicted_text_is_what_write_writes(fmt_class, dtype, topk):
    paths = PATHS * 30
    probs = probabilities(len(paths), seed=topk, dtype=dtype)
    errors = {4: "cannot identify image file", 5: "truncated, JPEG"}
    fmt = fmt_class(CLASSES, topk)
    text = fmt.predicted_text(paths, probs, errors)
    assert text == slow_text(fmt, paths, probs, errors)
    assert text.count("\n") >= len(paths)


def test_class_names_the_csv_module_quotes_take_the_slow_path():
    classes = ("happy, mostly", 'so-called "neutral"', "sad")
    fmt = CsvOut(classes, 2)
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], np.float32)
    text = fmt.predicted_text(["a.jpg", "b.jpg"], probs, {})
    assert text == slow_text(fmt, ["a.jpg", "b.jpg"], probs, {})
    assert '"happy, mostly"' in text


def test_a_chunk_of_errors_only():
    fmt = CsvOut(CLASSES, 2)
    errors = {0: "empty file", 1: "not an image"}
    probs = np.zeros((2, len(CLASSES)), np.float32)
    text = fmt.predicted_text(["a.jpg", "b.jpg"], probs, errors)
    assert text == slow_text(fmt, ["a.jpg", "b.jpg"], probs, errors)
    assert text.startswith("a.jpg,error,empty file,")


def tally_fields(tally: Tally):
    return tally.rows, tally.counts, tally.errors, tally.y_true, tally.y_pred


@pytest.mark.parametrize("evaluate", [False, True])
def test_tally_of_a_chunk_is_the_tally_of_its_rows(evaluate):
    paths = PATHS * 5 + ["no_folder.jpg", "neutral/n.jpg"]
    probs = probabilities(len(paths), seed=3, dtype=np.float32)
    errors = {0: "bad", 7: "worse"}
    by_row, by_chunk = Tally(CLASSES, evaluate), Tally(CLASSES, evaluate)
    for start in range(0, len(paths), 16):
        chunk = paths[start : start + 16]
        errs = {i - start: e for i, e in errors.items() if start <= i < start + 16}
        for row in make_rows(chunk, probs[start : start + 16], errs, CLASSES, 0):
            by_row.add(row)
        by_chunk.add_predicted(chunk, probs[start : start + 16], errs)
    assert tally_fields(by_chunk) == tally_fields(by_row)
    assert by_chunk.rows == len(paths) and len(by_chunk.errors) == 2
    assert bool(by_chunk.y_true) == evaluate


def test_plain_rows_take_the_fast_path(monkeypatch):
    import fercli.predict.output

    def refuse(*args):
        raise AssertionError("make_rows called for rows the fast path formats")

    probs = probabilities(len(PATHS), seed=1, dtype=np.float32)
    plain = [i for i, p in enumerate(PATHS) if not set(p) & set(',"\r\n')]
    expected = CsvOut(CLASSES, 3).predicted_text([PATHS[i] for i in plain], probs[plain], {})
    monkeypatch.setattr(fercli.predict.output, "make_rows", refuse)
    text = CsvOut(CLASSES, 3).predicted_text([PATHS[i] for i in plain], probs[plain], {})
    assert text == expected and text.count("\r\n") == len(plain)
