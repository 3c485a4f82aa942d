"""One camera structure, :class:`Cameras` (PyTorch3D conventions), and converters from and to
the conventions datasets use: OpenCV K[R|t], OpenGL/Blender camera-to-world, NeRF
``transforms.json``, COLMAP models and IDR/VolSDF projection matrices.

Conversions happen at the dataset boundary; everything inside works on :class:`Cameras`.
See :mod:`geomkit.cameras.base` for the conventions.
"""

from geomkit.cameras.base import (
    Cameras,
    distort_normalized,
    ndc_to_pixel,
    pixel_to_ndc,
    undistort_normalized,
)
from geomkit.cameras.colmap import from_colmap, write_colmap_binary, write_colmap_text
from geomkit.cameras.idr import from_idr, to_idr
from geomkit.cameras.nerf import from_nerf_transforms, to_nerf_transforms
from geomkit.cameras.opencv import OpenCVCameras, from_opencv, to_opencv
from geomkit.cameras.opengl import from_opengl_c2w, to_opengl_c2w

__all__ = [
    "Cameras",
    "OpenCVCameras",
    "distort_normalized",
    "from_colmap",
    "from_idr",
    "from_nerf_transforms",
    "from_opencv",
    "from_opengl_c2w",
    "ndc_to_pixel",
    "pixel_to_ndc",
    "to_idr",
    "to_nerf_transforms",
    "to_opencv",
    "to_opengl_c2w",
    "undistort_normalized",
    "write_colmap_binary",
    "write_colmap_text",
]
