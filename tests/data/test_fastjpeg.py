"""The loader's JPEG shortcut (fercli.data.fastjpeg) and the numpy LANCZOS resize
(fercli.data.resample) give exactly what Pillow gives; files the shortcut does not take keep
Pillow's result or error message. Every test runs with both of the shortcut's decoders:
simplejpeg, and Pillow's own where simplejpeg is not installed."""

import io

import numpy as np
import pytest
from PIL import Image

from fercli.data import fastjpeg
from fercli.data.images import (
    ImageError,
    load_image,
    load_with_pixels,
    open_raw,
    to_array,
    upright_gray,
)
from fercli.data.resample import resize_lanczos


@pytest.fixture(autouse=True, params=["simplejpeg", "pillow"])
def decoder(request, monkeypatch):
    if request.param == "pillow":
        monkeypatch.setattr(fastjpeg, "simplejpeg", None)
    elif fastjpeg.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    return request.param


def test_simplejpeg_gives_the_pixels_where_installed(tmp_path, monkeypatch, decoder):
    path = gray_jpeg(tmp_path / "g.jpg")
    calls = []
    if decoder == "simplejpeg":
        real = fastjpeg.simplejpeg.decode_jpeg
        spy = type("Spy", (), {"decode_jpeg": lambda *a, **k: calls.append(1) or real(*a, **k)})
        monkeypatch.setattr(fastjpeg, "simplejpeg", spy)
    np.testing.assert_array_equal(fastjpeg.decode(path.read_bytes()), reference(path)[1])
    assert len(calls) == (decoder == "simplejpeg")


def reference(path, size=48):
    """Today's decode through Image.open: (the size x size array, the stored gray pixels)."""
    raw = open_raw(path)
    return to_array(upright_gray(raw), size), np.asarray(raw.convert("L"))


def gray_jpeg(path, shape=(48, 48), seed=0, **params):
    rng = np.random.default_rng(seed)
    face = rng.normal(120, 40, shape).clip(0, 255).astype(np.uint8)
    Image.fromarray(face).save(path, "JPEG", **params)
    return path


SHORTCUT = {
    "baseline": {},
    "quality-95": {"quality": 95},
    "progressive": {"progressive": True},
    "optimized": {"optimize": True},
    "comment": {"comment": b"fercli"},
    "restart-interval": {"restart_marker_blocks": 1},
    "dpi": {"dpi": (96, 96)},
}


@pytest.mark.parametrize("params", SHORTCUT.values(), ids=SHORTCUT.keys())
@pytest.mark.parametrize("shape", [(48, 48), (64, 40), (31, 200)], ids=str)
def test_plain_gray_jpegs_take_the_shortcut_with_the_same_pixels(tmp_path, params, shape):
    path = gray_jpeg(tmp_path / "g.jpg", shape, **params)
    assert fastjpeg.gray_size(path.read_bytes()) == shape[::-1]
    array, pixels = load_with_pixels(path)
    ref_array, ref_pixels = reference(path)
    np.testing.assert_array_equal(array, ref_array)
    np.testing.assert_array_equal(pixels, ref_pixels)
    np.testing.assert_array_equal(load_image(path, 64), reference(path, 64)[0])


def exif_rotated(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 48), np.uint8)).save(path, exif=exif)
    return path


def colour(path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).save(path)
    return path


def with_icc(path):
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(path, icc_profile=profile)
    return path


@pytest.mark.parametrize("make", [exif_rotated, colour, with_icc])
def test_other_jpegs_go_through_pillow(tmp_path, make):
    path = make(tmp_path / "x.jpg")
    assert fastjpeg.gray_size(path.read_bytes()) is None
    array, pixels = load_with_pixels(path)
    ref_array, ref_pixels = reference(path)
    np.testing.assert_array_equal(array, ref_array)
    np.testing.assert_array_equal(pixels, ref_pixels)


def test_exif_orientation_is_still_applied(tmp_path):
    assert load_image(exif_rotated(tmp_path / "r.jpg")).shape == (48, 48)
    assert open_raw(tmp_path / "r.jpg").size == (48, 40)


