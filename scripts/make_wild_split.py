"""Write data/splits/wild-faces.json, the person-level train/val split of ../shared/wild-faces.

    python scripts/make_wild_split.py [WILD_FACES_DIR] [-o OUT] [--check]

The rule (fixed before any model was scored on the photos): a person is a file's name
without its trailing number (fercli.data.splits.person_of). People are taken in the order of
sha256(name) (hex digest, UTF-8), and each goes to val when, for every class it has photos
of, val's photos of that class plus its own stay at most round(0.30 x the class's photos);
otherwise to train. So no class has more than 30% of its photos in val, each class with
photos from more than one person gets some in val, and a person with most of a rare class
(Dwarakish: 104 of 116 disgust) stays in train. --check regenerates and compares with the
committed file (exit 1 when it differs).
"""

import argparse
import hashlib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fercli.data.splits import IMAGE_SUFFIXES, WILD_SPLIT, person_of  # noqa: E402

VAL_FRACTION = 0.30

RULE = (
    "person = file name without its trailing number (fercli.data.splits.person_of). People in "
    "order of sha256(name) (hex, UTF-8); a person goes to val when, for every class it has "
    f"photos of, val's photos of that class plus its own stay <= round({VAL_FRACTION} x the "
    "class's photos), else to train. Fixed before any model was scored on these photos; "
    "regenerate with `python scripts/make_wild_split.py`."
)


def make_split(root: Path) -> dict:
    photos: dict[str, Counter] = defaultdict(Counter)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in folder.iterdir():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                photos[person_of(path.name)][folder.name] += 1
    totals = Counter()
    for counts in photos.values():
        totals.update(counts)
    caps = {c: round(VAL_FRACTION * n) for c, n in totals.items()}
    val = Counter()
    persons = {}
    for name in sorted(photos, key=lambda n: hashlib.sha256(n.encode()).hexdigest()):
        counts = photos[name]
        if all(val[c] + n <= caps[c] for c, n in counts.items()):
            persons[name] = "val"
            val.update(counts)
        else:
            persons[name] = "train"
    classes = sorted(totals)
    summary = {}
    for part in ("train", "val"):
        per_class = Counter()
        for name, where in persons.items():
            if where == part:
                per_class.update(photos[name])
        summary[part] = {
            "persons": sum(1 for w in persons.values() if w == part),
            "photos": sum(per_class.values()),
            "per_class": {c: per_class[c] for c in classes},
        }
    return {
        "dataset": "wild-faces",
        "description": "Person-level train/val split of ../shared/wild-faces "
        "(wild-faces/<class>/<Person_Name>_NNNN.jpg): every person is in exactly one part.",
        "rule": RULE,
        "val_fraction_cap": VAL_FRACTION,
        "classes": classes,
        "parts": summary,
        "persons": dict(sorted(persons.items())),
    }


def dump(split: dict) -> str:
    return json.dumps(split, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=str(REPO.parent / "shared" / "wild-faces"))
    parser.add_argument("-o", "--out", default=str(WILD_SPLIT))
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        print(f"{root} is not a folder", file=sys.stderr)
        return 2
    text = dump(make_split(root))
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'matches' if same else 'DIFFERS from'} the rule's output")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    split = json.loads(text)
    for part, info in split["parts"].items():
        print(f"{part}: {info['persons']} persons, {info['photos']} photos, {info['per_class']}")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
