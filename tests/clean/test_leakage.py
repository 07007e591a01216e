"""fercli.clean.leakage and `fercli evaluate --leak-free`: test images with a near duplicate in
train, found as `fercli clean` finds duplicates, on a small dataset with planted leaks."""

import json
from pathlib import Path

import numpy as np
import pytest
from clean_helpers import jpeg, texture
from PIL import Image

from fercli.clean.leakage import LeakCheck, leaked_paths, near_reference
from fercli.data.hashing import hash_images

CLASSES = ("angry", "happy", "sad")  # FER-2013 names: the bundled model knows them


def phash_distance(a: np.ndarray, b: np.ndarray) -> int:
    bits = hash_images("phash", [Image.fromarray(a), Image.fromarray(b)])
    return int((bits[0] != bits[1]).sum())


def near_copy(rng, image: np.ndarray, lowest: int = 1, highest: int = 6) -> np.ndarray:
    """The image with a little noise, its phash between `lowest` and `highest` bits away."""
    for _ in range(200):
        noisy = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        if lowest <= phash_distance(image, noisy) <= highest:
            return noisy
    raise AssertionError("no near copy found")


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> tuple[Path, set[str]]:
    """ROOT/{train,test}/<class>/*.jpg with planted leaks: (root, the leaked test paths)."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("leaky")
    images = {}
    for split, n in (("train", 6), ("test", 3)):
        for label in CLASSES:
            for k in range(n):
                images[f"{split}/{label}/{label}_{k}.jpg"] = texture(rng)
    seen = images["train/happy/happy_0.jpg"]
    images["test/happy/exact.jpg"] = seen  # the same pixels
    images["test/sad/near.jpg"] = near_copy(rng, images["train/sad/sad_1.jpg"])  # relabelled
    images["test/angry/test_twin.jpg"] = near_copy(rng, images["test/angry/angry_0.jpg"])
    images["test/angry/blank.jpg"] = np.full((48, 48), 128, np.uint8)  # blank: not compared
    images["train/angry/blank.jpg"] = np.full((48, 48), 128, np.uint8)
    images["train/sad/train_twin.jpg"] = near_copy(rng, images["train/sad/sad_2.jpg"])
    for rel, arr in images.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg(arr))
    (root / "test/sad/broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root, {"test/happy/exact.jpg", "test/sad/near.jpg"}


def test_leaked_paths_finds_exactly_the_planted_leaks(leaky):
    root, planted = leaky
    assert leaked_paths(root, "test", workers=1) == planted


def test_a_lower_threshold_finds_only_the_exact_copy(leaky):
    root, _ = leaky
    assert leaked_paths(root, "test", LeakCheck(threshold=0), workers=1) == {"test/happy/exact.jpg"}


def test_near_means_directly_near_not_through_a_chain():
    """Rows: 0 test, 1 test, 2 train. 0-1 and 1-2 are 4 bits apart, 0-2 are 8: with threshold
    6, row 1 is near train, row 0 only through row 1, so it is not leaked."""
    bits = np.zeros((4, 64), bool)
    bits[1, :4] = True
    bits[2, :8] = True
    bits[3] = bits[2]  # a second train row with row 2's hash
    usable = np.array([True, True, True, False])
    reference = np.array([False, False, True, True])
    assert near_reference(bits, usable, reference, 6).tolist() == [False, True, False, False]
    # The same hash as an unusable (blank or unreadable) train image is no leak.
    usable[2] = False
    assert not near_reference(bits, usable, reference, 6).any()


def test_evaluate_leak_free_scores_the_rest(leaky, run_cli):
    root, planted = leaky
    result = run_cli("-q", "evaluate", root, "--leak-free", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    free = report["leak_free"]
    assert free["left_out"] == len(planted) and free["count"] == report["count"] - len(planted)
    assert (free["hash"], free["hash_size"], free["threshold"]) == ("phash", 8, 6)
    assert free["reference_split"] == "train"
    assert set(free) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert "leak_free" not in json.loads(run_cli("-q", "evaluate", root, "--json").stdout)
    printed = run_cli("-q", "evaluate", root, "--leak-free").stdout
    assert f"Leak-free: the {free['count']} images with no near duplicate in train" in printed


def test_leak_free_on_train_or_without_train_is_a_clear_error(leaky, tmp_path, run_cli):
    root, _ = leaky
    result = run_cli("-q", "evaluate", root, "--split", "train", "--leak-free")
    assert result.exit_code != 0 and "--split test or val" in result.output
    (tmp_path / "test/happy").mkdir(parents=True)
    (tmp_path / "test/happy/a.jpg").write_bytes(jpeg(np.zeros((48, 48), np.uint8)))
    result = run_cli("-q", "evaluate", tmp_path, "--leak-free")
    assert result.exit_code != 0 and "needs the training split" in result.output


def test_a_split_cannot_leak_into_itself(leaky):
    from fercli.errors import FercliError

    with pytest.raises(FercliError, match="cannot leak into itself"):
        leaked_paths(leaky[0], "train")
