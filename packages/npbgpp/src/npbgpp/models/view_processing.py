"""NPBG++'s per-view processing: vertical alignment of views, training crops, and sampling of
per-point features from a feature map.

Alignment (the original's ``align_views_vertically``): the image is padded with zeros to a
square of side ceil(diagonal), then turned in its plane about its centre ((S-1)/2, (S-1)/2)
so that the world's up vector (0, 1, 0), placed 10 units along the optical axis, points up;
the camera turns about its optical axis with it, so the aligned camera projects world points
onto the aligned image. The renderer does the same to the target camera and turns the refined
image back (``align_during_rendering``).

Two deliberate differences from the original, both exact where it approximates:

* The original keeps the intrinsics and multiplies R_row by K^T rot^T K^-T, which is not a
  rotation when the principal point is off-centre (its camera centre ``-R_row @ T`` is then
  off). Here the camera is rotated (R_row @ rot^T, still a rotation) and the principal point
  turned with the image, the same projection, and a valid :class:`~geomkit.cameras.Cameras`.
  When fx != fy an in-plane rotation of the image is not a rotation of the camera; the image is
  then also rescaled to square pixels (f = min(fx, fy)) by the same affine warp.
* Padding shifts the principal point by the padding in pixels (the original re-derives the
  NDC intrinsics from the image corners, off by about 1/S of the focal length).

Training crops (``extract_regions``): a window of exactly the requested size (2H x 2W of the
target in NPBG++), centred on the bounding box of the interest points the view sees, without
rescaling (the original's scale is clamped to 1 for this size). The offset is rounded to whole
pixels, so the crop is a copy of the image's pixels (zeros outside) rather than the original's
bilinear resampling at a fractional offset; the crop camera moves its principal point by it.

Feature sampling (``sample_point_features``) is the original's, bit for bit: ``grid_sample``
at ``-ndc_xy / bounds``, bilinear, zeros outside, align_corners=False. (It maps the NDC bounds
to the image's outer edges while the projection maps them to the outer pixels' centres; the
released weights were trained with this half-pixel scale difference, so it is kept.)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.geometry.transform import warp_affine

from geomkit.cameras import Cameras
from npbgpp.models.projection import inside_ndc_bounds, ndc_bounds, project_cameras

__all__ = [
    "Alignment",
    "align_cameras",
    "align_for_rendering",
    "align_view",
    "align_views_vertically",
    "crop_view",
    "extract_regions",
    "sample_point_features",
    "unalign_images",
    "unalign_rendered",
]

WORLD_UP = (0.0, 1.0, 0.0)
REFERENCE_DISTANCE = 10.0  # the up vector is placed 10 units along the optical axis


class Alignment(NamedTuple):
    """How views were aligned, to undo it.

    cameras: the aligned cameras (S x S images; S = ceil(diagonal) with padding).
    affine: (N, 2, 3) float, the map of pixel-centre coordinates (centre of the top-left pixel
        at (0, 0), x right, y down) of the PADDED original image onto the aligned one.
    padding: (left, right, top, bottom) zeros added to the original image.
    image_size: (H, W) of the original image.
    """

    cameras: Cameras
    affine: torch.Tensor
    padding: tuple[int, int, int, int]
    image_size: tuple[int, int]


def align_cameras(cameras: Cameras, up=WORLD_UP, pad: bool = True) -> Alignment:
    """Aligned cameras of N views sharing one image size (see the module docstring).

    Args:
        cameras: N cameras (no skew, no distortion), one image size.
        up: world vector that should point up in the aligned images.
        pad: pad to a square of side ceil(diagonal) first, so no pixel is lost.

    Returns:
        :class:`Alignment`.
    """
    height, width = _common_size(cameras)
    padding = _square_padding(height, width) if pad else (0, 0, 0, 0)
    left, right, top, bottom = padding
    size = (height + top + bottom, width + left + right)
    dtype = cameras.dtype
    shift = torch.tensor([left, top], dtype=dtype, device=cameras.device)
    principal = cameras.principal_point + shift - 0.5  # pixel-centre coordinates, padded
    rotation = _up_rotation(cameras, torch.as_tensor(up, dtype=dtype, device=cameras.device))
    focal = cameras.focal_length.min(dim=1, keepdim=True).values  # (N, 1)
    linear = rotation * (focal / cameras.focal_length)[:, None, :]  # rot @ diag(f / fx, f / fy)
    centre = torch.tensor([(size[1] - 1) / 2, (size[0] - 1) / 2], dtype=dtype).to(principal)
    new_principal = centre + ((principal - centre)[:, None, :] * linear).sum(-1)
    affine = torch.cat((linear, (centre - (linear * centre).sum(-1))[..., None]), dim=2)
    rotation3 = torch.zeros(len(cameras), 3, 3, dtype=dtype, device=cameras.device)
    rotation3[:, :2, :2] = rotation
    rotation3[:, 2, 2] = 1.0
    aligned = Cameras(
        R=cameras.R @ rotation3.transpose(1, 2),
        T=(cameras.T[:, None, :] @ rotation3.transpose(1, 2))[:, 0],
        focal_length=focal.expand(-1, 2).contiguous(),
        principal_point=new_principal + 0.5,
        image_size=torch.tensor([size] * len(cameras), device=cameras.device),
    )
    return Alignment(aligned, affine, padding, (height, width))


def align_views_vertically(
    images: torch.Tensor, cameras: Cameras, up=WORLD_UP, pad: bool = True
) -> tuple[torch.Tensor, Alignment]:
    """Pad and turn N images (N, C, H, W) so that ``up`` points up; zeros where no pixel maps.

    Returns:
        (N, C, S, S) aligned images (bilinear, as kornia's warp_affine) and the
        :class:`Alignment` with the cameras of the aligned images.
    """
    alignment = align_cameras(cameras, up, pad)
    if tuple(images.shape[-2:]) != alignment.image_size or images.shape[0] != len(cameras):
        raise ValueError(
            f"align_views_vertically: images {tuple(images.shape)} do not match "
            f"{len(cameras)} cameras of size {alignment.image_size}"
        )
    left, right, top, bottom = alignment.padding
    padded = F.pad(images, (left, right, top, bottom))
    size = tuple(int(v) for v in alignment.cameras.image_size[0])
    warped = warp_affine(padded, alignment.affine.to(images.dtype), size, align_corners=True)
    return warped, alignment


def unalign_images(images: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """Turn aligned images (N, C, S, S) back and crop the padding: (N, C, H, W)."""
    size = tuple(int(v) for v in alignment.cameras.image_size[0])
    if tuple(images.shape[-2:]) != size:
        raise ValueError(f"unalign_images: images must be {size}, got {tuple(images.shape[-2:])}")
    inverse = _invert_affine(alignment.affine).to(images.dtype)
    back = warp_affine(images, inverse, size, align_corners=True)
    left, _, top, _ = alignment.padding
    height, width = alignment.image_size
    return back[..., top : top + height, left : left + width]


def align_view(image: torch.Tensor, camera: Cameras) -> tuple[torch.Tensor, Cameras]:
    """One view: image (C, H, W) and its camera -> aligned image (C, S, S) and camera."""
    aligned, alignment = align_views_vertically(image[None], camera)
    return aligned[0], alignment.cameras


def align_for_rendering(camera: Cameras) -> tuple[Cameras, Alignment]:
    """The aligned target camera to render with, and what :func:`unalign_rendered` needs."""
    alignment = align_cameras(camera)
    return alignment.cameras, alignment


def unalign_rendered(image: torch.Tensor, alignment: Alignment) -> torch.Tensor:
    """A render (N, C, S, S) of the aligned camera, turned back to the original view."""
    return unalign_images(image, alignment)


def extract_regions(
    points: torch.Tensor,
    images: torch.Tensor,
    cameras: Cameras,
    interest_mask: torch.Tensor,
    crop_size: tuple[int, int],
    near: float = 1.0,
) -> tuple[torch.Tensor, Cameras]:
    """Windows of exactly ``crop_size`` centred on the interest points each view sees.

    Args:
        points: (P, 3) or (N, P, 3) world points.
        images: (N, C, H, W) views.
        cameras: their N cameras (one image size).
        interest_mask: (N, P) or (P,) bool, the points that matter (NPBG++: the target's
            visible points, and'ed with the source's visibility).
        crop_size: (h, w) of the windows (NPBG++: twice the target's size).
        near: points at view depth <= near do not count (NPBG++'s near plane).

    Returns:
        (N, C, h, w) crops (zeros outside the image) and their cameras (same pose and focal
        length; principal point moved by the whole-pixel offset). A view that sees no
        interest point is cropped about its centre.
    """
    n = images.shape[0]
    height, width = _common_size(cameras)
    crop_h, crop_w = (int(v) for v in crop_size)
    ndc = project_cameras(points, cameras)
    interest = interest_mask.expand(n, ndc.shape[1]).to(torch.bool)
    seen = interest & inside_ndc_bounds(ndc, (height, width)) & (ndc[..., 2] > near)
    centre = _bbox_centre_pixels(ndc, seen, (height, width))  # (N, 2) pixel-centre coords
    target = torch.tensor([(crop_w - 1) / 2, (crop_h - 1) / 2], dtype=centre.dtype)
    offset = torch.floor(centre - target.to(centre) + 0.5)  # crop pixel + offset = image pixel
    corners = offset.long().tolist()
    crops = torch.stack(
        [
            _window(image, x, y, crop_h, crop_w)
            for image, (x, y) in zip(images, corners, strict=True)
        ]
    )
    cropped = Cameras(
        R=cameras.R,
        T=cameras.T,
        focal_length=cameras.focal_length,
        principal_point=cameras.principal_point - offset.to(cameras.dtype),
        image_size=torch.tensor([[crop_h, crop_w]] * n, device=cameras.device),
    )
    return crops, cropped


def crop_view(
    points: torch.Tensor,
    image: torch.Tensor,
    camera: Cameras,
    interest: torch.Tensor,
    crop_size: tuple[int, int],
    near: float = 1.0,
) -> tuple[torch.Tensor, Cameras]:
    """One view: :func:`extract_regions` of image (C, H, W) with interest (P,) -> (C, h, w)."""
    crops, cameras = extract_regions(points, image[None], camera, interest[None], crop_size, near)
    return crops[0], cameras


def sample_point_features(
    features: torch.Tensor, ndc: torch.Tensor, image_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Features at the points' projections, NPBG++'s way.

    Args:
        features: (N, C, H, W) feature maps.
        ndc: (N, P, >=2) NPBG++ NDC of the points in these views.
        image_size: (H, W) whose NDC bounds normalise the coordinates (default the features').

    Returns:
        (N, P, C): ``grid_sample(features, -ndc_xy / bounds)``, bilinear, zeros outside,
        align_corners=False. Differentiable with respect to the features.
    """
    bound_x, bound_y = ndc_bounds(image_size or tuple(features.shape[-2:]))
    bounds = torch.tensor([bound_x, bound_y], dtype=ndc.dtype, device=ndc.device)
    grid = -(ndc[..., :2] / bounds)[:, None].to(features.dtype)  # (N, 1, P, 2)
    sampled = F.grid_sample(
        features, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled[:, :, 0].transpose(1, 2)


def _up_rotation(cameras: Cameras, up: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) rotation of normalised image coordinates that makes ``up`` point up.

    The up vector is placed at centre + 10 * optical axis; d is the direction of its image in
    OpenCV normalised coordinates (x right, y down); the rotation takes d to (0, -1). Where d
    vanishes (up along the optical axis), the identity.
    """
    axis = cameras.R[:, :, 2]  # world direction of view +Z
    start = cameras.camera_center() + REFERENCE_DISTANCE * axis
    ends = torch.stack((start, start + up), dim=1)  # (N, 2, 3)
    view = cameras.world_to_view(ends)
    normalised = -view[..., :2] / view[..., 2:]
    d = normalised[:, 1] - normalised[:, 0]
    length = d.norm(dim=1, keepdim=True)
    dx, dy = (d / length.clamp_min(torch.finfo(d.dtype).tiny)).unbind(1)
    rotation = torch.stack((torch.stack((-dy, dx), 1), torch.stack((-dx, -dy), 1)), 1)
    eye = torch.eye(2, dtype=d.dtype, device=d.device).expand_as(rotation)
    return torch.where(length[..., None] > 1e-12, rotation, eye)


def _bbox_centre_pixels(
    ndc: torch.Tensor, seen: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """(N, 2) pixel-centre coordinates of the centre of the seen points' bounding box (the
    image centre where none is seen)."""
    height, width = size
    s = (min(size) - 1) / 2
    pixels = torch.stack(
        ((width - 1) / 2 - s * ndc[..., 0], (height - 1) / 2 - s * ndc[..., 1]), -1
    )
    low = torch.where(seen[..., None], pixels, math.inf).amin(dim=1)
    high = torch.where(seen[..., None], pixels, -math.inf).amax(dim=1)
    image_centre = pixels.new_tensor([(width - 1) / 2, (height - 1) / 2])
    return torch.where(seen.any(dim=1, keepdim=True), (low + high) / 2, image_centre)


def _window(image: torch.Tensor, left: int, top: int, height: int, width: int) -> torch.Tensor:
    """image[:, top:top+height, left:left+width], zeros where that leaves the image."""
    _, img_h, img_w = image.shape
    out = image.new_zeros(image.shape[0], height, width)
    y0, y1 = max(top, 0), min(top + height, img_h)
    x0, x1 = max(left, 0), min(left + width, img_w)
    if y0 < y1 and x0 < x1:
        out[:, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, y0:y1, x0:x1]
    return out


def _square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) to a square of side ceil(diagonal), the original's split."""
    side = int(math.ceil(math.hypot(height, width)))
    dw, dh = side - width, side - height
    return dw // 2, dw - dw // 2, dh // 2, dh - dh // 2


def _common_size(cameras: Cameras) -> tuple[int, int]:
    sizes = cameras.image_size
    if not bool((sizes == sizes[:1]).all()):
        raise ValueError("view processing: all cameras of a batch must share one image size")
    return int(sizes[0, 0]), int(sizes[0, 1])


def _invert_affine(affine: torch.Tensor) -> torch.Tensor:
    linear_inv = torch.linalg.inv(affine[:, :, :2])
    return torch.cat((linear_inv, -(linear_inv @ affine[:, :, 2:])), dim=2)
