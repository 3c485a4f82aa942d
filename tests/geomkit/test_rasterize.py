"""rasterize_triangles / rasterize_mesh: compiled kernels against the pure-PyTorch reference,
hand-derived coverage, depth order and culling rules, and independent checks of the
definition (projection of the interpolated points, trimesh ray casting)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.ext import geomkit_extension
from geomkit.ops._reference import rasterize as reference
from geomkit.ops.rasterize import Fragments, rasterize_mesh, rasterize_triangles
from geomkit.rays import pixel_grid, pixel_rays
from tests.helpers import assert_close

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_scene(n_views, n_verts, n_faces, height, width, dtype, seed):
    """Screen-space triangle soup: some vertices behind znear, degenerate and duplicate faces."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([width + 8.0, height + 8.0], dtype=torch.float64)
    uv = torch.rand(n_views, n_verts, 2, generator=g, dtype=torch.float64) * scale - 4
    z = torch.rand(n_views, n_verts, 1, generator=g, dtype=torch.float64) * 3 + 0.05
    z[:, :4] = -0.5  # behind the camera: faces using them are culled
    verts = torch.cat((uv, z), -1).to(dtype)
    faces = torch.randint(0, n_verts, (n_faces, 3), generator=g)
    faces[1] = faces[0]  # duplicate: ties at every pixel
    faces[2, 2] = faces[2, 1]  # zero area
    return verts, faces


def look_at(eye, target, up=(0.0, 1.0, 0.0)):
    """World-to-view (R, T) of a camera at ``eye`` looking at ``target`` (PyTorch3D axes)."""
    eye, target, up = (torch.as_tensor(x, dtype=torch.float64) for x in (eye, target, up))
    z_axis = (target - eye) / (target - eye).norm()
    x_axis = torch.linalg.cross(up, z_axis)
    x_axis = x_axis / x_axis.norm()
    y_axis = torch.linalg.cross(z_axis, x_axis)
    R = torch.stack((x_axis, y_axis, z_axis), dim=1)
    return R, -eye @ R


def cameras_at(eyes, size, focal, dtype=torch.float64, target=(0.0, 0.0, 0.0)):
    poses = [look_at(eye, target) for eye in eyes]
    n = len(poses)
    height, width = size
    return Cameras(
        R=torch.stack([p[0] for p in poses]).to(dtype),
        T=torch.stack([p[1] for p in poses]).to(dtype),
        focal_length=torch.full((n, 2), float(focal), dtype=dtype),
        principal_point=torch.tensor([[width / 2, height / 2]], dtype=dtype).expand(n, 2),
        image_size=torch.tensor([[height, width]]).expand(n, 2),
    )


def screen(points_uvz, dtype=torch.float64):
    return torch.tensor([points_uvz], dtype=dtype)


def covered_set(face_idx):
    return {tuple(p) for p in torch.nonzero(face_idx >= 0).tolist()}


def test_extension_compiled_on_cpu():
    """The suite must exercise the C++ kernel, not silently the reference."""
    ext = geomkit_extension()
    assert ext.has_kernel("rasterize_triangles", "cpu"), ext.reason


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_random(device, dtype):
    verts, faces = random_scene(3, 90, 70, 37, 45, dtype, seed=1)
    out = rasterize_triangles(verts.to(device), faces.to(device), (37, 45))
    ref_idx, ref_bary, ref_depth = reference.rasterize_triangles(verts, faces, 37, 45, 1e-6)
    assert torch.equal(out.face_idx.cpu(), ref_idx)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert_close(out.bary, ref_bary, atol=tol, what="bary")
    assert_close(out.depth, ref_depth, atol=tol, rtol=tol, what="depth")
    if device == "cpu":  # same float64 operations: identical to the bit
        assert torch.equal(out.bary, ref_bary) and torch.equal(out.depth, ref_depth)
    covered = ref_idx >= 0
    assert 0.5 < covered.float().mean() < 1.0  # the scene exercises overlaps and background
    assert not bool((ref_idx == 1).any()) and not bool((ref_idx == 2).any())  # tie / zero area


