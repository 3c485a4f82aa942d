"""Renders like Choy et al. 2016 (3D-R2N2), ONet's ``img_choy2016`` folders, headless.

R2N2 rendered each ShapeNet model 24 times in Blender at 137 x 137 from a random azimuth,
an elevation in [25, 30] degrees and no roll, with a 35 mm lens on a 32 mm sensor; ONet
flattened the alpha onto white and stored JPEGs plus ``cameras.npz`` (written by
scripts/dataset_shapenet/get_r2n2_cameras.py):

* ``camera_mat_i`` (3, 3): ``[[f, 0, 68.5], [0, f, 68.5], [0, 0, 1]]``, f = 35 * 137 / 32
  pixels, principal point at W / 2: pixel coordinates whose origin is the top-left CORNER of
  the image (ONet's fix_K_camera maps [0, 137] to [-1, 1]). An OpenCV K would have 68.0.
* ``world_mat_i`` (3, 4): world -> camera ``[R | t]``, OpenCV axes (x right, y down, z
  forward), for points in the frame of the INPUT mesh (ShapeNet's, y up). ONet's consumers
  (im2mesh.common.get_camera_args) pass it through fix_Rt_camera with the npz ``loc`` and
  ``scale`` to act on normalised points: ``R_n = R * scale``, ``t_n = t + R @ loc``.

Azimuth a and elevation e place the camera at ``d (cos e cos a, sin e, cos e sin a)`` (y up),
looking at the origin, the camera's up towards +y: the same pose as get_r2n2_cameras.py's
Blender chain (its blender_T maps ONet's y-up frame to Blender's z-up one).

The distance: R2N2 used ``distance_ratio * 1.75`` with models normalised to a unit bounding
box diagonal; its distribution of distance_ratio is not documented. Here the distance is
``ratio * 1.75 * diagonal`` (diagonal of the rendered mesh's bounding box, so the framing
matches a unit-diagonal model) with ratio ~ U(0.7, 0.95): from 0.7 on, the bounding sphere
always fits in the 47 degree field of view.

Shading: Lambertian with a headlight (geomkit.render), the mesh's vertex colours or a
neutral grey, rendered at 4 x 4 samples per pixel and averaged (Blender anti-aliases), white
background; JPEG quality 95 (OpenCV's default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from geomkit.cameras import Cameras, from_opencv
from geomkit.io import save_npz, write_image
from geomkit.render import render_mesh
from geomkit.structures import TriMesh

CHOY_IMAGE_SIZE = 137
CHOY_FOCAL_MM = 35.0
CHOY_SENSOR_MM = 32.0
CHOY_N_VIEWS = 24
CHOY_ELEVATION_DEG = (25.0, 30.0)
CHOY_MAX_DISTANCE = 1.75
CHOY_DISTANCE_RATIO = (0.7, 0.95)
SUPERSAMPLING = 4
# Views rendered per call (bounds the rasterizer's fragments to ~100 MB).
_VIEWS_PER_RENDER = 6


class ChoyViews(NamedTuple):
    """Views of one object: azimuth (N,), elevation (N,) in degrees, distance (N,) float64."""

    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    distance: np.ndarray


class ChoyRenders(NamedTuple):
    """images (N, 137, 137, 3) float32 RGB in [0, 1] on white; camera_mat (N, 3, 3) and
    world_mat (N, 3, 4) float64 as ONet's cameras.npz (see the module docstring)."""

    images: np.ndarray
    camera_mat: np.ndarray
    world_mat: np.ndarray


def choy_camera_mat() -> np.ndarray:
    """(3, 3) float64 ``[[f, 0, 68.5], [0, f, 68.5], [0, 0, 1]]``, f = 35 * 137 / 32, in pixel
    coordinates with the origin at the image's top-left corner (ONet's camera_mat)."""
    focal = CHOY_FOCAL_MM * CHOY_IMAGE_SIZE / CHOY_SENSOR_MM
    centre = CHOY_IMAGE_SIZE / 2.0
    return np.array([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]])


def sample_choy_views(
    rng: np.random.Generator, diagonal: float, n: int = CHOY_N_VIEWS
) -> ChoyViews:
    """Random R2N2-like views: azimuth U(0, 360), elevation U(25, 30) degrees, distance
    ``U(0.7, 0.95) * 1.75 * diagonal``.

    Args:
        rng: numpy Generator, advanced in place.
        diagonal: bounding box diagonal of the mesh to render (> 0).
        n: number of views.
    """
    azimuth = rng.uniform(0.0, 360.0, n)
    elevation = rng.uniform(*CHOY_ELEVATION_DEG, n)
    distance = rng.uniform(*CHOY_DISTANCE_RATIO, n) * CHOY_MAX_DISTANCE * diagonal
    return ChoyViews(azimuth, elevation, distance)


