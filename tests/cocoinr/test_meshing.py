"""cocoinr.meshing: VolSDF's two-pass, chunked, world-space mesh extraction."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from cocoinr.meshing import cubic_grid, extract_mesh
from geomkit.errors import InputError
from geomkit.mesh import is_watertight, largest_component, signed_volume

CENTRE, RADIUS = (0.1, 0.0, 0.0), 0.5
TINY_CENTRE, TINY_RADIUS = (0.5, 0.4, 0.4), 0.06  # inside the big sphere's box, apart from it
SCALE, SHIFT = 2.5, np.array([1.0, 2.0, 3.0])


def _scale_mat(scale: float = SCALE) -> np.ndarray:
    matrix = np.diag([scale, scale, scale, 1.0])
    matrix[:3, 3] = SHIFT
    return matrix


def _sphere(points: torch.Tensor, centre, radius: float) -> torch.Tensor:
    return torch.linalg.norm(points - torch.tensor(centre), dim=1) - radius


def _two_spheres(points: torch.Tensor) -> torch.Tensor:
    assert points.dtype == torch.float32 and not torch.is_grad_enabled()
    big = _sphere(points, CENTRE, RADIUS)
    return torch.minimum(big, _sphere(points, TINY_CENTRE, TINY_RADIUS))[:, None]


def _world(point) -> np.ndarray:
    return SCALE * np.asarray(point) + SHIFT


def _fine_voxel(resolution: int) -> float:
    # The coarse piece's box: the big sphere's box plus 2 coarse voxels (2 * 2 / 99) a side.
    return (2 * RADIUS + 4 * 2.0 / 99) / (resolution - 1)


def test_world_sphere_keeps_one_component():
    mesh = extract_mesh(_two_spheres, 64, scale_mat=_scale_mat())
    assert len(largest_component(mesh).faces) == len(mesh.faces), "more than one component"
    assert is_watertight(mesh) and signed_volume(mesh) > 0
    radii = np.linalg.norm(mesh.vertices - _world(CENTRE), axis=1)
    voxel = SCALE * _fine_voxel(64)
    assert np.abs(radii - SCALE * RADIUS).max() < voxel, np.abs(radii - SCALE * RADIUS).max()
    outward = (mesh.vertices - _world(CENTRE)) / radii[:, None]
    assert np.einsum("ij,ij->i", outward, mesh.vertex_normals).min() > 0.98

    both = extract_mesh(_two_spheres, 64, scale_mat=_scale_mat(), keep_largest=False)
    tiny = np.linalg.norm(both.vertices - _world(TINY_CENTRE), axis=1) < 2 * SCALE * TINY_RADIUS
    assert tiny.sum() > 20 and len(both.vertices) == len(mesh.vertices) + tiny.sum()


def test_256_grid_streams_bounded_chunks():
    calls = []

    def counted(points):
        calls.append(len(points))
        return _two_spheres(points)

    chunk = 1 << 17
    tracemalloc.start()
    mesh = extract_mesh(counted, 256, scale_mat=_scale_mat(), chunk=chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    fine = 256**3  # the coarse piece's box is a cube here, so the fine grid is 256^3
    assert max(calls) <= chunk
    assert sum(calls) == 100**3 + fine
    assert len(calls) == -(-(100**3) // chunk) + -(-fine // chunk)
    # The float32 volume is 64 MiB; every point at once as float64 numpy would be 384 MiB.
    assert peak < 2.5 * fine * 4, f"peak {peak / 2**20:.0f} MiB"
    radii = np.linalg.norm(mesh.vertices - _world(CENTRE), axis=1)
    assert np.abs(radii - SCALE * RADIUS).max() < SCALE * _fine_voxel(256)


def test_mirroring_scale_mat_keeps_faces_outward():
    mirror = _scale_mat()
    mirror[0, 0] = -SCALE
    mesh = extract_mesh(_two_spheres, 32, scale_mat=mirror, coarse_resolution=None)
    assert signed_volume(mesh) > 0
    centre = mirror[:3, :3] @ np.asarray(CENTRE) + SHIFT
    outward = mesh.vertices - centre
    outward /= np.linalg.norm(outward, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", outward, mesh.vertex_normals).min() > 0.95


def test_cubic_grid_has_equal_steps():
    lo, hi, shape = cubic_grid(np.array([0.0, 0.0, 0.0]), np.array([1.0, 0.25, 0.5]), 41)
    assert shape == (41, 11, 21)
    steps = (hi - lo) / (np.asarray(shape) - 1)
    np.testing.assert_allclose(steps, 0.025, rtol=1e-12)


def test_no_surface_gives_empty_mesh_and_nan_is_an_input_error():
    assert extract_mesh(lambda p: p[:, 0] * 0 + 1.0, 16).is_empty
    with pytest.raises(InputError, match="NaN"):
        extract_mesh(lambda p: p[:, 0] * float("nan"), 16, coarse_resolution=None)
    with pytest.raises(ValueError, match="shape"):
        extract_mesh(lambda p: p, 16)
