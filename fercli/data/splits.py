"""Person-level splits of a photo folder written down in a file (data/splits/*.json).

A split file names, per person, the part it is in (`train` or `val`); a person is a file's
name without its trailing number (`Tony_Blair_0012.jpg`: `Tony_Blair`; a name with no
trailing number is its own person). scripts/make_wild_split.py writes
data/splits/wild-faces.json, and its header says the rule.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
TRAILING_NUMBER = re.compile(r"[_-]?\d+$")
WILD_SPLIT = Path(__file__).resolve().parents[2] / "data" / "splits" / "wild-faces.json"


def person_of(filename: str) -> str:
    """The person of a file: its stem without the trailing number (and the `_` before it)."""
    stem = Path(filename).stem
    return TRAILING_NUMBER.sub("", stem) or stem


def load_split(path: str | Path) -> dict:
    """A split file's contents; `persons` maps each person to its part."""
    from fercli.errors import FercliError

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FercliError(f"cannot read the split file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("persons"), dict):
        raise FercliError(f"{path} is not a split file (no `persons` mapping).")
    return data


@dataclass
class PartFiles:
    """A part's files of a DIR/<class>/<image> folder, and the persons the split lacks."""

    files: list[tuple[str, Path]] = field(default_factory=list)  # (class, path), sorted
    unknown: list[str] = field(default_factory=list)  # persons in the folder, not in the split

    def unknown_line(self) -> str:
        """The one line that reports the unknown persons ('' when there are none)."""
        if not self.unknown:
            return ""
        shown = ", ".join(self.unknown[:5]) + (", ..." if len(self.unknown) > 5 else "")
        return (
            f"Warning: {len(self.unknown)} person(s) in the folder are not in the split file, "
            f"left out: {shown}"
        )


def part_files(split: dict, root: str | Path, part: str, classes=None) -> PartFiles:
    """The images of ROOT/<class>/ whose person is in `part` of the split (classes: the
    class folders to read, default every folder)."""
    from fercli.errors import FercliError

    persons = split["persons"]
    parts = sorted(set(persons.values()))
    if part not in parts:
        raise FercliError(f"--part must be one of {', '.join(parts)} (the split file's parts).")
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if classes is not None:
        folders = [p for p in folders if p.name in classes]
    out, unknown = PartFiles(), set()
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            person = person_of(path.name)
            where = persons.get(person)
            if where is None:
                unknown.add(person)
            elif where == part:
                out.files.append((folder.name, path))
    out.unknown = sorted(unknown)
    return out
