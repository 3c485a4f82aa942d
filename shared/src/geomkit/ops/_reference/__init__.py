"""Pure-PyTorch references of geomkit's ops, one module per op: the definitions the kernels
are tested against, and the fallback where no compiled kernel runs. Differentiable through
autograd. Same argument conventions as the public functions, after their checks."""

from geomkit.ops._reference.knn import knn_points, pairwise_distances

__all__ = ["knn_points", "pairwise_distances"]
