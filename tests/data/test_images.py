"""The one preprocessing (fercli.data.images): every common format and mode, any size, EXIF
orientation, and broken files reported with a reason instead of a crash."""

import io
import os
import signal

import numpy as np
import pytest
from PIL import Image

from fercli.data.images import (
    ImageError,
    is_image_path,
    load_image,
    load_many,
    open_image,
    to_array,
)

# A 48x48 gray pattern with every corner different, so a wrong turn or crop shows.
PATTERN = np.add.outer(np.arange(48) * 2, np.arange(48)).astype(np.uint8)  # 0..141
PATTERN[:8, :8] = 250  # a bright top-left corner


def save(path, im, **params):
    im.save(path, **params)
    return path


def rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.stack([gray] * 3, -1), "RGB")


LOSSLESS = [
    ("png", "L"),
    ("png", "RGB"),
    ("png", "P"),
    ("png", "LA"),
    ("bmp", "L"),
    ("bmp", "RGB"),
    ("bmp", "P"),
    ("gif", "L"),
    ("gif", "P"),
    ("tif", "L"),
    ("tiff", "RGB"),
    ("tif", "RGBA"),
    ("webp", "RGB"),
]


@pytest.mark.parametrize(("suffix", "mode"), LOSSLESS, ids=[f"{s}-{m}" for s, m in LOSSLESS])
def test_lossless_formats_and_modes_load_exactly(tmp_path, suffix, mode):
    im = Image.fromarray(PATTERN, "L")
    if mode == "P":
        im = rgb(PATTERN).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    elif mode != "L":
        im = rgb(PATTERN).convert(mode)
    params = {"lossless": True} if suffix == "webp" else {}
    path = save(tmp_path / f"x.{suffix}", im, **params)
    out = load_image(path)
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert np.array_equal(out, PATTERN)


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg(tmp_path, mode):
    im = Image.fromarray(PATTERN, "L").convert(mode)
    path = save(tmp_path / "x.jpg", im, quality=95)
    assert np.abs(load_image(path).astype(int) - PATTERN).mean() < 3


def test_lossy_webp(tmp_path):
    path = save(tmp_path / "x.webp", rgb(PATTERN), quality=90)
    assert np.abs(load_image(path).astype(int) - PATTERN).mean() < 4


def test_colour_becomes_luma(tmp_path):
    colours = np.zeros((48, 48, 3), np.uint8)
    colours[:, :16] = (255, 0, 0)
    colours[:, 16:32] = (0, 255, 0)
    colours[:, 32:] = (0, 0, 255)
    out = load_image(save(tmp_path / "c.png", Image.fromarray(colours, "RGB")))
    assert list(out[0, [0, 20, 40]]) == [76, 150, 29]  # 299/587/114 per mille of 255


def test_transparency_is_flattened_onto_black(tmp_path):
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :24, 3] = 255  # left half opaque, right half transparent
    out = load_image(save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    assert (out[:, :20] == 200).all() and (out[:, 28:] == 0).all()


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (48, 48), 1)
    im.putpalette([0, 0, 0, 180, 180, 180] + [0] * 762)
    im.paste(0, (0, 0, 24, 48))
    im.info["transparency"] = 0
    out = load_image(save(tmp_path / "t.png", im, transparency=0))
    assert (out[:, 28:] == 180).all() and (out[:, :20] == 0).all()


def test_16_bit_grayscale_uses_the_full_range(tmp_path):
    values = np.array([[0, 256 * 100, 65535]], np.uint16).repeat(48, 0).repeat(16, 1)
    im = Image.frombytes("I;16", (48, 48), values.astype("<u2").tobytes())
    assert im.mode == "I;16"
    for suffix in ("png", "tif"):
        out = load_image(save(tmp_path / f"x16.{suffix}", im))
        assert list(out[0, [0, 20, 40]]) == [0, 100, 255]


def test_1_bit(tmp_path):
    bits = Image.fromarray(PATTERN > 100).convert("1")
    for suffix in ("png", "bmp", "tif"):
        out = load_image(save(tmp_path / f"b.{suffix}", bits))
        assert set(np.unique(out)) == {0, 255}
        assert np.array_equal(out == 255, PATTERN > 100)


