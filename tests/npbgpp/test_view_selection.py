"""Source-view selection: MVSNet baseline-angle scores, z-buffer visibility, coverage sampling."""

from __future__ import annotations

import math

import numpy as np
import torch

from geomkit.synth import fibonacci_sphere, look_at_c2w_opengl
from geomkit.synth.camera_paths import pinhole_cameras
from npbgpp.datasets.view_selection import (
    baseline_angle_scores,
    sample_views,
    select_source_views,
    visible_nearest,
)
from tests.helpers import assert_close

SIZE = (64, 64)


def ring_cameras(angles_deg, distance: float = 5.0, size=SIZE, fov: float = 30.0):
    """Cameras on a horizontal circle around the origin, looking at it; angle 0 on +x."""
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    eyes = distance * np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1)
    return pinhole_cameras(look_at_c2w_opengl(eyes), size, fov)


def test_baseline_angle_score_equals_float64_formula():
    angles = [0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 180.0]
    sources = ring_cameras(angles)
    target_center = torch.tensor([5.0, 0.0, 0.0])
    point = torch.zeros(1, 3)
    scores = baseline_angle_scores(point, sources, target_center)
    assert scores.shape == (10, 1)
    expected = [math.exp(-((t - 15) ** 2) / (2 * (5.0 if t <= 15 else 15.0) ** 2)) for t in angles]
    assert_close(scores[:, 0], torch.tensor(expected, dtype=torch.float32), atol=2e-5)
    assert int(scores[:, 0].argmax()) == 3  # 15 degrees is optimal


def test_score_is_zero_where_the_source_does_not_see_the_point():
    sources = ring_cameras([15.0])
    # A camera at the same place looking the other way: the point is behind it.
    flipped = pinhole_cameras(
        look_at_c2w_opengl(np.array([[5 * math.cos(0.26), 5 * math.sin(0.26), 0.0]]), (10, 3, 0)),
        SIZE,
        30.0,
    )
    point = torch.zeros(1, 3)
    target = torch.tensor([5.0, 0.0, 0.0])
    assert float(baseline_angle_scores(point, sources, target)[0, 0]) > 0.99
    assert float(baseline_angle_scores(point, flipped, target)[0, 0]) == 0.0
    # Occluded: a nearer point in the same coarse pixel of the source hides it.
    eye = sources.camera_center()[0]
    occluder = eye * 0.5
    scores = baseline_angle_scores(torch.stack([point[0], occluder]), sources, target)
    assert float(scores[0, 0]) == 0.0 and float(scores[0, 1]) > 0.0


def test_visible_nearest_near_plane_bounds_and_ties():
    camera = ring_cameras([0.0])  # at (5, 0, 0) looking at the origin
    points = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # depth 5, hidden by the next
            [1.0, 0.0, 0.0],  # depth 4, same ray: visible
            [4.5, 0.0, 0.0],  # depth 0.5: in front of the near plane (1), culled, hides nothing
            [0.0, 10.0, 0.0],  # outside the image
            [0.0, 1.0, 1.0],  # depth 5, its own pixel
            [0.0, 1.0, 1.0],  # a duplicate: tied at the minimum, both visible (as the original)
        ]
    )
    visible = visible_nearest(camera, points)
    assert visible.tolist() == [[False, True, False, False, True, True]]
    # A point 1.3 pixels beside the nearer one is hidden at 1/8 scale (a pixel of 8) but
    # visible at full scale. (72 x 72: the optical axis is mid-pixel in the 9 x 9 z-buffer.)
    camera = ring_cameras([0.0], size=(72, 72))
    beside = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.05, 0.0]])
    assert visible_nearest(camera, beside).tolist() == [[True, False]]
    assert visible_nearest(camera, beside, scale=1.0).tolist() == [[True, True]]


def test_sample_views_greedy_coverage():
    scores = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # Normalised per point and summed: view 0 -> 1, view 1 -> 0.5, view 2 -> 2.5. View 2 sees
    # every point; with none left the weights are uniform and 'best' takes the first.
    assert sample_views(scores, 2, "best") == [2, 0]
    assert sample_views(scores, 0) == []
    firsts = []
    for seed in range(400):
        picked = sample_views(scores, 3, generator=torch.Generator().manual_seed(seed))
        assert sorted(picked) == [0, 1, 2]
        firsts.append(picked[0])
    share = np.bincount(firsts, minlength=3) / 400
    assert_close(share, np.array([1.0, 0.5, 2.5]) / 4, atol=0.07)


def test_sample_views_second_pick_covers_what_the_first_missed():
    # View 0 sees points 0-1, view 1 points 0-1 too, view 2 point 2 only. After view 0, only
    # point 2 is left: 'best' must take view 2, not view 1.
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.9, 0.9, 0.0], [0.0, 0.0, 0.5]])
    assert sample_views(scores, 2, "best") == [0, 2]


def sphere_points(n: int = 2000, radius: float = 0.6) -> torch.Tensor:
    return torch.as_tensor(radius * fibonacci_sphere(n), dtype=torch.float32)


def test_select_prefers_fifteen_degree_baselines():
    angles = [a for a in range(15, 360, 15)]  # a ring 15 degrees apart; the target at 0
    sources = ring_cameras(angles)
    target = ring_cameras([0.0])
    points = sphere_points()
    best = select_source_views(points, target, sources, 1, method="best")
    assert angles[best[0]] in (15, 345)
    near = 0
    for seed in range(60):
        picked = select_source_views(
            points, target, sources, 3, generator=torch.Generator().manual_seed(seed)
        )
        assert len(set(picked)) == 3
        near += min(angles[picked[0]], 360 - angles[picked[0]]) <= 30
    assert near / 60 > 0.75  # 4 of 23 candidates are within 30 degrees


def test_select_with_few_points_and_without_visible_points():
    sources = ring_cameras([15.0, 30.0, 45.0, 200.0])
    target = ring_cameras([0.0])
    points = sphere_points()
    picked = select_source_views(points, target, sources, 2, max_points=10, method="best")
    assert picked[0] == 0  # 15 degrees, even with 10 farthest-sampled points
    behind = points + torch.tensor([10.0, 0.0, 0.0])  # behind the target camera
    generator = torch.Generator().manual_seed(0)
    picked = select_source_views(behind, target, sources, 4, generator=generator)
    assert sorted(picked) == [0, 1, 2, 3]
    assert select_source_views(points, target, sources, 9, method="best")[:1] == [0]
