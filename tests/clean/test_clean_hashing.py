"""fercli.data.hashing: bit-identical to imagehash, and an exact near-duplicate search."""

import itertools

import imagehash
import numpy as np
import pytest
from PIL import Image

from fercli.data import hashing
from fercli.errors import FercliError

REFERENCE = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
    "whash": imagehash.whash,
}


def odd_images(seed=0):
    """Images of several modes and sizes, incl. non-square and tiny ones."""
    rng = np.random.default_rng(seed)
    out = []
    for w, h in ((48, 48), (64, 40), (33, 97), (17, 17), (200, 150)):
        gray = rng.integers(0, 256, (h, w), dtype=np.uint8)
        out.append(Image.fromarray(gray))
        out.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB"))
        out.append(Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA"))
        out.append(Image.fromarray(gray).convert("P"))
        out.append(Image.fromarray(np.full((h, w), 7, np.uint8)))  # constant
    return out


@pytest.mark.parametrize(
    ("kind", "size"),
    [(k, s) for k in ("phash", "dhash", "ahash") for s in (8, 5, 16)]
    + [("whash", 8), ("whash", 4), ("whash", 16)],
)
def test_hashes_equal_imagehash_on_odd_images(kind, size):
    images = odd_images()
    if kind == "whash" and size == 16:
        images = [im for im in images if min(im.size) >= 16]
    ours = hashing.to_hex(hashing.hash_images(kind, images, size))
    theirs = [str(REFERENCE[kind](im, hash_size=size)) for im in images]
    assert ours == theirs


@pytest.mark.fer2013
def test_hashes_equal_imagehash_on_real_fer2013(fer2013):
    paths = sorted(fer2013.glob("*/*/*.jpg"))[::100]  # a few hundred, from every class
    assert len(paths) > 300
    images = [Image.open(p) for p in paths]
    for kind in REFERENCE:
        ours = hashing.to_hex(hashing.hash_images(kind, images, 8))
        theirs = [str(REFERENCE[kind](Image.open(p))) for p in paths]
        assert ours == theirs, kind


def test_bad_hash_settings_are_user_errors():
    with pytest.raises(FercliError, match="choose one of"):
        hashing.check_hash("md5", 8)
    with pytest.raises(FercliError, match="power-of-two"):
        hashing.check_hash("whash", 6)
    with pytest.raises(FercliError, match="too small"):
        hashing.check_hash("phash", 1)


def clustered_bits(rng, nbits, centres=40, per=6, flip=0.04):
    base = rng.random((centres, nbits)) < 0.5
    bits = np.repeat(base, per, axis=0)
    return bits ^ (rng.random(bits.shape) < flip)


def brute_pairs(bits, threshold):
    found = set()
    for i, j in itertools.combinations(range(len(bits)), 2):
        d = int((bits[i] != bits[j]).sum())
        if d <= threshold:
            found.add((i, j, d))
    return found


@pytest.mark.parametrize(("nbits", "threshold"), [(64, 0), (64, 3), (64, 10), (25, 4), (256, 12)])
def test_near_pairs_finds_exactly_the_pairs_within_the_threshold(nbits, threshold):
    rng = np.random.default_rng(nbits + threshold)
    bits = clustered_bits(rng, nbits)
    bits[5] = bits[4]  # identical hashes too
    i, j, d = hashing.near_pairs(bits, threshold)
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == brute_pairs(bits, threshold)
    assert len(i) == len(set(zip(i.tolist(), j.tolist())))  # each pair once


def test_near_pairs_falls_back_to_all_pairs_when_segments_cannot_help():
    rng = np.random.default_rng(1)
    bits = clustered_bits(rng, 16, centres=10, per=4)
    i, j, d = hashing.near_pairs(bits, 20)  # threshold + 1 segments > 16 bits
    assert len(i) == len(bits) * (len(bits) - 1) // 2
    skewed = np.zeros((60, 64), bool)  # every segment value equal: the budget check trips
    skewed[:, :3] = rng.random((60, 3)) < 0.5
    i, j, d = hashing.near_pairs(skewed, 2)
    assert set(zip(i.tolist(), j.tolist(), d.tolist())) == brute_pairs(skewed, 2)


def test_connected_components():
    labels = hashing.connected(7, np.array([0, 2, 5, 3]), np.array([1, 3, 6, 1]))
    assert labels.tolist() == [0, 0, 0, 0, 4, 5, 5]


def test_to_hex_and_pack_handle_odd_bit_counts():
    rng = np.random.default_rng(3)
    bits = rng.random((5, 25)) < 0.5
    for row, text in zip(bits, hashing.to_hex(bits)):
        assert text == str(imagehash.ImageHash(row.reshape(5, 5)))
    words = hashing.pack(bits)
    assert hashing.popcount(words).tolist() == bits.sum(1).tolist()
