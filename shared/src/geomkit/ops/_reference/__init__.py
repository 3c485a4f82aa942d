"""Pure-PyTorch references of geomkit's ops, one module per op: the definitions the kernels
are tested against, and the fallback where no compiled kernel runs. Differentiable through
autograd. Same argument conventions as the public functions, after their checks."""

from geomkit.ops._reference.ball_query import ball_query
from geomkit.ops._reference.chamfer import chamfer_distance
from geomkit.ops._reference.fps import sample_farthest_points
from geomkit.ops._reference.knn import knn_points, pairwise_distances
from geomkit.ops._reference.rasterize import rasterize_triangles
from geomkit.ops._reference.splat import splat_points

__all__ = [
    "ball_query",
    "chamfer_distance",
    "knn_points",
    "pairwise_distances",
    "rasterize_triangles",
    "sample_farthest_points",
    "splat_points",
]
