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

NDC, pixels and the z-buffer test are NPBG++'s (npbgpp.models.projection, on
geomkit.ops.splat_points); as the original, a point is visible when its depth equals its
pixel's minimum (ties: all tied points are visible).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geomkit.cameras import Cameras
from geomkit.ops import sample_farthest_points
from npbgpp.models.projection import compute_visibility, project_cameras

NEAR = 1.0  # NPBG++'s hard near plane, in world units
VISIBILITY_SCALE = 0.125
MAX_POINTS = 500
OPTIMAL_ANGLE = 15.0
SIGMA_LOWER = 5.0
SIGMA_HIGHER = 15.0


def visible_nearest(
    cameras: Cameras, points: torch.Tensor, scale: float = VISIBILITY_SCALE, near: float = NEAR
) -> torch.Tensor:
    """(N, P) bool: inside the view, beyond the near plane and nearest in its pixel of a
    z-buffer at ``scale`` times each camera's resolution (npbgpp.models.projection's
    ``compute_visibility``, NPBG++'s ``compute_one_scale_visibility`` variant 1)."""
    result = torch.zeros(len(cameras), len(points), dtype=torch.bool)
    for size in {tuple(s) for s in cameras.image_size.tolist()}:
        rows = (cameras.image_size == torch.tensor(size)).all(-1)
        ndc = project_cameras(points.to(cameras.dtype), cameras[rows])
        result[rows] = compute_visibility(ndc, size, scale, near)
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
    ndc = project_cameras(points, target_camera)
    size = tuple(target_camera.image_size[0].tolist())
    seen = compute_visibility(ndc, size, VISIBILITY_SCALE, NEAR)[0]
    seen_points, seen_ndc = points[seen], ndc[0][seen]
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
