"""Any photo works as a query: formats, modes, EXIF orientation; bad files fail in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nfkit.clip.images import load_photo, prepare_batch
from nfkit.errors import UserError


def _halves(w=20, h=10):
    """Left half red, right half blue (RGB uint8)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (255, 0, 0)
    a[:, w // 2 :] = (0, 0, 255)
    return a


def test_jpeg_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(_halves())
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    img.save(path, exif=exif, quality=95)
    out = load_photo(path)
    assert out.shape == (20, 10, 3) and out.dtype == np.float32
    # clockwise: the left (red) half ends up on top, the blue half at the bottom
    assert out[2, 5, 0] > 0.8 and out[2, 5, 2] < 0.2
    assert out[17, 5, 2] > 0.8 and out[17, 5, 0] < 0.2
    # without the tag the same pixels stay as stored
    plain = tmp_path / "plain.jpg"
    img.save(plain, quality=95)
    assert load_photo(plain).shape == (10, 20, 3)


def test_greyscale_png(tmp_path):
    a = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    out = load_photo(tmp_path / "g.png")
    assert out.shape == (4, 16, 3)
    np.testing.assert_allclose(out[..., 0], a / 255.0, atol=1e-6)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_png(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    out = load_photo(tmp_path / "deep.png")
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0, :, 1], [0.0, 32768 / 65535, 1.0], atol=1e-4)


def test_palette_png_with_transparency(tmp_path):
    p = Image.new("P", (4, 2))
    p.putpalette([0, 255, 0, 255, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 1  # palette entry 1 (yellow) is transparent -> black
    p.save(tmp_path / "pal.png", transparency=1)
    out = load_photo(tmp_path / "pal.png")
    assert out.shape == (2, 4, 3)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0])
    np.testing.assert_allclose(out[1, 1], [0, 1, 0])


def test_rgba_composited_on_black(tmp_path):
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (255, 255, 255, 255)
    a[0, 1] = (255, 255, 255, 0)
    a[1, 0] = (200, 100, 50, 128)
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = load_photo(tmp_path / "a.png")
    np.testing.assert_allclose(out[0, 0], [1, 1, 1])
    np.testing.assert_allclose(out[0, 1], [0, 0, 0])
    np.testing.assert_allclose(out[1, 0], np.array([200, 100, 50]) / 255 * 128 / 255, atol=1e-6)


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "folder"])
def test_bad_files_fail_in_one_line(tmp_path, kind):
    path = tmp_path / "bad.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image")
    elif kind == "truncated":
        Image.fromarray(_halves(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(UserError) as exc:
        load_photo(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_prepare_batch_any_aspect():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    wide = np.ones((10, 40, 3), np.float32)
    tall = np.zeros((50, 7, 3), np.uint8)
    x = prepare_batch([wide, tall], 8, mean, std)
    assert x.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(x[0, :, 3, 3].numpy(), [(1 - m) / s for m, s in zip(mean, std, strict=True)], rtol=1e-5)
    np.testing.assert_allclose(x[1, :, 0, 0].numpy(), [-m / s for m, s in zip(mean, std, strict=True)], rtol=1e-5)
    # centre crop of the wide image: a marker in its middle survives, one at its edge does not
    img = np.zeros((8, 32, 3), np.float32)
    img[:, 15:17, 0] = 1.0
    img[:, 0:2, 1] = 1.0
    y = prepare_batch([img], 8, (0, 0, 0), (1, 1, 1))[0]
    assert y[0].max() > 0.5 and y[1].max() < 0.5
