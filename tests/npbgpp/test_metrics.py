"""NPBG++'s metrics: PSNR and SSIM against scikit-image and torchmetrics 0.5.1's SSIM written
out, LPIPS(vgg, normalize=True) on fabricated weights, and the JSON file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from geomkit.errors import CheckpointError
from geomkit.metrics.lpips import LPIPS
from npbgpp.metrics import (
    ImageMetrics,
    MetricAverages,
    psnr,
    ssim_torchmetrics,
    write_metrics_json,
)
from tests.helpers import assert_close

VGG16_CONVS = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128),
    10: (256, 128), 12: (256, 256), 14: (256, 256),
    17: (512, 256), 19: (512, 512), 21: (512, 512),
    24: (512, 512), 26: (512, 512), 28: (512, 512),
}  # fmt: skip


def _images(seed: int, shape=(3, 3, 32, 40)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g)
    pred = (target + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return pred, target


def test_psnr_per_image_with_data_range_one():
    pred, target = _images(0)
    values = psnr(pred, target)
    assert values.shape == (3,) and values.dtype == torch.float64
    for i in range(3):
        mse = ((pred[i].double() - target[i].double()) ** 2).mean()
        assert_close(values[i], 10 * torch.log10(1 / mse), atol=1e-6)
        reference = peak_signal_noise_ratio(target[i].numpy(), pred[i].numpy(), data_range=1.0)
        assert_close(values[i], reference, atol=1e-4)


def _torchmetrics_051_ssim(pred, target):
    """torchmetrics 0.5.1 ``ssim(reduction='none').mean((1, 2, 3))`` in float64: batch data
    range, 11x11 Gaussian (sigma 1.5) as an outer product, torch 'reflect' padding by 5, crop 5."""
    pred, target = pred.double(), target.double()
    data_range = max(pred.max() - pred.min(), target.max() - target.min())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    dist = torch.arange(-5, 6, dtype=torch.float64)
    gauss = torch.exp(-((dist / 1.5) ** 2) / 2)
    gauss = (gauss / gauss.sum())[None]
    kernel = (gauss.T @ gauss).expand(3, 1, 11, 11)
    p = F.pad(pred, (5, 5, 5, 5), mode="reflect")
    t = F.pad(target, (5, 5, 5, 5), mode="reflect")
    mu_p, mu_t, e_pp, e_tt, e_pt = (
        F.conv2d(x, kernel, groups=3) for x in (p, t, p * p, t * t, p * t)
    )
    sigma_p, sigma_t, sigma_pt = e_pp - mu_p**2, e_tt - mu_t**2, e_pt - mu_p * mu_t
    index = ((2 * mu_p * mu_t + c1) * (2 * sigma_pt + c2)) / (
        (mu_p**2 + mu_t**2 + c1) * (sigma_p + sigma_t + c2)
    )
    return index[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))


def test_ssim_is_torchmetrics_051_with_the_batch_data_range():
    pred, target = _images(1)
    pred[1] = pred[1] * 0.5  # the batch range differs from this image's own range
    values = ssim_torchmetrics(pred, target)
    assert_close(values, _torchmetrics_051_ssim(pred, target), atol=1e-6)
    batch_range = max(float(pred.max() - pred.min()), float(target.max() - target.min()))
    for i in range(3):
        reference = structural_similarity(
            target[i].numpy(),
            pred[i].numpy(),
            channel_axis=0,
            data_range=batch_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert_close(values[i], reference, atol=1e-5)
    # One image alone has its own range: a different value for image 1.
    alone = ssim_torchmetrics(pred[1:2], target[1:2])
    assert_close(alone, _torchmetrics_051_ssim(pred[1:2], target[1:2]), atol=1e-6)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    g = torch.Generator().manual_seed(6)
    state = {}
    for index, (cout, cin) in VGG16_CONVS.items():
        std = (2.0 / (cin * 9)) ** 0.5
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        state[f"features.{index}.bias"] = 0.1 * torch.randn(cout, generator=g)
    path = tmp_path_factory.mktemp("lpips") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path


def test_image_metrics_lpips_is_vgg_with_normalize(vgg16_file):
    metrics = ImageMetrics(lpips_backbone_path=vgg16_file)
    pred, target = _images(2, shape=(2, 3, 32, 32))
    values = metrics(pred, target)
    assert sorted(values) == ["LPIPS", "PSNR", "SSIM"]
    assert isinstance(metrics.lpips, LPIPS) and metrics.lpips.net_name == "vgg"
    # normalize=True: inputs mapped from [0, 1] to [-1, 1] (geomkit's LPIPS is tested on its own)
    expected = metrics.lpips(2 * pred - 1, 2 * target - 1)
    assert_close(values["LPIPS"], expected.double(), atol=1e-6)
    assert float(values["LPIPS"].min()) > 0
    assert_close(values["PSNR"], psnr(pred, target), atol=0)
    assert_close(values["SSIM"], ssim_torchmetrics(pred, target), atol=0)
    assert_close(metrics(target, target)["LPIPS"], torch.zeros(2, dtype=torch.float64), atol=1e-7)


def test_missing_lpips_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "empty"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth not found"):
        ImageMetrics()


def test_averages_and_atomic_json(tmp_path):
    averages = MetricAverages()
    averages.update(["000", "001"], {"PSNR": torch.tensor([20.0, 30.0]), "SSIM": torch.ones(2)})
    averages.update(["002"], {"PSNR": torch.tensor([math.inf]), "SSIM": torch.tensor([0.5])})
    finite = MetricAverages()
    finite.update(["a", "b"], {"PSNR": torch.tensor([20.0, 31.0])})
    assert finite.averages() == {"PSNR": 25.5}
    path = tmp_path / "metrics.json"
    path.write_text("old")
    write_metrics_json(path, averages.per_view, averages.averages())
    written = json.loads(path.read_text())
    assert written["per_view"]["001"] == {"PSNR": 30.0, "SSIM": 1.0}
    assert written["per_view"]["002"]["PSNR"] is None  # inf is not JSON
    assert written["average"]["PSNR"] is None
    assert written["average"]["SSIM"] == pytest.approx(2.5 / 3, abs=1e-12)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left
    with pytest.raises(TypeError):
        write_metrics_json(path, {"x": {"PSNR": np.array([1.0, 2.0])}}, {})
    assert json.loads(path.read_text()) == written  # a failed write leaves the old file
