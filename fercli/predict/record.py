"""What made a predict-dir output: the model file (its sha256), the input folder and the
options that change its rows, kept in `OUTPUT.summary.json` under "made_with".

`--resume` appends to an output only when it was made the same way: rows of two models, of
two input folders or with and without `--tta` never share a file. A run with `--resume`
writes the record before its first row (the summary then says "complete": false), so an
output cut short by a kill can be checked as well as a finished one.
"""

import hashlib
import json
import os
from pathlib import Path

from fercli.errors import FercliError
from fercli.progress import say
from fercli.util import atomic_write_text, cache_dir

# The options that change an output's rows, as predict-dir's command line names them.
ROW_OPTIONS = {
    "tta": "--tta",
    "faces": "--faces",
    "detector": "--detector",
    "min_face_score": "--min-face-score",
    "min_face_size": "--min-face-size",
    "recursive": "--recursive",
    "abstain": "--abstain",  # recorded only where given (older records have none)
}


def summary_path(output: Path) -> Path:
    """`OUTPUT.summary.json`, beside the output."""
    return output.with_name(output.name + ".summary.json")


SHA256_CACHE = "model-sha256.json"  # in fercli.util.cache_dir()
SHA256_CACHE_SIZE = 64  # files remembered, the latest kept


def file_sha256(path: Path) -> str:
    """The file's sha256, remembered by path, size and modification time (in the cache
    folder's SHA256_CACHE) so that every run does not read the whole model again (13 ms for
    the bundled `accurate`); computed where the cache cannot be read or written."""
    try:
        st = os.stat(path)
    except OSError:
        return _sha256(path)  # its own error
    key = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    cache = cache_dir() / SHA256_CACHE
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    digest = _sha256(path)
    known.pop(key, None)
    known[key] = digest
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        kept = dict(list(known.items())[-SHA256_CACHE_SIZE:])
        atomic_write_text(cache, json.dumps(kept, indent=1) + "\n")
    except OSError:
        pass
    return digest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def made_with(root: Path, model_path: Path, **options) -> dict:
    """The record of an output made from `root` with `model_path` and the ROW_OPTIONS."""
    unknown = set(options) - set(ROW_OPTIONS)
    if unknown:
        raise TypeError(f"not an option that changes rows: {', '.join(sorted(unknown))}")
    return {
        "root": os.path.realpath(root),
        "model_sha256": file_sha256(model_path),
        "model_file": Path(model_path).name,
        **options,
    }


def check_resume(output: Path, record: dict) -> None:
    """Refuse, in one line, to append to `output` rows made otherwise than its record says.
    An output with no record (no summary, or one written by an older fercli) is resumed
    with one line saying that it could not be checked."""
    if not output.exists() or output.stat().st_size == 0:
        return
    try:
        before = json.loads(summary_path(output).read_text(encoding="utf-8")).get("made_with")
    except (OSError, ValueError, AttributeError):
        before = None
    if not isinstance(before, dict):
        say(
            f"Note: {summary_path(output).name} does not say how {output.name} was made, so "
            "--resume cannot check that its rows came from this model, folder and options."
        )
        return
    keys = [*record, *(k for k in before if k in ROW_OPTIONS and k not in record)]
    differ = [k for k in keys if k != "model_file" and before.get(k) != record.get(k)]
    if not differ:
        return
    key = differ[0]
    if key == "model_sha256":
        what = (
            f"another model file ({before.get('model_file')}, sha256 "
            f"{str(before.get('model_sha256'))[:12]}…; this one is {record['model_file']}, "
            f"{record['model_sha256'][:12]}…)"
        )
    elif key == "root":
        what = f"another input folder ({before.get('root')})"
    else:
        what = f"{ROW_OPTIONS[key]} {before.get(key)!r} (this run: {record.get(key)!r})"
    raise FercliError(
        f"--resume: {output} was written with {what}; its rows would mix with this run's. "
        "Resume with the same model, folder and options, or write another output."
    )


def write_started(output: Path, record: dict) -> None:
    """Before the first row of a `--resume` run: the record, and that the output is not
    complete yet (the finished run's summary replaces this)."""
    atomic_write_text(
        summary_path(output),
        json.dumps(
            {"output": str(output), "complete": False, "made_with": record},
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
    )
