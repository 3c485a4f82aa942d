"""Structure from motion on pycolmap (CPU): SIFT features and matches, triangulation with known
cameras, plain incremental SfM for unknown ones, CPU densification and depth-map fusion; and
SuperPoint + SuperGlue (:mod:`geomkit.sfm.superpoint`, :mod:`geomkit.sfm.superglue`, torch,
imported from there) for users who bring Magic Leap's weights.

Everything takes and returns :class:`geomkit.cameras.Cameras`; pycolmap stays inside.
"""

from geomkit.sfm.features import (
    Matches,
    SiftOptions,
    extract_and_match,
    proximity_pairs,
    sampson_distance,
)
from geomkit.sfm.triangulation import (
    SparseCloud,
    TriangulationOptions,
    reconstruct_unknown_poses,
    sparse_cloud,
    triangulate_known_poses,
)

__all__ = [
    "Matches",
    "SiftOptions",
    "SparseCloud",
    "TriangulationOptions",
    "extract_and_match",
    "proximity_pairs",
    "reconstruct_unknown_poses",
    "sampson_distance",
    "sparse_cloud",
    "triangulate_known_poses",
]
