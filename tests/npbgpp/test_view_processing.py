"""View alignment, its inverse, training crops and feature sampling, checked by projecting
world points with the new cameras onto the new images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geomkit.cameras import Cameras
from npbgpp.models.projection import ndc_bounds, project_cameras
from npbgpp.models.view_processing import (
    align_cameras,
    align_for_rendering,
    align_views_vertically,
    crop_view,
    extract_regions,
    sample_point_features,
    unalign_images,
    unalign_rendered,
)


def _look_at_cameras(size=(40, 56), focal=((60.0, 60.0),), seed=0) -> Cameras:
    """Cameras around the origin, rolled about their axis, principal points off-centre."""
    g = torch.Generator().manual_seed(seed)
    n = len(focal)
    Rs, Ts = [], []
    for _ in range(n):
        centre = (
            torch.nn.functional.normalize(torch.randn(3, generator=g, dtype=torch.float64), dim=0)
            * 8
        )
        forward = -centre / centre.norm()
        left = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), forward)
        left = left / left.norm()
        up = torch.linalg.cross(forward, left)
        R = torch.stack((left, up, forward), dim=1)  # columns: world directions of view axes
        roll = float(torch.rand(1, generator=g)) * 2 * math.pi
        c, s = math.cos(roll), math.sin(roll)
        R = R @ torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1.0]], dtype=torch.float64)
        Rs.append(R)
        Ts.append(-centre @ R)
    H, W = size
    principal = torch.tensor([W / 2 + 3.3, H / 2 - 2.1], dtype=torch.float64).expand(n, 2)
    return Cameras(
        R=torch.stack(Rs),
        T=torch.stack(Ts),
        focal_length=torch.tensor(focal, dtype=torch.float64),
        principal_point=principal.clone(),
        image_size=torch.tensor([size] * n),
    )


def _world_points(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * 2.0


@pytest.mark.parametrize("focal", [((60.0, 60.0),), ((62.0, 55.0),)])
def test_aligned_camera_projects_onto_the_warped_pixels(focal):
    cameras = _look_at_cameras(focal=focal)
    alignment = align_cameras(cameras)
    left, right, top, bottom = alignment.padding
    side = math.ceil(math.hypot(40, 56))
    assert alignment.cameras.image_size.tolist() == [[side, side]]
    assert left + right == side - 56 and top + bottom == side - 40 and left == (side - 56) // 2
    points = _world_points(200)
    uv, depth = cameras.project(points)
    uv_new, depth_new = alignment.cameras.project(points)
    padded_centres = uv - 0.5 + torch.tensor([left, top], dtype=torch.float64)
    mapped = padded_centres @ alignment.affine[0, :, :2].T + alignment.affine[0, :, 2]
    torch.testing.assert_close(uv_new - 0.5, mapped, atol=1e-9, rtol=0)
    torch.testing.assert_close(depth_new, depth)
    # the aligned camera is a rotation (a valid Cameras) with the same centre, square pixels
    torch.testing.assert_close(alignment.cameras.camera_center(), cameras.camera_center())
    f = alignment.cameras.focal_length[0]
    assert f[0] == f[1] == min(focal[0])


def test_world_up_points_up_after_alignment():
    cameras = _look_at_cameras(focal=((60.0, 60.0), (60.0, 50.0), (45.0, 45.0)), seed=3)
    aligned = align_cameras(cameras).cameras
    start = aligned.camera_center() + 10 * aligned.R[:, :, 2]
    ends = torch.stack((start, start + torch.tensor([0, 1.0, 0], dtype=torch.float64)), 1)
    uv, _ = aligned.project(ends)
    direction = uv[:, 1] - uv[:, 0]
    torch.testing.assert_close(
        direction[:, 0], torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0
    )
    assert (direction[:, 1] < 0).all()  # up in the image: v decreases
    # before: the rolled cameras did not have it vertical
    uv0, _ = cameras.project(ends)
    assert ((uv0[:, 1, 0] - uv0[:, 0, 0]).abs() > 0.5).all()


def _dot_image(cameras: Cameras, points: torch.Tensor, sigma: float = 1.2) -> torch.Tensor:
    """(N, 1, H, W) Gaussian dots at the points' pixels (float32)."""
    H, W = (int(v) for v in cameras.image_size[0])
    uv, _ = cameras.project(points)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    d2 = (xs[None, None] - uv[..., 0, None, None]) ** 2 + (
        ys[None, None] - uv[..., 1, None, None]
    ) ** 2
    return torch.exp(-d2 / (2 * sigma**2)).sum(1, keepdim=True).float()


