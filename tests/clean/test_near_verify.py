"""fercli.clean.near_verify: near-duplicate candidates checked on their pixels, in `fercli clean`
(on by default, --no-verify, --verify-threshold) and in fercli.clean.leakage. Synthetic images
only (the measurement on real FER-2013 faces is benchmarks/bench_near_verify.py):

- planted edits (fercli.clean.near_edits: crop, shift, rescale, zoom, JPEG, brightness,
  rotation, caption) of random textures: same photo, must be verified wherever the hash
  finds them;
- "different photos with the same layout": two images sharing their low frequencies (a
  blurred common base) with independent detail on top. Their phashes are often within the
  threshold (the hash sees mostly the layout), as different FER-2013 faces with similar
  pose and lighting are; they must be rejected.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from fercli.builtin.filters import DedupFilter
from fercli.clean.duplicates import find_duplicates
from fercli.clean.filters import ImageBatch
from fercli.clean.leakage import LeakCheck, leaked_paths
from fercli.clean.near_edits import EDITS, plant
from fercli.clean.near_verify import DEFAULT_VERIFY_THRESHOLD, PixelScorer, pair_scores
from fercli.data.hashing import hash_arrays

THRESHOLD = 6


def _noise(rng, k: int, amp: float) -> np.ndarray:
    coarse = Image.fromarray(rng.integers(0, 256, (k, k), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((48, 48), Image.Resampling.BICUBIC), np.float64)
    return (smooth - 128) * amp / 128


def picture(rng) -> np.ndarray:
    """Float image with structure at every scale: coarse layout, features, fine grain."""
    return 128 + _noise(rng, 6, 80) + _noise(rng, 16, 30) + _noise(rng, 48, 20)


def u8(x) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def same_layout_pair(rng, sigma: float = 2.0):
    """Two different pictures with the same low frequencies (below `sigma` pixels)."""
    base = gaussian_filter(picture(rng), sigma)
    one, two = picture(rng), picture(rng)
    return (
        u8(base + one - gaussian_filter(one, sigma)),
        u8(base + two - gaussian_filter(two, sigma)),
    )


def jpeg_roundtrip(arr: np.ndarray, quality: int = 95) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (hash_arrays("phash", list(a)) != hash_arrays("phash", list(b))).sum(axis=1)


def scores_of(a: np.ndarray, b: np.ndarray, **options) -> np.ndarray:
    n = len(a)
    return pair_scores(np.concatenate([a, b]), np.arange(n), np.arange(n) + n, **options)


@pytest.fixture(scope="module")
def planted():
    """(originals, edited copies, edit names, hash distances): 12 pictures x every edit."""
    rng = np.random.default_rng(3)
    a, b, names = [], [], []
    for _ in range(12):
        original = jpeg_roundtrip(u8(picture(rng)), 90)
        for name in EDITS:
            a.append(original)
            b.append(plant(original, name, rng))
            names.append(name)
    a, b = np.array(a), np.array(b)
    return a, b, np.array(names), distance(a, b)


@pytest.fixture(scope="module")
def different():
    """Pairs of different pictures with the same layout whose hashes are within 6 bits
    (after a JPEG round trip, as files would be)."""
    rng = np.random.default_rng(5)
    a, b = [], []
    while len(a) < 24:
        x, y = (jpeg_roundtrip(p, 90) for p in same_layout_pair(rng))
        if distance(x[None], y[None])[0] <= THRESHOLD:
            a.append(x)
            b.append(y)
    return np.array(a), np.array(b)


def test_planted_edits_found_by_the_hash_are_verified(planted):
    a, b, names, dist = planted
    found = dist <= THRESHOLD
    assert found.mean() > 0.5  # the hash finds most edits...
    for name in ("rescale", "jpeg", "brightness", "rotate", "text"):
        assert found[names == name].any(), name
    score = scores_of(a[found], b[found])
    low = {n: round(float(score[names[found] == n].min()), 3) for n in set(names[found])}
    # ...and verification keeps every one of them: recall as without verification
    assert (score >= DEFAULT_VERIFY_THRESHOLD).all(), low


def test_different_photos_within_the_hash_threshold_are_rejected(different):
    a, b = different
    score = scores_of(a, b)
    assert (score < DEFAULT_VERIFY_THRESHOLD).all(), np.sort(score)[-5:]
    assert score.max() < DEFAULT_VERIFY_THRESHOLD - 0.03  # not by a hair


def test_scores_are_the_best_of_both_directions(planted, different):
    a = np.concatenate([planted[0][:16], different[0][:8]])
    b = np.concatenate([planted[1][:16], different[1][:8]])
    both = scores_of(a, b)
    assert np.allclose(both, scores_of(b, a))
    quick = scores_of(a, b, enough=DEFAULT_VERIFY_THRESHOLD)  # reverse only where below
    assert ((quick >= DEFAULT_VERIFY_THRESHOLD) == (both >= DEFAULT_VERIFY_THRESHOLD)).all()
    assert np.allclose(scores_of(a, b, workers=1), both)
    assert scores_of(a[:0], b[:0]).shape == (0,)


def test_identical_images_score_one():
    rng = np.random.default_rng(1)
    x = u8(picture(rng))[None]
    assert scores_of(x, x)[0] == pytest.approx(1.0, abs=1e-4)


def test_pixel_scorer_gives_minus_inf_for_files_it_cannot_decode(tmp_path):
    rng = np.random.default_rng(2)
    good = tmp_path / "a.png"
    Image.fromarray(u8(picture(rng))).save(good)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    scorer = PixelScorer(files=[str(good), str(tmp_path / "bad.jpg")], workers=1)
    assert scorer([0, 0], [0, 1]).tolist() == [pytest.approx(1.0, abs=1e-4), -np.inf]


def _batch(images, paths):
    n = len(images)
    return ImageBatch(list(paths), ["train"] * n, ["happy"] * n, np.array(images), [None] * n)


@pytest.fixture(scope="module")
def mixed(planted, different):
    """48x48 images: 4 planted near duplicates (original + copy) and 4 different-photo
    pairs, with their paths; which path pairs are the planted ones."""
    a, b, names, dist = planted
    rows, pictures = [], set()
    for k in np.flatnonzero((dist <= THRESHOLD) & (dist > 0)).tolist():
        if k // len(EDITS) not in pictures and len(rows) < 4:  # 4 different originals
            pictures.add(k // len(EDITS))
            rows.append(k)
    images, paths, same = [], [], []
    for n, k in enumerate(rows):
        images += [a[k], b[k]]
        paths += [f"train/happy/p{n}.png", f"train/happy/p{n}_copy.png"]
        same.append(paths[-1])
    for n in range(4):
        images += [different[0][n], different[1][n]]
        paths += [f"train/happy/d{n}.png", f"train/happy/d{n}_other.png"]
    return images, paths, set(same)


def _dedup(images, paths, **options):
    flt = DedupFilter(**options)
    flt.check(_batch(images, paths))
    flags = list(flt.finish())
    return flt, flags


def test_dedup_flags_planted_copies_and_not_different_photos(mixed):
    images, paths, same = mixed
    flt, flags = _dedup(images, paths)
    flagged = {f.path for f in flags}
    assert same <= flagged or {p.replace("_copy", "") for p in same} <= flagged
    assert not any("/d" in p for p in flagged)  # no different-photo pair is flagged
    assert len(flagged) == len(same)
    assert flt.verification["pairs_rejected"] >= 4
    assert flt.verification["pairs_checked"] >= len(same) + 4
    assert all("pixel score" in f.reason for f in flags)
    # --no-verify: the hash alone, so the different photos are flagged too
    flt, flags = _dedup(images, paths, verify=False)
    assert len({f.path for f in flags}) == len(same) + 4
    assert flt.verification == {} and flt.verify_threshold is None
    # a low verify threshold lets them through again
    _, flags = _dedup(images, paths, verify_threshold=0.0)
    assert len({f.path for f in flags}) == len(same) + 4


def test_verification_that_accepts_everything_gives_the_hash_only_result():
    """Many overlapping near duplicates (chains, identical hashes with different pixels,
    exact copies, two splits and labels): a scorer that accepts every pair gives exactly the
    groups and flags of the hash-only rule."""
    rng = np.random.default_rng(11)
    n = 120
    centres = rng.random((15, 64)) < 0.5
    bits = centres[rng.integers(0, 15, n)] ^ (rng.random((n, 64)) < 0.03)
    bits[5] = bits[4]
    digests = [bytes([k]) for k in range(n)]
    digests[7] = digests[6]
    bits[7] = bits[6]
    paths = [f"{'test' if k % 5 == 0 else 'train'}/c{k % 3}/{k:03d}.jpg" for k in range(n)]
    splits = [p.split("/")[0] for p in paths]
    labels = [p.split("/")[1] for p in paths]
    before = find_duplicates(paths, splits, labels, bits, digests, THRESHOLD)
    after = find_duplicates(
        paths, splits, labels, bits, digests, THRESHOLD, scores=lambda a, b: np.ones(len(a))
    )
    assert [g.as_dict() for g in before[0]] == [g.as_dict() for g in after[0]]
    strip = [
        (f.path, f.group, f.kept, f.reason.replace(", pixel score 1.000", "")) for f in after[1]
    ]
    assert [(f.path, f.group, f.kept, f.reason) for f in before[1]] == strip
    assert len(before[0]) > 10


def _write(root, rel, arr):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")  # lossless: the pixels as tested


@pytest.fixture
def dataset(tmp_path, mixed):
    images, paths, same = mixed
    root = tmp_path / "data"
    for arr, rel in zip(images, paths):
        _write(root, rel, arr)
    return root, same


def test_clean_cli_verifies_by_default_and_reports_counts(run_cli, dataset):
    root, same = dataset
    result = run_cli("clean", root, "--json", "--filters", "dedup")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    dups = summary["duplicates"]
    assert summary["flagged"]["files"] == len(same)
    assert dups["near_pairs_rejected"] >= 4 and dups["near_pairs_checked"] >= len(same) + 4
    settings = summary["settings"]["dedup"]
    assert settings["verify"] is True
    assert settings["verify_threshold"] == DEFAULT_VERIFY_THRESHOLD
    printed = run_cli("clean", root, "--filters", "dedup").stdout
    assert "verified on their pixels" in printed and "rejected" in printed


def test_clean_cli_no_verify_and_threshold(run_cli, dataset):
    root, same = dataset
    result = run_cli("clean", root, "--json", "--filters", "dedup", "--no-verify")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["flagged"]["files"] == len(same) + 4
    assert "near_pairs_checked" not in summary["duplicates"]
    assert summary["settings"]["dedup"]["verify"] is False
    result = run_cli("clean", root, "--json", "--filters", "dedup", "--verify-threshold", "0.2")
    summary = json.loads(result.stdout)
    assert summary["flagged"]["files"] == len(same) + 4
    assert summary["duplicates"]["near_pairs_rejected"] == 0
    assert summary["settings"]["dedup"]["verify_threshold"] == 0.2
    result = run_cli("clean", root, "--verify-threshold", "1.5")
    assert result.exit_code != 0 and "verify-threshold" in result.output


def test_leakage_verifies_too(tmp_path, different, planted):
    a, b, _, dist = planted
    k = int(np.flatnonzero((dist <= THRESHOLD) & (dist > 0))[0])
    root = tmp_path / "leaky"
    _write(root, "train/happy/seen.png", a[k])
    _write(root, "test/happy/copy.png", b[k])  # the same photo, edited: a leak
    _write(root, "train/sad/other.png", different[0][0])
    _write(root, "test/sad/lookalike.png", different[1][0])  # a different photo: no leak
    assert leaked_paths(root, "test", workers=1) == {"test/happy/copy.png"}
    unverified = leaked_paths(root, "test", LeakCheck(verify=False), workers=1)
    assert unverified == {"test/happy/copy.png", "test/sad/lookalike.png"}
    described = LeakCheck().describe()
    assert described["verify"] is True
    assert described["verify_threshold"] == DEFAULT_VERIFY_THRESHOLD


def test_benchmark_runs_on_a_small_dataset(synth_root, run_script, tmp_path):
    sheets = tmp_path / "sheets"
    out = run_script(
        "benchmarks/bench_near_verify.py", sheets, "--data", synth_root, "--faces", 3,
        "--labels", tmp_path / "none.csv",
    )  # fmt: skip
    assert "recall of the hash-found planted pairs kept by verification" in out
    assert "hash + verify  precision" in out
    for name in ("rejected", "accepted_closest", "accepted_random", "planted_lowest"):
        assert (sheets / f"{name}.png").stat().st_size > 0
    absent = run_script("benchmarks/bench_near_verify.py", sheets, "--data", tmp_path / "no")
    assert "nothing measured" in absent
