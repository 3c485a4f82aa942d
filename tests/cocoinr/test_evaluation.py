"""Held-out view metrics: PSNR over the whole image and over the mask's pixels from the MSE
formula, SSIM and LPIPS (fabricated AlexNet weights) with the background blacked out."""

from __future__ import annotations

import math

import numpy as np
import torch

from cocoinr.evaluation import summarise, view_metrics
from geomkit.metrics import ssim
from geomkit.metrics.lpips import LPIPS
from tests.geomkit.test_lpips import FILE_NAMES, _backbone_state, _lin_state


def images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(40, 48, 3, generator=g, dtype=torch.float64)
    pred = (gt + 0.1 * torch.randn(40, 48, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[10:30, 12:40] = True
    return pred.float(), gt.float(), mask


def psnr_formula(pred: np.ndarray, gt: np.ndarray) -> float:
    return -10 * math.log10(np.mean((pred.astype(np.float64) - gt) ** 2))


def test_full_and_masked_metrics(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    generator = torch.Generator().manual_seed(3)
    backbone, heads = FILE_NAMES["alex"]
    torch.save(_backbone_state("alex", generator), folder / backbone)
    torch.save(_lin_state("alex", generator), folder / heads)
    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(folder))
    lpips = LPIPS("alex", lin_path=folder / heads)
    pred, gt, mask = images()
    values = view_metrics(pred, gt, mask, lpips)
    assert math.isclose(values["psnr"], psnr_formula(pred.numpy(), gt.numpy()), rel_tol=1e-6)
    inside = mask.numpy()
    expected = psnr_formula(pred.numpy()[inside], gt.numpy()[inside])
    assert math.isclose(values["masked_psnr"], expected, rel_tol=1e-6)
    black = mask[..., None].float()
    chw = [(x * black).permute(2, 0, 1) for x in (pred, gt)]
    assert math.isclose(values["masked_ssim"], ssim(*chw).item(), rel_tol=1e-6)
    direct = lpips((pred * black).permute(2, 0, 1)[None], (gt * black).permute(2, 0, 1)[None],
                   normalize=True)  # fmt: skip
    assert math.isclose(values["masked_lpips"], direct.item(), rel_tol=1e-5)
    assert values["lpips"] > 0 and values["ssim"] < 1


def test_without_a_mask_only_full_image_metrics_and_means_skip_infinite_psnr():
    pred, gt, _ = images()
    values = view_metrics(pred, gt, None)
    assert set(values) == {"psnr", "ssim"}
    perfect = view_metrics(gt, gt, None)
    assert math.isinf(perfect["psnr"])
    means = summarise({0: values, 1: perfect})
    assert means["psnr"] == values["psnr"]
    assert math.isclose(means["ssim"], (values["ssim"] + 1.0) / 2)
