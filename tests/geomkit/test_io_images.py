"""Image, mask, depth and EXR IO, checked against scikit-image's reader (imageio/Pillow)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.io

from geomkit.errors import InputError
from geomkit.io import (
    read_depth_png,
    read_exr,
    read_image,
    read_mask,
    write_depth_png,
    write_exr,
    write_image,
)
from tests.helpers import assert_close

EXR_CODEC = cv2.haveImageWriter("probe.exr")


def _rng():
    return np.random.default_rng(7)


def test_float_rgb_round_trip_and_independent_reader(tmp_path):
    image = _rng().random((6, 9, 3)).astype(np.float32)
    image[0, 0] = [1.0, 0.0, 0.0]  # pure red at the corner: catches a BGR/RGB swap
    path = tmp_path / "a.png"
    write_image(path, image)
    read = read_image(path)
    assert read.dtype == np.float32 and read.shape == (6, 9, 3)
    assert_close(read, image, atol=0.5 / 255 + 1e-6, what="round trip")
    stored = skimage.io.imread(path)
    np.testing.assert_array_equal(stored[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(stored, np.round(image * 255).astype(np.uint8))
    assert_close(read, stored / 255.0, atol=1e-7, what="vs scikit-image")


def test_uint8_grey_and_single_channel_expand_to_rgb(tmp_path):
    grey = _rng().integers(0, 256, (5, 4), dtype=np.uint8)
    for name, image in (("g.png", grey), ("g1.png", grey[:, :, None])):
        write_image(tmp_path / name, image)
        np.testing.assert_array_equal(skimage.io.imread(tmp_path / name), grey)
        read = read_image(tmp_path / name)
        assert_close(read, np.repeat(grey[:, :, None] / 255.0, 3, axis=2), atol=1e-7, what=name)


def test_rgba_alpha_and_clipping(tmp_path):
    image = _rng().random((4, 5, 4))
    image[0, 0] = [1.5, -0.5, 0.5, 0.25]  # clipped to [1, 0, 0.5]
    write_image(tmp_path / "a.png", image)
    stored = skimage.io.imread(tmp_path / "a.png")
    np.testing.assert_array_equal(stored[0, 0], [255, 0, 128, 64])
    rgb, alpha = read_image(tmp_path / "a.png", with_alpha=True)
    assert_close(rgb, stored[:, :, :3] / 255.0, atol=1e-7, what="rgb")
    assert_close(alpha, stored[:, :, 3] / 255.0, atol=1e-7, what="alpha")
    write_image(tmp_path / "b.png", image[:, :, :3])
    assert read_image(tmp_path / "b.png", with_alpha=True)[1] is None


def test_sixteen_bit_png_scaled_by_65535(tmp_path):
    values = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    skimage.io.imsave(tmp_path / "d.png", values, check_contrast=False)
    read = read_image(tmp_path / "d.png")
    assert_close(read[:, :, 1], values / 65535.0, atol=1e-7, what="16-bit grey")


def test_jpeg_write_and_read(tmp_path):
    image = np.zeros((16, 16, 3))
    image[:, :8] = [0.2, 0.6, 0.9]
    write_image(tmp_path / "a.jpeg", image)
    reference = skimage.io.imread(tmp_path / "a.jpeg") / 255.0
    assert_close(read_image(tmp_path / "a.jpeg"), reference, atol=2 / 255, what="vs scikit-image")
    flat = np.full((16, 16, 3), [0.2, 0.6, 0.9])  # no edges, so JPEG keeps it nearly exact
    write_image(tmp_path / "flat.jpg", flat)
    assert_close(read_image(tmp_path / "flat.jpg"), flat, atol=3 / 255, what="lossy round trip")
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "b.jpg", np.zeros((2, 2, 4)))


def test_mask_threshold_and_zero_one_masks(tmp_path):
    grey = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    skimage.io.imsave(tmp_path / "m.png", grey, check_contrast=False)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[False, False, True, True]])
    colour = np.zeros((1, 3, 3), dtype=np.uint8)
    colour[0, 1, 0] = 200  # red only: inside
    colour[0, 2] = [100, 100, 100]  # dark grey: outside
    skimage.io.imsave(tmp_path / "c.png", colour, check_contrast=False)
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), [[False, True, False]])
    skimage.io.imsave(tmp_path / "z.png", np.array([[0, 1, 1]], np.uint8), check_contrast=False)
    np.testing.assert_array_equal(read_mask(tmp_path / "z.png"), [[False, True, True]])
    mask = np.array([[True, False], [False, True]])
    write_image(tmp_path / "w.png", mask)
    np.testing.assert_array_equal(skimage.io.imread(tmp_path / "w.png"), mask * 255)
    np.testing.assert_array_equal(read_mask(tmp_path / "w.png"), mask)


def test_depth_round_trip_exact_at_one_over_scale(tmp_path):
    rng = _rng()
    millimetres = rng.integers(0, 65536, (7, 5))
    millimetres[0, 0] = 0
    depth = (millimetres / 1000.0).astype(np.float32)
    write_depth_png(tmp_path / "d.png", depth)
    np.testing.assert_array_equal(skimage.io.imread(tmp_path / "d.png"), millimetres)
    np.testing.assert_array_equal(read_depth_png(tmp_path / "d.png"), depth)

    continuous = rng.random((7, 5)) * 6.0
    write_depth_png(tmp_path / "c.png", continuous, scale=5000.0)
    read = read_depth_png(tmp_path / "c.png", scale=5000.0)
    assert read.dtype == np.float32 and read[0, 0] != 0
    assert_close(read, continuous, atol=0.5 / 5000 + 1e-6, what="rounded to 1/scale")


def test_depth_errors(tmp_path):
    skimage.io.imsave(tmp_path / "eight.png", np.zeros((2, 2), np.uint8), check_contrast=False)
    with pytest.raises(InputError, match="eight.png.*16-bit"):
        read_depth_png(tmp_path / "eight.png")
    cv2.imwrite(str(tmp_path / "rgb16.png"), np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(InputError, match="rgb16.png.*one channel"):
        read_depth_png(tmp_path / "rgb16.png")
    for bad in (np.array([[-0.001]]), np.array([[np.nan]]), np.array([[65.536]])):
        with pytest.raises(ValueError):
            write_depth_png(tmp_path / "bad.png", bad)
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.skipif(not EXR_CODEC, reason=f"OpenCV {cv2.__version__} was built without OpenEXR")
@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 3), (4, 6, 4)])
def test_exr_round_trip_exact(tmp_path, shape):
    image = (_rng().normal(size=shape) * 1e3).astype(np.float32)
    write_exr(tmp_path / "a.exr", image)
    read = read_exr(tmp_path / "a.exr")
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, image.reshape(read.shape))
    if len(shape) == 3:  # OpenCV's own reader gives BGR: the file's R channel is last
        raw = cv2.imread(str(tmp_path / "a.exr"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(raw[:, :, 2], image[:, :, 0])


@pytest.mark.skipif(EXR_CODEC, reason="this OpenCV has the OpenEXR codec")
def test_exr_without_codec_says_how_to_fix(tmp_path):
    (tmp_path / "a.exr").write_bytes(b"\x76\x2f\x31\x01")
    with pytest.raises(InputError, match=r"a.exr.*no OpenEXR codec.*opencv-python-headless"):
        read_exr(tmp_path / "a.exr")
    with pytest.raises(InputError, match="b.exr.*no OpenEXR codec"):
        write_exr(tmp_path / "b.exr", np.zeros((2, 2), np.float32))


def test_read_errors_name_the_file(tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("missing.png", "garbage.png", "empty.png"):
        for reader in (read_image, read_mask, read_depth_png):
            with pytest.raises(InputError, match=name):
                reader(tmp_path / name)


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        write_image(tmp_path / "a.bmp", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "a.png", np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="image must be"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 5)))
    with pytest.raises(TypeError):
        write_image(tmp_path / "a.png", np.zeros((2, 2), np.int32))
    assert not any(tmp_path.iterdir())


@pytest.mark.realdata
def test_real_images_match_scikit_image(shared_data):
    folder = shared_data / "numcc" / "web" / "gudetama"
    rgb, alpha = read_image(folder / "im.png", with_alpha=True)
    stored = skimage.io.imread(folder / "im.png")
    assert rgb.shape == (512, 512, 3)
    assert_close(rgb, stored[:, :, :3] / 255.0, atol=1e-7, what="rgb")
    assert_close(alpha, stored[:, :, 3] / 255.0, atol=1e-7, what="alpha")
    depth = read_depth_png(folder / "depth.png")
    expected = skimage.io.imread(folder / "depth.png") / 1000.0
    assert_close(depth, expected, rtol=1e-7, what="depth, float32")
    # foreground sizes from the reference notes (reference/numcc.md, section 9)
    assert read_mask(folder / "seg.png").sum() == 23295
    luggage = read_mask(shared_data / "numcc" / "iphone" / "luggage" / "seg.png")
    assert luggage.shape == (960, 720) and round(luggage.mean(), 3) == 0.206
