"""NPBG++'s multi-scale nearest-point rasterizer (prefix ``rasterizer.``).

Each point lands in ONE pixel per scale; per pixel the point of minimum view depth wins (ties
to the lowest point index); the winner's ``[descriptor, 1]`` is written there; pixels no point
reaches get ``bg_feature`` and mask channel 0. Gradients reach only the winners (and
``bg_feature`` through the empty pixels). Visible = inside NPBG++'s NDC bounds of the FULL image
(short side |ndc| <= 1, long side <= max/min) and view depth > ``near`` (1 world unit in
NPBG++, strict), and ``valid_mask``.

Two implementations with one output:

* :class:`NearestScatterRasterizer`: the z-buffer of :func:`geomkit.ops.splat.splat_points`
  (compiled kernels) and :func:`geomkit.ops.splat.scatter_features`, pixel coordinates from
  :func:`npbgpp.models.projection.npbgpp_pixel_coordinates`;
* :class:`ScatterReduceRasterizer`: NPBG++'s own algorithm written with native
  ``scatter_reduce_`` (its torch_scatter calls): pixel ids by truncation, a dummy pixel H*W
  for rejected points, a depth 'amin' then a point-index 'amin', ``scatter_`` of the features.
  The baseline of the rendering benchmark and the tests' reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from geomkit.ops.splat import NPBGPP_SCALES, scatter_features, splat_points

__all__ = [
    "NearestScatterRasterizer",
    "ScatterReduceRasterizer",
    "ndc_visibility",
    "scale_size",
]


class NearestScatterRasterizer(nn.Module):
    """Multi-scale raster of per-point descriptors (NPBG++ ``NearestScatterRasterizer``).

    Args:
        descriptor_dim: C, channels of the descriptors (8; 3 for npbgpp_rgb).
        scales: output scale factors; scale s renders int(s * H) x int(s * W) pixels.
        learnable_bg: ``bg_feature`` is a Parameter (NPBG) instead of a buffer (NPBG++).
            Its state_dict key is ``bg_feature`` either way, shape [1, C, 1, 1], zeros.
        near: points with view depth <= near are culled (NPBG++'s hard near plane at 1).
    """

    def __init__(
        self,
        descriptor_dim: int = 8,
        scales: Sequence[float] = NPBGPP_SCALES,
        learnable_bg: bool = False,
        near: float = 1.0,
    ):
        super().__init__()
        if not scales or any(not s > 0 for s in scales):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
        self.descriptor_dim = int(descriptor_dim)
        self.scales = tuple(float(s) for s in scales)
        self.near = float(near)
        background = torch.zeros(1, self.descriptor_dim, 1, 1)
        if learnable_bg:
            self.bg_feature = nn.Parameter(background)
        else:
            self.register_buffer("bg_feature", background)

    @classmethod
    def from_config(
        cls,
        descriptor_dim: int = 8,
        cat_mask: bool = True,
        scales: Sequence[float] = NPBGPP_SCALES,
        ss_scale: Sequence[int] | None = None,
        invert_mask_values: bool = False,
        learnable: bool = True,
        near: float = 1.0,
    ) -> NearestScatterRasterizer:
        """Built from the authors' ``system.rasterizer`` keys (``learnable`` is learnable_bg).

        Raises:
            ValueError: a setting no released config uses (cat_mask false, super-sampling,
                inverted mask values).
        """
        if not cat_mask or invert_mask_values or any(s != 1 for s in (ss_scale or ())):
            raise ValueError(
                "rasterizer: only cat_mask=true, ss_scale all 1 and invert_mask_values=false "
                f"are supported (the released configs), got cat_mask={cat_mask}, "
                f"ss_scale={ss_scale}, invert_mask_values={invert_mask_values}"
            )
        if ss_scale is not None and len(ss_scale) != len(scales):
            raise ValueError(f"rasterizer: ss_scale {ss_scale} and scales {scales} differ in size")
        return cls(descriptor_dim, scales, learnable_bg=learnable, near=near)

    def forward(
        self,
        ndc: torch.Tensor,
        descriptors: torch.Tensor,
        image_size: tuple[int, int],
        valid_mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Raster pyramid of the descriptors.

        Args:
            ndc: (N, P, 3) projected points: PyTorch3D NDC x (left), y (up), and view depth z.
            descriptors: (N, P, C) or (P, C) (shared by the batch) float features.
            image_size: (H, W) of the full-resolution image.
            valid_mask: (N, P) bool, points taking part (default all).

        Returns:
            One (N, C + 1, int(s * H), int(s * W)) tensor per scale, dtype of descriptors:
            channels [0, C) the winner's descriptor (bg_feature where empty), channel C the
            mask (1 where a point landed, 0 elsewhere).
        """
        descriptors, visible = self._prepare(ndc, descriptors, image_size, valid_mask)
        background = self.bg_feature.reshape(-1).to(descriptors.dtype)
        rasters = []
        for scale in self.scales:
            index = self._winners(ndc, visible, scale_size(image_size, scale))
            image = scatter_features(descriptors, index, background)
            mask = (index >= 0).unsqueeze(1).to(descriptors.dtype)
            rasters.append(torch.cat((image, mask), dim=1))
        return rasters

    def _winners(
        self, ndc: torch.Tensor, visible: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """(N, h, w) int64 winning point per pixel, -1 where empty."""
        from npbgpp.models.projection import npbgpp_pixel_coordinates

        xy = npbgpp_pixel_coordinates(ndc.detach(), size)
        xy = torch.where(visible.unsqueeze(-1), xy, float("nan"))
        return splat_points(xy, ndc[..., 2].detach(), size, near=self.near).index

    def _prepare(
        self,
        ndc: torch.Tensor,
        descriptors: torch.Tensor,
        image_size: tuple[int, int],
        valid_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked (N, P, C) descriptors and the (N, P) visibility at full resolution."""
        if not isinstance(ndc, torch.Tensor) or ndc.dim() != 3 or ndc.shape[2] != 3:
            raise ValueError(f"rasterizer: ndc must be (N, P, 3), got {_shape(ndc)}")
        N, P, _ = ndc.shape
        if descriptors.dim() == 2:
            descriptors = descriptors.unsqueeze(0).expand(N, -1, -1)
        if descriptors.shape != (N, P, self.descriptor_dim):
            raise ValueError(
                f"rasterizer: descriptors must be ({N}, {P}, {self.descriptor_dim}) or "
                f"({P}, {self.descriptor_dim}), got {tuple(descriptors.shape)}"
            )
        if valid_mask is not None and valid_mask.shape != (N, P):
            raise ValueError(f"rasterizer: valid_mask must be ({N}, {P}), got {_shape(valid_mask)}")
        visible = ndc_visibility(ndc.detach(), image_size)
        if valid_mask is not None:
            visible = visible & valid_mask.to(torch.bool)
        return descriptors, visible


class ScatterReduceRasterizer(NearestScatterRasterizer):
    """The same rasterizer as NPBG++ computes it, with native ``scatter_reduce_``.

    Same arguments, parameters and output as :class:`NearestScatterRasterizer`.
    """

    def forward(
        self,
        ndc: torch.Tensor,
        descriptors: torch.Tensor,
        image_size: tuple[int, int],
        valid_mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        descriptors, visible = self._prepare(ndc, descriptors, image_size, valid_mask)
        visible = visible & (ndc[..., 2].detach() > self.near)
        N, P, C = descriptors.shape
        with_mask = torch.cat((descriptors, descriptors.new_ones(N, P, 1)), dim=2).transpose(1, 2)
        background = self.bg_feature.to(descriptors.dtype)
        rasters = []
        for scale in self.scales:
            h, w = scale_size(image_size, scale)
            pixel = _nearest_pixel_ids(ndc.detach(), visible, (h, w))
            image = with_mask.new_zeros(N, C + 1, h * w + 1)
            image = image.scatter(2, pixel.unsqueeze(1).expand(N, C + 1, P), with_mask)
            image = image[:, :, : h * w].reshape(N, C + 1, h, w)
            features = torch.where(image[:, -1:] != 0, image[:, :-1], background)
            rasters.append(torch.cat((features, image[:, -1:]), dim=1))
        return rasters


def scale_size(image_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(int(scale * H), int(scale * W)), NPBG++'s raster size at a scale."""
    return int(scale * image_size[0]), int(scale * image_size[1])


def ndc_visibility(ndc: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, P) bool: inside NPBG++'s NDC bounds of an (H, W) image (bounds inclusive).

    The short side spans [-1, 1], the long side [-max/min, max/min] (x is the short side when
    W <= H). The depth test is separate (``near``).
    """
    height, width = image_size
    short, long_ = min(image_size), max(image_size)
    ratio = long_ / short
    short_axis = 0 if short == width else 1
    on_short = ndc[..., short_axis]
    on_long = ndc[..., 1 - short_axis]
    return (-1 <= on_short) & (on_short <= 1) & (-ratio <= on_long) & (on_long <= ratio)


def _nearest_pixel_ids(
    ndc: torch.Tensor, visible: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """(N, P) int64 pixel id of each point's winning pixel, h * w for losers and the rejected.

    NPBG++'s two scatter 'min' passes: minimum depth per pixel, then among the points at that
    depth the lowest index.
    """
    N, P, _ = ndc.shape
    h, w = size
    dummy = h * w
    pixel = torch.where(visible, _pixel_ids(ndc, size), dummy)
    depth = ndc[..., 2]
    z_buffer = depth.new_full((N, dummy + 1), float("inf"))
    z_buffer.scatter_reduce_(1, pixel, depth, "amin", include_self=True)
    z_buffer[:, -1] = 0
    nearest = z_buffer.gather(1, pixel)
    pixel = torch.where((depth == nearest) & (nearest < float("inf")), pixel, dummy)
    order = torch.arange(P, device=ndc.device).expand(N, P)
    first = torch.full((N, dummy + 1), P, dtype=torch.int64, device=ndc.device)
    first.scatter_reduce_(1, pixel, order, "amin", include_self=True)
    return torch.where(order == first.gather(1, pixel), pixel, dummy)


def _pixel_ids(ndc: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """NPBG++'s ``points_to_pixels``: (N, P) row * w + col, h * w outside the image."""
    h, w = size
    s = (min(size) - 1) / 2
    screen_x = -(s * ndc[..., 0] + (-(w - 1) / 2))
    screen_y = -(s * ndc[..., 1] + (-(h - 1) / 2))
    col = (screen_x - 1e-6 + 0.5).long()
    row = (screen_y - 1e-6 + 0.5).long()
    inside = (0 <= col) & (col < w) & (0 <= row) & (row < h)
    return torch.where(inside, row * w + col, h * w)


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
