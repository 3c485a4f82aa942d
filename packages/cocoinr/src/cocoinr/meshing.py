"""The surface of a trained SDF as a world-space mesh: VolSDF's evaluation meshing, in chunks.

VolSDF (``evaluation/eval.py``, ``utils/plots.py``) meshes at 512^3 in two passes: a coarse
100^3 marching cubes whose largest piece says where the surface is, then a fine grid over that
region; the mesh goes to world coordinates by ``scale_mat`` and keeps its largest connected
piece. CoCo-INR's own eval only meshes at 256^3 in the normalised frame. Here:

- the fine box is the axis-aligned box of the coarse piece, padded by ``pad_voxels`` coarse
  voxels and clipped to the search box (VolSDF aligns its box to the piece's principal axes and,
  for DTU, starts from a per-scan ``bbs.npz`` box);
- the fine voxels are cubes, ``resolution`` samples along the box's longest side (VolSDF puts
  ``resolution`` along the shortest side, so its grid can exceed resolution^3 samples);
- the SDF is evaluated under ``torch.no_grad`` on at most ``chunk`` points at a time, generated
  chunk by chunk: peak memory is the float32 volume (512 MiB at 512^3) plus one chunk
  (VolSDF issue #3: its eval ran out of 128 GB at high resolution).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from geomkit.log import progress
from geomkit.mesh import largest_component, marching_cubes
from geomkit.mesh.isosurface import as_box
from geomkit.structures import TriMesh

SDFFunction = Callable[[torch.Tensor], torch.Tensor]  # (N, 3) float32 -> (N,) or (N, 1)
VOLSDF_COARSE_RESOLUTION = 100


def extract_mesh(
    sdf_fn: SDFFunction,
    resolution: int = 512,
    bbox_min: Sequence[float] = (-1.0, -1.0, -1.0),
    bbox_max: Sequence[float] = (1.0, 1.0, 1.0),
    scale_mat: np.ndarray | None = None,
    chunk: int = 131_072,
    keep_largest: bool = True,
    coarse_resolution: int | None = VOLSDF_COARSE_RESOLUTION,
    pad_voxels: float = 2.0,
    level: float = 0.0,
    device: str | torch.device = "cpu",
) -> TriMesh:
    """Mesh the ``level`` set of an SDF (negative inside), in world coordinates.

    Args:
        sdf_fn: maps (N, 3) float32 points on ``device`` (normalised frame) to (N,) or (N, 1)
            signed distances; called under ``torch.no_grad`` with N <= ``chunk``.
        resolution: samples along the longest side of the fine box (cubic voxels).
        bbox_min, bbox_max: (3,) the search box in the normalised frame.
        scale_mat: (4, 4) normalised -> world (``x_w = S[:3, :3] @ x + S[:3, 3]``, IDR/VolSDF's
            ``scale_mat``); None keeps the normalised frame.
        chunk: most points per ``sdf_fn`` call.
        keep_largest: keep only the connected piece of largest world area (VolSDF), and
            bound the fine box by the coarse mesh's largest piece rather than all of it.
        coarse_resolution: samples per axis of the coarse pass over the search box; None
            meshes the search box directly at ``resolution``.
        pad_voxels: padding of the coarse piece's box, in coarse voxels.
        level: the iso value.
        device: where the query points are made.

    Returns:
        TriMesh with float64 vertices (world units when ``scale_mat`` is given), outward
        counter-clockwise faces and unit outward vertex normals. Empty (0 vertices) when the
        SDF has no ``level`` crossing in the box.

    Raises:
        InputError: ``sdf_fn`` returned NaN or inf (from marching cubes).
        ValueError: a wrong output shape from ``sdf_fn``, or bad sizes.
    """
    if resolution < 2 or chunk < 1:
        raise ValueError(f"need resolution >= 2 and chunk >= 1, got {resolution}, {chunk}")
    lo, hi = as_box(bbox_min, bbox_max)
    if coarse_resolution is not None:
        lo, hi = _surface_box(
            sdf_fn, lo, hi, coarse_resolution, pad_voxels, level, chunk, device, keep_largest
        )
    lo, hi, shape = cubic_grid(lo, hi, resolution)
    volume = sample_grid(sdf_fn, lo, hi, shape, chunk, device)
    mesh = _mesh_volume(volume, lo, hi, level)
    del volume
    mesh = to_world(mesh, scale_mat)
    return largest_component(mesh) if keep_largest and not mesh.is_empty else mesh


def cubic_grid(
    bbox_min: np.ndarray, bbox_max: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """A grid of cubic voxels over a box: ``resolution`` samples along its longest side.

    Returns (lo, hi, shape): the shorter sides are extended (about the box centre) to a whole
    number of voxels, so ``(hi - lo) / (shape - 1)`` is the same on every axis.
    """
    extent = bbox_max - bbox_min
    step = extent.max() / (resolution - 1)
    counts = np.maximum(np.ceil(extent / step - 1e-9).astype(np.int64), 1) + 1
    centre = (bbox_min + bbox_max) / 2
    half = (counts - 1) * step / 2
    return centre - half, centre + half, tuple(int(c) for c in counts)


@torch.no_grad()
def sample_grid(
    sdf_fn: SDFFunction,
    bbox_min: np.ndarray,
    bbox_max: np.ndarray,
    shape: tuple[int, int, int],
    chunk: int,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """SDF samples (X, Y, Z) float32 at ``bbox_min + (i, j, k) * step`` (marching_cubes' layout).

    The points are made ``chunk`` at a time in the volume's memory order (runs of x-slabs), so
    neither all points nor all of a device's outputs are ever held at once.
    """
    volume = np.empty(shape, dtype=np.float32)
    flat = volume.reshape(-1)
    lo = torch.as_tensor(bbox_min, dtype=torch.float32, device=device)
    step = torch.as_tensor(
        (np.asarray(bbox_max) - bbox_min) / (np.asarray(shape) - 1.0),
        dtype=torch.float32,
        device=device,
    )
    starts = range(0, flat.size, chunk)
    for start in progress(starts, desc="SDF grid", leave=False, disable=len(starts) < 16):
        stop = min(start + chunk, flat.size)
        index = torch.arange(start, stop, device=device)
        ijk = torch.stack(
            [index // (shape[1] * shape[2]), (index // shape[2]) % shape[1], index % shape[2]], 1
        )
        flat[start:stop] = _as_values(sdf_fn(lo + ijk.to(torch.float32) * step), stop - start)
    return volume


def to_world(mesh: TriMesh, scale_mat: np.ndarray | None) -> TriMesh:
    """Apply ``x_w = S[:3, :3] @ x + S[:3, 3]`` to the vertices; normals by the inverse
    transpose (re-normalised), faces flipped when the map mirrors, so they stay outward."""
    if scale_mat is None or mesh.is_empty:
        return mesh
    matrix = np.asarray(scale_mat, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise ValueError(f"scale_mat must be (4, 4), got {matrix.shape}")
    linear, shift = matrix[:3, :3], matrix[:3, 3]
    normals = None
    if mesh.vertex_normals is not None:
        normals = mesh.vertex_normals @ np.linalg.inv(linear)
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)
    faces = mesh.faces[:, ::-1].copy() if np.linalg.det(linear) < 0 else mesh.faces
    return TriMesh(mesh.vertices @ linear.T + shift, faces, vertex_normals=normals)


def _surface_box(
    sdf_fn, lo, hi, coarse_resolution, pad_voxels, level, chunk, device, keep_largest
) -> tuple[np.ndarray, np.ndarray]:
    """The coarse pass: the padded box of the coarse mesh (its largest piece), within lo..hi.

    Falls back to lo..hi when the coarse grid finds no surface (one thinner than a coarse
    voxel can still show at the fine resolution).
    """
    shape = (coarse_resolution,) * 3
    coarse = _mesh_volume(sample_grid(sdf_fn, lo, hi, shape, chunk, device), lo, hi, level)
    if coarse.is_empty:
        return lo, hi
    if keep_largest:
        coarse = largest_component(coarse)
    pad = pad_voxels * (hi - lo) / (coarse_resolution - 1)
    box_lo = np.maximum(coarse.vertices.min(0) - pad, lo)
    box_hi = np.minimum(coarse.vertices.max(0) + pad, hi)
    return box_lo, box_hi


def _mesh_volume(volume: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> TriMesh:
    # Negate in place: "value < level inside" becomes "-value > -level", and marching_cubes
    # skips the copy it would make for inside="below" (512 MiB at 512^3).
    np.negative(volume, out=volume)
    return marching_cubes(volume, -level, lo, hi, inside="above")


def _as_values(values: torch.Tensor, count: int) -> np.ndarray:
    if not isinstance(values, torch.Tensor):
        raise ValueError(f"sdf_fn must return a torch.Tensor, got {type(values).__name__}")
    if values.shape not in ((count,), (count, 1)):
        raise ValueError(f"sdf_fn returned shape {tuple(values.shape)} for {count} points")
    return values.detach().reshape(-1).to("cpu", torch.float32).numpy()
