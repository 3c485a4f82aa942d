"""geomkit.render: the icosphere acceptance test against analytic ray-sphere depth and
silhouette, interpolation against hand-computed values, normals, Lambertian shading and the
one-call render_mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geomkit.cameras import to_opencv
from geomkit.errors import InputError
from geomkit.io import read_mesh
from geomkit.mesh import normalize_to_unit_box
from geomkit.ops.rasterize import Fragments, rasterize_mesh
from geomkit.rays import pixel_rays, ray_sphere_intersection
from geomkit.render import (
    face_normals,
    headlight_directions,
    interpolate,
    mask,
    render_mesh,
    shade_lambertian,
    surface_normals,
    vertex_normals,
    world_points,
    world_to_camera_opencv,
)
from geomkit.structures import TriMesh
from tests.geomkit.test_rasterize import cameras_at, icosphere
from tests.helpers import assert_close

RADIUS = 1.5
CENTER = (0.2, -0.1, 0.3)


def plane_mesh(z: float = 0.0, half: float = 1.0) -> TriMesh:
    """A square in the plane z = const, normal +z (counter-clockwise seen from +z)."""
    vertices = [(-half, -half, z), (half, -half, z), (half, half, z), (-half, half, z)]
    return TriMesh(np.array(vertices, dtype=np.float64), np.array([[0, 1, 2], [0, 2, 3]]))


def plane_hits(cameras, z: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic intersections of the pixel rays with the plane z = const: world points
    (N, H, W, 3) and their view depths (N, H, W)."""
    origins, directions = pixel_rays(cameras, normalize=False)
    t = (z - origins[..., 2]) / directions[..., 2]  # directions have unit view z: t is depth
    shape = (len(cameras), *cameras.image_size[0].tolist())
    return (origins + t[..., None] * directions).reshape(*shape, 3), t.reshape(shape)


@pytest.fixture(scope="module")
def sphere_render():
    """An 81920-face icosphere of radius RADIUS in a 256x256 camera, rendered in float32."""
    vertices, faces = icosphere(6, RADIUS, CENTER)
    eye = (CENTER[0] + 1.0, CENTER[1] + 1.5, CENTER[2] + 4.0)
    cameras = cameras_at([eye], (256, 256), 280, dtype=torch.float32, target=CENTER)
    mesh = TriMesh(vertices.numpy(), faces.numpy())
    return mesh, cameras, render_mesh(mesh, cameras)


def test_icosphere_depth_and_silhouette_match_the_analytic_sphere(sphere_render):
    mesh, cameras, result = sphere_render
    assert len(mesh.faces) == 81920
    origins, directions = pixel_rays(cameras.to(dtype=torch.float64), normalize=False)
    center = torch.tensor(CENTER, dtype=torch.float64)
    # With directions of unit view z, the ray parameter t is the view depth.
    near, far, hit = (
        x.reshape(256, 256) for x in ray_sphere_intersection(origins, directions, RADIUS, center)
    )
    covered, depth = result.mask[0], result.depth[0].double()
    iou = (covered & hit).sum() / (covered | hit).sum()
    assert iou >= 0.99, f"silhouette IoU {float(iou):.4f}"
    assert not bool((covered & ~hit).any())  # the inscribed mesh lies inside the sphere
    # The flat faces lie between the sphere and the inner sphere tangent to their planes, so the
    # depth is bracketed exactly; the polyhedral error along a ray grows like 1/cos(incidence)
    # (to ~7e-3 r at the rim), so the 1e-4 r agreement holds where that bracket is tight.
    corners = torch.as_tensor(mesh.vertices)[torch.as_tensor(mesh.faces)] - center
    normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inner_radius = float(((corners[:, 0] * normals).sum(1) / normals.norm(dim=1)).min())
    assert RADIUS - 1e-4 * RADIUS < inner_radius < RADIUS
    inner_near, _, inner_hit = (
        x.reshape(256, 256)
        for x in ray_sphere_intersection(origins, directions, inner_radius, center)
    )
    eps = 2e-6 * RADIUS  # float32 rendering
    assert torch.all(depth[covered] >= near[covered] - eps)
    bracketed = covered & inner_hit
    assert torch.all(depth[bracketed] <= inner_near[bracketed] + eps)
    rim = covered & ~inner_hit
    assert torch.all(depth[rim] <= far[rim])
    tight = bracketed & (inner_near - near <= 1e-4 * RADIUS)
    assert tight.sum() > 0.4 * covered.sum()
    assert_close(depth[tight], near[tight], atol=1e-4 * RADIUS, what="depth vs ray-sphere")


