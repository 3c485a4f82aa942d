"""Reference of rasterize_triangles: the definition in csrc/rasterize/rasterize.h, operation
for operation in float64 PyTorch, so that the kernels match it exactly (same face indices, same
barycentrics and depths to the last bit on the CPU).

Vectorised over (pixels of a tile) x (faces whose bounding box meets the tile), tile by tile:
fine for tests and small images, far slower than the kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

_TILE = 16
_MAX_PAIRS = 1 << 20
# Keys clamp depths to the smallest normal float32 (see rasterize.h).
_MIN_KEY_DEPTH = torch.finfo(torch.float32).tiny
_EMPTY_KEY = torch.iinfo(torch.int64).max


class _Faces(NamedTuple):
    """Per-face setup, float64. Edge k (opposite vertex k) in column k of the (F, 3) fields."""

    index: torch.Tensor  # (F,) int64 face indices into the mesh
    au: torch.Tensor  # (F, 3) canonical start of each edge
    av: torch.Tensor
    du: torch.Tensor  # (F, 3) end - start
    dv: torch.Tensor
    sign: torch.Tensor  # (F, 3) +-1: endpoint swap times face orientation
    inv_z: torch.Tensor  # (F, 3) 1 / z of each vertex
    umin: torch.Tensor  # (F,) bounding box
    umax: torch.Tensor
    vmin: torch.Tensor
    vmax: torch.Tensor

    def take(self, rows: torch.Tensor) -> _Faces:
        return _Faces(*(field[rows] for field in self))


def rasterize_triangles(
    verts_screen: torch.Tensor, faces: torch.Tensor, height: int, width: int, znear: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Z-buffer rasterization of one mesh in N views (see geomkit.ops.rasterize).

    Args:
        verts_screen: (N, V, 3) float32 or float64 (u, v, view z); pixel centres at j + 0.5.
        faces: (F, 3) int64 indices in [0, V).
        height, width: image size.
        znear: faces with a vertex at z <= znear are culled.

    Returns:
        face_idx (N, H, W) int64 (-1: none), bary (N, H, W, 3) perspective-correct (0: none),
        depth (N, H, W) view z (-1: none); bary and depth in the dtype of verts_screen.
    """
    N = verts_screen.shape[0]
    device, dtype = verts_screen.device, verts_screen.dtype
    face_idx = torch.full((N, height, width), -1, dtype=torch.int64, device=device)
    bary = torch.zeros((N, height, width, 3), dtype=dtype, device=device)
    depth = torch.full((N, height, width), -1.0, dtype=dtype, device=device)
    for n in range(N):
        setup = _setup_faces(verts_screen[n].to(torch.float64), faces, znear)
        for rows, cols in _tiles(height, width):
            tile_idx, tile_bary, tile_depth = _rasterize_tile(setup, rows, cols)
            face_idx[n, rows, cols] = tile_idx
            bary[n, rows, cols] = tile_bary.to(dtype)
            depth[n, rows, cols] = tile_depth.to(dtype)
    return face_idx, bary, depth


def _setup_faces(verts: torch.Tensor, faces: torch.Tensor, znear: float) -> _Faces:
    """The faces that are not culled, set up as rasterize.h's setup_face does."""
    corners = verts[faces]  # (F, 3 vertices, 3 coordinates)
    u, v, z = corners.unbind(-1)
    area = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (v[:, 1] - v[:, 0]) * (u[:, 2] - u[:, 0])
    kept = (
        torch.isfinite(corners).all(dim=(1, 2))
        & (z > znear).all(dim=1)
        & (area != 0)
        & torch.isfinite(area)
    )
    index = torch.nonzero(kept).flatten()
    u, v, z, area = u[index], v[index], z[index], area[index]
    orientation = torch.where(area > 0, 1.0, -1.0).to(u.dtype)
    start, end = [1, 2, 0], [2, 0, 1]  # edge k runs from vertex k + 1 to vertex k + 2
    u0, v0, u1, v1 = u[:, start], v[:, start], u[:, end], v[:, end]
    swap = (u0 > u1) | ((u0 == u1) & (v0 > v1))
    au, av = torch.where(swap, u1, u0), torch.where(swap, v1, v0)
    bu, bv = torch.where(swap, u0, u1), torch.where(swap, v0, v1)
    sign = torch.where(swap, -orientation[:, None], orientation[:, None])
    return _Faces(
        index=index,
        au=au,
        av=av,
        du=bu - au,
        dv=bv - av,
        sign=sign,
        inv_z=1.0 / z,
        umin=u.amin(1),
        umax=u.amax(1),
        vmin=v.amin(1),
        vmax=v.amax(1),
    )