@pytest.mark.parametrize("device", DEVICES)
def test_matches_reference_on_a_closed_mesh(device):
    """Many shared edges and vertices, front and back faces, several views."""
    vertices, faces = icosphere(3, radius=1.0)
    cameras = cameras_at([(0.3, 0.4, 2.6), (-2.0, 0.5, -1.5), (0.0, -3.0, 0.2)], (48, 64), 55)
    out = rasterize_mesh(vertices.to(device), faces.to(device), cameras.to(device))
    uv, depth = cameras.project(vertices)
    verts = torch.cat((uv, depth[..., None]), -1)
    ref_idx, ref_bary, ref_depth = reference.rasterize_triangles(verts, faces, 48, 64, 1e-6)
    assert torch.equal(out.face_idx.cpu(), ref_idx)
    assert_close(out.bary, ref_bary, atol=1e-12, what="bary")
    assert_close(out.depth, ref_depth, atol=1e-12, what="depth")


@pytest.mark.parametrize("device", DEVICES)
def test_matches_reference_with_large_faces(device):
    """Faces covering most of the image take the kernels' cooperative path (rows in parallel
    on the CPU, the whole block on CUDA); small faces among them the per-face path."""
    g = torch.Generator().manual_seed(8)
    size = torch.tensor([130.0, 100.0], dtype=torch.float64)
    big_uv = (torch.rand(2, 6, 3, 2, generator=g, dtype=torch.float64) * 3 - 1) * size
    centres = torch.rand(2, 150, 1, 2, generator=g, dtype=torch.float64) * size
    small_uv = centres + torch.rand(2, 150, 3, 2, generator=g, dtype=torch.float64) * 8 - 4
    uv = torch.cat((big_uv, small_uv), 1).reshape(2, -1, 2)
    z = 0.3 + 2.7 * torch.rand(2, uv.shape[1], 1, generator=g, dtype=torch.float64)
    verts = torch.cat((uv, z), -1)
    faces = torch.arange(uv.shape[1]).reshape(-1, 3)  # faces 0-5 large, 6-155 small
    out = rasterize_triangles(verts.to(device), faces.to(device), (100, 130))
    ref_idx, ref_bary, ref_depth = reference.rasterize_triangles(verts, faces, 100, 130, 1e-6)
    assert torch.equal(out.face_idx.cpu(), ref_idx)
    assert_close(out.bary, ref_bary, atol=1e-12, what="bary")
    assert_close(out.depth, ref_depth, atol=1e-12, what="depth")
    big = (ref_idx >= 0) & (ref_idx < 6)
    assert big.float().mean() > 0.3 and (ref_idx >= 6).float().mean() > 0.02


@pytest.mark.parametrize("device", DEVICES)
def test_edge_inputs(device):
    verts, faces = random_scene(2, 10, 5, 8, 9, torch.float32, seed=2)
    verts, faces = verts.to(device), faces.to(device)
    empty = rasterize_triangles(verts, faces[:0], (8, 9))
    assert torch.all(empty.face_idx == -1) and torch.all(empty.depth == -1)
    assert torch.all(empty.bary == 0) and empty.bary.shape == (2, 8, 9, 3)
    no_views = rasterize_triangles(verts[:0], faces, (8, 9))
    assert no_views.face_idx.shape == (0, 8, 9) and no_views.bary.shape == (0, 8, 9, 3)
    cover_all = rasterize_triangles(
        screen([(-5, -5, 1), (9, -5, 1), (-5, 9, 1)]).to(device),
        torch.tensor([[0, 1, 2]], device=device),
        (1, 1),
    )
    assert cover_all.face_idx.tolist() == [[[0]]] and cover_all.depth.item() == 1.0
    # Huge but finite coordinates (a vertex projected from near the camera plane), off-screen
    # triangles and a triangle covering the whole image.
    big = screen(
        [(-1e30, -1e30, 1), (1e30, 0, 1), (0, 1e30, 1), (50, 50, 1), (60, 50, 1), (50, 60, 1)]
    )
    tris = torch.tensor([[3, 4, 5], [0, 1, 2]])
    for dtype in (torch.float32, torch.float64):
        out = rasterize_triangles(big.to(device, dtype), tris.to(device), (6, 7))
        ref = reference.rasterize_triangles(big.to(dtype), tris, 6, 7, 1e-6)
        assert torch.all(out.face_idx == 1) and torch.all(out.depth == 1)
        assert torch.equal(out.face_idx.cpu(), ref[0]) and torch.equal(out.depth.cpu(), ref[2])


