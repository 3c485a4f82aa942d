"""The descriptor -> RGB visualisation head (prefix ``rgb_converter.``) and its dimred loss.

NPBG++ trains a tiny linear autoencoder beside the renderer, on detached descriptors, only to
show rasters in colour (the ``{view}_raster.png`` outputs): ``rgb = 0.9 sigmoid(lin1(d))``,
``lin2(rgb)`` reconstructs ``d``. It never changes the rendering.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RGBConverter", "dimred_loss"]


class RGBConverter(nn.Module):
    """``lin1`` Linear(C, 3), ``lin2`` Linear(3, C).

    Args:
        feature_dim: C, the descriptor size (8).
    """

    def __init__(self, feature_dim: int = 8):
        super().__init__()
        self.lin1 = nn.Linear(feature_dim, 3)
        self.lin2 = nn.Linear(3, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) channels-last descriptors -> (..., 3) colours in (0, 0.9)."""
        return 0.9 * torch.sigmoid(self.lin1(x))

    def reconstruct(self, rgb: torch.Tensor) -> torch.Tensor:
        """(..., 3) -> (..., C), ``lin2``."""
        return self.lin2(rgb)

    def feature_map_to_rgb(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) channel-first feature map (a raster without its mask) -> (N, 3, H, W)."""
        return self(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def dimred_loss(
    converter: RGBConverter, descriptors: torch.Tensor, valid_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """NPBG++'s ``dimred_loss``: summed L1 between ``lin2(converter(d))`` and ``d``.

    The descriptors are detached, so only the converter learns; invalid points count as
    zeros on both sides.

    Args:
        converter: the visualisation head.
        descriptors: (N, P, C) channels-last descriptors.
        valid_mask: (N, P) bool, points that count (default all).

    Returns:
        () float32 sum over points and channels of |lin2(rgb) - d|.
    """
    target = descriptors.detach()
    reconstructed = converter.reconstruct(converter(target))
    if valid_mask is not None:
        keep = valid_mask.to(torch.bool).unsqueeze(-1)
        reconstructed = torch.where(keep, reconstructed, 0.0)
        target = torch.where(keep, target, 0.0)
    return F.l1_loss(reconstructed.float(), target.float(), reduction="sum")