def choy_w2c_opencv(views: ChoyViews) -> np.ndarray:
    """World-to-camera ``[R | t]`` (N, 3, 4) float64, OpenCV axes, world y up, of each view.

    The camera sits at ``d (cos e cos a, sin e, cos e sin a)`` and looks at the origin with no
    roll (its x axis horizontal, its y axis pointing down in the image).
    """
    a = np.radians(np.asarray(views.azimuth_deg, dtype=np.float64))
    e = np.radians(np.asarray(views.elevation_deg, dtype=np.float64))
    eye = np.asarray(views.distance, dtype=np.float64)[:, None] * np.stack(
        [np.cos(e) * np.cos(a), np.sin(e), np.cos(e) * np.sin(a)], axis=1
    )
    forward = -eye / np.linalg.norm(eye, axis=1, keepdims=True)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward], axis=1)  # rows: camera axes in world coordinates
    translation = -np.einsum("nij,nj->ni", rotation, eye)
    return np.concatenate([rotation, translation[:, :, None]], axis=2)


def world_mat_for_input_frame(w2c_normalized: np.ndarray, loc, scale: float) -> np.ndarray:
    """ONet's world_mat: the camera of normalised points ``p_n = (p - loc) / scale`` re-expressed
    for input-frame points p, so that fix_Rt_camera(world_mat, loc, scale) gives it back.

    Args:
        w2c_normalized: (N, 3, 4) ``[R | t]`` acting on normalised points.
        loc: (3,) and scale: float, the npz ``loc`` / ``scale``.

    Returns:
        (N, 3, 4) float64 ``[R / scale | t - R @ loc / scale]``.
    """
    rotation, translation = w2c_normalized[:, :, :3], w2c_normalized[:, :, 3]
    loc = np.asarray(loc, dtype=np.float64)
    world_rotation = rotation / scale
    world_translation = translation - world_rotation @ loc
    return np.concatenate([world_rotation, world_translation[:, :, None]], axis=2)


def render_choy(mesh_normalized: TriMesh, w2c_opencv: np.ndarray) -> np.ndarray:
    """Render the views at 137 x 137 on white, anti-aliased by 4 x 4 supersampling.

    Args:
        mesh_normalized: TriMesh in the frame the cameras look at (vertex colours used when
            present, else grey 0.8).
        w2c_opencv: (N, 3, 4) world-to-camera ``[R | t]``, OpenCV axes.

    Returns:
        (N, 137, 137, 3) float32 RGB in [0, 1].
    """
    size = CHOY_IMAGE_SIZE * SUPERSAMPLING
    cameras = _choy_cameras(w2c_opencv, SUPERSAMPLING)
    images = []
    for start in range(0, len(cameras), _VIEWS_PER_RENDER):
        rgb = render_mesh(
            mesh_normalized, cameras[start : start + _VIEWS_PER_RENDER], (size, size)
        ).rgb
        blocks = rgb.reshape(
            len(rgb), CHOY_IMAGE_SIZE, SUPERSAMPLING, CHOY_IMAGE_SIZE, SUPERSAMPLING, 3
        )
        images.append(blocks.mean(dim=(2, 4)).clamp(0.0, 1.0))
    return torch.cat(images).numpy().astype(np.float32)


def _choy_cameras(w2c_opencv: np.ndarray, supersampling: int) -> Cameras:
    """Cameras of the views for an image ``supersampling`` times larger per side."""
    n = len(w2c_opencv)
    K = choy_camera_mat() * np.array([[supersampling], [supersampling], [1.0]])
    K[:2, 2] -= 0.5  # OpenCV puts the top-left pixel's centre at (0, 0)
    size = CHOY_IMAGE_SIZE * supersampling
    return from_opencv(
        torch.as_tensor(w2c_opencv[:, :, :3]),
        torch.as_tensor(w2c_opencv[:, :, 3]),
        torch.as_tensor(np.broadcast_to(K, (n, 3, 3)).copy()),
        (size, size),
    ).to(dtype=torch.float32)


def choy_renders(
    mesh_normalized: TriMesh, loc, scale: float, rng: np.random.Generator
) -> ChoyRenders:
    """24 R2N2-like renders of a normalised mesh with ONet's camera matrices.

    Args:
        mesh_normalized: TriMesh, ``(input - loc) / scale``.
        loc: (3,), scale: float, the normalisation (the npz ``loc`` / ``scale``).
        rng: numpy Generator for the views.

    Returns:
        ChoyRenders(images, camera_mat, world_mat).
    """
    extent = mesh_normalized.vertices.max(axis=0) - mesh_normalized.vertices.min(axis=0)
    views = sample_choy_views(rng, float(np.linalg.norm(extent)))
    w2c = choy_w2c_opencv(views)
    images = render_choy(mesh_normalized, w2c)
    camera_mat = np.broadcast_to(choy_camera_mat(), (len(w2c), 3, 3)).copy()
    return ChoyRenders(images, camera_mat, world_mat_for_input_frame(w2c, loc, scale))


def save_choy_renders(folder: str | os.PathLike, renders: ChoyRenders) -> None:
    """Write ``000.jpg``, ``001.jpg``, ... and ``cameras.npz`` (camera_mat_i, world_mat_i)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(renders.images):
        write_image(folder / f"{i:03d}.jpg", image)
    cameras = {}
    for i, (camera_mat, world_mat) in enumerate(
        zip(renders.camera_mat, renders.world_mat, strict=True)
    ):
        cameras[f"camera_mat_{i}"] = camera_mat
        cameras[f"world_mat_{i}"] = world_mat
    save_npz(folder / "cameras.npz", **cameras)