def test_icosphere_render_outputs_are_consistent(sphere_render):
    mesh, cameras, result = sphere_render
    covered = result.mask[0]
    points = world_points(
        rasterize_mesh(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces), cameras),
        torch.as_tensor(mesh.vertices, dtype=torch.float32),
        torch.as_tensor(mesh.faces),
    )[0]
    radial = points[covered].double() - torch.tensor(CENTER, dtype=torch.float64)
    assert_close(radial.norm(dim=1), torch.full((int(covered.sum()),), RADIUS), atol=1e-4 * RADIUS)
    # Flat normals are the radial directions to within the faces' angular size (~0.01 rad).
    unit = radial / radial.norm(dim=1, keepdim=True)
    assert float((result.normals[0][covered].double() * unit).sum(1).min()) > 0.9998
    # Headlight, front faces: rgb = albedo (ambient + (1 - ambient) cos(angle to the axis)).
    axis = headlight_directions(cameras)[0].double()
    expected = 0.8 * (0.3 + 0.7 * (result.normals[0][covered].double() @ axis))
    assert_close(result.rgb[0][covered], expected[:, None].expand(-1, 3), atol=1e-5, what="rgb")
    background = ~covered
    assert torch.all(result.rgb[0][background] == 1) and torch.all(result.depth[0][background] == 0)
    assert torch.all(result.normals[0][background] == 0)
    assert torch.all(result.face_idx[0][background] == -1)


def hand_fragments() -> Fragments:
    """Two views of a 2x2 image over two faces, with chosen barycentrics."""
    face_idx = torch.tensor([[[0, -1], [1, 0]], [[1, 1], [-1, -1]]])
    bary = torch.zeros(2, 2, 2, 3, dtype=torch.float64)
    for (n, i, j), weights in {
        (0, 0, 0): [0.5, 0.25, 0.25],
        (0, 1, 0): [0.0, 0.0, 1.0],
        (0, 1, 1): [0.2, 0.3, 0.5],
        (1, 0, 0): [1.0, 0.0, 0.0],
        (1, 0, 1): [0.1, 0.6, 0.3],
    }.items():
        bary[n, i, j] = torch.tensor(weights, dtype=torch.float64)
    depth = torch.where(face_idx >= 0, 1.0, -1.0).double()
    return Fragments(face_idx, bary, depth)


def test_interpolate_against_hand_computed_values():
    fragments = hand_fragments()
    faces = torch.tensor([[0, 1, 2], [2, 3, 0]])
    attributes = torch.tensor([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0], [3.0, 40.0]])
    out = interpolate(fragments, faces, attributes)
    expected = torch.tensor(
        [
            [[[0.75, 17.5], [0, 0]], [[0.0, 10.0], [1.3, 23.0]]],
            [[[2.0, 30.0], [2.0, 30.0]], [[0, 0], [0, 0]]],
        ]
    )
    # e.g. view 0, pixel (0, 0): 0.5 * v0 + 0.25 * v1 + 0.25 * v2 = (0.75, 17.5);
    # view 0, pixel (1, 0), face 1 = (2, 3, 0) with weights (0, 0, 1): v0 = (0, 10);
    # view 1, pixel (0, 1), face 1: 0.1 * v2 + 0.6 * v3 + 0.3 * v0 = (2.0, 30).
    assert out.dtype == attributes.dtype
    assert_close(out, expected, atol=1e-6, what="interpolated")
    assert torch.equal(mask(fragments), fragments.face_idx >= 0)
    per_view = torch.stack((attributes, attributes + 100))
    out_per_view = interpolate(fragments, faces, per_view)
    assert_close(out_per_view[0], expected[0], atol=1e-6, what="view 0")
    assert_close(out_per_view[1], (expected[1] + 100) * mask(fragments)[1, ..., None], atol=1e-5)