def damaged(data: bytes) -> dict[str, bytes]:
    sos = data.index(b"\xff\xda")
    dqt = data.index(b"\xff\xdb")
    return {
        "truncated-scan": data[: sos + 40],
        "truncated-header": data[: sos - 10],
        "no-eoi": data[:-2],
        "short-dqt": data[: dqt + 2] + b"\x00\x20" + data[dqt + 4 : dqt + 34] + data[dqt + 69 :],
        "junk-in-scan": data[: sos + 30] + b"\xff\xc0" * 8 + data[sos + 46 :],
        "zero-width": data.replace(b"\x00\x30\x00\x30", b"\x00\x30\x00\x00", 1),
        "junk-between-segments": data[:dqt] + b"\x00" + data[dqt:],
    }


@pytest.mark.parametrize("kind", damaged(b"\xff\xdb\xff\xda").keys())
def test_damaged_jpegs_fail_or_load_exactly_as_with_pillow(tmp_path, kind):
    buffer = io.BytesIO()
    gray_jpeg(buffer)
    path = tmp_path / "d.jpg"
    path.write_bytes(damaged(buffer.getvalue())[kind])
    try:
        expected = reference(path)
    except ImageError as exc:
        with pytest.raises(ImageError) as caught:
            load_with_pixels(path)
        assert str(caught.value) == str(exc)
    else:
        array, pixels = load_with_pixels(path)
        np.testing.assert_array_equal(array, expected[0])
        np.testing.assert_array_equal(pixels, expected[1])


def test_big_files_are_left_to_pillow(tmp_path):
    path = gray_jpeg(tmp_path / "big.jpg", (600, 600), quality=100)
    assert path.stat().st_size > fastjpeg.MAX_BYTES
    np.testing.assert_array_equal(load_image(path), reference(path)[0])


@pytest.mark.fer2013
def test_fer2013_sample_decodes_exactly_as_with_pillow(fer2013):
    """Every 25th file (about 1,300, all classes and both splits); benchmarks/bench_clean.py
    --check compares all of them."""
    paths = sorted(fer2013.glob("*/*/*.jpg"))[::25]
    assert len(paths) > 1000
    shortcut = 0
    for path in paths:
        shortcut += fastjpeg.decode(path.read_bytes()) is not None
        array, pixels = load_with_pixels(path)
        ref_array, ref_pixels = reference(path)
        assert np.array_equal(array, ref_array) and np.array_equal(pixels, ref_pixels), path
    assert shortcut == len(paths)  # every FER-2013 file is a plain 48x48 gray JPEG


@pytest.mark.parametrize("side", [2, 5, 17, 47, 48, 64, 97, 200])
@pytest.mark.parametrize("size", [(32, 32), (9, 8), (8, 8), (16, 16), (64, 64), (17, 16)])
def test_resize_lanczos_equals_pillow_on_square_images(side, size):
    rng = np.random.default_rng(side)
    stack = rng.integers(0, 256, (4, side, side), dtype=np.uint8)
    stack[1] = np.where(rng.random((side, side)) < 0.5, 0, 255)  # hard edges: clipping
    stack[2] = 0
    stack[3] = 255
    expected = [np.asarray(Image.fromarray(a).resize(size, Image.LANCZOS)) for a in stack]
    np.testing.assert_array_equal(resize_lanczos(stack, size), np.stack(expected))


def test_a_pillow_that_copies_the_buffer_still_gives_the_pixels(tmp_path, monkeypatch, decoder):
    """fastjpeg decodes into an array Pillow maps; were the buffer copied instead, the
    pixels come from the image."""
    if decoder != "pillow":
        pytest.skip("Pillow's decoder only")
    path = gray_jpeg(tmp_path / "g.jpg")
    monkeypatch.setattr(Image, "frombuffer", lambda mode, size, *a: Image.new(mode, size))
    np.testing.assert_array_equal(fastjpeg.decode(path.read_bytes()), reference(path)[1])


def test_load_shortcut_only_decodes_plain_gray_jpegs_up_to_max_side(tmp_path):
    """predict-dir --faces auto reads small pictures whole through it."""
    from fercli.data.images import load_shortcut

    small = gray_jpeg(tmp_path / "s.jpg", (60, 90))
    array, pixels = load_shortcut(small, 48, max_side=60)
    np.testing.assert_array_equal(array, reference(small)[0])
    np.testing.assert_array_equal(pixels, reference(small)[1])
    assert load_shortcut(small, 48, max_side=59) is None
    assert load_shortcut(colour(tmp_path / "c.jpg")) is None
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "p.png")
    assert load_shortcut(tmp_path / "p.png") is None
