"""Shading on top of the rasterizer (geomkit.ops.rasterize): attribute interpolation, masks,
world points, normals, Lambertian shading, and :func:`render_mesh`, which renders a TriMesh into
RGB, depth, mask and normal images from exact cameras.

Everything is differentiable with respect to vertex attributes (colours, positions, normals)
through the perspective-correct barycentrics; which face covers which pixel is not.

Conventions: images are (N, H, W, ...) with pixel (row i, col j) sampled at its centre; depth is
view-space z (PyTorch3D view space, +Z forward); normals are unit vectors in world space, or in
the camera's OpenCV frame (x right, y down, z forward) on request; light directions point from
the surface towards the light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.ops.rasterize import Fragments, rasterize_mesh
from geomkit.structures import TriMesh

DEFAULT_ALBEDO = 0.8
FRAMES = ("world", "camera_opencv")
_OPENCV_FROM_VIEW = (-1.0, -1.0, 1.0)  # view space is +X left, +Y up, +Z forward


class RenderResult(NamedTuple):
    """Images rendered by :func:`render_mesh`, in the cameras' dtype and device.

    rgb: (N, H, W, 3) shaded colour, ``background`` where no surface.
    depth: (N, H, W) view-space z of the surface, 0 where none.
    mask: (N, H, W) bool, True where a face covers the pixel centre.
    normals: (N, H, W, 3) unit world-space normals, 0 where no surface.
    face_idx: (N, H, W) int64 index of the visible face, -1 where none.
    """

    rgb: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    normals: torch.Tensor
    face_idx: torch.Tensor


def mask(fragments: Fragments) -> torch.Tensor:
    """(N, H, W) bool: True where a face covers the pixel centre."""
    return fragments.face_idx >= 0


def interpolate(
    fragments: Fragments, faces: torch.Tensor, vertex_attributes: torch.Tensor
) -> torch.Tensor:
    """Per-pixel attributes: the barycentric blend of the visible face's vertex attributes.

    Args:
        fragments: from geomkit.ops.rasterize (rasterize_mesh or rasterize_triangles).
        faces: (F, 3) int64 vertex indices (the rasterized faces).
        vertex_attributes: (V, C) float shared by the views, or (N, V, C) per view.

    Returns:
        (N, H, W, C) in the dtype of vertex_attributes, 0 where no face; differentiable with
        respect to vertex_attributes.
    """
    face_idx = fragments.face_idx
    n_views = face_idx.shape[0]
    attributes = vertex_attributes
    if attributes.dim() == 2:
        attributes = attributes.expand(n_views, *attributes.shape)
    if attributes.dim() != 3 or attributes.shape[0] != n_views:
        raise InputError(
            f"vertex_attributes must be (V, C) or ({n_views}, V, C), got "
            f"{tuple(vertex_attributes.shape)}"
        )
    out = attributes.new_zeros(*face_idx.shape, attributes.shape[2])
    if faces.shape[0] == 0:
        return out
    corners = faces.to(face_idx.device)[face_idx.clamp_min(0)]  # (N, H, W, 3)
    views = torch.arange(n_views, device=face_idx.device)[:, None, None]
    bary = fragments.bary.to(attributes.dtype)
    for k in range(3):
        out = out + bary[..., k, None] * attributes[views, corners[..., k]]
    return torch.where(mask(fragments)[..., None], out, 0.0)


def world_points(fragments: Fragments, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) world-space surface points seen at the pixel centres, 0 where none.

    vertices: (V, 3) world coordinates; with perspective-correct barycentrics the point lies on
    the visible face, on the ray through the pixel centre.
    """
    return interpolate(fragments, faces, vertices)


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) unit face normals by the right-hand rule (counter-clockwise = outward); 0 for
    zero-area faces."""
    return F.normalize(_area_vectors(vertices, faces), dim=-1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(V, 3) unit vertex normals: the area-weighted mean of the adjacent faces' normals."""
    area_vectors = _area_vectors(vertices, faces)
    summed = vertices.new_zeros(vertices.shape)
    for k in range(3):
        summed = summed.index_add(0, faces[:, k], area_vectors)
    return F.normalize(summed, dim=-1)


