"""sfd.export: marching cubes of an SDF, world-space instance meshes, and the textured OBJ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from geomkit.errors import ConfigError, InputError, OutputExistsError
from geomkit.io import read_image, read_ply
from geomkit.mesh import signed_volume
from geomkit.structures import TriMesh
from geomkit.transforms import random_rotations
from sfd.export import (
    MIN_CELL,
    atlas_layout,
    extract_mesh,
    instance_meshes,
    textured_mesh,
    write_meshes,
)
from tests.helpers import assert_close

RADIUS = 0.7


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - RADIUS


def albedo_fn(points: torch.Tensor) -> torch.Tensor:
    """A smooth procedural colour in [0.2, 0.8] that differs per channel."""
    return 0.2 + 0.6 * (0.5 + 0.5 * torch.sin(2.0 * points + torch.tensor([0.0, 1.0, 2.0])))


def roughness_fn(points: torch.Tensor) -> torch.Tensor:
    return 0.3 + 0.4 * (points[:, 2] + 1.0) / 2.0


@pytest.fixture(scope="module")
def small_sphere() -> tuple[np.ndarray, np.ndarray]:
    return extract_mesh(sphere_sdf, 20)


def test_extract_mesh_sphere_lies_on_the_zero_level_set():
    resolution, bound = 48, 1.0
    voxel = 2 * bound / (resolution - 1)
    vertices, faces = extract_mesh(sphere_sdf, resolution, bound)
    radial_error = np.abs(np.linalg.norm(vertices, axis=1) - RADIUS)
    # the brief's bound is 2 voxels; a half-voxel grid offset would show as ~0.5 voxel
    assert radial_error.max() < 0.05 * voxel, radial_error.max() / voxel
    volume = signed_volume(TriMesh(vertices, faces))  # > 0 only with outward faces
    assert abs(volume / (4 / 3 * np.pi * RADIUS**3) - 1) < 0.01, volume


def test_extract_mesh_does_not_depend_on_the_chunk_size():
    full = extract_mesh(sphere_sdf, 16, chunk=65536)
    chunked = extract_mesh(sphere_sdf, 16, chunk=999)
    assert np.array_equal(full[0], chunked[0]) and np.array_equal(full[1], chunked[1])


def test_extract_mesh_rejects_an_sdf_without_surface_and_bad_outputs():
    with pytest.raises(InputError, match="no zero crossing"):
        extract_mesh(lambda p: p.norm(dim=-1) + 0.1, 8)
    with pytest.raises(InputError, match="sdf_fn returned shape"):
        extract_mesh(lambda p: p, 8)
    with pytest.raises(ConfigError, match="resolution >= 2"):
        extract_mesh(sphere_sdf, 1)


def test_instance_meshes_land_where_obj2world_times_scale_mat_puts_them(tmp_path, small_sphere):
    vertices, faces = small_sphere
    rotations = random_rotations(3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    obj2world = np.tile(np.eye(4), (3, 1, 1))
    obj2world[:, :3, :3] = rotations.numpy()
    obj2world[:, :3, 3] = [[1.0, 2.0, 3.0], [-4.0, 0.5, 0.0], [0.0, 0.0, -7.0]]
    scale, centre = 2.5, np.array([0.3, -0.2, 0.1])
    scale_mat = np.diag([scale, scale, scale, 1.0])
    scale_mat[:3, 3] = centre
    meshes = instance_meshes(vertices, faces, obj2world, scale_mat)
    for pose, mesh in zip(obj2world, meshes, strict=True):
        world_centre = pose[:3, :3] @ centre + pose[:3, 3]  # image of the canonical origin
        radii = np.linalg.norm(mesh.vertices - world_centre, axis=1)
        assert_close(radii, scale * np.linalg.norm(vertices, axis=1), atol=1e-12, what="radius")
        expected = (vertices * scale + centre) @ pose[:3, :3].T + pose[:3, 3]
        assert_close(mesh.vertices, expected, atol=1e-12, what="world vertices")
        assert np.array_equal(mesh.faces, faces)

    paths = write_meshes(tmp_path, vertices, faces, obj2world, scale_mat)
    names = [p.name for p in paths]
    assert names == ["mesh_canonical.ply"] + [f"mesh_instance_{i:02d}.ply" for i in range(3)]
    assert_close(read_ply(paths[2]).vertices, meshes[1].vertices, atol=1e-5, what="PLY")
    with pytest.raises(OutputExistsError):
        write_meshes(tmp_path, vertices, faces, obj2world, scale_mat)
    mirrored = obj2world.copy()
    mirrored[1, :3, 0] *= -1
    with pytest.raises(InputError, match=r"obj2world\[1\]"):
        instance_meshes(vertices, faces, mirrored, scale_mat)


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample an (H, W, C) image at OBJ UVs (v up, u = 0 / 1 on the outer texel edges), as
    Blender and OpenGL do."""
    height, width = image.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = (1.0 - uv[:, 1]) * height - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_textured_obj_loads_in_trimesh_with_the_baked_colours(tmp_path, small_sphere):
    vertices, faces = small_sphere
    files = textured_mesh(vertices, faces, albedo_fn, roughness_fn, tmp_path, texture_size=512)
    loaded = trimesh.load(files.obj, process=False)
    material = loaded.visual.material
    assert material.image is not None and material.image.size == (512, 512)
    assert material.kwargs["map_pr"] == [files.roughness.name]
    assert len(loaded.faces) == len(faces)

    corners = loaded.vertices[loaded.faces]  # (F, 3, 3)
    uv_corners = loaded.visual.uv[loaded.faces]  # (F, 3, 2)
    # the centroid's UV is the mean of the corner UVs (the atlas map is affine per face);
    # measured: at most 0.49/255 off at centroids, 0.67/255 at corners (8-bit rounding)
    centroids, centroid_uv = corners.mean(1), uv_corners.mean(1)
    expected = albedo_fn(torch.from_numpy(centroids)).numpy() ** (1 / 2.2)
    texture = np.asarray(material.image.convert("RGB"), dtype=np.float64) / 255.0
    assert_close(bilinear(texture, centroid_uv), expected, atol=1 / 255, what="albedo")

    # corners too: filtering there must not reach the texels of the cell's other face
    corner_colour = bilinear(texture, uv_corners.reshape(-1, 2))
    expected_corner = albedo_fn(torch.from_numpy(corners.reshape(-1, 3))).numpy()
    assert_close(corner_colour, expected_corner ** (1 / 2.2), atol=1 / 255, what="corners")

    roughness = read_image(files.roughness)[..., :1].astype(np.float64)
    expected_rough = roughness_fn(torch.from_numpy(centroids)).numpy()[:, None]
    assert_close(bilinear(roughness, centroid_uv), expected_rough, atol=1 / 255, what="rough")


def test_textured_mesh_refuses_a_texture_too_small_and_existing_files(tmp_path, small_sphere):
    vertices, faces = small_sphere
    grid, _ = atlas_layout(len(faces), 4096)
    with pytest.raises(ConfigError, match=f"texture_size >= {grid * MIN_CELL}"):
        textured_mesh(vertices, faces, albedo_fn, roughness_fn, tmp_path, texture_size=64)
    textured_mesh(vertices, faces, albedo_fn, roughness_fn, tmp_path, texture_size=256)
    with pytest.raises(OutputExistsError):
        textured_mesh(vertices, faces, albedo_fn, roughness_fn, tmp_path, texture_size=256)
    with pytest.raises(InputError, match="albedo_fn returned shape"):
        textured_mesh(vertices, faces, roughness_fn, roughness_fn, tmp_path / "b", 256)
