"""Triangle rasterization: a z-buffer of one mesh seen in N views (PyTorch3D-like fragments).

Compiled kernels (C++ CPU, CUDA) run where available; the pure-PyTorch reference in
``geomkit.ops._reference.rasterize`` is the definition and the fallback. The exact rules
(coverage, culling, tie breaking) are written out in ``csrc/rasterize/rasterize.h``; in short:

* pixel (row i, col j) is sampled at its centre (j + 0.5, i + 0.5), pixel coordinates with the
  top-left pixel's centre at (0.5, 0.5) (geomkit.cameras' convention);
* a face is culled when any vertex has view z <= znear or a non-finite coordinate; zero-area
  faces cover nothing; there is no back-face culling;
* coverage is inclusive on edges and computed so that a centre exactly on an edge shared by two
  faces is covered by both (no cracks);
* the smallest depth wins (compared as float32), ties go to the lowest face index, identically
  on CPU and CUDA.

Not differentiable: shading on top (geomkit.render) is differentiable with respect to vertex
attributes through the barycentrics.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import NamedTuple

import numpy as np
import torch

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.ext import geomkit_extension
from geomkit.ops._checks import is_int, shape_of
from geomkit.ops._reference import rasterize as _reference

_MAX_FACES = 1 << 32


class Fragments(NamedTuple):
    """Result of :func:`rasterize_triangles` / :func:`rasterize_mesh`.

    face_idx: (N, H, W) int64 index of the nearest face at each pixel centre, -1 where none.
    bary: (N, H, W, 3) perspective-correct barycentric coordinates of that face's three
        vertices (they sum to 1), 0 where no face.
    depth: (N, H, W) view-space z of the surface point, -1 where no face (PyTorch3D's zbuf).
    """

    face_idx: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor


def rasterize_triangles(
    verts_screen: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int],
    znear: float = 1e-6,
) -> Fragments:
    """Rasterize one triangle mesh given in screen space for N views.

    Args:
        verts_screen: (N, V, 3) float: per view, each vertex's (u, v) pixel coordinates
            (u right, v down, top-left pixel centre at (0.5, 0.5)) and its view-space depth z.
        faces: (F, 3) integer vertex indices in [0, V), shared by the views; F < 2^32.
        image_size: (H, W) positive ints (a sequence, or a tensor / array of 2 integers).
        znear: >= 0; faces with a vertex at z <= znear are culled.

    Returns:
        Fragments(face_idx, bary, depth); bary and depth in the dtype of verts_screen. The
        kernels compute in float64 from the given coordinates (half and bfloat16 inputs go
        through float32).
    """
    _check_verts_screen(verts_screen)
    faces = _check_faces(faces, verts_screen.shape[1], verts_screen.device)
    height, width = _check_image_size(image_size)
    znear = _check_znear(znear)
    compute_dtype = (
        verts_screen.dtype
        if verts_screen.dtype in (torch.float32, torch.float64)
        else torch.float32
    )
    verts = verts_screen.detach().to(compute_dtype).contiguous()
    if geomkit_extension().use_kernel("rasterize_triangles", verts.device):
        face_idx, bary, depth = torch.ops.geomkit.rasterize_triangles(
            verts, faces, height, width, znear
        )
    else:
        face_idx, bary, depth = _reference.rasterize_triangles(verts, faces, height, width, znear)
    return Fragments(face_idx, bary.to(verts_screen.dtype), depth.to(verts_screen.dtype))


def rasterize_mesh(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    cameras: Cameras,
    image_size: tuple[int, int] | None = None,
    znear: float = 1e-6,
) -> Fragments:
    """Rasterize a world-space triangle mesh in every camera of ``cameras``.

    Vertices are projected with ``cameras.project`` WITHOUT lens distortion: straight edges stay
    straight only for pinhole cameras, so distortion coefficients are ignored here (undistort
    the images, or render at the undistorted intrinsics).

    Args:
        vertices: (V, 3) float world coordinates (cast to the cameras' dtype and device).
        faces: (F, 3) integer vertex indices.
        cameras: N cameras (geomkit.cameras.Cameras).
        image_size: (H, W); None for the cameras' common image size.
        znear: >= 0; faces with a vertex at view z <= znear are culled.

    Returns:
        Fragments with N views, dtype of the cameras.

    Raises:
        InputError: vertices with NaN or infinite coordinates.
        ValueError: wrong shapes or types, or cameras of different image sizes without
            ``image_size``.
    """
    if not isinstance(cameras, Cameras):
        raise ValueError(f"rasterize_mesh: cameras must be geomkit Cameras, got {type(cameras)}")
    vertices = torch.as_tensor(vertices).to(device=cameras.device, dtype=cameras.dtype)
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError(f"rasterize_mesh: vertices must be (V, 3), got {tuple(vertices.shape)}")
    if not bool(torch.isfinite(vertices).all()):
        raise InputError("rasterize_mesh: vertices has NaN or infinite coordinates; fix the mesh")
    if image_size is None:
        image_size = _common_image_size(cameras)
    if cameras.distortion is not None:
        cameras = dataclasses.replace(cameras, distortion=None)
    uv, depth = cameras.project(vertices.detach())
    verts_screen = torch.cat((uv, depth[..., None]), dim=-1)
    faces = torch.as_tensor(faces, device=cameras.device)
    return rasterize_triangles(verts_screen, faces, image_size, znear)


def _common_image_size(cameras: Cameras) -> tuple[int, int]:
    sizes = cameras.image_size
    if len(cameras) == 0 or bool((sizes != sizes[0]).any()):
        raise ValueError(
            "rasterize_mesh: the cameras have different image sizes (or there are none); "
            "pass image_size=(H, W)"
        )
    height, width = sizes[0].tolist()
    return height, width


def _check_verts_screen(verts_screen: torch.Tensor) -> None:
    if (
        not isinstance(verts_screen, torch.Tensor)
        or verts_screen.dim() != 3
        or verts_screen.shape[2] != 3
    ):
        raise ValueError(
            "rasterize_triangles: verts_screen must be a (N, V, 3) tensor, got "
            f"{shape_of(verts_screen)}"
        )
    if not verts_screen.is_floating_point():
        raise ValueError(
            f"rasterize_triangles: verts_screen must be floating point, got {verts_screen.dtype}"
        )


def _check_faces(faces: torch.Tensor, n_vertices: int, device: torch.device) -> torch.Tensor:
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(
            f"rasterize_triangles: faces must be a (F, 3) tensor, got {shape_of(faces)}"
        )
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool:
        raise ValueError(f"rasterize_triangles: faces must hold integers, got {faces.dtype}")
    if faces.device != device:
        raise ValueError(
            f"rasterize_triangles: faces is on {faces.device}, verts_screen on {device}"
        )
    if faces.shape[0] >= _MAX_FACES:
        raise ValueError(f"rasterize_triangles: at most 2^32 - 1 faces, got {faces.shape[0]}")
    if faces.shape[0] and (int(faces.min()) < 0 or int(faces.max()) >= n_vertices):
        raise ValueError(
            f"rasterize_triangles: faces must index the {n_vertices} vertices, i.e. lie in "
            f"[0, {n_vertices - 1}]; got values in [{int(faces.min())}, {int(faces.max())}]"
        )
    return faces.to(torch.int64).contiguous()


def _check_image_size(image_size) -> tuple[int, int]:
    if isinstance(image_size, (torch.Tensor, np.ndarray)):
        image_size = image_size.tolist()
    values = tuple(image_size) if isinstance(image_size, (tuple, list, torch.Size)) else ()
    if len(values) != 2 or not all(is_int(v) and v > 0 for v in values):
        raise ValueError(
            f"rasterize_triangles: image_size must be (H, W) positive ints, got {image_size!r}"
        )
    return int(values[0]), int(values[1])


def _check_znear(znear: float) -> float:
    if isinstance(znear, bool) or not isinstance(znear, numbers.Real) or not znear >= 0:
        raise ValueError(f"rasterize_triangles: znear must be a number >= 0, got {znear!r}")
    if not np.isfinite(znear):
        raise ValueError(f"rasterize_triangles: znear must be finite, got {znear!r}")
    return float(znear)