def _area_vectors(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) face normals scaled by twice the face area."""
    corners = vertices[faces]
    return torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def surface_normals(
    fragments: Fragments,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    smooth: bool = False,
    normals_per_vertex: torch.Tensor | None = None,
    cameras: Cameras | None = None,
    frame: str = "world",
) -> torch.Tensor:
    """Per-pixel unit normals of the visible surface.

    Args:
        fragments: from rasterizing (vertices, faces).
        vertices: (V, 3) world coordinates.
        faces: (F, 3) int64.
        smooth: interpolate vertex normals (``normals_per_vertex``, default
            :func:`vertex_normals`) and renormalise; otherwise flat face normals.
        normals_per_vertex: (V, 3) world-space vertex normals for ``smooth``.
        cameras: the N cameras, needed for ``frame="camera_opencv"``.
        frame: "world", or "camera_opencv" for each camera's OpenCV axes (x right, y down,
            z forward).

    Returns:
        (N, H, W, 3) unit normals, 0 where no face.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    if smooth:
        per_vertex = normals_per_vertex
        if per_vertex is None:
            per_vertex = vertex_normals(vertices, faces)
        normals = F.normalize(interpolate(fragments, faces, per_vertex), dim=-1)
    else:
        normals = _flat_normals(fragments, face_normals(vertices, faces))
    if frame == "camera_opencv":
        if cameras is None:
            raise ValueError('frame="camera_opencv" needs the cameras')
        normals = world_to_camera_opencv(normals, cameras)
    return normals


def _flat_normals(fragments: Fragments, per_face: torch.Tensor) -> torch.Tensor:
    face_idx = fragments.face_idx
    if per_face.shape[0] == 0:
        return per_face.new_zeros(*face_idx.shape, 3)
    normals = per_face[face_idx.clamp_min(0)]
    return torch.where(mask(fragments)[..., None], normals, 0.0)


def world_to_camera_opencv(directions: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """Rotate world-space directions (N, ..., 3) into each camera's OpenCV frame (x right,
    y down, z forward); (N, ..., 3) out."""
    n_views = len(cameras)
    flat = directions.reshape(n_views, -1, 3)
    view = flat @ cameras.R.to(directions.dtype)  # row vectors: X_view = X_world @ R
    return (view * view.new_tensor(_OPENCV_FROM_VIEW)).reshape(directions.shape)


def headlight_directions(cameras: Cameras) -> torch.Tensor:
    """(N, 3) world-space unit directions from the scene towards each camera along its optical
    axis (a directional light mounted on the camera)."""
    return -cameras.R[:, :, 2]  # column 2 of R is the view +Z (forward) axis in world space


def shade_lambertian(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    light_dir: torch.Tensor,
    ambient: float = 0.3,
    two_sided: bool = False,
) -> torch.Tensor:
    """Lambertian shading with one directional light:
    ``rgb = albedo * (ambient + (1 - ambient) * max(0, n . l))``.

    Args:
        albedo: (N, H, W, 3) surface colour.
        normals: (N, H, W, 3) unit normals (world space, or any frame the light is given in).
        light_dir: (3,) or (N, 3) direction from the surface towards the light, same frame as
            the normals; normalised here.
        ambient: in [0, 1], the share of light that does not depend on the angle.
        two_sided: use |n . l| so that back faces are lit like front faces.

    Returns:
        (N, H, W, 3) colour (within [0, 1] when albedo is).
    """
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")
    n_views = normals.shape[0]
    light = torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device)
    if light.dim() == 1:
        light = light.expand(n_views, -1)
    if light.shape != (n_views, 3) or not bool(torch.isfinite(light).all()):
        raise InputError(f"light_dir must be (3,) or ({n_views}, 3) finite, got {light_dir!r}")
    if bool((light.norm(dim=-1) == 0).any()):
        raise InputError("light_dir must be a non-zero direction")
    light = F.normalize(light, dim=-1)
    cosine = (normals * light[:, None, None, :]).sum(-1)
    cosine = cosine.abs() if two_sided else cosine.clamp_min(0.0)
    return albedo * (ambient + (1.0 - ambient) * cosine)[..., None]