def _centroid(image: torch.Tensor, uv: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Intensity centroid (corner-origin pixels) in a window around uv."""
    cx, cy = int(uv[0]), int(uv[1])
    window = image[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1].double()
    ys, xs = torch.meshgrid(
        torch.arange(cy - radius, cy + radius + 1, dtype=torch.float64) + 0.5,
        torch.arange(cx - radius, cx + radius + 1, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    return torch.stack(((window * xs).sum(), (window * ys).sum())) / window.sum()


@pytest.mark.parametrize("focal", [((60.0, 60.0),), ((62.0, 55.0),)])
def test_warped_dots_land_where_the_aligned_camera_projects(focal):
    cameras = _look_at_cameras(focal=focal)
    # well separated dots: world points behind chosen pixels (corner-origin), 7 units deep
    pixels = torch.tensor([[10.3, 9.6], [45.5, 12.2], [14.7, 30.1], [40.2, 31.4], [28.0, 20.0]])
    points = cameras.unproject(pixels.double(), torch.full((5,), 7.0, dtype=torch.float64))[0]
    image = _dot_image(cameras, points)
    aligned, alignment = align_views_vertically(image, cameras)
    uv_new, _ = alignment.cameras.project(points)
    for k in range(5):
        found = _centroid(aligned[0, 0], uv_new[0, k])
        torch.testing.assert_close(found, uv_new[0, k], atol=0.1, rtol=0)


def test_unalign_returns_the_original_image():
    cameras = _look_at_cameras()
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(56.0), indexing="ij")
    smooth = torch.stack((torch.sin(xs / 7) * torch.cos(ys / 5), xs / 56 + ys / 40))[None]
    aligned, alignment = align_views_vertically(smooth, cameras)
    back = unalign_images(aligned, alignment)
    assert back.shape == smooth.shape
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    # two bilinear resamplings of a smooth image: a few hundredths at most
    assert (back[inner] - smooth[inner]).abs().max() < 0.03
    # the rendering helpers are the same maps
    target, undo = align_for_rendering(cameras)
    torch.testing.assert_close(target.R, alignment.cameras.R)
    torch.testing.assert_close(unalign_rendered(aligned, undo), back)


def test_crop_camera_projects_onto_crop_pixels():
    cameras = _look_at_cameras(size=(40, 56), focal=((60.0, 60.0), (60.0, 60.0)), seed=5)
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 40, 56, generator=g)
    points = _world_points(300, seed=4) * 0.8
    interest = torch.rand(300, generator=g) > 0.5
    crops, crop_cameras = extract_regions(points, images, cameras, interest, (24, 30))
    assert crops.shape == (2, 3, 24, 30)
    assert crop_cameras.image_size.tolist() == [[24, 30]] * 2
    uv, _ = cameras.project(points)
    uv_crop, _ = crop_cameras.project(points)
    shift = uv - uv_crop  # a whole-pixel offset, the same for every point
    torch.testing.assert_close(shift, shift.round(), atol=1e-9, rtol=0)
    for n in range(2):
        col, row = uv_crop[n].floor().long().unbind(-1)
        inside = (col >= 0) & (col < 30) & (row >= 0) & (row < 24)
        assert inside.sum() > 20
        ocol, orow = uv[n].floor().long().unbind(-1)
        ok = inside & (ocol >= 0) & (ocol < 56) & (orow >= 0) & (orow < 40)
        torch.testing.assert_close(crops[n][:, row[ok], col[ok]], images[n][:, orow[ok], ocol[ok]])
        # the window is centred on the bounding box of the seen interest points
        ndc = project_cameras(points, cameras[n : n + 1])[0]
        seen = interest & (ndc[:, 2] > 1) & (ndc[:, 0].abs() <= 56 / 40) & (ndc[:, 1].abs() <= 1)
        box = uv_crop[n][seen]
        middle = (box.amin(0) + box.amax(0)) / 2
        torch.testing.assert_close(
            middle, torch.tensor([15.0, 12.0], dtype=torch.float64), atol=0.5, rtol=0
        )


def test_crop_without_interest_points_is_centred_and_zero_padded():
    cameras = _look_at_cameras(size=(20, 30))
    image = torch.rand(3, 20, 30)
    crop, camera = crop_view(
        _world_points(5), image, cameras, torch.zeros(5, dtype=torch.bool), (40, 60)
    )
    # centred: image pixel (j, i) is crop pixel (j + 15, i + 10); zeros around (2H x 2W window)
    torch.testing.assert_close(crop[:, 10:30, 15:45], image)
    assert crop[:, :10].abs().sum() == 0 and crop[:, :, :15].abs().sum() == 0
    torch.testing.assert_close(
        camera.principal_point,
        cameras.principal_point + torch.tensor([15.0, 10.0], dtype=torch.float64),
    )


def test_sample_point_features_is_npbgpps_grid_sample():
    g = torch.Generator().manual_seed(6)
    features = torch.randn(2, 5, 12, 18, generator=g, requires_grad=True)
    bx, by = ndc_bounds((12, 18))
    assert (bx, by) == (1.5, 1.0)
    # with align_corners=False, pixel (i, j)'s centre is grid ((2j + 1) / W - 1, (2i + 1) / H - 1)
    i, j = torch.tensor([0, 3, 11, 5]), torch.tensor([0, 7, 17, 9])
    grid = torch.stack(((2 * j + 1) / 18 - 1, (2 * i + 1) / 12 - 1), -1)
    ndc = torch.cat((-grid * torch.tensor([bx, by]), torch.full((4, 1), 3.0)), -1)
    sampled = sample_point_features(features, ndc.expand(2, 4, 3))
    assert sampled.shape == (2, 4, 5)
    torch.testing.assert_close(sampled, features[:, :, i, j].transpose(1, 2))
    # the NDC bound itself is the image's outer edge: half of the edge pixel (zero padding)
    edge = torch.tensor([[[-bx, -1 + 1 / 12, 3.0]]]).expand(2, 1, 3)
    torch.testing.assert_close(
        sample_point_features(features, edge)[:, 0], features[:, :, -1, -1] / 2
    )
    sampled.sum().backward()
    torch.testing.assert_close(features.grad[:, :, i, j], torch.ones(2, 5, 4))
    torch.testing.assert_close(features.grad.sum(), torch.tensor(2 * 4 * 5.0))
    expected = F.grid_sample(
        features,
        -(ndc[None, None, :, :2] / torch.tensor([bx, by])).expand(2, 1, 4, 2),
        align_corners=False,
    )
    torch.testing.assert_close(sampled, expected[:, :, 0].transpose(1, 2))