def test_interpolate_gradients():
    fragments = hand_fragments()
    faces = torch.tensor([[0, 1, 2], [2, 3, 0]])
    attributes = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(fragments, faces, a), (attributes,))
    # d(sum of outputs) / d(vertex v) = the total weight vertex v receives over the pixels:
    # v0: 0.5 + 1 + 0.2 (view 0) + 0.3 (view 1); v1: 0.25 + 0.3; v2: 0.25 + 0.5 + 1 + 0.1; v3: 0.6.
    interpolate(fragments, faces, attributes).sum().backward()
    assert_close(attributes.grad[:, 0], [2.0, 0.55, 1.85, 0.6], atol=1e-12, what="grad")


def test_face_and_vertex_normals_and_opencv_frame():
    cube = TriMesh(
        np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64),
        np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]),
    )  # fmt: skip
    vertices, faces = torch.as_tensor(cube.vertices), torch.as_tensor(cube.faces)
    assert_close(
        face_normals(vertices, faces), cube.face_normals(), atol=1e-12, what="face normals"
    )
    corner = vertex_normals(vertices, faces)[7]  # vertex (1, 1, 1): equal area on three faces
    assert_close(corner, np.full(3, 3**-0.5), atol=1e-12, what="vertex normal")
    cameras = cameras_at([(2.5, 1.8, 3.1), (-2.0, 2.2, 0.4)], (32, 32), 40, target=(0.5, 0.5, 0.5))
    fragments = rasterize_mesh(vertices, faces, cameras)
    world = surface_normals(fragments, vertices, faces)
    covered = mask(fragments)
    expected_world = torch.as_tensor(cube.face_normals())[fragments.face_idx[covered]]
    assert_close(world[covered], expected_world, atol=1e-12, what="flat normals")
    # OpenCV camera frame, independently: R_w2c of geomkit.cameras.to_opencv applied to n.
    opencv = surface_normals(fragments, vertices, faces, cameras=cameras, frame="camera_opencv")
    R_w2c = to_opencv(cameras).R_w2c
    for n in range(2):
        rotated = world[n][covered[n]] @ R_w2c[n].T
        assert_close(opencv[n][covered[n]], rotated, atol=1e-12, what=f"opencv normals {n}")
        # Visible faces face the camera: negative z in a z-forward frame.
        assert torch.all(opencv[n][covered[n]][:, 2] < 0)
    assert torch.all(opencv[~covered] == 0)
    with pytest.raises(ValueError, match="needs the cameras"):
        surface_normals(fragments, vertices, faces, frame="camera_opencv")
    with pytest.raises(ValueError, match="frame must be one of"):
        surface_normals(fragments, vertices, faces, frame="opengl")


def test_smooth_normals_of_a_sphere_are_radial():
    vertices, faces = icosphere(3, 1.0)
    cameras = cameras_at([(0.4, 0.3, 3.0)], (64, 64), 70)
    fragments = rasterize_mesh(vertices, faces, cameras)
    covered = mask(fragments)
    # On a unit sphere the positions are the exact normals, and the normalised blend of the
    # corners' normals is the direction of the blended point.
    exact = surface_normals(fragments, vertices, faces, smooth=True, normals_per_vertex=vertices)
    radial = world_points(fragments, vertices, faces)[covered]
    radial = radial / radial.norm(dim=1, keepdim=True)
    assert_close(exact[covered], radial, atol=1e-12, what="smooth normals from given ones")
    assert torch.all(exact[~covered] == 0)
    # Area-weighted vertex normals of the level-3 icosphere stay within ~0.02 of radial; flat
    # normals deviate several times more.
    smooth = surface_normals(fragments, vertices, faces, smooth=True)
    flat = surface_normals(fragments, vertices, faces)
    smooth_error = (smooth[covered] - radial).norm(dim=1).max()
    flat_error = (flat[covered] - radial).norm(dim=1).max()
    assert smooth_error < 0.02 and flat_error > 3 * smooth_error


