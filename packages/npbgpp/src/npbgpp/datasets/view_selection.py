"""Source-view selection for a training target, as NPBG++'s ViewSceneWrapper.

1. Points of the cloud visible in the target view: in front of its hard near plane (view
   depth > 1) and inside the image, and nearest in their pixel of a z-buffer at 1/8 of the
   target's resolution (:func:`visible_nearest`).
2. At most 500 of them, by farthest point sampling (geomkit.ops.sample_farthest_points, random
   start) in NPBG++'s NDC space ``(x_ndc, y_ndc, depth)``, as the original.
3. Per candidate source view and point, MVSNet's baseline-angle score (Yao et al. 2018, 4.1):
   the angle between the rays from the target and from the source camera centres to the
   point, ``exp(-(angle - 15)^2 / (2 sigma^2))`` with sigma 5 degrees below 15 and 15 above,
   0 where the point is not nearest in the source's 1/8-scale z-buffer.
4. Greedy coverage sampling (:func:`sample_views`): each point's scores normalised over the
   views, summed per view, a view drawn in proportion (multinomial), the points it sees
   dropped, and again.

NDC and pixels follow NPBG++ (``rasterizer/project.py``, ``points_to_pixels``): NDC with
``(min(H, W) - 1) / 2`` pixels per unit, pixel centres at integer screen coordinates. The
z-buffer is geomkit.ops.splat_points; as the original, a point is visible when its depth equals
its pixel's minimum (ties: all tied points are visible).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.cameras import Cameras
from geomkit.ops import sample_farthest_points, splat_points

NEAR = 1.0  # NPBG++'s hard near plane, in world units
VISIBILITY_SCALE = 0.125
MAX_POINTS = 500
OPTIMAL_ANGLE = 15.0
SIGMA_LOWER = 5.0
SIGMA_HIGHER = 15.0


def npbgpp_ndc(
    cameras: Cameras, points: torch.Tensor, near: float = NEAR
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in NPBG++'s NDC and its visibility test (``project_points``).

    Args:
        cameras: N cameras (no skew).
        points: (P, 3) or (N, P, 3) world points.
        near: points at view depth <= near are not visible (NPBG++: 1).

    Returns:
        ndc: (N, P, 3): x, y in NPBG++ NDC (+x left, +y up, the short side's pixel centres
            at -1 and 1), z the view depth.
        visible: (N, P) bool: depth > near and inside the NDC bounds (|short| <= 1,
            |long| <= long / short).
    """
    view = cameras.world_to_view(points.to(cameras.dtype))
    size = cameras.image_size.to(cameras.dtype)  # (N, 2) (H, W)
    size_wh = size.flip(-1)
    short = size.min(dim=1).values[:, None]  # (N, 1)
    focal = cameras.focal_length * 2.0 / (short - 1)
    principal = -(cameras.principal_point - 0.5 - (size_wh - 1) / 2) * 2.0 / (short - 1)
    depth = view[..., 2]
    xy = focal[:, None] * view[..., :2] / (depth[..., None] + 1e-7) + principal[:, None]
    bounds = (size_wh / short)[:, None]  # (N, 1, 2)
    visible = (depth > near) & (xy.abs() <= bounds).all(-1)
    return torch.cat((xy, depth[..., None]), -1), visible


def npbgpp_pixels(ndc: torch.Tensor, visible: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, P, 2) coordinates for geomkit.ops.splat_points that land each point in NPBG++'s pixel
    at output size ``size`` = (h, w) (see geomkit.ops.splat); NaN where not visible."""
    h, w = size
    s = (min(h, w) - 1) / 2
    x = (w - 1) / 2 - s * ndc[..., 0]
    y = (h - 1) / 2 - s * ndc[..., 1]
    xy = torch.stack((x - 1e-6 + 0.5, y - 1e-6 + 0.5), -1).clamp(min=0)
    return torch.where(visible[..., None], xy, torch.full_like(xy, float("nan")))


def visible_nearest(
    cameras: Cameras, points: torch.Tensor, scale: float = VISIBILITY_SCALE, near: float = NEAR
) -> torch.Tensor:
    """(N, P) bool: visible (:func:`npbgpp_ndc`) and nearest in its pixel of a z-buffer at
    ``scale`` times each camera's resolution (``compute_one_scale_visibility``, variant 1)."""
    ndc, visible = npbgpp_ndc(cameras, points, near)
    result = torch.zeros_like(visible)
    for size in {tuple(s) for s in cameras.image_size.tolist()}:
        rows = (cameras.image_size == torch.tensor(size)).all(-1)
        h, w = int(scale * size[0]), int(scale * size[1])
        if h == 0 or w == 0:
            continue
        xy = npbgpp_pixels(ndc[rows], visible[rows], (h, w))
        depth = ndc[rows][..., 2].contiguous()
        zbuffer = splat_points(xy.contiguous(), depth, (h, w), near=near).depth  # (n, h, w)
        inside = visible[rows] & (xy[..., 0] < w) & (xy[..., 1] < h)
        col = xy[..., 0].nan_to_num(0).floor().long().clamp(0, w - 1)
        row = xy[..., 1].nan_to_num(0).floor().long().clamp(0, h - 1)
        nearest = zbuffer.flatten(1).gather(1, row * w + col)
        result[rows] = inside & (nearest == depth)
    return result