def test_non_contiguous_and_half_inputs():
    verts, faces = random_scene(2, 40, 30, 20, 24, torch.float64, seed=3)
    strided = verts.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    faces_strided = faces.t().contiguous().t()
    assert not strided.is_contiguous() and not faces_strided.is_contiguous()
    out = rasterize_triangles(strided, faces_strided.to(torch.int32), (20, 24))
    ref = reference.rasterize_triangles(verts, faces, 20, 24, 1e-6)
    assert torch.equal(out.face_idx, ref[0]) and torch.equal(out.depth, ref[2])
    half = rasterize_triangles(verts.half(), faces, torch.tensor([20, 24]))
    assert half.bary.dtype == torch.float16 and half.depth.dtype == torch.float16
    agree = (half.face_idx == ref[0]).float().mean()
    assert agree > 0.95  # rounding the vertices to half moves a few edge pixels


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1)])
def test_triangle_coverage_hand_derived(device, order):
    """Vertices on pixel centres: every boundary pixel's centre lies exactly on an edge."""
    corners = [(0.5, 0.5, 1.0), (4.5, 0.5, 1.0), (0.5, 4.5, 1.0)]
    verts = screen([corners[k] for k in order]).to(device)
    out = rasterize_triangles(verts, torch.tensor([[0, 1, 2]], device=device), (6, 6))
    # Centre (j + 0.5, i + 0.5) is inside iff j >= 0, i >= 0 and (j + 0.5) + (i + 0.5) <= 5.
    expected = {(0, i, j) for i in range(6) for j in range(6) if i + j <= 4}
    assert len(expected) == 15
    assert covered_set(out.face_idx) == expected
    # Both windings cover the same pixels (no back-face culling).


@pytest.mark.parametrize("device", DEVICES)
def test_shared_edge_is_covered_by_both_faces(device):
    square = screen([(0, 0, 1), (4, 0, 1), (4, 4, 1), (0, 4, 1)]).to(device)
    upper = torch.tensor([[0, 1, 2]], device=device)  # centres with v <= u
    lower = torch.tensor([[0, 2, 3]], device=device)  # centres with v >= u
    diagonal = {(0, k, k) for k in range(4)}
    upper_set = covered_set(rasterize_triangles(square, upper, (4, 4)).face_idx)
    lower_set = covered_set(rasterize_triangles(square, lower, (4, 4)).face_idx)
    assert upper_set == {(0, i, j) for i in range(4) for j in range(4) if i <= j}
    assert lower_set == {(0, i, j) for i in range(4) for j in range(4) if i >= j}
    assert upper_set & lower_set == diagonal
    # Both at depth 1: the shared diagonal goes to the lower face index, in either order.
    for faces, diagonal_face in ((torch.cat((upper, lower)), 0), (torch.cat((lower, upper)), 0)):
        face_idx = rasterize_triangles(square, faces, (4, 4)).face_idx[0]
        assert torch.all(face_idx >= 0)  # no holes
        assert all(face_idx[k, k].item() == diagonal_face for k in range(4))


@pytest.mark.parametrize("device", DEVICES)
def test_no_cracks_in_a_jittered_grid_mesh(device):
    """Interior pixel centres of a triangulated grid with jittered vertices are all covered,
    and where a centre falls on a shared edge (exact integer arithmetic) both faces claim it."""
    g = torch.Generator().manual_seed(4)
    n = 9
    jv, iv = torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="xy")
    uv = torch.stack((jv, iv), -1).reshape(-1, 2).double() * 3
    inner = ((uv > 0) & (uv < 3 * n)).all(1)
    uv[inner] += torch.randint(-2, 3, (int(inner.sum()), 2), generator=g).double() * 0.5
    z = 1 + torch.rand(len(uv), 1, generator=g, dtype=torch.float64)
    ids = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    faces = torch.cat((torch.stack((a, b, d), -1), torch.stack((a, d, c), -1))).reshape(-1, 3)
    verts = torch.cat((uv, z), -1)[None].to(device)
    out = rasterize_triangles(verts, faces.to(device), (3 * n, 3 * n))
    assert torch.all(out.face_idx >= 0)  # the grid spans [0, 27]^2, every centre inside
    assert_close(out.bary.sum(-1), torch.ones(1, 3 * n, 3 * n), atol=1e-12, what="bary sum")


