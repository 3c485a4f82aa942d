"""Steps 6 and 7: SfM virtual cameras -> the real camera, per-instance object poses and points.

Each SfM image is one instance seen by a "virtual camera" looking at the one canonical object.
COLMAP's world-to-camera W_i (OpenCV axes) becomes NeuS/Blender axes by conjugation with
F = diag(1, -1, -1, 1), and the camera-to-world C_i = (F W_i F)^-1. The real camera is virtual
camera 0 (its world is the training world), so the object-to-world pose of instance i is
O_i = C_0 C_i^-1 (O_0 = I), and a point X (COLMAP frame) seen in image i lies in the world at
C_0 F W_i X. ``object_scale_matrix.json`` is diag(r, r, r, 1) with the centre of instance 0's
points (the 99% nearest their centroid) and r half their bounding-box diagonal.
"""

from __future__ import annotations

import pickle

import numpy as np

from geomkit.errors import InputError
from geomkit.io import save_json
from geomkit.io.files import atomic_write
from sfd.preprocess.layout import Layout, stem

FLIP = np.diag([1.0, -1.0, -1.0, 1.0])


def neus_c2w(w2c_opencv: np.ndarray) -> np.ndarray:
    """(..., 4, 4) camera-to-world in NeuS/Blender axes from COLMAP world-to-camera."""
    return np.linalg.inv(FLIP @ w2c_opencv @ FLIP)


def object_poses(c2w: np.ndarray) -> np.ndarray:
    """(N, 4, 4) object-to-world O_i = C_0 C_i^-1 of virtual cameras c2w (N, 4, 4)."""
    return c2w[0] @ np.linalg.inv(c2w)


def points_to_world(points: np.ndarray, w2c_opencv: np.ndarray, ref_c2w: np.ndarray) -> np.ndarray:
    """(P, 3) COLMAP points seen by virtual camera i -> the world of the real camera."""
    camera = FLIP @ w2c_opencv
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    return (homogeneous @ (ref_c2w @ camera).T)[:, :3]


def scale_matrix(points: np.ndarray, keep_ratio: float = 0.99) -> np.ndarray:
    """(4, 4) diag(r, r, r, 1) + centre of the ``keep_ratio`` points nearest their centroid."""
    distance = np.linalg.norm(points - points.mean(0), axis=1)
    kept = points[np.argsort(distance)[: max(int(len(points) * keep_ratio), 1)]]
    radius = 0.5 * float(np.linalg.norm(kept.max(0) - kept.min(0)))
    matrix = np.diag([radius, radius, radius, 1.0])
    matrix[:3, 3] = kept.mean(0)
    return matrix


def read_poses(layout: Layout) -> dict[str, np.ndarray]:
    """Image name -> (4, 4) COLMAP world-to-camera from ``poses.npz``."""
    try:
        with np.load(layout.poses, allow_pickle=True) as data:
            poses = data["arr_0"].item()
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise InputError(f"{layout.poses} is not step 5's pose dict ({err})") from None
    return {name: np.asarray(m, dtype=np.float64) for name, m in poses.items()}


def observed_points(layout: Layout, n: int) -> dict[int, np.ndarray]:
    """Instance -> (P, 3) COLMAP points of its image's observations (one row per observation,
    as the original), for the registered instances that see any point."""
    import pycolmap

    try:
        model = pycolmap.Reconstruction(str(layout.sfm_outputs))
    except (RuntimeError, ValueError) as err:
        raise InputError(f"{layout.sfm_outputs} holds no COLMAP model ({err})") from None
    seen = {}
    for image in model.images.values():
        ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
        if ids and image.has_pose:
            seen[int(image.name[:3])] = np.array([model.points3D[k].xyz for k in ids])
    return dict(sorted(seen.items()))


def run_points(layout: Layout, n: int) -> list[int]:
    """Step 6: write ``points_world.npy`` and ``non_empty_indexes.txt``."""
    poses = read_poses(layout)
    seen = {i: p for i, p in observed_points(layout, n).items() if f"{stem(i)}.png" in poses}
    if not seen:
        raise InputError(f"no registered instance sees an SfM point in {layout.sfm_outputs}")
    order = list(seen)
    ref = neus_c2w(poses[f"{stem(order[0])}.png"])
    parts = [points_to_world(seen[i], poses[f"{stem(i)}.png"], ref) for i in order]
    saved = {"points_world_all": np.concatenate(parts)}
    saved.update({f"points_world_{k}": part for k, part in enumerate(parts)})
    with atomic_write(layout.points_world) as handle:
        np.save(handle, saved, allow_pickle=True)
    with atomic_write(layout.non_empty, "w") as handle:
        np.savetxt(handle, np.array(order, dtype=np.float64))
    print(f"step 6: {len(saved['points_world_all'])} points from instances {order}")
    return order


def read_non_empty(layout: Layout, n: int) -> list[int]:
    """Instance indices of ``non_empty_indexes.txt`` (the original read a misspelled name and
    silently fell back to all instances)."""
    try:
        values = np.loadtxt(layout.non_empty, ndmin=1)
    except (OSError, ValueError) as err:
        raise InputError(f"{layout.non_empty}: not one index per line ({err})") from None
    order = [int(v) for v in values]
    if not order or any(not 0 <= i < n for i in order):
        raise InputError(f"{layout.non_empty} must list instance indices in 0..{n - 1}")
    return order


def read_points(layout: Layout) -> dict[str, np.ndarray]:
    try:
        return np.load(layout.points_world, allow_pickle=True).item()
    except (OSError, ValueError, AttributeError, pickle.UnpicklingError) as err:
        raise InputError(f"{layout.points_world} is not step 6's point dict ({err})") from None


def read_focal(layout: Layout) -> float:
    """Refined focal length (px) of the shared SfM camera."""
    import pycolmap

    model = pycolmap.Reconstruction(str(layout.sfm_outputs))
    return float(next(iter(model.cameras.values())).params[0])


def run_poses(layout: Layout, n: int, object_name: str) -> np.ndarray:
    """Step 7: write object_pred_pose.json, object_scale_matrix.json, transforms_*.json."""
    order = read_non_empty(layout, n)
    poses = read_poses(layout)
    missing = [i for i in order if f"{stem(i)}.png" not in poses]
    if missing:
        raise InputError(f"{layout.poses} has no pose for instances {missing}; rerun step 5")
    c2w = neus_c2w(np.stack([poses[f"{stem(i)}.png"] for i in order]))
    objects = object_poses(c2w)
    save_json(
        layout.scale_matrix, {"scale_matrix": scale_matrix(read_points(layout)["points_world_0"])}
    )
    save_json(layout.object_pose, {f"{object_name}_{k:02d}": m for k, m in enumerate(objects)})
    focal = repr(read_focal(layout))
    for split in ("train", "test"):
        frame = {"file_path": f"{split}/000", "transform_matrix": c2w[0]}
        save_json(layout.transforms(split), {"focal": focal, "frames": [frame]})
    print(f"step 7: poses of instances {order} written; focal {float(focal):.2f} px")
    return objects