def baseline_angle_scores(
    points: torch.Tensor,
    source_cameras: Cameras,
    target_center: torch.Tensor,
    optimal: float = OPTIMAL_ANGLE,
    sigma_lower: float = SIGMA_LOWER,
    sigma_higher: float = SIGMA_HIGHER,
    scale: float = VISIBILITY_SCALE,
) -> torch.Tensor:
    """(K, n) MVSNet baseline-angle scores of n points for K source views.

    Args:
        points: (n, 3) world points (seen by the target).
        source_cameras: K candidate source cameras.
        target_center: (3,) the target camera's centre.

    Returns:
        (K, n) ``exp(-(angle - optimal)^2 / (2 sigma^2))``, angle in degrees between
        ``point - target_center`` and ``point - source_center``, sigma_lower at or below the
        optimum and sigma_higher above; 0 where the source does not see the point
        (:func:`visible_nearest` at ``scale``).
    """
    centers = source_cameras.camera_center().to(points.dtype)  # (K, 3)
    to_target = (points - target_center.to(points.dtype))[None]  # (1, n, 3)
    to_source = points[None] - centers[:, None]  # (K, n, 3)
    cosine = F.cosine_similarity(to_target, to_source, dim=-1).clamp(-1 + 1e-8, 1 - 1e-8)
    angle = torch.rad2deg(torch.acos(cosine))
    twice_var = torch.where(angle <= optimal, 2 * sigma_lower**2, 2 * sigma_higher**2)
    score = torch.exp(-((angle - optimal) ** 2) / twice_var)
    seen = visible_nearest(source_cameras, points, scale)
    return torch.where(seen, score, torch.zeros_like(score))


def sample_views(
    scores: torch.Tensor,
    count: int,
    method: str = "multinomial",
    generator: torch.Generator | None = None,
) -> list[int]:
    """Greedy coverage sampling of ``count`` distinct views (``sample_views_indices``).

    Args:
        scores: (K, n) non-negative scores of K views for n points.
        count: views to pick, 0 <= count <= K.
        method: "multinomial" (draw in proportion) or "best" (arg max).
        generator: torch.Generator for the draws (default torch's global RNG).

    Returns:
        ``count`` distinct row indices of ``scores``, in the order picked.
    """
    if not 0 <= count <= scores.shape[0]:
        raise ValueError(f"count must be in [0, {scores.shape[0]}], got {count}")
    if method not in ("multinomial", "best"):
        raise ValueError(f"method must be 'multinomial' or 'best', got {method!r}")
    picked: list[int] = []
    for _ in range(count):
        weights = (scores / (scores.sum(0, keepdim=True) + 1e-6)).sum(1)  # (K,)
        if float(weights.sum()) == 0:
            weights = weights + 0.1
        weights = weights / weights.sum()
        if method == "best":
            index = int(weights.argmax())
        else:
            index = int(torch.multinomial(weights, 1, generator=generator))
        while index in picked:  # all points covered: uniform weights may hit a picked view
            index = int(torch.multinomial(weights, 1, generator=generator))
        picked.append(index)
        scores = scores[:, scores[index] == 0]
    return picked


def select_source_views(
    points: torch.Tensor,
    target_camera: Cameras,
    source_cameras: Cameras,
    count: int,
    max_points: int = MAX_POINTS,
    method: str = "multinomial",
    generator: torch.Generator | None = None,
) -> list[int]:
    """Pick ``min(count, K)`` of K candidate source views for a target (module docstring).

    Args:
        points: (P, 3) the scene's points.
        target_camera: the target (one camera, as cropped for training).
        source_cameras: K candidates; the caller leaves the target itself out.
        count: views wanted.
        max_points: farthest-point-sampled target points scored (500).
        method: "multinomial" or "best".
        generator: torch.Generator for FPS start and the draws (default the global RNG).

    Returns:
        Indices into ``source_cameras``, distinct, in the order picked.
    """
    target_camera = target_camera.to(dtype=points.dtype)
    ndc, visible = npbgpp_ndc(target_camera, points)
    seen = visible[0]
    if bool(seen.any()):
        nearest = visible_nearest(target_camera, points[seen])[0]
        seen_points, seen_ndc = points[seen][nearest], ndc[0][seen][nearest]
    else:
        seen_points = seen_ndc = points.new_zeros(0, 3)
    if len(seen_points) == 0:
        scores = points.new_ones(len(source_cameras), 0)
    else:
        if method == "multinomial" and len(seen_points) > max_points:
            idx = sample_farthest_points(
                seen_ndc[None], K=max_points, random_start_point=True, generator=generator
            ).idx[0]
            seen_points = seen_points[idx]
        center = target_camera.camera_center()[0]
        scores = baseline_angle_scores(seen_points, source_cameras, center)
    return sample_views(scores, min(count, len(source_cameras)), method, generator)
