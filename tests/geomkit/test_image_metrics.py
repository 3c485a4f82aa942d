"""PSNR and SSIM against scikit-image (the reference), a hand computation and finite differences."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from geomkit.errors import InputError
from geomkit.metrics.image import psnr, ssim, ssim_map
from tests.helpers import assert_close

SHAPES = [(1, 3, 32, 32), (2, 3, 37, 53), (2, 1, 21, 64), (1, 3, 11, 11)]

# (our keyword arguments, skimage's); skimage's use_sample_covariance default is True in both
# modes, ours follows Wang et al. with Gaussian weights, so it is spelled out for skimage.
MODES = {
    "gaussian": ({}, dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)),
    "uniform": (
        dict(gaussian_weights=False),
        dict(gaussian_weights=False, win_size=7, use_sample_covariance=True),
    ),
    "gaussian_sigma1.2_sample_cov": (
        dict(sigma=1.2, use_sample_covariance=True),
        dict(gaussian_weights=True, sigma=1.2, use_sample_covariance=True),
    ),
    "uniform_win5_population_cov": (
        dict(gaussian_weights=False, win_size=5, use_sample_covariance=False),
        dict(gaussian_weights=False, win_size=5, use_sample_covariance=False),
    ),
    # The Gaussian filter stays 11 taps, only the crop and N in N/(N-1) follow win_size.
    "gaussian_win5_crop": (
        dict(win_size=5, use_sample_covariance=True),
        dict(gaussian_weights=True, win_size=5, use_sample_covariance=True),
    ),
    "custom_constants": (
        dict(K1=0.05, K2=0.1),
        dict(gaussian_weights=True, use_sample_covariance=False, K1=0.05, K2=0.1),
    ),
}


def _image_pair(shape, data_range=1.0, seed=0):
    """A target and a noisy, locally related prediction in [0, data_range], float64."""
    rng = np.random.default_rng(seed)
    target = rng.random(shape)
    pred = np.clip(target + 0.2 * rng.standard_normal(shape), 0.0, 1.0)
    return pred * data_range, target * data_range


def _skimage_ssim(pred, target, data_range, **kwargs):
    return np.array(
        [
            structural_similarity(t, p, channel_axis=0, data_range=data_range, **kwargs)
            for p, t in zip(pred, target, strict=True)
        ]
    )


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_ssim_equals_skimage(shape, mode):
    ours_kwargs, skimage_kwargs = MODES[mode]
    pred, target = _image_pair(shape)
    actual = ssim(torch.from_numpy(pred), torch.from_numpy(target), **ours_kwargs)
    expected = _skimage_ssim(pred, target, 1.0, **skimage_kwargs)
    assert actual.dtype == torch.float64
    assert_close(actual, expected, atol=1e-9, what=f"ssim {mode} {shape}")


@pytest.mark.parametrize("gaussian_weights", [True, False])
def test_ssim_data_range_255_and_unrelated_images(gaussian_weights):
    rng = np.random.default_rng(1)
    pred = rng.random((2, 3, 24, 40)) * 255.0
    target = rng.random((2, 3, 24, 40)) * 255.0
    actual = ssim(
        torch.from_numpy(pred),
        torch.from_numpy(target),
        data_range=255.0,
        gaussian_weights=gaussian_weights,
    )
    expected = _skimage_ssim(
        pred,
        target,
        255.0,
        gaussian_weights=gaussian_weights,
        use_sample_covariance=not gaussian_weights,
    )
    assert_close(actual, expected, atol=1e-9, what="ssim of unrelated images, range 255")
    assert float(actual.abs().max()) < 0.1  # unrelated noise: near zero, not a trivial 1


def test_ssim_filter_wider_than_image():
    """sigma 3 gives a 23-tap Gaussian on a 9-pixel side: reflection repeats past the image."""
    pred, target = _image_pair((1, 2, 9, 14), seed=2)
    actual = ssim(torch.from_numpy(pred), torch.from_numpy(target), sigma=3.0, win_size=7)
    expected = _skimage_ssim(
        pred, target, 1.0, gaussian_weights=True, sigma=3.0, win_size=7, use_sample_covariance=False
    )
    assert_close(actual, expected, atol=1e-9, what="ssim with filter wider than the image")


def test_ssim_map_equals_skimage_full_image():
    pred, target = _image_pair((1, 3, 20, 26), seed=3)
    actual = ssim_map(torch.from_numpy(pred[0]), torch.from_numpy(target[0]))
    expected = structural_similarity(
        target[0],
        pred[0],
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=True,
        use_sample_covariance=False,
        full=True,
    )[1]
    assert actual.shape == (3, 20, 26)
    assert_close(actual, expected, atol=1e-9, what="uncropped ssim map")


def test_ssim_single_image_and_float32():
    pred, target = _image_pair((3, 30, 33), seed=4)
    single = ssim(torch.from_numpy(pred), torch.from_numpy(target))
    expected = structural_similarity(
        target,
        pred,
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=True,
        use_sample_covariance=False,
    )
    assert single.shape == ()
    assert_close(single, expected, atol=1e-9, what="single (C, H, W) image")

    pred32, target32 = pred.astype(np.float32), target.astype(np.float32)
    actual32 = ssim(torch.from_numpy(pred32), torch.from_numpy(target32))
    expected32 = structural_similarity(
        target32,
        pred32,
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=True,
        use_sample_covariance=False,
    )
    assert actual32.dtype == torch.float64
    assert_close(actual32, expected32, atol=1e-5, what="float32 images")


def test_ssim_identical_images_is_one():
    _, target = _image_pair((2, 3, 16, 16), seed=5)
    image = torch.from_numpy(target)
    assert_close(ssim(image, image), np.ones(2), atol=1e-12, what="ssim(x, x)")


@pytest.mark.realdata
@pytest.mark.parametrize("gaussian_weights", [True, False])
def test_ssim_real_photo_equals_skimage(shared_data, gaussian_weights):
    photo_path = sorted((shared_data / "nerf_fox" / "images").glob("*.jpg"))[0]
    photo = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    assert photo is not None, f"cannot read {photo_path}"
    small = cv2.resize(photo, (54, 96), interpolation=cv2.INTER_AREA)  # 1920x1080 -> 96x54
    blurred = cv2.GaussianBlur(small, (5, 5), 1.0)
    target = small.transpose(2, 0, 1).astype(np.float64) / 255.0
    pred = blurred.transpose(2, 0, 1).astype(np.float64) / 255.0
    actual = ssim(
        torch.from_numpy(pred), torch.from_numpy(target), gaussian_weights=gaussian_weights
    )
    expected = structural_similarity(
        target,
        pred,
        channel_axis=0,
        data_range=1.0,
        gaussian_weights=gaussian_weights,
        use_sample_covariance=not gaussian_weights,
    )
    assert_close(actual, expected, atol=1e-9, what=f"ssim on {photo_path.name}")
    assert 0.3 < float(actual) < 0.99  # a blur: clearly similar, clearly not identical


def test_ssim_gradient_matches_finite_differences():
    pred, target = _image_pair((1, 2, 12, 13), seed=6)
    pred_t = torch.from_numpy(pred).requires_grad_(True)
    target_t = torch.from_numpy(target)
    for gaussian_weights in (True, False):
        assert torch.autograd.gradcheck(
            lambda p, g=gaussian_weights: ssim(p, target_t, gaussian_weights=g),
            (pred_t,),
            eps=1e-6,
            atol=1e-7,
        )
    value = ssim(pred_t.float(), target_t.float())
    value.sum().backward()
    assert pred_t.grad is not None
    assert bool(torch.isfinite(pred_t.grad).all())
    assert float(pred_t.grad.abs().max()) > 0


def test_psnr_equals_skimage():
    for data_range in (1.0, 255.0):
        pred, target = _image_pair((3, 3, 17, 23), data_range=data_range, seed=7)
        actual = psnr(torch.from_numpy(pred), torch.from_numpy(target), data_range=data_range)
        expected = [
            peak_signal_noise_ratio(t, p, data_range=data_range)
            for p, t in zip(pred, target, strict=True)
        ]
        assert actual.dtype == torch.float64
        assert_close(actual, np.array(expected), atol=1e-9, what=f"psnr range {data_range}")


def test_psnr_known_value_and_identical_images():
    target = torch.zeros(3, 4, 4, dtype=torch.float64)
    pred = torch.full((3, 4, 4), 0.1, dtype=torch.float64)
    assert_close(psnr(pred, target), np.array(20.0), atol=1e-12, what="MSE 0.01 -> 20 dB")
    assert psnr(target, target).item() == float("inf")


@pytest.mark.parametrize("mask_has_channel_axis", [True, False])
def test_masked_psnr_equals_hand_computation(mask_has_channel_axis):
    rng = np.random.default_rng(8)
    pred, target = _image_pair((2, 3, 10, 12), seed=8)
    mask = rng.random((2, 10, 12)) < 0.3
    mask[:, 0, 0] = True
    expected = []
    for p, t, m in zip(pred, target, mask, strict=True):
        squared = (p - t) ** 2  # (C, H, W)
        mse = squared[:, m].sum() / (m.sum() * 3)
        expected.append(10 * np.log10(1.0 / mse))
    mask_t = torch.from_numpy(mask)
    if mask_has_channel_axis:
        mask_t = mask_t[:, None]
    actual = psnr(torch.from_numpy(pred), torch.from_numpy(target), mask=mask_t)
    assert_close(actual, np.array(expected), atol=1e-9, what="masked psnr")
    unmasked = psnr(torch.from_numpy(pred), torch.from_numpy(target))
    assert float((actual - unmasked).abs().min()) > 1e-6  # the mask really changes the value


def test_masked_psnr_single_image():
    pred, target = _image_pair((3, 6, 7), seed=9)
    mask = np.zeros((6, 7), dtype=bool)
    mask[2:5, 1:4] = True
    expected = 10 * np.log10(1.0 / ((pred - target)[:, mask] ** 2).mean())
    actual = psnr(torch.from_numpy(pred), torch.from_numpy(target), mask=torch.from_numpy(mask))
    assert actual.shape == ()
    assert_close(actual, np.array(expected), atol=1e-9, what="masked psnr, single image")


def test_user_errors_name_the_problem():
    image = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(InputError, match=r"pred has shape \(1, 3, 16, 16\) but target"):
        psnr(image, image[..., :8])
    bad = image.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="target contains NaN"):
        ssim(image, bad)
    with pytest.raises(InputError, match="smaller than the SSIM window win_size=11"):
        ssim(image[..., :9, :], image[..., :9, :])
    with pytest.raises(InputError, match="mask has shape"):
        psnr(image, image, mask=torch.ones(1, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(InputError, match=r"mask selects no pixel in image\(s\) \[1\]"):
        mask = torch.zeros(2, 16, 16, dtype=torch.bool)
        mask[0, 2, 2] = True
        psnr(image.expand(2, -1, -1, -1), image.expand(2, -1, -1, -1), mask=mask)
    with pytest.raises(ValueError, match="win_size must be an odd integer"):
        ssim(image, image, gaussian_weights=False, win_size=4)
