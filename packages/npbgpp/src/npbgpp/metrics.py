"""NPBG++'s evaluation metrics, per image then averaged: PSNR, SSIM, LPIPS.

As the original logs them (``PSNR/{dataset}``, ``SSIM/...``, ``LPIPS/...``), on renders clamped
to [0, 1] (the caller clamps) against targets in [0, 1]:

* PSNR: ``10 log10(1 / MSE)`` per image (torchmetrics' psnr, data_range 1);
* SSIM: torchmetrics 0.5.1's ``ssim``: Gaussian window 11, sigma 1.5, population covariance,
  the map cropped by 5 pixels on every side, and ``data_range = max(pred.max() - pred.min(),
  target.max() - target.min())`` over the WHOLE batch passed in (so it depends on the batch:
  NPBG++'s README commands evaluate one image per batch, ``dataloader=small``). Its valid
  region equals scikit-image's SSIM, so this is :func:`geomkit.metrics.ssim` with that range;
* LPIPS: ``lpips.LPIPS(net='vgg')`` with ``normalize=True``, through
  :class:`geomkit.metrics.lpips.LPIPS` (local weight files, never downloaded).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from geomkit.io import save_json
from geomkit.metrics import psnr as _psnr
from geomkit.metrics import ssim as _ssim
from geomkit.metrics.lpips import LPIPS

__all__ = [
    "METRIC_NAMES",
    "ImageMetrics",
    "MetricAverages",
    "psnr",
    "ssim_torchmetrics",
    "write_metrics_json",
]

METRIC_NAMES = ("PSNR", "SSIM", "LPIPS")


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) float64 PSNR in dB of (B, C, H, W) images in [0, 1] (data range 1)."""
    return _psnr(pred, target, data_range=1.0)


def ssim_torchmetrics(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) float64 SSIM per image as torchmetrics 0.5.1 computed it (module docstring).

    The data range is taken over the whole batch. Constant images on both sides (range 0,
    where torchmetrics divides 0 by 0) are scored with range 1 instead.
    """
    data_range = max(float(pred.max() - pred.min()), float(target.max() - target.min()))
    return _ssim(pred, target, data_range=data_range if data_range > 0 else 1.0)


class ImageMetrics:
    """PSNR, SSIM and LPIPS of image pairs, per image.

    The LPIPS network is built at construction, so a missing weight file is reported before
    any rendering starts.

    Args:
        lpips_backbone_path: torchvision's VGG-16 file (``vgg16-397923af.pth``); None: that
            file in geomkit's weight folders.
        lpips_lin_path: LPIPS heads; None: those shipped in the lpips wheel.
        device: where LPIPS runs.

    Raises:
        CheckpointError: an LPIPS weight file is missing or does not match.
    """

    def __init__(
        self,
        lpips_backbone_path: str | os.PathLike | None = None,
        lpips_lin_path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
    ):
        self.lpips = LPIPS("vgg", lin_path=lpips_lin_path, backbone_path=lpips_backbone_path)
        self.lpips.to(device)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"PSNR", "SSIM", "LPIPS"}`` -> (B,) float64 values, (B, 3, H, W) images in [0, 1]."""
        as_input = {"device": self.device, "dtype": torch.float32}
        distance = self.lpips(pred.to(**as_input), target.to(**as_input), normalize=True)
        return {
            "PSNR": psnr(pred, target),
            "SSIM": ssim_torchmetrics(pred, target),
            "LPIPS": distance.cpu().to(torch.float64),
        }


class MetricAverages:
    """Running per-view values and their means (NPBG++'s sum / count per dataset)."""

    def __init__(self):
        self.per_view: dict[str, dict[str, float]] = {}

    def update(self, names: list[str], values: Mapping[str, torch.Tensor]) -> None:
        """Record one batch: ``names`` (B view names), ``values`` metric -> (B,) tensor."""
        for i, name in enumerate(names):
            self.per_view[name] = {key: float(value[i]) for key, value in values.items()}

    def averages(self) -> dict[str, float]:
        """Mean of every metric over the recorded views ({} when none)."""
        if not self.per_view:
            return {}
        keys = next(iter(self.per_view.values())).keys()
        count = len(self.per_view)
        return {key: math.fsum(v[key] for v in self.per_view.values()) / count for key in keys}


def write_metrics_json(
    path: str | os.PathLike,
    per_view: Mapping[str, Mapping[str, float]],
    averages: Mapping[str, float],
) -> None:
    """Write ``{"per_view": {view: {metric: value}}, "average": {metric: value}}`` atomically
    (temporary file, fsync, rename: an interrupted write leaves the old file). Non-finite values
    (PSNR of identical images is inf) are written as null."""
    save_json(
        path,
        {
            "per_view": {str(v): _finite(m) for v, m in per_view.items()},
            "average": _finite(averages),
        },
    )


def _finite(values: Mapping[str, float]) -> dict[str, float | None]:
    return {str(k): (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