@pytest.mark.parametrize("device", DEVICES)
def test_no_cracks_where_rounding_decides(device):
    """Two faces share an edge A-B that passes a pixel centre p up to rounding (B = A + k (p - A)
    with k not a power of 2); evaluated naively, both edge functions come out negative at p for
    about 1% of such edges. The canonical edge evaluation must leave no crack, in any view."""
    g = torch.Generator().manual_seed(7)
    n_views = 1500
    a = torch.rand(n_views, 2, generator=g, dtype=torch.float64) * 30 + 5
    p = torch.randint(8, 32, (n_views, 2), generator=g).double() + 0.5
    k = 1.2 + 1.8 * torch.rand(n_views, 1, generator=g, dtype=torch.float64)
    b = a + k * (p - a)
    normal = torch.stack((b[:, 1] - a[:, 1], a[:, 0] - b[:, 0]), 1)
    normal = normal / normal.norm(dim=1, keepdim=True)
    middle = (a + b) / 2
    uv = torch.stack((a, b, middle + 3 * normal, middle - 3 * normal), 1)
    verts = torch.cat((uv, torch.ones(n_views, 4, 1, dtype=torch.float64)), -1)
    faces = torch.tensor([[0, 1, 2], [1, 0, 3]])
    out = rasterize_triangles(verts.to(device), faces.to(device), (40, 40))
    rows, cols = (p[:, 1] - 0.5).long(), (p[:, 0] - 0.5).long()
    at_p = out.face_idx.cpu()[torch.arange(n_views), rows, cols]
    assert torch.all(at_p >= 0), f"cracks at p in {int((at_p < 0).sum())} views"
    ref_idx, _, _ = reference.rasterize_triangles(verts[:100], faces, 40, 40, 1e-6)
    assert torch.equal(out.face_idx[:100].cpu(), ref_idx)


@pytest.mark.parametrize("device", DEVICES)
def test_bary_and_depth_hand_computed(device):
    verts = screen([(0, 0, 1.0), (4, 0, 2.0), (0, 4, 4.0)]).to(device)
    out = rasterize_triangles(verts, torch.tensor([[0, 1, 2]], device=device), (5, 5))
    # Centre (0.5, 0.5): screen barycentrics (3/4, 1/8, 1/8); divided by z: (3/4, 1/16, 1/32),
    # sum 27/32, so depth 32/27 and perspective-correct barycentrics (24, 2, 1) / 27.
    assert_close(out.depth[0, 0, 0], 32 / 27, atol=1e-15, what="depth at (0, 0)")
    assert_close(out.bary[0, 0, 0], [24 / 27, 2 / 27, 1 / 27], atol=1e-15, what="bary (0, 0)")
    # Centre (2.5, 1.5) lies on the edge u + v = 4: screen (0, 5/8, 3/8) -> (0, 5/16, 3/32),
    # sum 13/32, depth 32/13, barycentrics (0, 10, 3) / 13.
    assert_close(out.depth[0, 1, 2], 32 / 13, atol=1e-15, what="depth at (1, 2)")
    assert_close(out.bary[0, 1, 2], [0, 10 / 13, 3 / 13], atol=1e-15, what="bary (1, 2)")


def test_perspective_correct_points_project_to_pixel_centres():
    """Independent of the reference: the barycentric blend of a face's 3-D vertices, projected
    again, lands on the pixel centre at the rendered depth."""
    g = torch.Generator().manual_seed(5)
    vertices = torch.rand(30, 3, generator=g, dtype=torch.float64) * 2 - 1
    faces = torch.randint(0, 30, (20, 3), generator=g)
    cameras = cameras_at([(0.5, 0.3, 2.5), (-0.4, 1.0, -2.2)], (40, 50), 45)
    out = rasterize_mesh(vertices, faces, cameras)
    hit = out.face_idx >= 0
    assert hit.float().mean() > 0.2
    corners = vertices[faces[out.face_idx[hit]]]  # (M, 3, 3)
    points = (out.bary[hit][..., None] * corners).sum(1)
    views = torch.nonzero(hit)[:, 0]
    for n in range(2):
        uv, depth = cameras[n].project(points[views == n])
        centres = pixel_grid(40, 50, dtype=torch.float64).reshape(40, 50, 2)[hit[n]]
        assert_close(uv[0], centres, atol=1e-9, what=f"reprojected pixel, view {n}")
        assert_close(depth[0], out.depth[n][hit[n]], atol=1e-12, what=f"depth, view {n}")


