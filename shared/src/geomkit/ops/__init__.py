"""Batched geometric ops with compiled kernels (C++ CPU, CUDA) and pure-PyTorch references.

``python -m geomkit.ext`` reports which run compiled here.
"""

from geomkit.ops.knn import KNN, knn_gather, knn_points

__all__ = ["KNN", "knn_gather", "knn_points"]
