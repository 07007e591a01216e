import numpy as np
import pytest

from fercli.data.csv_import import CSV_LABELS, import_csv
from fercli.data.dataset import load_split
from fercli.data.images import load_image
from fercli.errors import FercliError


def pixels(image):
    return " ".join(map(str, image.ravel()))


@pytest.fixture
def rows():
    """Nine known images: (label id, image, Usage)."""
    rng = np.random.default_rng(0)
    usages = ["Training"] * 5 + ["PublicTest"] * 2 + ["PrivateTest"] * 2
    return [
        (i % 7, rng.integers(0, 256, (48, 48), dtype=np.uint8), usage)
        for i, usage in enumerate(usages)
    ]


def write_csv(path, rows, extra_lines=()):
    lines = ["emotion,pixels,Usage"]
    lines += [f'{label},"{pixels(image)}",{usage}' for label, image, usage in rows]
    lines += list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip_is_pixel_exact(tmp_path, rows):
    csv_path = write_csv(tmp_path / "fer2013.csv", rows)
    report = import_csv(csv_path, tmp_path / "out")
    assert report.written == len(rows) and report.bad_rows == []
    assert report.counts == {"train": 5, "val": 2, "test": 2}
    split_of = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    for index, (label, image, usage) in enumerate(rows):
        path = tmp_path / "out" / split_of[usage] / CSV_LABELS[label] / f"{usage}_{index:05d}.png"
        assert np.array_equal(load_image(path), image)


def test_label_ids_follow_the_challenge_not_the_alphabet():
    assert CSV_LABELS[4] == "sad" and CSV_LABELS[6] == "neutral" and CSV_LABELS[3] == "happy"


def test_imported_folder_loads_as_a_dataset(tmp_path, rows):
    import_csv(write_csv(tmp_path / "f.csv", rows), tmp_path / "out")
    train = load_split(tmp_path / "out", "train", workers=1)
    assert len(train) == 5 and train.errors == []
    by_path = dict(zip(train.paths, train.images, strict=True))
    assert np.array_equal(by_path[f"train/{CSV_LABELS[0]}/Training_00000.png"], rows[0][1])


def test_malformed_rows_are_reported_with_line_numbers_and_skipped(tmp_path, rows):
    good = pixels(rows[0][1])
    bad = [
        f'9,"{good}",Training',  # line 11: label out of range
        f'x,"{good}",Training',  # line 12: label not a number
        f'1,"{good}",Validation',  # line 13: unknown usage
        '2,"1 2 3",Training',  # line 14: wrong pixel count
        f'3,"{good[:-3]} abc",Training',  # line 15: non-numeric pixel
        f'3,"{good[:-3]} 300",Training',  # line 16: out of range
        "3,Training",  # line 17: missing field
    ]
    csv_path = write_csv(tmp_path / "f.csv", rows, bad)
    report = import_csv(csv_path, tmp_path / "out")
    assert report.written == len(rows)
    lines = [n for n, _ in report.bad_rows]
    assert lines == list(range(11, 18))
    reasons = " | ".join(reason for _, reason in report.bad_rows)
    for word in ("label id", "Usage", "pixel values instead", "whole numbers", "0-255", "fields"):
        assert word in reasons


def test_never_overwrites_and_a_rerun_only_adds_what_is_missing(tmp_path, rows):
    csv_path = write_csv(tmp_path / "f.csv", rows)
    out = tmp_path / "out"
    import_csv(csv_path, out)
    first = out / "train" / CSV_LABELS[0] / "Training_00000.png"
    first.unlink()
    other = out / "train" / CSV_LABELS[1] / "Training_00001.png"
    other.write_bytes(b"my own file")
    report = import_csv(csv_path, out)
    assert report.written == 1 and first.exists()
    assert report.unchanged == len(rows) - 2
    assert report.conflicts == [str(other)]
    assert other.read_bytes() == b"my own file"


def test_header_with_spaces_and_other_column_order(tmp_path, rows):
    label, image, usage = rows[0]
    path = tmp_path / "f.csv"
    path.write_text(f' Usage, emotion, pixels\n{usage},{label},"{pixels(image)}"\n')
    assert import_csv(path, tmp_path / "out").written == 1


def test_not_a_fer_csv(tmp_path):
    (tmp_path / "f.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FercliError, match="emotion, pixels and Usage"):
        import_csv(tmp_path / "f.csv", tmp_path / "out")
    with pytest.raises(FercliError, match="no CSV file"):
        import_csv(tmp_path / "missing.csv", tmp_path / "out")
    (tmp_path / "g.csv").write_text('emotion,pixels,Usage\n1,"1 2",Training\n')
    with pytest.raises(FercliError, match="no valid rows"):
        import_csv(tmp_path / "g.csv", tmp_path / "out")


def test_import_csv_command(run_cli, tmp_path, rows):
    csv_path = write_csv(tmp_path / "f.csv", rows, ['1,"1 2",Training'])
    result = run_cli("import-csv", csv_path, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Skipped line 11: 2 pixel values instead of 2304" in result.stderr
    assert "Imported 5 train, 2 val, 2 test images" in result.stdout
    missing = run_cli("import-csv", tmp_path / "nope.csv", tmp_path / "out")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: no CSV file")