def _tiles(height: int, width: int):
    for top in range(0, height, _TILE):
        for left in range(0, width, _TILE):
            yield slice(top, min(top + _TILE, height)), slice(left, min(left + _TILE, width))


def _rasterize_tile(
    setup: _Faces, rows: slice, cols: slice
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    device = setup.au.device
    pv = torch.arange(rows.start, rows.stop, dtype=torch.float64, device=device) + 0.5
    pu = torch.arange(cols.start, cols.stop, dtype=torch.float64, device=device) + 0.5
    pv, pu = (grid.reshape(-1) for grid in torch.meshgrid(pv, pu, indexing="ij"))
    overlaps = (
        (setup.umax >= pu[0])
        & (setup.umin <= pu[-1])
        & (setup.vmax >= pv[0])
        & (setup.vmin <= pv[-1])
    )
    candidates = setup.take(torch.nonzero(overlaps).flatten())
    best = torch.full(pu.shape, _EMPTY_KEY, dtype=torch.int64, device=device)
    chunk = max(1, _MAX_PAIRS // len(pu))
    for start in range(0, len(candidates.index), chunk):
        faces = candidates.take(torch.arange(start, min(start + chunk, len(candidates.index))))
        covered, _, _, depth = _sample(_broadcast(faces, 0), pu[:, None], pv[:, None])
        key = _depth_key(depth, faces.index[None, :])
        key = torch.where(covered, key, _EMPTY_KEY)
        best = torch.minimum(best, key.amin(1))
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    return _resolve(setup, best, pu, pv, shape)


def _resolve(
    setup: _Faces, best: torch.Tensor, pu: torch.Tensor, pv: torch.Tensor, shape: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Recompute the winning face's barycentrics and depth at each pixel (pass 2)."""
    hit = best != _EMPTY_KEY
    face_idx = torch.where(hit, best & 0xFFFFFFFF, -1)
    bary = torch.zeros(len(pu), 3, dtype=torch.float64, device=pu.device)
    depth = torch.full((len(pu),), -1.0, dtype=torch.float64, device=pu.device)
    if bool(hit.any()):
        rows = torch.searchsorted(setup.index, face_idx[hit])
        _, w, w_sum, hit_depth = _sample(setup.take(rows), pu[hit], pv[hit])
        bary[hit] = w / w_sum[:, None]
        depth[hit] = hit_depth
    return face_idx.reshape(shape), bary.reshape(*shape, 3), depth.reshape(shape)


def _broadcast(faces: _Faces, pixel_dim: int) -> _Faces:
    """Insert a pixel dimension so that per-face fields broadcast against (P, 1) pixels."""
    return _Faces(*(field.unsqueeze(pixel_dim) for field in faces))


def _sample(
    faces: _Faces, pu: torch.Tensor, pv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """rasterize.h's sample_face, elementwise over broadcast faces and pixel centres.

    Returns covered (bool), w (..., 3), w_sum and depth (meaningful where covered).
    """
    inside_box = (pu >= faces.umin) & (pu <= faces.umax) & (pv >= faces.vmin) & (pv <= faces.vmax)
    pu, pv = pu[..., None], pv[..., None]
    e = faces.sign * (faces.du * (pv - faces.av) - faces.dv * (pu - faces.au))
    w = e * faces.inv_z
    w_sum = (w[..., 0] + w[..., 1]) + w[..., 2]
    depth = ((e[..., 0] + e[..., 1]) + e[..., 2]) / w_sum
    covered = inside_box & (e >= 0).all(-1) & (w_sum > 0)
    return covered, w, w_sum, depth


def _depth_key(depth: torch.Tensor, face_index: torch.Tensor) -> torch.Tensor:
    """(float32 bits of the clamped depth) << 32 | face index, as rasterize.h's depth_key."""
    bits = depth.clamp_min(_MIN_KEY_DEPTH).to(torch.float32).view(torch.int32).to(torch.int64)
    return (bits << 32) | face_index
