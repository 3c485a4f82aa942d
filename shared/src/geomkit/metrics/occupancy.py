"""Volumetric IoU of occupancies (ONet's definition)."""

from __future__ import annotations

import numpy as np


def occupancy_iou(occ1, occ2, threshold: float = 0.5) -> np.ndarray | float:
    """IoU of two occupancy arrays (..., N): bool, or float compared ``>= threshold``.

    Leading dimensions are batch dimensions (one IoU each). Two empty occupancies give NaN, as
    in ONet (its per-class means skip them).
    """
    a = _as_bool(occ1, threshold)
    b = _as_bool(occ2, threshold)
    if a.shape != b.shape:
        raise ValueError(f"occupancy shapes differ: {a.shape} vs {b.shape}")
    intersection = (a & b).sum(axis=-1)
    union = (a | b).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = intersection / union
    return float(iou) if np.ndim(iou) == 0 else iou


def _as_bool(occ, threshold: float) -> np.ndarray:
    occ = np.asarray(occ)
    return occ if occ.dtype == np.bool_ else occ >= threshold
