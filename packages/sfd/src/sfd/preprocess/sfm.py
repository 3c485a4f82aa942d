"""Step 5: incremental SfM (pycolmap 4.x) on step 4's features and matches.

One "image" per instance (``temp/resized/{i}_rgb.png``), all sharing one SIMPLE_PINHOLE camera
(f = 1111 at 800 px, c = res/2 - 0.5, refined by bundle adjustment). COLMAP verifies the matches
(RANSAC) and maps; the model with the most registered images is kept and written to
``sfm_outputs`` as binary and text, with ``poses.npz`` (``arr_0``: a dict image name -> (4, 4)
world-to-camera, OpenCV axes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geomkit.errors import InputError
from geomkit.io.files import atomic_write
from sfd.preprocess.layout import Layout, stem

FOCAL_AT_800 = 1111.0


@dataclass
class SfmSettings:
    """Mapper settings changed from COLMAP's defaults (100 / 30 inliers, models of >= 10
    images, two-view tracks not triangulated) because an SfD "scene" is a handful of small
    crops, where most points are seen by two instances only."""

    init_min_num_inliers: int = 30
    abs_pose_min_num_inliers: int = 12
    min_num_matches: int = 8
    min_model_size: int = 2
    triangulate_two_view_tracks: bool = True
    seed: int = 0


def read_npz_dicts(path: Path) -> dict[str, dict]:
    """A file of pickled dicts (the original's format): key -> dict."""
    try:
        with np.load(path, allow_pickle=True) as data:
            return {key: data[key].item() for key in data.files}
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"{path} is not a preprocessing npz of dicts ({err})") from None


def read_pairs(path: Path, n: int) -> list[tuple[int, int]]:
    """Instance pairs of ``image_pair.txt`` ("000_rgb.png 003_rgb.png" lines)."""
    names = {f"{stem(i)}.png": i for i in range(n)}
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or parts[0] not in names or parts[1] not in names:
            raise InputError(f"{path}:{number}: expected two image names like 000_rgb.png")
        pairs.append((names[parts[0]], names[parts[1]]))
    return pairs


def write_database(path: Path, layout: Layout, n: int, train_res: int) -> dict[int, int]:
    """A fresh COLMAP database with the shared camera, one image per instance, step 4's
    keypoints and raw matches; returns instance -> image id."""
    import pycolmap

    feats = read_npz_dicts(layout.final_feats)
    matches = read_npz_dicts(layout.final_matches)
    path.unlink(missing_ok=True)
    focal = FOCAL_AT_800 * train_res / 800.0
    centre = train_res / 2.0 - 0.5
    db = pycolmap.Database.open(path)
    try:
        camera = pycolmap.Camera(
            model="SIMPLE_PINHOLE",
            width=train_res,
            height=train_res,
            params=[focal, centre, centre],
        )
        camera_id = db.write_camera(camera)
        rig = pycolmap.Rig()
        sensor = pycolmap.sensor_t(pycolmap.SensorType.CAMERA, camera_id)
        rig.add_ref_sensor(sensor)
        rig_id = db.write_rig(rig)
        ids = {}
        for i in range(n):
            image_id = db.write_image(pycolmap.Image(name=f"{stem(i)}.png", camera_id=camera_id))
            frame = pycolmap.Frame()
            frame.rig_id = rig_id
            frame.add_data_id(pycolmap.data_t(sensor, image_id))
            db.write_frame(frame)
            xy = feats[str(i)]["keypoints_back"] if str(i) in feats else np.zeros((0, 2))
            db.write_keypoints(image_id, np.asarray(xy, dtype=np.float32).reshape(-1, 2))
            ids[i] = image_id
        for i, j in read_pairs(layout.image_pairs, n):
            matches0 = np.asarray(matches[f"{i}_{j}"]["matches0"])
            rows = np.nonzero(matches0 >= 0)[0]
            pairs = np.stack([rows, matches0[rows]], axis=1).astype(np.uint32)
            db.write_matches(ids[i], ids[j], pairs)
    finally:
        db.close()
    return ids


def pipeline_options(settings: SfmSettings):
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.min_num_matches = settings.min_num_matches
    options.min_model_size = settings.min_model_size
    options.random_seed = settings.seed
    options.mapper.init_min_num_inliers = settings.init_min_num_inliers
    options.mapper.abs_pose_min_num_inliers = settings.abs_pose_min_num_inliers
    options.mapper.random_seed = settings.seed
    options.triangulation.random_seed = settings.seed
    options.triangulation.ignore_two_view_tracks = not settings.triangulate_two_view_tracks
    return options


def reconstruct(layout: Layout, n: int, train_res: int, settings: SfmSettings | None = None):
    """Verify, map, and return the reconstruction with the most registered images."""
    import pycolmap

    settings = settings or SfmSettings()
    layout.sfm_outputs.mkdir(parents=True, exist_ok=True)
    database = layout.sfm_outputs / "database.db"
    write_database(database, layout, n, train_res)
    verify = pycolmap.TwoViewGeometryOptions()
    verify.min_num_inliers = settings.min_num_matches
    pycolmap.verify_matches(database, layout.image_pairs, verify)
    models_dir = layout.sfm_outputs / "models"
    models_dir.mkdir(exist_ok=True)
    models = pycolmap.incremental_mapping(
        database, layout.temp / "resized", models_dir, pipeline_options(settings)
    )
    if not models:
        raise InputError(
            f"SfM registered no pair of the {n} instances (too few verified matches in "
            f"{layout.image_pairs}): use a larger input image or check the segmentation"
        )
    return max(models.values(), key=lambda model: model.num_reg_images())


def verified_pairs(database: Path) -> dict[str, int]:
    """ "i_j" -> inlier count of the pairs COLMAP's verification kept (instance indices)."""
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        names = {image.image_id: int(image.name[:3]) for image in db.read_all_images()}
        pair_ids, counts = db.read_two_view_geometry_num_inliers()
    finally:
        db.close()
    found = {}
    for pair_id, count in zip(pair_ids, counts, strict=True):
        a, b = (names[k] for k in pycolmap.pair_id_to_image_pair(pair_id))
        if count > 0:
            found[f"{min(a, b)}_{max(a, b)}"] = int(count)
    return dict(sorted(found.items()))


def world_to_camera(image) -> np.ndarray:
    """(4, 4) world-to-camera (OpenCV axes) of a registered pycolmap image."""
    matrix = np.eye(4)
    matrix[:3] = image.cam_from_world().matrix()
    return matrix


def run(layout: Layout, n: int, train_res: int) -> list[int]:
    """Step 5: write the model and poses.npz; return the registered instances."""
    model = reconstruct(layout, n, train_res)
    model.write_binary(str(layout.sfm_outputs))
    model.write_text(str(layout.sfm_outputs))
    poses = {img.name: world_to_camera(img) for img in model.images.values() if img.has_pose}
    with atomic_write(layout.poses) as handle:
        np.savez(handle, poses)
    registered = sorted(int(name[:3]) for name in poses)
    focal = next(iter(model.cameras.values())).params[0]
    missing = sorted(set(range(n)) - set(registered))
    pairs = verified_pairs(layout.sfm_outputs / "database.db")
    print("step 5: verified pairs (inliers) " + ", ".join(f"{k}: {v}" for k, v in pairs.items()))
    print(
        f"step 5: registered instances {registered}"
        + (f", not registered {missing}" if missing else "")
        + f"; {model.num_points3D()} points, focal {focal:.2f} px at {train_res} px"
    )
    return registered
