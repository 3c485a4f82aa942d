"""SIFT features and matches in a COLMAP database, through pycolmap (CPU).

With known cameras, raw descriptor matches are verified against the KNOWN epipolar geometry
(Sampson distance under the essential matrix of the given relative pose) instead of RANSAC:
small, textured-but-sparse image sets keep every correct match, and nothing is re-estimated.
Without cameras, COLMAP's own RANSAC verification runs (for :func:`reconstruct_unknown_poses`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from geomkit.cameras import Cameras
from geomkit.errors import InputError
from geomkit.sfm.colmap_model import camera_model_name, colmap_camera

DATABASE_NAME = "database.db"


@dataclass
class SiftOptions:
    """Feature and matching settings (COLMAP's defaults except where noted).

    max_image_size: longest side the extractor works at (COLMAP: 3200); -1 keeps full size.
    max_num_features: per image (COLMAP: 8192).
    peak_threshold: DoG contrast threshold; lower finds more, weaker features (COLMAP: 1/150).
    max_ratio: Lowe's ratio test (COLMAP: 0.8).
    epipolar_threshold_px: largest Sampson distance, in pixels, of a match kept by the known-pose
        verification.
    min_num_inliers: fewer verified matches drop the pair (COLMAP: 15).
    num_threads: -1 uses every core.
    """

    max_image_size: int = 3200
    max_num_features: int = 8192
    peak_threshold: float = 1.0 / 150.0
    max_ratio: float = 0.8
    epipolar_threshold_px: float = 2.0
    min_num_inliers: int = 8
    num_threads: int = -1


@dataclass
class Matches:
    """A feature database and what is in it.

    Attributes:
        database: path of the COLMAP database.
        image_root: folder the image names are relative to.
        names: (N,) image names relative to image_root, in the order given.
        image_ids, camera_ids: (N,) int64 database ids of the images and their cameras.
        num_keypoints: (N,) int64 features per image.
        pairs: (M, 2) int64 indices into names of the pairs that were matched.
        num_inliers: (M,) int64 verified matches per pair (0: rejected).
    """

    database: Path
    image_root: Path
    names: list[str]
    image_ids: np.ndarray
    camera_ids: np.ndarray
    num_keypoints: np.ndarray
    pairs: np.ndarray
    num_inliers: np.ndarray


def extract_and_match(
    image_paths: Sequence[str | os.PathLike],
    workdir: str | os.PathLike,
    cameras: Cameras | None = None,
    pairs: np.ndarray | None = None,
    max_exhaustive: int = 30,
    neighbours: int = 12,
    options: SiftOptions | None = None,
) -> Matches:
    """Extract SIFT features of the images and match image pairs, into ``workdir/database.db``.

    Args:
        image_paths: N image files (any folders; names are taken relative to their common
            folder).
        workdir: folder for the database (an existing database there is replaced).
        cameras: N known cameras (pixels must match the files' sizes): their intrinsics go into
            the database and matches are verified against the known poses; None: unknown
            cameras (one per image, COLMAP's guess) and RANSAC verification.
        pairs: (M, 2) image index pairs to match; default: all pairs when N <= max_exhaustive,
            else each image with its ``neighbours`` closest cameras (by viewing direction; needs
            ``cameras``).
        options: SiftOptions.

    Returns:
        Matches.
    """
    options = options or SiftOptions()
    paths = [Path(p).resolve() for p in image_paths]
    if not paths:
        raise InputError("no images given")
    for path in paths:
        if not path.is_file():
            raise InputError(f"image not found: {path}")
    if cameras is not None and len(cameras) != len(paths):
        raise InputError(f"got {len(cameras)} cameras for {len(paths)} images")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    names = [p.relative_to(root).as_posix() for p in paths]
    if len(set(names)) != len(names):
        raise InputError("the same image is given twice")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / DATABASE_NAME
    database.unlink(missing_ok=True)
    _extract(database, root, names, cameras, options)
    image_ids, camera_ids, num_keypoints = _database_ids(database, names, cameras)
    if pairs is None:
        pairs = default_pairs(cameras, len(names), max_exhaustive, neighbours)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    _match(database, workdir, names, pairs, verify=cameras is None, options=options)
    if cameras is not None:
        num_inliers = verify_known_poses(database, cameras, image_ids, pairs, options)
    else:
        num_inliers = _verified_counts(database, image_ids, pairs)
    return Matches(database, root, names, image_ids, camera_ids, num_keypoints, pairs, num_inliers)


def default_pairs(cameras: Cameras | None, n: int, max_exhaustive: int, neighbours: int):
    """(M, 2) all pairs i < j when n <= max_exhaustive, else :func:`proximity_pairs`."""
    if n <= max_exhaustive or cameras is None:
        return np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=np.int64)
    return proximity_pairs(cameras, neighbours)


def proximity_pairs(cameras: Cameras, neighbours: int) -> np.ndarray:
    """(M, 2) pairs i < j where j is among the ``neighbours`` cameras whose optical axes are
    closest in angle to i's (ties by centre distance), or the other way round."""
    cameras = cameras.to(dtype=torch.float64)
    axes = cameras.R[:, :, 2].numpy()  # world direction of view +Z (the optical axis)
    centres = cameras.camera_center().numpy()
    angle = np.arccos(np.clip(axes @ axes.T, -1.0, 1.0))
    distance = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    score = angle + 1e-6 * distance / max(distance.max(), 1e-12)
    np.fill_diagonal(score, np.inf)
    k = min(neighbours, len(cameras) - 1)
    nearest = np.argsort(score, axis=1)[:, :k]
    found = {(min(i, int(j)), max(i, int(j))) for i in range(len(cameras)) for j in nearest[i]}
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def verify_known_poses(
    database: Path,
    cameras: Cameras,
    image_ids: np.ndarray,
    pairs: np.ndarray,
    options: SiftOptions,
) -> np.ndarray:
    """Keep the matches of each pair whose Sampson distance under the known essential matrix
    is below ``options.epipolar_threshold_px``; write them as CALIBRATED two-view geometries.

    Returns:
        (M,) int64 inlier counts (0 for pairs with fewer than ``options.min_num_inliers``).
    """
    import pycolmap

    cameras = cameras.to(dtype=torch.float64)
    counts = np.zeros(len(pairs), dtype=np.int64)
    db = pycolmap.Database.open(database)
    try:
        colmap_cams = [colmap_camera(cameras, i, 1) for i in range(len(cameras))]
        keypoints = {}
        for k, (i, j) in enumerate(pairs.tolist()):
            matches = db.read_matches(int(image_ids[i]), int(image_ids[j]))
            if len(matches) == 0:
                continue
            for a in (i, j):
                if a not in keypoints:
                    xy = db.read_keypoints(int(image_ids[a]))[:, :2].astype(np.float64)
                    keypoints[a] = colmap_cams[a].cam_from_img(xy)
            R, t = relative_pose(cameras, i, j)
            error = sampson_distance(keypoints[i][matches[:, 0]], keypoints[j][matches[:, 1]], R, t)
            focal = 0.5 * (colmap_cams[i].mean_focal_length() + colmap_cams[j].mean_focal_length())
            inliers = matches[error * focal < options.epipolar_threshold_px]
            if len(inliers) < options.min_num_inliers:
                continue
            geometry = pycolmap.TwoViewGeometry()
            geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            geometry.inlier_matches = inliers.astype(np.uint32)
            geometry.E = _cross_matrix(t) @ R
            geometry.cam2_from_cam1 = pycolmap.Rigid3d(np.concatenate([R, t[:, None]], 1))
            db.write_two_view_geometry(int(image_ids[i]), int(image_ids[j]), geometry)
            counts[k] = len(inliers)
    finally:
        db.close()
    return counts


def relative_pose(cameras: Cameras, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) of camera j from camera i, OpenCV axes: ``x_j = R x_i + t``."""
    from geomkit.cameras import to_opencv

    R_w2c, t_w2c, _ = (x.numpy() for x in to_opencv(cameras.to(dtype=torch.float64)))
    R = R_w2c[j] @ R_w2c[i].T
    return R, t_w2c[j] - R @ t_w2c[i]


def sampson_distance(x1: np.ndarray, x2: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(M,) Sampson distance of normalised point pairs (M, 2) under ``E = [t]x R``, in the
    normalised units (multiply by the focal length for pixels)."""
    E = _cross_matrix(t / max(np.linalg.norm(t), 1e-12)) @ R
    h1 = np.concatenate([x1, np.ones((len(x1), 1))], 1)
    h2 = np.concatenate([x2, np.ones((len(x2), 1))], 1)
    Ex1 = h1 @ E.T
    Etx2 = h2 @ E
    numerator = np.sum(h2 * Ex1, axis=1)
    denominator = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2
    return np.abs(numerator) / np.sqrt(np.maximum(denominator, 1e-30))


def _cross_matrix(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _extract(database: Path, root: Path, names, cameras: Cameras | None, options) -> None:
    import pycolmap

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = options.num_threads
    extraction.max_image_size = options.max_image_size
    extraction.sift.max_num_features = options.max_num_features
    extraction.sift.peak_threshold = options.peak_threshold
    reader = pycolmap.ImageReaderOptions()
    if cameras is not None:
        reader.camera_model = camera_model_name(cameras)
    pycolmap.extract_features(
        database,
        root,
        image_names=list(names),
        camera_mode=pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def _database_ids(database: Path, names, cameras: Cameras | None):
    """Per-name image ids, camera ids and keypoint counts; known intrinsics written in."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        by_name = {image.name: image for image in db.read_all_images()}
        unread = [name for name in names if name not in by_name]
        if unread:
            raise InputError(f"could not read {len(unread)} images, e.g. {unread[:3]}")
        images = [by_name[name] for name in names]
        if cameras is not None:
            for i, image in enumerate(images):
                stored = db.read_camera(image.camera_id)
                known = colmap_camera(cameras, i, image.camera_id)
                if (stored.width, stored.height) != (known.width, known.height):
                    raise InputError(
                        f"image {names[i]} is {stored.width}x{stored.height} px but its camera "
                        f"says {known.width}x{known.height}"
                    )
                db.update_camera(known)
        counts = [db.num_keypoints_for_image(image.image_id) for image in images]
    finally:
        db.close()
    image_ids = np.array([image.image_id for image in images], dtype=np.int64)
    camera_ids = np.array([image.camera_id for image in images], dtype=np.int64)
    return image_ids, camera_ids, np.array(counts, dtype=np.int64)


def _match(database: Path, workdir: Path, names, pairs, verify: bool, options) -> None:
    import pycolmap

    pairs_file = workdir / "pairs.txt"
    pairs_file.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs.tolist()))
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.num_threads
    matching.skip_geometric_verification = not verify
    matching.sift.max_ratio = options.max_ratio
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = pairs_file
    pycolmap.match_image_pairs(
        database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
    )


def _verified_counts(database: Path, image_ids: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(M,) inlier counts COLMAP's verification stored for the pairs (0 when rejected)."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    stored = dict(zip(pair_ids, counts, strict=True))
    wanted = [
        pycolmap.image_pair_to_pair_id(int(image_ids[i]), int(image_ids[j]))
        for i, j in pairs.tolist()
    ]
    return np.array([stored.get(pair_id, 0) for pair_id in wanted], dtype=np.int64)