def render_mesh(
    mesh: TriMesh,
    cameras: Cameras,
    image_size: tuple[int, int] | None = None,
    color: np.ndarray | torch.Tensor | Callable[[np.ndarray], np.ndarray] | None = None,
    light: str | np.ndarray | torch.Tensor = "camera",
    ambient: float = 0.3,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    smooth: bool = False,
) -> RenderResult:
    """Render a mesh in every camera: Lambertian RGB, depth, mask, world normals.

    Lens distortion of the cameras is ignored (see geomkit.ops.rasterize.rasterize_mesh).
    Lighting is two-sided, so open or inconsistently oriented meshes do not turn black from
    behind.

    Args:
        mesh: TriMesh in world coordinates.
        cameras: N cameras; the images are in their dtype and on their device.
        image_size: (H, W); None for the cameras' common image size.
        color: albedo in [0, 1]: a (V, 3) array of vertex colours (interpolated), or a callable
            evaluated per pixel (sharp procedural texture) that takes a float64 numpy array
            (M, 3) of the world points seen at the covered pixels and returns (M, 3) rgb; None
            for mesh.vertex_colors, or uniform grey DEFAULT_ALBEDO without them.
        light: "camera" for a headlight (see :func:`headlight_directions`), or a world-space
            direction (3,) or per view (N, 3) from the surface towards the light.
        ambient: in [0, 1], see :func:`shade_lambertian`.
        background: rgb where no surface.
        smooth: shade with interpolated vertex normals (mesh.vertex_normals, or area-weighted
            ones) instead of flat face normals; the returned normals are the same ones.

    Returns:
        RenderResult(rgb, depth, mask, normals, face_idx).
    """
    if not isinstance(mesh, TriMesh):
        raise ValueError(f"render_mesh: mesh must be a geomkit TriMesh, got {type(mesh)}")
    vertices = torch.as_tensor(mesh.vertices, dtype=cameras.dtype, device=cameras.device)
    faces = torch.as_tensor(mesh.faces, device=cameras.device)
    fragments = rasterize_mesh(vertices, faces, cameras, image_size)
    covered = mask(fragments)
    normals = surface_normals(
        fragments, vertices, faces, smooth, _as_like(mesh.vertex_normals, vertices)
    )
    albedo = _albedo(color, mesh, fragments, vertices, faces)
    rgb = shade_lambertian(
        albedo, normals, _light_direction(light, cameras), ambient, two_sided=True
    )
    rgb = torch.where(covered[..., None], rgb, _background(background, rgb))
    depth = torch.where(covered, fragments.depth, 0.0)
    return RenderResult(rgb, depth, covered, normals, fragments.face_idx)


def _albedo(color, mesh: TriMesh, fragments: Fragments, vertices: torch.Tensor, faces):
    if callable(color):
        exact = torch.as_tensor(mesh.vertices, dtype=torch.float64, device=vertices.device)
        points = world_points(fragments, exact, faces)
        return _procedural_albedo(color, points, mask(fragments)).to(vertices.dtype)
    if color is None:
        color = mesh.vertex_colors
    if color is None:
        colors = vertices.new_full(vertices.shape, DEFAULT_ALBEDO)
    else:
        colors = _as_like(color, vertices)
    if colors.shape != vertices.shape:
        raise InputError(
            f"color must be (V, 3) = {tuple(vertices.shape)} vertex colours or a callable, "
            f"got shape {tuple(colors.shape)}"
        )
    return interpolate(fragments, faces, colors)


def _procedural_albedo(
    color: Callable[[np.ndarray], np.ndarray], points: torch.Tensor, covered: torch.Tensor
) -> torch.Tensor:
    albedo = points.new_zeros(points.shape)
    if not bool(covered.any()):
        return albedo
    seen = points[covered].detach().cpu().to(torch.float64).numpy()
    values = np.asarray(color(seen))
    if values.shape != seen.shape:
        raise InputError(
            f"the color callable must map (M, 3) points to (M, 3) rgb; got {values.shape} "
            f"for {seen.shape}"
        )
    albedo[covered] = torch.as_tensor(values, dtype=points.dtype, device=points.device)
    return albedo


def _as_like(values, like: torch.Tensor) -> torch.Tensor | None:
    if values is None:
        return None
    return torch.as_tensor(values, dtype=like.dtype, device=like.device)


def _light_direction(light, cameras: Cameras) -> torch.Tensor:
    if isinstance(light, str):
        if light != "camera":
            raise ValueError(f'light must be "camera" or a direction, got {light!r}')
        return headlight_directions(cameras)
    return torch.as_tensor(light, dtype=cameras.dtype, device=cameras.device)


def _background(background, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if value.shape != (3,):
        raise InputError(f"background must be an rgb triple, got {background!r}")
    return value
