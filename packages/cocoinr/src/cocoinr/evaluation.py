"""Held-out view metrics the original does not compute: PSNR, SSIM and LPIPS on the full image
and, where the scene has masks, on the object (PSNR over the mask's pixels; SSIM and LPIPS with
the background set to black in both images, the few-view DTU protocol of RegNeRF and others).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from geomkit.metrics import psnr, ssim

METRICS = ("psnr", "ssim", "lpips")


def view_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None,
                 lpips=None) -> dict[str, float]:  # fmt: skip
    """(H, W, 3) prediction and ground truth in [0, 1], (H, W) bool mask or None."""
    out = _metrics(pred, gt, None, lpips, "")
    if mask is not None and bool(mask.any()):
        keep = mask[..., None].to(pred.dtype)
        out.update(_metrics(pred * keep, gt * keep, mask, lpips, "masked_"))
    return out


def _metrics(pred, gt, psnr_mask, lpips, prefix: str) -> dict[str, float]:
    pred_chw, gt_chw = pred.permute(2, 0, 1).float(), gt.permute(2, 0, 1).float()
    out = {
        f"{prefix}psnr": psnr(pred_chw, gt_chw, mask=psnr_mask).item(),
        f"{prefix}ssim": ssim(pred_chw, gt_chw).item(),
    }
    if lpips is not None:
        with torch.no_grad():
            value = lpips(pred_chw[None], gt_chw[None], normalize=True)
        out[f"{prefix}lpips"] = value.item()
    return out


def summarise(per_view: dict[int, dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the views that have it (PSNR of identical images, inf,
    left out)."""
    keys = sorted({k for values in per_view.values() for k in values})
    means = {}
    for key in keys:
        values = [v[key] for v in per_view.values() if key in v and math.isfinite(v[key])]
        means[key] = float(np.mean(values)) if values else float("nan")
    return means