def test_agrees_with_trimesh_ray_casting():
    """First hits of trimesh's ray-triangle intersector through every pixel centre."""
    mesh = trimesh.creation.torus(major_radius=1.0, minor_radius=0.4, major_sections=24)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.7, (1.0, 0.3, 0.0)))
    cameras = cameras_at([(0.4, 0.5, 3.0)], (40, 48), 40)
    out = rasterize_mesh(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces), cameras)
    rays = pixel_rays(cameras, normalize=False)
    origins, directions = rays.origins[0].numpy(), rays.directions[0].numpy()
    tri, ray_ids = mesh.ray.intersects_id(origins, directions, multiple_hits=False)
    expected_idx = np.full(40 * 48, -1)
    expected_idx[ray_ids] = tri
    face_idx = out.face_idx[0].reshape(-1).numpy()
    agree = face_idx == expected_idx
    assert agree.mean() > 0.99, f"{(~agree).sum()} pixels differ"  # only edge-grazing rays
    hit = torch.as_tensor((face_idx >= 0) & agree)
    corners = torch.as_tensor(mesh.vertices)[
        torch.as_tensor(mesh.faces)[out.face_idx[0][hit.reshape(40, 48)]]
    ]
    normal = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    o, d = torch.as_tensor(origins)[hit], torch.as_tensor(directions)[hit]
    t = ((corners[:, 0] - o) * normal).sum(-1) / (d * normal).sum(-1)  # ray-plane: t is depth
    assert_close(out.depth[0].reshape(-1)[hit], t, atol=1e-10, what="depth vs ray-plane")


@pytest.mark.parametrize("device", DEVICES)
def test_depth_order_and_tie_rule(device):
    tri = [(0, 0), (6, 0), (0, 6)]
    verts = screen([(u, v, z) for z in (2.0, 1.0, 1.0) for u, v in tri]).to(device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]], device=device)
    out = rasterize_triangles(verts, faces, (6, 6))
    covered = out.face_idx >= 0
    # Face 0 is farther; faces 1 and 2 coincide at depth 1: the lower index wins.
    assert torch.all(out.face_idx[covered] == 1) and torch.all(out.depth[covered] == 1)
    reordered = rasterize_triangles(verts, faces[[2, 0, 1]], (6, 6))
    assert torch.all(reordered.face_idx[covered] == 0)  # old face 2, now first of the tie
    nearer_last = rasterize_triangles(
        verts, torch.tensor([[3, 4, 5], [0, 1, 2]], device=device), (6, 6)
    )
    assert torch.all(nearer_last.face_idx[covered] == 0)  # depth decides before the index


@pytest.mark.parametrize("device", DEVICES)
def test_znear_culling(device):
    faces = torch.tensor([[0, 1, 2]], device=device)

    def covers(z_first, znear):
        verts = screen([(0, 0, z_first), (4, 0, 1.0), (0, 4, 1.0)]).to(device)
        return bool((rasterize_triangles(verts, faces, (4, 4), znear).face_idx >= 0).any())

    assert not covers(0.5, znear=0.5)  # z == znear: culled
    assert covers(0.5 + 1e-12, znear=0.5)
    assert not covers(-1.0, znear=0.0) and not covers(0.0, znear=0.0)
    assert covers(1e-3, znear=0.0)
    assert not covers(1e-7, znear=1e-6)  # the default znear


@pytest.mark.parametrize("device", DEVICES)
def test_zero_area_and_non_finite_faces_never_cover(device):
    verts = screen(
        [(0.5, 0.5, 1), (2.5, 0.5, 1), (4.5, 0.5, 1), (0.5, 2.5, 1), (float("nan"), 1, 1)]
    ).to(device)
    faces = torch.tensor([[0, 1, 2], [0, 0, 3], [0, 3, 4]], device=device)
    out = rasterize_triangles(verts, faces, (5, 5))
    assert torch.all(out.face_idx == -1)  # collinear on centres, repeated vertex, NaN vertex


@pytest.mark.parametrize("device", DEVICES)
def test_background_values(device):
    verts = screen([(0, 0, 2.0), (3, 0, 2.0), (0, 3, 2.0)]).to(device)
    out = rasterize_triangles(verts, torch.tensor([[0, 1, 2]], device=device), (5, 5))
    empty = out.face_idx == -1
    assert int(empty.sum()) == 25 - 6
    assert torch.all(out.depth[empty] == -1) and torch.all(out.bary[empty] == 0)
    assert torch.all(out.depth[~empty] == 2)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_equals_views_one_at_a_time(device):
    verts, faces = random_scene(4, 60, 50, 21, 26, torch.float32, seed=6)
    batch = rasterize_triangles(verts.to(device), faces.to(device), (21, 26))
    for n in range(4):
        single = rasterize_triangles(verts[n : n + 1].to(device), faces.to(device), (21, 26))
        for got, want in zip(batch, single, strict=True):
            assert torch.equal(got[n : n + 1], want)