def test_non_square_is_centre_cropped(tmp_path):
    wide = np.zeros((48, 96), np.uint8)
    wide[:, 24:72] = PATTERN
    tall = np.zeros((96, 48), np.uint8)
    tall[24:72] = PATTERN
    assert np.array_equal(load_image(save(tmp_path / "w.png", Image.fromarray(wide))), PATTERN)
    assert np.array_equal(load_image(save(tmp_path / "t.png", Image.fromarray(tall))), PATTERN)


def test_large_and_small_images_are_resized(tmp_path):
    big = Image.fromarray(PATTERN).resize((2400, 2400), Image.NEAREST)
    out = load_image(save(tmp_path / "big.png", big))
    assert np.abs(out.astype(int) - PATTERN).mean() < 2
    small = Image.fromarray(np.full((10, 10), 77, np.uint8))
    assert (load_image(save(tmp_path / "small.png", small)) == 77).all()
    assert load_image(tmp_path / "big.png", size=64).shape == (64, 64)


def test_exif_orientation_is_applied(tmp_path):
    upright = Image.fromarray(PATTERN)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a sideways camera stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(tmp_path / "rotated.jpg", stored, exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out[:8, :8].mean() > 200  # the bright corner is back at the top left
    assert np.abs(out.astype(int) - PATTERN).mean() < 3
    assert open_image(path).size == (48, 48)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((48, 48), v, np.uint8)) for v in (40, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert (load_image(path) == 40).all()


def test_to_array_matches_load_image(tmp_path):
    path = save(tmp_path / "x.png", Image.fromarray(PATTERN))
    assert np.array_equal(to_array(open_image(path)), load_image(path))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", None),
        ("text.jpg", b"this is not an image\n", "not an image"),
        ("text.png", b"\x89PNG\r\n\x1a\nbroken", None),
    ],
)
def test_broken_files_raise_image_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert str(err.value)
    if reason:
        assert reason in str(err.value)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(PATTERN).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="(?i)truncated"):
        load_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path / "dir.jpg")


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    path = save(tmp_path / "x.png", Image.fromarray(PATTERN))  # 2304 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over twice the limit: Pillow errors
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # between 1x and 2x: Pillow only warns
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)


def test_bomb_protection_stays_on():
    import fercli.cli  # noqa: F401  (importing fercli must not switch it off)
    import fercli.data.dataset  # noqa: F401

    assert Image.MAX_IMAGE_PIXELS and Image.MAX_IMAGE_PIXELS <= 200_000_000


def test_load_many_reports_bad_files_and_keeps_going(tmp_path):
    good = save(tmp_path / "a.png", Image.fromarray(PATTERN))
    bad = tmp_path / "b.jpg"
    bad.write_text("nope")
    images, errors = load_many([good, bad, good])
    assert images.shape == (3, 48, 48)
    assert np.array_equal(images[0], PATTERN) and np.array_equal(images[2], PATTERN)
    assert (images[1] == 0).all()
    assert [i for i, _ in errors] == [1]


def test_is_image_path():
    for name in ("a.jpg", "b.JPEG", "c.png", "d.bmp", "e.gif", "f.webp", "g.tif", "h.TIFF"):
        assert is_image_path(name)
    for name in (".hidden.jpg", "notes.txt", "planted.json", "x.jpg.tmp", "noext"):
        assert not is_image_path(name)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_named_like_an_image_is_refused_not_waited_on(tmp_path):
    """Reading a FIFO blocks until something writes to it: predict-dir once hung on one."""
    os.mkfifo(tmp_path / "pipe.jpg")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("reading the pipe blocked"))
    signal.alarm(10)
    try:
        with pytest.raises(ImageError, match="is a pipe"):
            load_image(tmp_path / "pipe.jpg")
        _, errors = load_many([tmp_path / "pipe.jpg"])
    finally:
        signal.alarm(0)
    assert errors == [(0, "is a pipe (FIFO), not a file")]


def test_a_device_named_like_an_image_is_refused(tmp_path):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    (tmp_path / "zero.png").symlink_to("/dev/zero")  # endless bytes
    with pytest.raises(ImageError, match="is a device"):
        load_image(tmp_path / "zero.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="broken symbolic link"):
        load_image(tmp_path / "gone.png")
    (tmp_path / "file.png").write_bytes(b"")
    (tmp_path / "link.png").symlink_to(tmp_path / "file.png")  # a link to a file is fine
    with pytest.raises(ImageError, match="empty file"):
        load_image(tmp_path / "link.png")
