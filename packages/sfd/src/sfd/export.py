"""Meshes out of a trained SfD model: the canonical surface, one world-space copy per instance,
and a UV-textured OBJ with baked albedo and roughness for Blender, MeshLab and other tools.

The original's ``--to_mesh`` and ``--to_uv`` raise NotImplementedError; this is new. SfD has
one canonical object (its SDF, negative inside, and its materials, in the canonical unit-sphere
frame) and N instances placed by canonical-to-world transforms ``obj2world_i @ scale_mat``.

UV unwrapping uses a simple per-triangle atlas (the ``xatlas`` package is not a dependency):
triangles are packed in pairs into the square cells of a grid, each mapped to a right
triangle inset from its cell, and every texel of a cell is baked from the nearer triangle at
its clamped barycentric position, which also dilates each triangle to its cell border so that
filtering never mixes in a neighbouring triangle's colours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from geomkit.errors import ConfigError, InputError
from geomkit.io import check_can_write, write_image, write_ply
from geomkit.io.files import atomic_write
from geomkit.mesh import marching_cubes
from geomkit.structures import TriMesh

PointFn = Callable[[torch.Tensor], torch.Tensor]

GAMMA = 2.2
MATERIAL_NAME = "sfd_material"
# Texels between a triangle and its cell border, and between its long side and the cell
# diagonal: bilinear filtering anywhere on a triangle then reads only texels baked from it.
_MARGIN = 1.0
_GAP = 2.0
# Smallest cell side in texels: it leaves each triangle legs of 4 texels.
MIN_CELL = 8


class TexturedMeshFiles(NamedTuple):
    """Paths written by :func:`textured_mesh`."""

    obj: Path
    mtl: Path
    albedo: Path
    roughness: Path


@torch.no_grad()
def extract_mesh(
    sdf_fn: PointFn,
    resolution: int,
    bound: float = 1.0,
    chunk: int = 65536,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the zero level set of an SDF over the cube [-bound, bound]^3.

    The SDF is sampled on a ``resolution``^3 grid whose first and last samples lie on the cube
    faces (spacing ``2 bound / (resolution - 1)``), ``chunk`` points per call, without
    gradients.

    Args:
        sdf_fn: maps (M, 3) float32 points on ``device`` to (M,) or (M, 1) signed distances,
            negative inside (SfD's ``sdf_network.sdf``).
        resolution: samples per axis, >= 2.
        bound: half side of the cube, in canonical units (SfD's object lies in the unit sphere).
        chunk: points per ``sdf_fn`` call, >= 1.
        device: where the points are made.

    Returns:
        vertices (V, 3) float64 in canonical coordinates, faces (F, 3) int64, counter-clockwise
        seen from outside.

    Raises:
        ConfigError: resolution < 2, bound <= 0 or chunk < 1.
        InputError: ``sdf_fn`` returns the wrong shape or non-finite values, or the surface
            does not cross the cube.
    """
    if resolution < 2 or not bound > 0 or chunk < 1:
        raise ConfigError(
            f"extract_mesh needs resolution >= 2, bound > 0 and chunk >= 1, got resolution="
            f"{resolution}, bound={bound}, chunk={chunk}"
        )
    axis = torch.linspace(-bound, bound, resolution, device=device)
    total = resolution**3
    volume = torch.empty(total, dtype=torch.float32)
    for start in range(0, total, chunk):
        index = torch.arange(start, min(start + chunk, total), device=device)
        grid = torch.stack(
            [index // resolution**2, index // resolution % resolution, index % resolution], -1
        )
        volume[start : start + len(index)] = _evaluate(sdf_fn, axis[grid], 1, "sdf_fn")[:, 0]
    mesh = marching_cubes(
        volume.reshape(resolution, resolution, resolution),
        0.0,
        (-bound,) * 3,
        (bound,) * 3,
        inside="below",
    )
    if mesh.is_empty:
        raise InputError(
            f"the SDF has no zero crossing inside [-{bound}, {bound}]^3 (min "
            f"{float(volume.min()):.4g}, max {float(volume.max()):.4g}); check the model or bound"
        )
    return mesh.vertices, mesh.faces


def instance_meshes(
    vertices: np.ndarray, faces: np.ndarray, obj2world: np.ndarray, scale_mat: np.ndarray
) -> list[TriMesh]:
    """World-space copies of the canonical mesh, one per instance: ``v -> obj2world_i scale_mat v``.

    Args:
        vertices: (V, 3) canonical vertices.
        faces: (F, 3) int faces.
        obj2world: (N, 4, 4) object-to-world poses (SfD's ``[R|t]``, without scale_mat), numpy
            or torch.
        scale_mat: (4, 4) SfD's canonical-to-object scale matrix (``object_scale_matrix.json``).

    Returns:
        N TriMesh with float64 world vertices and the same faces.

    Raises:
        InputError: bad shapes, non-finite values, or a transform that mirrors (determinant
            <= 0), which would turn the faces inside out.
    """
    vertices, faces = _check_mesh(vertices, faces)
    obj2world = _as_array(obj2world, "obj2world", (None, 4, 4))
    transforms = obj2world @ _as_array(scale_mat, "scale_mat", (4, 4))
    mirrored = np.flatnonzero(np.linalg.det(transforms[:, :3, :3]) <= 0)
    if len(mirrored):
        raise InputError(
            f"obj2world[{mirrored[0]}] @ scale_mat has determinant <= 0 (a reflection or "
            "collapse); instance poses must be rotations with translation"
        )
    return [
        TriMesh(vertices @ transform[:3, :3].T + transform[:3, 3], faces)
        for transform in transforms
    ]


def write_meshes(
    out_dir: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    obj2world: np.ndarray,
    scale_mat: np.ndarray,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``mesh_canonical.ply`` and ``mesh_instance_{i:02d}.ply`` (world space) as binary PLY.

    Args:
        out_dir: folder, created if needed.
        vertices, faces, obj2world, scale_mat: as in :func:`instance_meshes`.
        overwrite: replace existing files; otherwise OutputExistsError before writing any.

    Returns:
        The paths written, canonical first, then instance 0, 1, ...
    """
    meshes = instance_meshes(vertices, faces, obj2world, scale_mat)
    out_dir = Path(out_dir)
    paths = [out_dir / "mesh_canonical.ply"]
    paths += [out_dir / f"mesh_instance_{i:02d}.ply" for i in range(len(meshes))]
    for path in paths:
        check_can_write(path, overwrite)
    canonical = TriMesh(*_check_mesh(vertices, faces))
    for path, mesh in zip(paths, [canonical, *meshes], strict=True):
        write_ply(path, mesh)
    return paths


@torch.no_grad()
def textured_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    albedo_fn: PointFn,
    roughness_fn: PointFn,
    out_dir: str | os.PathLike,
    texture_size: int = 1024,
    chunk: int = 65536,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
) -> TexturedMeshFiles:
    """Write a UV-mapped OBJ + MTL with baked albedo and roughness textures (PNG).

    Files in ``out_dir``: ``mesh_textured.obj`` (``v``, per-corner ``vt``, ``f v/vt``),
    ``mesh_textured.mtl`` (``map_Kd`` albedo, ``map_Pr`` roughness, ``Pm 0``: SfD's metallic
    is 0), ``texture_albedo.png`` (sRGB: ``clip(albedo, 0, 1) ** (1 / 2.2)``, 8 bit) and
    ``texture_roughness.png`` (grey, linear roughness, 8 bit). UVs follow OBJ's convention
    (origin at the image's bottom-left corner; u = 0 and u = 1 are the outer texel edges).

    Args:
        vertices: (V, 3) canonical vertices.
        faces: (F, 3) int faces.
        albedo_fn: (M, 3) float32 canonical points on ``device`` -> (M, 3) linear albedo.
        roughness_fn: (M, 3) points -> (M,) or (M, 1) roughness in [0, 1].
        out_dir: folder, created if needed.
        texture_size: side of both square textures in texels; each pair of faces gets a
            cell of at least MIN_CELL x MIN_CELL texels.
        chunk: points per material call.
        device: where the points are made.
        overwrite: replace existing files; otherwise OutputExistsError before writing any.

    Returns:
        TexturedMeshFiles with the four paths.

    Raises:
        ConfigError: texture_size too small for the number of faces (the message gives the
            size needed), or chunk < 1.
        InputError: bad mesh, or a material function returning the wrong shape or NaN.
    """
    vertices, faces = _check_mesh(vertices, faces)
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    grid, cell = atlas_layout(len(faces), texture_size)
    out_dir = Path(out_dir)
    files = TexturedMeshFiles(
        out_dir / "mesh_textured.obj",
        out_dir / "mesh_textured.mtl",
        out_dir / "texture_albedo.png",
        out_dir / "texture_roughness.png",
    )
    for path in files:
        check_can_write(path, overwrite)
    albedo, roughness = _bake_textures(
        vertices, faces, (albedo_fn, roughness_fn), (grid, cell, texture_size), chunk, device
    )
    shape = (texture_size, texture_size)
    write_image(files.albedo, np.clip(albedo.reshape(*shape, 3), 0.0, 1.0) ** (1.0 / GAMMA))
    write_image(files.roughness, np.clip(roughness.reshape(shape), 0.0, 1.0))
    _write_mtl(files.mtl, files.albedo.name, files.roughness.name)
    uv = atlas_uv(len(faces), grid, cell, texture_size)
    _write_obj(files.obj, vertices, faces, uv, files.mtl.name)
    return files


def atlas_layout(num_faces: int, texture_size: int) -> tuple[int, int]:
    """(cells per side, cell side in texels) of the per-triangle atlas.

    Raises:
        ConfigError: the cells would be smaller than MIN_CELL texels.
    """
    if num_faces < 1:
        raise InputError("the mesh has no faces to texture")
    grid = math.ceil(math.sqrt(math.ceil(num_faces / 2)))
    cell = texture_size // grid
    if cell < MIN_CELL:
        raise ConfigError(
            f"texture_size {texture_size} is too small for {num_faces} faces: each pair of "
            f"faces needs a {MIN_CELL}x{MIN_CELL}-texel cell; use texture_size >= "
            f"{grid * MIN_CELL} or a coarser mesh"
        )
    return grid, cell


def atlas_uv(num_faces: int, grid: int, cell: int, texture_size: int) -> np.ndarray:
    """(F, 3, 2) float64 UV of each face corner in the atlas (OBJ convention, v up)."""
    corners = np.stack([_cell_corners(half, cell) for half in (0, 1)])  # (2, 3, 2) texels
    face = np.arange(num_faces)
    origin = np.stack([(face // 2) % grid, (face // 2) // grid], -1) * cell  # (F, 2) x, y
    texels = origin[:, None, :] + corners[face % 2]
    return np.stack([texels[..., 0], texture_size - texels[..., 1]], -1) / texture_size


def _cell_corners(half: int, cell: int) -> np.ndarray:
    """(3, 2) texel-space corners (x right, y down, from the cell's corner) of a cell's
    triangle: half 0 at the cell's origin, half 1 at the opposite corner; legs of
    ``cell - 2 margin - gap`` texels along x and y."""
    near, far = _MARGIN, cell - _MARGIN - _GAP
    corners = np.array([[near, near], [far, near], [near, far]])
    return corners if half == 0 else cell - corners


def _bake_textures(
    vertices: np.ndarray,
    faces: np.ndarray,
    functions: tuple[PointFn, PointFn],
    layout: tuple[int, int, int],
    chunk: int,
    device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (T, 3) and roughness (T, 1) float32 of the T texels (row-major from the top-left
    texel; 0 outside the used cells), ``chunk`` texels at a time to bound memory."""
    albedo_fn, roughness_fn = functions
    count = layout[2] ** 2
    albedo = np.zeros((count, 3), dtype=np.float32)
    roughness = np.zeros((count, 1), dtype=np.float32)
    for start in range(0, count, chunk):
        texels = np.arange(start, min(start + chunk, count))
        points, used = _texel_points(texels, vertices, faces, *layout)
        if len(points):
            batch = torch.as_tensor(points, dtype=torch.float32, device=device)
            albedo[texels[used]] = _evaluate(albedo_fn, batch, 3, "albedo_fn").numpy()
            roughness[texels[used]] = _evaluate(roughness_fn, batch, 1, "roughness_fn").numpy()
    return albedo, roughness


def _texel_points(
    texels: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    grid: int,
    cell: int,
    texture_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical points (U, 3) float64 behind the U used texels among ``texels`` (flat
    indices), and the (len(texels),) bool mask of the used ones.

    A texel belongs to the cell's triangle on its side of the cell diagonal and takes the point
    at its barycentric coordinates clamped to that triangle, so the margins repeat the
    triangle's border (dilation).
    """
    y, x = np.divmod(texels, texture_size)
    cell_x, cell_y = np.minimum(x // cell, grid), np.minimum(y // cell, grid)
    local = np.stack([x - cell_x * cell, y - cell_y * cell], -1) + 0.5
    half = (local.sum(-1) >= cell).astype(np.int64)
    face = 2 * (cell_y * grid + cell_x) + half
    used = (cell_x < grid) & (cell_y < grid) & (face < len(faces))
    local = np.where(half[:, None] == 1, cell - local, local)[used]  # half 1 mirrors half 0
    weights_12 = np.clip((local - _MARGIN) / (cell - 2 * _MARGIN - _GAP), 0.0, None)
    total = weights_12.sum(-1, keepdims=True)
    weights_12 = np.where(total > 1.0, weights_12 / np.maximum(total, 1e-12), weights_12)
    weights = np.concatenate([1.0 - weights_12.sum(-1, keepdims=True), weights_12], -1)
    return np.einsum("tk,tkd->td", weights, vertices[faces[face[used]]]), used


def _evaluate(fn: PointFn, points: torch.Tensor, width: int, name: str) -> torch.Tensor:
    """``fn(points)`` as a checked (M, width) float32 CPU tensor."""
    values = fn(points)
    if not isinstance(values, torch.Tensor):
        raise InputError(f"{name} must return a torch tensor, got {type(values).__name__}")
    if width == 1 and values.dim() == 1:
        values = values[:, None]
    if values.shape != (len(points), width):
        raise InputError(
            f"{name} returned shape {tuple(values.shape)} for {len(points)} points; expected "
            f"({len(points)}, {width})" + (f" or ({len(points)},)" if width == 1 else "")
        )
    values = values.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(values).all()):
        raise InputError(f"{name} returned NaN or infinite values")
    return values


def _write_mtl(path: Path, albedo_name: str, roughness_name: str) -> None:
    lines = [
        "# SfD material: baked albedo (sRGB) and GGX roughness (linear), dielectric",
        f"newmtl {MATERIAL_NAME}",
        "Kd 1.0 1.0 1.0",
        "Pm 0.0",
        f"map_Kd {albedo_name}",
        f"map_Pr {roughness_name}",
    ]
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _write_obj(
    path: Path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, mtl_name: str
) -> None:
    """OBJ with one ``vt`` per face corner (corner k of face f is vt 3 f + k + 1)."""
    corner = np.arange(3 * len(faces)).reshape(-1, 3) + 1
    face_rows = np.stack([faces + 1, corner], -1).reshape(len(faces), 6)
    with atomic_write(path, "w") as handle:
        handle.write(f"# SfD canonical mesh with baked materials\nmtllib {mtl_name}\n")
        np.savetxt(handle, vertices, fmt="v %.9g %.9g %.9g")
        np.savetxt(handle, uv.reshape(-1, 2), fmt="vt %.9g %.9g")
        handle.write(f"usemtl {MATERIAL_NAME}\n")
        np.savetxt(handle, face_rows, fmt="f %d/%d %d/%d %d/%d")


def _check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """(V, 3) finite float64 vertices and (F, 3) int64 faces with indices in range."""
    vertices = _as_array(vertices, "vertices", (None, 3))
    faces = np.asarray(faces.detach().cpu() if isinstance(faces, torch.Tensor) else faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise InputError(f"faces must be (F, 3) integers, got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(
            f"faces index vertices {faces.min()}..{faces.max()} but there are {len(vertices)}"
        )
    return vertices, faces.astype(np.int64)


def _as_array(value, name: str, shape: tuple) -> np.ndarray:
    """Finite float64 numpy array of ``shape`` (None = any size); InputError otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    fits = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape, shape, strict=True)
    )
    if not fits:
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} must have shape {wanted}, got {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"{name} contains NaN or infinite values")
    return array