def test_world_to_camera_opencv_axes():
    cameras = cameras_at([(0.0, 0.0, 5.0)], (8, 8), 10)  # looks along -z, up +y
    directions = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float64)
    # Image right is world +x, image down is world -y, forward is world -z.
    expected = torch.tensor([[[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]], dtype=torch.float64)
    assert_close(world_to_camera_opencv(directions, cameras), expected, atol=1e-12)
    assert_close(headlight_directions(cameras), [[0.0, 0.0, 1.0]], atol=1e-12)


def test_shade_lambertian_hand_values():
    albedo = torch.full((2, 1, 2, 3), 0.5, dtype=torch.float64)
    normals = torch.tensor([[0.0, 0, 1], [0, 0, -1]], dtype=torch.float64).expand(2, 1, 2, 3)
    # 60 degrees from +z, normalised inside.
    light = torch.tensor([0.0, 3**0.5, 1.0], dtype=torch.float64)
    rgb = shade_lambertian(albedo, normals, light, ambient=0.3)
    # cos 60 = 0.5: 0.5 * (0.3 + 0.7 * 0.5) = 0.325; facing away: ambient only, 0.15.
    assert_close(rgb[0, 0, :, 0], [0.325, 0.15], atol=1e-12)
    two_sided = shade_lambertian(albedo, normals, light, ambient=0.3, two_sided=True)
    assert_close(two_sided[0, 0, :, 0], [0.325, 0.325], atol=1e-12)
    per_view = shade_lambertian(albedo, normals, torch.tensor([[0.0, 0, 1], [0, 0, -2]]), 0.0)
    assert_close(per_view[:, 0, :, 1], [[0.5, 0.0], [0.0, 0.5]], atol=1e-12)
    with pytest.raises(InputError, match="light_dir must be"):
        shade_lambertian(albedo, normals, torch.zeros(3, 3))
    with pytest.raises(InputError, match="non-zero"):
        shade_lambertian(albedo, normals, torch.zeros(3))
    with pytest.raises(ValueError, match="ambient"):
        shade_lambertian(albedo, normals, light, ambient=1.5)


def test_render_mesh_plane_colours_and_lights():
    mesh = plane_mesh(z=0.0, half=1.0)
    cameras = cameras_at([(0.0, 0.0, 3.0), (0.6, -0.4, 2.5)], (40, 48), 60)
    points, depth = plane_hits(cameras)
    # Vertex colours linear in world x, y: perspective-correct interpolation reproduces the
    # linear function at the analytic ray-plane intersection. Light along the normal: n . l = 1.
    x, y = mesh.vertices[:, 0], mesh.vertices[:, 1]
    colors = np.stack([(x + 1) / 2, (y + 1) / 2, np.full(4, 0.5)], 1)
    result = render_mesh(mesh, cameras, color=colors, light=(0.0, 0.0, 1.0), ambient=0.2)
    covered = result.mask
    assert torch.all(covered[points.abs().amax(-1) < 1.0 - 1e-9])
    expected = torch.stack(
        ((points[..., 0] + 1) / 2, (points[..., 1] + 1) / 2, torch.full_like(depth, 0.5)), -1
    )
    assert_close(result.rgb[covered], expected[covered], atol=1e-9, what="vertex colours")
    assert_close(result.depth[covered], depth[covered], atol=1e-9, what="depth")
    assert torch.all(result.rgb[~covered] == 1) and torch.all(result.depth[~covered] == 0)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(int(covered.sum()), 3)
    assert_close(result.normals[covered], up, atol=1e-12, what="normals")
    # Procedural colour evaluated per pixel at the world point: a sharp checkerboard.
    cell = 0.25

    def checker(p):
        parity = (np.floor(p[:, 0] / cell) + np.floor(p[:, 1] / cell)) % 2
        return np.where(parity[:, None] == 0, [0.9, 0.2, 0.1], [0.1, 0.3, 0.8])

    procedural = render_mesh(mesh, cameras, color=checker, background=(0.0, 0.0, 0.0), ambient=0.0)
    assert torch.all(procedural.rgb[~covered] == 0)
    in_cell = points[..., :2] / cell
    check = covered & ((in_cell - in_cell.round()).abs() > 1e-6).all(-1)  # off the cell lines
    cosine = (headlight_directions(cameras)[:, None, None, :] * result.normals).sum(-1)
    truth = torch.as_tensor(checker(points[check].numpy())) * cosine[check][:, None]
    assert_close(procedural.rgb[check], truth, atol=1e-9, what="procedural checkerboard")


def test_render_mesh_defaults_gradients_and_errors():
    mesh = plane_mesh(z=0.0)
    cameras = cameras_at([(0.0, 0.0, 3.0)], (16, 16), 20)
    grey = render_mesh(mesh, cameras)
    covered = grey.mask
    assert_close(grey.rgb[covered], np.full((int(covered.sum()), 3), 0.8), atol=1e-12)
    colored = TriMesh(mesh.vertices, mesh.faces, vertex_colors=np.tile([0.1, 0.5, 0.9], (4, 1)))
    blue = render_mesh(colored, cameras).rgb[covered]
    assert_close(blue, np.tile([0.1, 0.5, 0.9], (len(blue), 1)), atol=1e-12)
    colours = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    render_mesh(mesh, cameras, color=colours).rgb.sum().backward()
    assert colours.grad is not None and torch.all(colours.grad > 0)
    with pytest.raises(InputError, match="color must be"):
        render_mesh(mesh, cameras, color=np.zeros((3, 3)))
    with pytest.raises(InputError, match="color callable"):
        render_mesh(mesh, cameras, color=lambda p: p[:, :2])
    with pytest.raises(ValueError, match="light must be"):
        render_mesh(mesh, cameras, light="sun")
    with pytest.raises(InputError, match="background"):
        render_mesh(mesh, cameras, background=(1.0, 1.0))
    empty = render_mesh(TriMesh(mesh.vertices, np.zeros((0, 3), dtype=np.int64)), cameras)
    assert not bool(empty.mask.any()) and torch.all(empty.rgb == 1)


@pytest.mark.realdata
def test_bunny_depth_matches_trimesh_ray_casting(shared_data):
    path = shared_data / "meshes" / "bunny.obj"
    if not path.exists():
        pytest.skip(f"{path} not found")
    mesh, _, _ = normalize_to_unit_box(read_mesh(path))
    cameras = cameras_at([(0.3, 0.4, 1.6)], (48, 48), 60)
    result = render_mesh(mesh, cameras)
    origins, directions = (x[0].numpy() for x in pixel_rays(cameras, normalize=False))
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    hits, rays, _ = tm.ray.intersects_location(origins, directions, multiple_hits=False)
    expected = torch.zeros(48 * 48, dtype=torch.float64)
    offsets, d = hits - origins[rays], directions[rays]
    expected[rays] = torch.as_tensor((offsets * d).sum(1) / (d * d).sum(1))  # t = view depth
    got = result.depth[0].reshape(-1)
    assert ((got > 0) == (expected > 0)).float().mean() >= 0.995
    both = (got > 0) & (expected > 0)
    # Rays exactly through an edge between two depths may legitimately disagree.
    assert ((got[both] - expected[both]).abs() < 1e-9).float().mean() >= 0.995
