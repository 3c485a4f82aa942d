"""Sparse points from matched features: with known cameras (``pycolmap.triangulate_points``,
poses and intrinsics held fixed), or plain incremental SfM for unknown cameras
(``pycolmap.incremental_mapping``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.sfm.colmap_model import cameras_from_reconstruction, known_pose_reconstruction
from geomkit.sfm.features import Matches, SiftOptions, extract_and_match


@dataclass
class TriangulationOptions:
    """COLMAP's mapper/triangulator settings used here (COLMAP's defaults).

    max_reprojection_error_px: tracks with a larger error are filtered (COLMAP: 4).
    min_triangulation_angle_deg: points seen under a smaller angle are filtered (COLMAP: 1.5).
    """

    max_reprojection_error_px: float = 4.0
    min_triangulation_angle_deg: float = 1.5


@dataclass
class SparseCloud:
    """Triangulated points.

    Attributes:
        points: (P, 3) float64 world points (the cameras' frame).
        colors: (P, 3) float32 RGB in [0, 1], mean over the track.
        track_length: (P,) int64 number of images seeing each point.
        reprojection_error: (P,) float64 mean reprojection error over the track, pixels.
        report: num_points, mean_reprojection_error_px, images_used (images with at least one
            triangulated feature), images_given, unused_images (names).
    """

    points: np.ndarray
    colors: np.ndarray
    track_length: np.ndarray
    reprojection_error: np.ndarray
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


def triangulate_known_poses(
    cameras: Cameras,
    image_paths: Sequence[str | os.PathLike],
    workdir: str | os.PathLike,
    matches: Matches | None = None,
    sift: SiftOptions | None = None,
    options: TriangulationOptions | None = None,
) -> SparseCloud:
    """Points triangulated from SIFT matches with the given (fixed) cameras.

    Args:
        cameras: N cameras of the images (geomkit conventions; distortion allowed).
        image_paths: N image files.
        workdir: scratch folder (feature database, the COLMAP model in ``workdir/sparse``).
        matches: an existing :func:`extract_and_match` result for these cameras; computed when
            None.
        sift, options: feature and triangulation settings.

    Returns:
        SparseCloud (empty when nothing could be triangulated).
    """
    import pycolmap

    options = options or TriangulationOptions()
    if matches is None:
        matches = extract_and_match(image_paths, workdir, cameras=cameras, options=sift)
    reconstruction = known_pose_reconstruction(
        cameras, matches.names, matches.image_ids, matches.camera_ids
    )
    output = Path(workdir) / "sparse"
    output.mkdir(parents=True, exist_ok=True)
    triangulated = pycolmap.triangulate_points(
        reconstruction,
        matches.database,
        matches.image_root,
        output,
        clear_points=True,
        options=_pipeline_options(options),
        refine_intrinsics=False,
    )
    return sparse_cloud(triangulated, matches.image_root, matches.names)


def reconstruct_unknown_poses(
    image_paths: Sequence[str | os.PathLike],
    workdir: str | os.PathLike,
    sift: SiftOptions | None = None,
    options: TriangulationOptions | None = None,
) -> tuple[Cameras, list[str], SparseCloud]:
    """Plain incremental SfM (``pycolmap.incremental_mapping``) of images with unknown cameras.

    Returns:
        (cameras, names, cloud): float64 cameras of the registered images of the largest
        model, their names (relative to the images' common folder) and its points, in COLMAP's
        arbitrary frame and scale.

    Raises:
        InputError: when no model could be reconstructed.
    """
    import pycolmap

    options = options or TriangulationOptions()
    matches = extract_and_match(image_paths, workdir, cameras=None, options=sift)
    output = Path(workdir) / "sparse"
    output.mkdir(parents=True, exist_ok=True)
    models = pycolmap.incremental_mapping(
        matches.database, matches.image_root, output, options=_pipeline_options(options)
    )
    if not models:
        raise InputError(
            f"incremental SfM registered no image pair of {len(matches.names)} images "
            "(too few matches: more overlap or texture is needed)"
        )
    best = max(models.values(), key=lambda model: model.num_reg_images())
    registered = sorted(best.images[i].name for i in best.reg_image_ids())
    cloud = sparse_cloud(best, matches.image_root, matches.names)
    return cameras_from_reconstruction(best, registered), registered, cloud


def sparse_cloud(reconstruction, image_root: Path, names: Sequence[str]) -> SparseCloud:
    """The points of a pycolmap reconstruction, coloured from the images, with a report."""
    if reconstruction.num_points3D() > 0:
        reconstruction.extract_colors_for_all_images(str(image_root))
    ids = sorted(reconstruction.point3D_ids())
    points3D = [reconstruction.points3D[i] for i in ids]
    points = np.array([p.xyz for p in points3D], dtype=np.float64).reshape(-1, 3)
    colors = np.array([p.color for p in points3D], dtype=np.float32).reshape(-1, 3) / 255.0
    track = np.array([p.track.length() for p in points3D], dtype=np.int64)
    error = np.array([p.error for p in points3D], dtype=np.float64)
    used = {image.name for image in reconstruction.images.values() if image.num_points3D > 0}
    report = {
        "num_points": len(points),
        "mean_reprojection_error_px": float(error.mean()) if len(error) else float("nan"),
        "mean_track_length": float(track.mean()) if len(track) else 0.0,
        "images_used": len(used),
        "images_given": len(names),
        "unused_images": [name for name in names if name not in used],
    }
    return SparseCloud(points, colors, track, error, report)


def _pipeline_options(options: TriangulationOptions):
    import pycolmap

    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.mapper.filter_max_reproj_error = options.max_reprojection_error_px
    pipeline.mapper.filter_min_tri_angle = options.min_triangulation_angle_deg
    pipeline.triangulation.min_angle = options.min_triangulation_angle_deg
    pipeline.triangulation.complete_max_reproj_error = options.max_reprojection_error_px
    pipeline.triangulation.merge_max_reproj_error = options.max_reprojection_error_px
    return pipeline
