"""Batched geometric ops with compiled kernels (C++ CPU, CUDA) and pure-PyTorch references.

``python -m geomkit.ext`` reports which run compiled here. ``chamfer_distance`` and
``knn_gather`` are PyTorch code on top of ``knn_points`` (as in PyTorch3D).
"""

from geomkit.ops.ball_query import BallQuery, ball_query
from geomkit.ops.chamfer import ChamferResult, chamfer_distance
from geomkit.ops.fps import FarthestPoints, sample_farthest_points
from geomkit.ops.knn import KNN, knn_gather, knn_points
from geomkit.ops.rasterize import Fragments, rasterize_mesh, rasterize_triangles
from geomkit.ops.splat import Splat, scatter_features, splat_points, splat_points_multiscale

__all__ = [
    "KNN",
    "BallQuery",
    "ChamferResult",
    "FarthestPoints",
    "Fragments",
    "Splat",
    "ball_query",
    "chamfer_distance",
    "knn_gather",
    "knn_points",
    "rasterize_mesh",
    "rasterize_triangles",
    "sample_farthest_points",
    "scatter_features",
    "splat_points",
    "splat_points_multiscale",
]
