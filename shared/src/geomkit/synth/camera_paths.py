"""Cameras looking at the origin from orbits, hemispheres, random directions or a Fibonacci
sphere, as geomkit Cameras (world z up, Blender-like)."""

from __future__ import annotations

import math

import numpy as np
import torch

from geomkit.cameras import Cameras, from_opengl_c2w

CAMERA_PATHS = ("orbit", "hemisphere", "random", "sphere")


def fibonacci_sphere(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    azimuth = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], axis=1)


def view_directions(kind: str, n: int, seed: int = 0, elevation_deg: float = 25.0) -> np.ndarray:
    """(n, 3) unit vectors from the origin towards the cameras.

    orbit: a full circle at ``elevation_deg``; hemisphere: Fibonacci points with z > 0.05;
    random: uniform on the sphere (seeded); sphere: the Fibonacci sphere.
    """
    if kind == "orbit":
        azimuth = 2 * np.pi * np.arange(n) / n
        el = math.radians(elevation_deg)
        return np.stack(
            [
                np.cos(azimuth) * math.cos(el),
                np.sin(azimuth) * math.cos(el),
                np.full(n, math.sin(el)),
            ],
            axis=1,
        )
    if kind == "hemisphere":
        points = fibonacci_sphere(int(2.3 * n) + 8)
        return points[points[:, 2] > 0.05][:n]
    if kind == "random":
        v = np.random.default_rng(seed).normal(size=(n, 3))
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    if kind == "sphere":
        return fibonacci_sphere(n)
    raise ValueError(f"unknown camera path {kind!r}; choose one of {CAMERA_PATHS}")


def look_at_c2w_opengl(eyes: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """(N, 4, 4) OpenGL camera-to-world matrices (x right, y up, z backward) at ``eyes``
    looking at ``target``; where the view is parallel to ``up``, world y serves as up."""
    eyes = np.asarray(eyes, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eyes
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    ups = np.broadcast_to(np.asarray(up, dtype=np.float64), eyes.shape).copy()
    parallel = np.abs((forward * ups).sum(1)) > 0.999
    ups[parallel] = (0.0, 1.0, 0.0)
    right = np.cross(forward, ups)
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    true_up = np.cross(right, forward)
    c2w = np.tile(np.eye(4), (len(eyes), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, -forward, eyes
    return c2w


def pinhole_cameras(
    c2w_opengl: np.ndarray,
    image_size: tuple[int, int],
    fov_x_deg: float = 40.0,
    dtype: torch.dtype = torch.float32,
) -> Cameras:
    """Cameras with square pixels, horizontal field of view ``fov_x_deg`` and the principal point
    at the image centre."""
    height, width = image_size
    n = len(c2w_opengl)
    focal = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return from_opengl_c2w(
        torch.as_tensor(c2w_opengl, dtype=dtype),
        torch.full((n, 2), focal, dtype=dtype),
        torch.tensor([[width / 2, height / 2]], dtype=dtype).expand(n, 2),
        torch.tensor([[height, width]]).expand(n, 2),
    )


def camera_path(
    kind: str,
    n: int,
    image_size: tuple[int, int] = (256, 256),
    distance: float = 2.5,
    fov_x_deg: float = 40.0,
    seed: int = 0,
) -> Cameras:
    """``n`` cameras at ``distance`` from the origin along a path (see view_directions)."""
    eyes = distance * view_directions(kind, n, seed)
    return pinhole_cameras(look_at_c2w_opengl(eyes), image_size, fov_x_deg)