def test_rasterize_mesh_ignores_distortion_and_checks_sizes():
    vertices, faces = icosphere(1, radius=1.0)
    cameras = cameras_at([(0.0, 0.5, 3.0), (2.0, 0.0, 2.0)], (24, 30), 30)
    plain = rasterize_mesh(vertices, faces, cameras)
    distorted = cameras.clone()
    distorted.distortion = torch.tensor([[0.2, 0.1, 0.01, 0.0]] * 2, dtype=torch.float64)
    for got, want in zip(rasterize_mesh(vertices, faces, distorted), plain, strict=True):
        assert torch.equal(got, want)
    mixed = cameras.clone()
    mixed.image_size = torch.tensor([[24, 30], [24, 31]])
    with pytest.raises(ValueError, match="pass image_size"):
        rasterize_mesh(vertices, faces, mixed)
    assert rasterize_mesh(vertices, faces, mixed, image_size=(10, 12)).depth.shape == (2, 10, 12)
    bad = vertices.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN or infinite"):
        rasterize_mesh(bad, faces, cameras)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"verts_screen": torch.zeros(4, 3)}, "verts_screen must be a"),
        ({"verts_screen": torch.zeros(1, 4, 2)}, "verts_screen must be a"),
        ({"verts_screen": torch.zeros(1, 4, 3, dtype=torch.int64)}, "floating point"),
        ({"faces": torch.zeros(2, 4, dtype=torch.int64)}, "faces must be a"),
        ({"faces": torch.zeros(2, 3)}, "faces must hold integers"),
        ({"faces": torch.tensor([[0, 1, 4]])}, r"lie in \[0, 3\]"),
        ({"faces": torch.tensor([[0, -1, 2]])}, r"lie in \[0, 3\]"),
        ({"image_size": (4,)}, "image_size must be"),
        ({"image_size": (0, 4)}, "image_size must be"),
        ({"image_size": (4.0, 4)}, "image_size must be"),
        ({"znear": -0.1}, "znear must be"),
        ({"znear": float("nan")}, "znear must be"),
    ],
)
def test_argument_errors(kwargs, match):
    args = {
        "verts_screen": torch.zeros(1, 4, 3),
        "faces": torch.tensor([[0, 1, 2]]),
        "image_size": (4, 4),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rasterize_triangles(**args)


def test_fragments_fields():
    out = rasterize_triangles(
        screen([(0, 0, 1), (2, 0, 1), (0, 2, 1)]), torch.tensor([[0, 1, 2]]), (2, 2)
    )
    assert isinstance(out, Fragments) and out._fields == ("face_idx", "bary", "depth")
    assert out.face_idx.dtype == torch.int64 and out.bary.dtype == torch.float64


def icosphere(levels: int, radius: float, center=(0.0, 0.0, 0.0)):
    """Vertices (V, 3) float64 on the sphere and outward (counter-clockwise) faces (F, 3) of an
    icosahedron subdivided ``levels`` times (F = 20 * 4^levels)."""
    t = (1 + 5**0.5) / 2
    vertices = torch.tensor(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=torch.float64,
    )  # fmt: skip
    faces = torch.tensor(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    )  # fmt: skip
    vertices = vertices / vertices.norm(dim=1, keepdim=True)
    for _ in range(levels):
        edges = torch.stack((faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]), 1)
        unique, inverse = torch.unique(
            edges.reshape(-1, 2).sort(1).values, dim=0, return_inverse=True
        )
        middle = vertices[unique].mean(1)
        mid = (len(vertices) + inverse).reshape(-1, 3)  # midpoints of edges 01, 12, 20
        vertices = torch.cat((vertices, middle / middle.norm(dim=1, keepdim=True)))
        a, b, c = faces.unbind(1)
        ab, bc, ca = mid.unbind(1)
        faces = torch.cat(
            [torch.stack(x, 1) for x in ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))]
        )
    return vertices * radius + torch.as_tensor(center, dtype=torch.float64), faces
