"""Metrics: point sets (accuracy, completeness, Chamfer, F-score, normal consistency),
occupancy IoU, images (PSNR, SSIM, LPIPS)."""

from geomkit.metrics.image import psnr, ssim
from geomkit.metrics.occupancy import occupancy_iou
from geomkit.metrics.pointcloud import (
    nearest_neighbors,
    normal_consistency,
    pointcloud_metrics,
    precision_recall_fscore,
)

__all__ = [
    "nearest_neighbors",
    "normal_consistency",
    "occupancy_iou",
    "pointcloud_metrics",
    "precision_recall_fscore",
    "psnr",
    "ssim",
]
