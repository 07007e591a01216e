"""Person-level splits (fercli.data.splits, data/splits/wild-faces.json) and `fercli evaluate
--split-file`, which scores a part through predict-dir's pipeline."""

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from fercli.data.splits import load_split, part_files, person_of

REPO = Path(__file__).resolve().parents[2]
WILD_DEFAULT = REPO.parent / "shared" / "wild-faces"
WILD_SPLIT = REPO / "data" / "splits" / "wild-faces.json"  # a repository file, not shipped


@pytest.fixture
def wild_faces() -> Path:
    """The real wild-faces photos (`FERCLI_WILD_FACES`, else ../shared/wild-faces), or skip."""
    path = Path(os.environ.get("FERCLI_WILD_FACES") or WILD_DEFAULT)
    if not (path / "happy").is_dir():
        pytest.skip(f"wild-faces not found at {path} (set FERCLI_WILD_FACES)")
    return path


@pytest.fixture
def people(synth_root, tmp_path):
    """A folder DIR/<class>/<Person>_NNNN.jpg of synthetic faces (two per class: Ann_<class>
    in val, Bob_<class> in train, plus an unknown Zed in happy) and its split file."""
    root = tmp_path / "photos"
    persons = {}
    for folder in sorted((synth_root / "test").iterdir()):
        cls = folder.name
        files = sorted(folder.glob("*.jpg"))
        (root / cls).mkdir(parents=True)
        for i, (name, src) in enumerate(
            [(f"Ann_{cls}", files[0]), (f"Ann_{cls}", files[1]), (f"Bob_{cls}", files[2])]
        ):
            shutil.copy(src, root / cls / f"{name}_{i:04d}.jpg")
        persons[f"Ann_{cls}"], persons[f"Bob_{cls}"] = "val", "train"
    shutil.copy(files[3], root / "happy" / "Zed_0001.jpg")
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"dataset": "test", "persons": persons}))
    return root, split_file


def test_person_is_the_name_without_its_trailing_number():
    assert person_of("Tony_Blair_0012.jpg") == "Tony_Blair"
    assert person_of("Dwarakish_27.jpg") == "Dwarakish"
    assert person_of("facial-expressions_2868588k.jpg") == "facial-expressions_2868588k"
    assert person_of("0042.jpg") == "0042"


def test_part_files_lists_a_part_and_reports_unknown_persons(people):
    root, split_file = people
    split = load_split(split_file)
    val = part_files(split, root, "val")
    assert len(val.files) == 14 and {p.name.split("_")[0] for _, p in val.files} == {"Ann"}
    assert all(p.parent.name == cls for cls, p in val.files)
    assert val.unknown == ["Zed"] and "1 person(s)" in val.unknown_line()
    assert len(part_files(split, root, "train").files) == 7
    from fercli.errors import FercliError

    with pytest.raises(FercliError, match="--part must be one of train, val"):
        part_files(split, root, "test")


def test_evaluate_part_runs_predict_dirs_pipeline(people, tmp_path):
    from fercli.evaluate.evaluation import evaluate_part

    root, split_file = people
    Image.new("L", (200, 200), 128).save(root / "sad" / "Ann_sad_0009.jpg")  # no face in it
    auto = evaluate_part("fast", root, split_file, part="val", faces="auto", provider="cpu")
    assert auto["count"] == 15 and auto["no_face"] == 1 and auto["unknown_persons"] == ["Zed"]
    per_class = auto["per_class"]
    assert {c: r["support"] for c, r in per_class.items()} == {
        c: 3 if c == "sad" else 2 for c in per_class
    }
    correct = sum(r["correct"] for r in per_class.values())
    assert auto["accuracy"] == pytest.approx(correct / 15)
    recalls = [r["correct"] / r["support"] for r in per_class.values()]
    assert auto["macro_recall"] == pytest.approx(sum(recalls) / 7)
    # auto reads the small 48x48 faces whole, as --faces none does: the same answers for
    # them; the blank photo counts as wrong with auto (no face) and is scored with none.
    none = evaluate_part("fast", root, split_file, part="val", faces="none", provider="cpu")
    assert none["no_face"] == 0 and none["count"] == 15
    for c in per_class:
        if c != "sad":
            assert none["per_class"][c]["correct"] == per_class[c]["correct"]
    assert none["per_class"]["sad"]["correct"] >= per_class["sad"]["correct"]


def test_evaluate_command_with_a_split_file(people, run_cli):
    root, split_file = people
    args = ("evaluate", "fast", root, "--split-file", split_file, "--faces", "auto")
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert "part val" in result.stdout and "macro recall" in result.stdout
    assert "0 without a face found" in result.stdout
    per_class = [line for line in result.stdout.splitlines() if line.startswith("  ")]
    assert len(per_class) == 7 and all(line.rstrip().endswith("/2)") for line in per_class)
    assert "Zed" in result.stderr or "Zed" in result.stdout
    as_json = json.loads(run_cli(*args, "--json", "--part", "train").stdout)
    assert as_json["part"] == "train" and as_json["count"] == 7
    refused = run_cli("evaluate", "fast", root, "--faces", "auto")
    assert refused.exit_code != 0 and "--faces goes with --split-file" in refused.output


def test_wild_split_covers_every_person_once_with_every_class_in_both_parts(wild_faces):
    split = load_split(WILD_SPLIT)
    found = defaultdict(set)
    for folder in wild_faces.iterdir():
        if folder.is_dir():
            for path in folder.glob("*.jpg"):
                found[person_of(path.name)].add(folder.name)
    assert set(split["persons"]) == set(found)  # a dict: each person once
    assert set(split["persons"].values()) == {"train", "val"}
    classes = {c for cs in found.values() for c in cs}
    for part in ("train", "val"):
        listed = part_files(split, wild_faces, part)
        assert not listed.unknown
        assert {cls for cls, _ in listed.files} == classes
        assert split["parts"][part]["photos"] == len(listed.files)
    val = split["parts"]["val"]["photos"]
    assert 0.25 <= val / (val + split["parts"]["train"]["photos"]) <= 0.30


def test_the_split_file_is_what_the_script_writes(wild_faces):
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_wild_split.py"), str(wild_faces), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
