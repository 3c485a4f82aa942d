"""geomkit.cameras against OpenCV, pycolmap, the PyTorch3D docs and hand-derived projections."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pycolmap
import pytest
import torch
from scipy.spatial.transform import Rotation

from geomkit.cameras import (
    Cameras,
    from_colmap,
    from_idr,
    from_nerf_transforms,
    from_opencv,
    from_opengl_c2w,
    ndc_to_pixel,
    pixel_to_ndc,
    to_idr,
    to_nerf_transforms,
    to_opencv,
    to_opengl_c2w,
    write_colmap_binary,
    write_colmap_text,
)
from geomkit.errors import InputError, OutputExistsError
from tests.helpers import assert_close

F64 = torch.float64
HEIGHT, WIDTH = 480, 640
DISTORTION = [0.1, -0.05, 1e-3, -2e-3]


def _opencv_rig(n: int, seed: int = 0, skew: float = 0.0, distortion: bool = True) -> dict:
    """n OpenCV cameras about 8 units from the origin, looking roughly at it (numpy float64)."""
    rng = np.random.default_rng(seed)
    R = Rotation.random(n, random_state=seed).as_matrix()
    t = np.concatenate([rng.uniform(-0.5, 0.5, (n, 2)), rng.uniform(7, 9, (n, 1))], axis=1)
    K = np.zeros((n, 3, 3))
    K[:, 0, 0] = rng.uniform(450, 550, n)
    K[:, 1, 1] = rng.uniform(450, 550, n)
    K[:, 0, 1] = skew
    K[:, 0, 2] = rng.uniform(300, 340, n)
    K[:, 1, 2] = rng.uniform(220, 260, n)
    K[:, 2, 2] = 1.0
    dist = np.tile(DISTORTION, (n, 1)) if distortion else None
    return {"R": R, "t": t, "K": K, "dist": dist}


def _cameras(rig: dict, dtype=F64) -> Cameras:
    dist = None if rig["dist"] is None else torch.tensor(rig["dist"], dtype=dtype)
    return from_opencv(
        torch.tensor(rig["R"], dtype=dtype),
        torch.tensor(rig["t"], dtype=dtype),
        torch.tensor(rig["K"], dtype=dtype),
        (HEIGHT, WIDTH),
        dist,
    )


def _cv2_project(
    points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray, dist
) -> np.ndarray:
    rvec = cv2.Rodrigues(R)[0]
    dist = np.zeros(4) if dist is None else np.asarray(dist)
    return cv2.projectPoints(points, rvec, t, K, dist)[0][:, 0]


def _points(n: int = 50, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, (n, 3))


# ---------------------------------------------------------------- projection and unprojection


def test_project_matches_cv2_project_points_with_distortion():
    rig = _opencv_rig(4)
    points = _points()
    uv, depth = _cameras(rig).project(torch.from_numpy(points))
    for i in range(4):
        expected = _cv2_project(points, rig["R"][i], rig["t"][i], rig["K"][i], rig["dist"][i])
        # OpenCV puts the top-left pixel centre at (0, 0), we at (0.5, 0.5).
        assert_close(uv[i], expected + 0.5, atol=1e-9, what=f"uv camera {i}")
        expected_depth = points @ rig["R"][i].T[:, 2] + rig["t"][i][2]
        assert_close(depth[i], expected_depth, atol=1e-12, what=f"depth camera {i}")


def test_project_with_skew_matches_the_pinhole_matrix():
    # cv2.projectPoints ignores K[0, 1], so skew is checked against P = K [R | t].
    rig = _opencv_rig(3, skew=2.5, distortion=False)
    points = _points()
    uv, _ = _cameras(rig).project(torch.from_numpy(points))
    for i in range(3):
        homogeneous = (rig["K"][i] @ (rig["R"][i] @ points.T + rig["t"][i][:, None])).T
        assert_close(uv[i], homogeneous[:, :2] / homogeneous[:, 2:] + 0.5, atol=1e-9)


def test_unproject_inverts_project_to_1e5_pixels_with_distortion():
    rig = _opencv_rig(3)
    rig["dist"] = np.tile([0.25, -0.1, 2e-3, -3e-3], (3, 1))  # stronger than usual lenses
    cameras = _cameras(rig)
    rng = np.random.default_rng(2)
    uv = torch.from_numpy(rng.uniform([0, 0], [WIDTH, HEIGHT], (3, 400, 2)))
    depth = torch.from_numpy(rng.uniform(1.0, 10.0, (3, 400)))
    world = cameras.unproject(uv, depth)
    uv_again, depth_again = cameras.project(world)
    assert_close(uv_again, uv, atol=1e-5, what="uv")
    assert_close(depth_again, depth, atol=1e-9, what="depth")


def test_undistortion_matches_cv2_undistort_points():
    rig = _opencv_rig(1)
    cameras = _cameras(rig)
    pixels = np.random.default_rng(3).uniform([0, 0], [WIDTH, HEIGHT], (300, 2))
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)
    normalized = cv2.undistortPointsIter(
        (pixels - 0.5)[:, None], rig["K"][0], rig["dist"][0], None, None, criteria
    )[:, 0]
    # Unproject at depth 1 and read the normalised OpenCV coordinates back.
    view = cameras.world_to_view(
        cameras.unproject(torch.from_numpy(pixels)[None], torch.ones(1, 300, dtype=F64))
    )
    assert_close(-view[0, :, :2], normalized, atol=1e-9)


def test_float32_cameras_project_and_unproject():
    rig = _opencv_rig(2)
    cameras = _cameras(rig, dtype=torch.float32)
    points = torch.from_numpy(_points()).float()
    uv, depth = cameras.project(points)
    assert uv.dtype == torch.float32 and depth.dtype == torch.float32
    expected = _cv2_project(_points(), rig["R"][0], rig["t"][0], rig["K"][0], rig["dist"][0])
    assert_close(uv[0], expected + 0.5, atol=2e-3, what="float32 uv")
    assert_close(cameras.unproject(uv, depth), points.expand(2, -1, -1), atol=1e-4, what="points")


def test_world_to_view_and_camera_center():
    rig = _opencv_rig(3, distortion=False)
    cameras = _cameras(rig)
    centre = -np.einsum("nji,nj->ni", rig["R"], rig["t"])  # -R^T t
    assert_close(cameras.camera_center(), centre, atol=1e-12, what="centre")
    assert_close(
        cameras.world_to_view(cameras.camera_center()[:, None]), np.zeros((3, 1, 3)), atol=1e-12
    )
    points = _points(5)
    view = cameras.world_to_view(torch.from_numpy(points))
    x_cam = np.einsum("nij,pj->npi", rig["R"], points) + rig["t"][:, None]
    assert_close(view, x_cam * [-1.0, -1.0, 1.0], atol=1e-12, what="view = (-x, -y, z) of OpenCV")


# ---------------------------------------------------------------- NDC (PyTorch3D docs numbers)


def test_ndc_matches_the_pytorch3d_docs_example():
    # https://pytorch3d.org/docs/cameras: image (h, w) = (128, 256), fcl_screen 76.8 <-> fcl_ndc
    # 1.2, prp_screen (115.2, 32) <-> prp_ndc (0.2, 0.5).
    cameras = Cameras(
        R=torch.eye(3, dtype=F64)[None],
        T=torch.zeros(1, 3, dtype=F64),
        focal_length=torch.tensor([[76.8, 76.8]], dtype=F64),
        principal_point=torch.tensor([[115.2, 32.0]], dtype=F64),
        image_size=torch.tensor([[128, 256]]),
    )
    assert_close(cameras.focal_length_ndc(), [[1.2, 1.2]], atol=1e-12, what="focal")
    assert_close(cameras.principal_point_ndc(), [[0.2, 0.5]], atol=1e-12, what="principal point")


def test_pixel_ndc_corners_and_round_trip():
    size = torch.tensor([[128, 256]])  # H, W: the short side (H) spans [-1, 1], W spans [-2, 2]
    corners = torch.tensor([[[0.0, 0.0], [256.0, 128.0], [128.0, 64.0]]], dtype=F64)
    expected = [[[2.0, 1.0], [-2.0, -1.0], [0.0, 0.0]]]  # +x left, +y up
    assert_close(pixel_to_ndc(corners, size), expected, atol=1e-12)
    uv = torch.rand(2, 10, 2, dtype=F64) * 300
    sizes = torch.tensor([[128, 256], [300, 200]])
    assert_close(ndc_to_pixel(pixel_to_ndc(uv, sizes), sizes), uv, atol=1e-12)


def test_projection_in_ndc_follows_pytorch3d_formula():
    rig = _opencv_rig(2, distortion=False)
    cameras = _cameras(rig)
    points = torch.from_numpy(_points())
    uv, _ = cameras.project(points)
    view = cameras.world_to_view(points)
    # PyTorch3D PerspectiveCameras in NDC: x = fx * X / Z + px, y = fy * Y / Z + py.
    expected = (
        cameras.focal_length_ndc()[:, None] * view[..., :2] / view[..., 2:]
        + (cameras.principal_point_ndc()[:, None])
    )
    assert_close(pixel_to_ndc(uv, cameras.image_size), expected, atol=1e-12)


# ---------------------------------------------------------------- the Cameras structure


def test_indexing_to_clone_len():
    cameras = _cameras(_opencv_rig(4))
    assert len(cameras) == 4
    assert len(cameras[1]) == 1 and len(cameras[-1]) == 1
    assert_close(cameras[-1].T, cameras.T[3:], atol=0.0, what="negative index")
    assert_close(cameras[1:3].R, cameras.R[1:3], atol=0.0, what="slice")
    picked = cameras[torch.tensor([3, 0])]
    assert_close(picked.focal_length, cameras.focal_length[[3, 0]], atol=0.0, what="tensor index")
    assert_close(picked.distortion, cameras.distortion[[3, 0]], atol=0.0, what="distortion")
    assert len(cameras[torch.tensor([True, False, True, False])]) == 2
    assert len(cameras[[0, 2]]) == 2
    assert len(cameras[np.int64(2)]) == 1 and len(cameras[torch.tensor(2)]) == 1
    with pytest.raises(IndexError):
        cameras[4]
    as32 = cameras.to(dtype=torch.float32)
    assert as32.R.dtype == torch.float32 and as32.skew.dtype == torch.float32
    assert as32.image_size.dtype == torch.int64
    copy = cameras.clone()
    copy.T[0, 0] += 1.0
    assert float(cameras.T[0, 0]) != float(copy.T[0, 0])


def _valid_fields() -> dict:
    return {
        "R": torch.eye(3).repeat(2, 1, 1),
        "T": torch.zeros(2, 3),
        "focal_length": torch.full((2, 2), 100.0),
        "principal_point": torch.full((2, 2), 50.0),
        "image_size": torch.tensor([[100, 100], [100, 100]]),
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("T", torch.zeros(3, 3), "T must have shape"),
        ("focal_length", torch.full((2,), 100.0), "focal_length must have shape"),
        ("principal_point", torch.tensor([[50.0, float("nan")], [50.0, 50.0]]), "non-finite"),
        ("R", torch.diag(torch.tensor([-1.0, 1.0, 1.0])).repeat(2, 1, 1), "not a rotation"),
        ("focal_length", torch.full((2, 2), -1.0), "positive"),
        ("T", torch.zeros(2, 3, dtype=F64), "dtype"),
        ("image_size", torch.tensor([[100.5, 100.0], [100.0, 100.0]]), "integers"),
        ("distortion", torch.zeros(2, 5), "distortion must have shape"),
    ],
)
def test_invalid_cameras_raise_value_error(field, value, message):
    values = _valid_fields()
    values[field] = value
    with pytest.raises(ValueError, match=message):
        Cameras(**values)


# ---------------------------------------------------------------- OpenCV and OpenGL converters


def test_opencv_round_trip():
    rig = _opencv_rig(3, skew=1.5)
    cameras = _cameras(rig)
    R, t, K = to_opencv(cameras)
    assert_close(R, rig["R"], atol=1e-12, what="R")
    assert_close(t, rig["t"], atol=1e-12, what="t")
    assert_close(K, rig["K"], atol=1e-12, what="K")
    assert_close(cameras.principal_point, rig["K"][:, :2, 2] + 0.5, atol=1e-12, what="pp shift")
    assert_close(cameras.distortion, rig["dist"], atol=0.0, what="distortion")


def test_from_opencv_rejects_bad_input():
    rig = _opencv_rig(1)
    R, t, K = (torch.from_numpy(rig[key]) for key in ("R", "t", "K"))
    with pytest.raises(InputError, match="upper triangular"):
        from_opencv(R, t, K.transpose(1, 2), (HEIGHT, WIDTH))
    with pytest.raises(InputError, match="R_w2c"):
        from_opencv(R * 2.0, t, K, (HEIGHT, WIDTH))
    with pytest.raises(InputError, match="t_w2c must have shape"):
        from_opencv(R, t[:, :2], K, (HEIGHT, WIDTH))
    with pytest.raises(InputError, match="image_size"):
        from_opencv(R, t, K, (HEIGHT, WIDTH, 3))


def _opengl_pose(rig: dict) -> np.ndarray:
    """OpenGL c2w from OpenCV w2c: camera axes (x, -y, -z) of OpenCV's, centre -R^T t."""
    c2w = np.tile(np.eye(4), (len(rig["R"]), 1, 1))
    c2w[:, :3, :3] = np.transpose(rig["R"], (0, 2, 1)) @ np.diag([1.0, -1.0, -1.0])
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", rig["R"], rig["t"])
    return c2w


def test_opengl_round_trip_and_projection():
    rig = _opencv_rig(3, distortion=False)
    c2w = _opengl_pose(rig)
    focal = np.stack([rig["K"][:, 0, 0], rig["K"][:, 1, 1]], axis=1)
    principal = rig["K"][:, :2, 2] + 0.5
    cameras = from_opengl_c2w(torch.from_numpy(c2w), focal, principal, (HEIGHT, WIDTH))
    assert_close(to_opengl_c2w(cameras), c2w, atol=1e-12, what="round trip")
    assert_close(
        from_opengl_c2w(torch.from_numpy(c2w[:, :3]), focal, principal, (HEIGHT, WIDTH)).R,
        cameras.R,
        atol=0.0,
    )
    points = _points()
    uv, depth = cameras.project(torch.from_numpy(points))
    for i in range(3):
        # OpenGL camera looks down -z with y up: u = cx + fx x / -z, v = cy - fy y / -z.
        local = (points - c2w[i, :3, 3]) @ c2w[i, :3, :3]
        forward = -local[:, 2]
        expected = np.stack(
            [
                principal[i, 0] + focal[i, 0] * local[:, 0] / forward,
                principal[i, 1] - focal[i, 1] * local[:, 1] / forward,
            ],
            axis=1,
        )
        assert_close(uv[i], expected, atol=1e-9, what=f"uv {i}")
        assert_close(depth[i], forward, atol=1e-12, what=f"depth {i}")


def test_from_opengl_rejects_a_scaled_pose():
    c2w = np.eye(4)[None] * np.array([2.0, 2.0, 2.0, 1.0])[:, None]
    with pytest.raises(InputError, match="remove any scale"):
        from_opengl_c2w(c2w, [[100.0, 100.0]], [[50.0, 50.0]], (100, 100))


# ---------------------------------------------------------------- NeRF transforms.json


@pytest.mark.realdata
def test_nerf_fox_transforms_parse_and_project(shared_data):
    meta = json.loads((shared_data / "nerf_fox" / "transforms.json").read_text())
    cameras, paths = from_nerf_transforms(meta, dtype=F64)
    assert len(cameras) == 67 and len(paths) == 67
    assert paths[0] == "images/0001.jpg"
    assert_close(cameras.image_size, np.tile([1920, 1080], (67, 1)), atol=0, what="(H, W)")
    assert_close(cameras.distortion[0], [0.0578421, -0.0805099, -0.000980296, 0.00015575], atol=0.0)
    assert_close(cameras.focal_length[0], [1375.52, 1374.49], atol=1e-9)
    assert_close(cameras.principal_point[0], [554.558, 965.268], atol=1e-9)
    # A point 3 units in front of frame 5's camera, projected by OpenCV from the OpenGL pose.
    c2w = np.asarray(meta["frames"][5]["transform_matrix"])
    point = c2w[:3, 3] - 3.0 * c2w[:3, 2] + 0.4 * c2w[:3, 0] - 0.2 * c2w[:3, 1]
    R_w2c = np.diag([1.0, -1.0, -1.0]) @ c2w[:3, :3].T
    t_w2c = -R_w2c @ c2w[:3, 3]
    # instant-ngp's cx, cy are continuous coordinates already (no 0.5 shift).
    K = np.array([[meta["fl_x"], 0, meta["cx"]], [0, meta["fl_y"], meta["cy"]], [0, 0, 1]])
    dist = [meta[k] for k in ("k1", "k2", "p1", "p2")]
    expected = _cv2_project(point[None], R_w2c, t_w2c, K, dist)
    uv, depth = cameras[5].project(torch.from_numpy(point)[None])
    # cv2 goes through a Rodrigues vector, which re-orthonormalises the slightly non-orthonormal
    # rotation read from JSON (about 1e-8): hence 1e-4 px rather than 1e-9.
    assert_close(uv[0], expected, atol=1e-4, what="uv")
    assert_close(depth, [[3.0]], atol=1e-6, what="depth")


def _blender_meta() -> dict:
    rig = _opencv_rig(2, distortion=False)
    return {
        "camera_angle_x": 0.6911112070083618,
        "frames": [
            {"file_path": f"./train/r_{i}", "rotation": 0.0, "transform_matrix": c2w.tolist()}
            for i, c2w in enumerate(_opengl_pose(rig))
        ],
    }


def test_nerf_blender_dict_projects_like_original_nerf():
    meta = _blender_meta()
    cameras, paths = from_nerf_transforms(meta, image_size=(800, 800), dtype=F64)
    assert paths == ["./train/r_0", "./train/r_1"]
    focal = 0.5 * 800 / math.tan(0.5 * meta["camera_angle_x"])
    assert_close(cameras.focal_length, np.full((2, 2), focal), atol=1e-9, what="focal")
    assert_close(cameras.principal_point, np.full((2, 2), 400.0), atol=0.0, what="image centre")
    points = _points()
    uv, _ = cameras.project(torch.from_numpy(points))
    for i, frame in enumerate(meta["frames"]):
        # Original NeRF: dirs = ((i - W/2) / f, -(j - H/2) / f, -1) in the c2w camera frame.
        c2w = np.asarray(frame["transform_matrix"])
        local = (points - c2w[:3, 3]) @ c2w[:3, :3]
        expected = np.stack(
            [400 + focal * local[:, 0] / -local[:, 2], 400 - focal * local[:, 1] / -local[:, 2]], 1
        )
        assert_close(uv[i], expected, atol=1e-9, what=f"uv {i}")


def test_nerf_camera_angle_y_and_per_frame_overrides():
    meta = _blender_meta()
    meta.update(w=640, h=480, camera_angle_y=0.5)
    meta["frames"][1].update(fl_x=300.0, cx=100.0, k1=0.1)
    cameras, _ = from_nerf_transforms(meta, dtype=F64)
    fx = 0.5 * 640 / math.tan(0.5 * meta["camera_angle_x"])
    fy = 0.5 * 480 / math.tan(0.25)
    assert_close(cameras.focal_length, [[fx, fy], [300.0, fy]], atol=1e-9, what="focal")
    assert_close(cameras.principal_point, [[320.0, 240.0], [100.0, 240.0]], atol=0.0, what="pp")
    assert_close(cameras.distortion, [[0.0] * 4, [0.1, 0.0, 0.0, 0.0]], atol=0.0, what="distortion")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("frames"), "'frames'"),
        (
            lambda m: m["frames"][1].pop("transform_matrix"),
            r"frames\[1\] has no 'transform_matrix'",
        ),
        (lambda m: m["frames"][0].pop("file_path"), "'file_path'"),
        (lambda m: m.pop("camera_angle_x"), "'fl_x' or 'camera_angle_x'"),
        (lambda m: m.update(camera_angle_x="wide"), "'camera_angle_x' must be a finite number"),
        (lambda m: m.update(camera_model="OPENCV_FISHEYE"), "OPENCV_FISHEYE"),
        (lambda m: m.update(k3=0.2), "'k3'"),
        (lambda m: m["frames"][0].update(transform_matrix=[[1, 0], [0, 1]]), "4x4"),
    ],
)
def test_nerf_bad_transforms_raise_input_error_naming_the_key(edit, message):
    meta = _blender_meta()
    edit(meta)
    with pytest.raises(InputError, match=message):
        from_nerf_transforms(meta, image_size=(800, 800))


def test_nerf_image_size_missing_or_inconsistent():
    with pytest.raises(InputError, match="pass image_size"):
        from_nerf_transforms(_blender_meta())
    meta = _blender_meta()
    meta.update(w=800, h=600)
    with pytest.raises(InputError, match="image_size"):
        from_nerf_transforms(meta, image_size=(800, 800))


@pytest.mark.parametrize("shared_intrinsics", [True, False])
def test_nerf_round_trip(shared_intrinsics):
    rig = _opencv_rig(3, seed=4)
    if shared_intrinsics:
        rig["K"][:] = rig["K"][0]
    cameras = _cameras(rig, dtype=torch.float32)
    meta = to_nerf_transforms(cameras, ["a.png", "b.png", "c.png"])
    assert ("fl_x" in meta) == shared_intrinsics
    again, paths = from_nerf_transforms(json.loads(json.dumps(meta)))
    assert paths == ["a.png", "b.png", "c.png"]
    for name in ("R", "T", "focal_length", "principal_point", "distortion"):
        assert_close(getattr(again, name), getattr(cameras, name), atol=1e-5, what=name)
    assert_close(again.image_size, cameras.image_size, atol=0)


# ---------------------------------------------------------------- COLMAP


def _mixed_rig() -> tuple[Cameras, dict, list[str]]:
    """Five cameras: three share pinhole intrinsics, two share OPENCV intrinsics."""
    rig = _opencv_rig(5, seed=5)
    rig["K"][:3] = rig["K"][0]
    rig["K"][3:] = rig["K"][3]
    rig["dist"][:3] = 0.0
    names = ["img_c.png", "img_a.png", "img_e.png", "img_b.png", "img_d.png"]
    return _cameras(rig), rig, names


@pytest.mark.parametrize("writer", [write_colmap_text, write_colmap_binary])
def test_colmap_write_then_read_with_pycolmap(tmp_path, writer):
    cameras, rig, names = _mixed_rig()
    writer(tmp_path, cameras, names)
    reconstruction = pycolmap.Reconstruction(str(tmp_path))
    models = sorted(camera.model.name for camera in reconstruction.cameras.values())
    assert models == ["OPENCV", "PINHOLE"]
    points = _points(20)
    by_name = {image.name: image for image in reconstruction.images.values()}
    for i, name in enumerate(names):
        image = by_name[name]
        camera = reconstruction.cameras[image.camera_id]
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        assert_close(pose.matrix()[:, :3], rig["R"][i], atol=1e-12, what=f"{name} R")
        assert_close(pose.matrix()[:, 3], rig["t"][i], atol=1e-12, what=f"{name} t")
        # pycolmap's own projection (independent of ours) against cv2 with the original K.
        projected = np.stack([image.project_point(p) for p in points])
        expected = _cv2_project(points, rig["R"][i], rig["t"][i], rig["K"][i], rig["dist"][i])
        assert_close(projected, expected + 0.5, atol=1e-8, what=f"{name} pycolmap projection")
        ours, _ = cameras[i].project(torch.from_numpy(points))
        assert_close(ours[0], projected, atol=1e-8, what=f"{name} our projection")
    again, read_names = from_colmap(tmp_path, dtype=F64)
    order = sorted(range(5), key=lambda i: names[i])
    assert read_names == [names[i] for i in order]
    for field in ("R", "T", "focal_length", "principal_point", "distortion", "image_size"):
        assert_close(getattr(again, field), getattr(cameras, field)[order], atol=1e-12, what=field)


def test_colmap_reads_hand_written_models(tmp_path):
    (tmp_path / "cameras.txt").write_text(
        "# hand-written\n"
        "1 SIMPLE_PINHOLE 640 480 500 320 240\n"
        "2 SIMPLE_RADIAL 640 480 510 321 241 0.05\n"
        "3 RADIAL 320 200 300 160 100 0.01 -0.02\n"
    )
    (tmp_path / "images.txt").write_text(
        "1 1 0 0 0 0 0 5 1 a.jpg\n\n2 1 0 0 0 0 0 5 2 b.jpg\n\n3 1 0 0 0 0 0 5 3 c.jpg\n\n"
    )
    (tmp_path / "points3D.txt").write_text("")
    cameras, names = from_colmap(tmp_path, dtype=F64)
    assert names == ["a.jpg", "b.jpg", "c.jpg"]
    assert_close(cameras.focal_length, [[500, 500], [510, 510], [300, 300]], atol=0.0)
    assert_close(cameras.principal_point, [[320, 240], [321, 241], [160, 100]], atol=0.0)
    assert_close(cameras.distortion, [[0, 0, 0, 0], [0.05, 0, 0, 0], [0.01, -0.02, 0, 0]], atol=0)
    assert_close(cameras.image_size, [[480, 640], [480, 640], [200, 320]], atol=0)
    reconstruction = pycolmap.Reconstruction(str(tmp_path))
    point = np.array([0.3, -0.2, 1.0])
    uv, _ = cameras.project(torch.from_numpy(point)[None])
    for i, image in enumerate(sorted(reconstruction.images.values(), key=lambda im: im.name)):
        assert_close(uv[i, 0], image.project_point(point), atol=1e-9, what=image.name)


def test_colmap_unsupported_model_and_bad_folders(tmp_path):
    reconstruction = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "FULL_OPENCV", 500.0, 64, 48)
    reconstruction.add_camera_with_trivial_rig(camera)
    image = pycolmap.Image(name="x.png", camera_id=1, image_id=1)
    reconstruction.add_image_with_trivial_frame(image, pycolmap.Rigid3d())
    with pytest.raises(InputError, match="FULL_OPENCV"):
        from_colmap(reconstruction)
    with pytest.raises(InputError, match="not found"):
        from_colmap(tmp_path / "missing")
    with pytest.raises(InputError, match="no cameras.bin or cameras.txt"):
        from_colmap(tmp_path)


def test_colmap_writers_refuse_to_overwrite_and_reject_skew(tmp_path):
    cameras, _, names = _mixed_rig()
    write_colmap_binary(tmp_path, cameras, names)
    with pytest.raises(OutputExistsError):
        write_colmap_binary(tmp_path, cameras, names)
    write_colmap_binary(tmp_path, cameras[:2], names[:2], overwrite=True)
    assert len(pycolmap.Reconstruction(str(tmp_path)).images) == 2
    skewed = _cameras(_opencv_rig(1, skew=1.0))
    with pytest.raises(InputError, match="skew"):
        write_colmap_text(tmp_path / "skew", skewed, ["a.png"])
    with pytest.raises(InputError, match="whitespace"):
        write_colmap_text(tmp_path / "names", cameras[:1], ["a b.png"])


# ---------------------------------------------------------------- IDR / VolSDF


def _idr_matrices(rig: dict) -> tuple[np.ndarray, np.ndarray]:
    n = len(rig["R"])
    world_mats = np.tile(np.eye(4), (n, 1, 1))
    world_mats[:, :3, :4] = rig["K"] @ np.concatenate([rig["R"], rig["t"][..., None]], axis=2)
    scale_mat = np.diag([3.0, 3.0, 3.0, 1.0])
    scale_mat[:3, 3] = [0.2, -0.1, 0.4]
    return world_mats, np.tile(scale_mat, (n, 1, 1))


def test_idr_projection_matches_the_projection_matrix():
    rig = _opencv_rig(3, skew=0.8, distortion=False)
    world_mats, scale_mats = _idr_matrices(rig)
    cameras = from_idr(torch.from_numpy(world_mats), torch.from_numpy(scale_mats), (HEIGHT, WIDTH))
    points_norm = np.random.default_rng(6).uniform(-0.5, 0.5, (40, 3))
    uv, _ = cameras.project(torch.from_numpy(points_norm))
    for i in range(3):
        P = world_mats[i] @ scale_mats[i]
        homogeneous = (P @ np.concatenate([points_norm, np.ones((40, 1))], 1).T).T
        assert_close(uv[i], homogeneous[:, :2] / homogeneous[:, 2:3] + 0.5, atol=1e-8, what=f"{i}")
    assert_close(cameras.skew, np.full(3, 0.8), atol=1e-9, what="skew kept")


def test_idr_round_trip_and_sign_of_p():
    rig = _opencv_rig(3, skew=0.8, distortion=False)
    world_mats, scale_mats = _idr_matrices(rig)
    cameras = from_idr(world_mats, scale_mats, (HEIGHT, WIDTH))
    assert cameras.dtype == F64
    # A projection matrix is defined up to scale; to_idr writes the one with K[2, 2] = 1.
    again = to_idr(cameras, scale_mats).numpy()
    ratio = world_mats[:, 2, 2] / again[:, 2, 2]
    assert_close(again[:, :3] * ratio[:, None, None], world_mats[:, :3], atol=1e-9, rtol=1e-9)
    assert_close(again[:, 3], world_mats[:, 3], atol=1e-12, what="bottom row")
    round_trip = from_idr(again, scale_mats, (HEIGHT, WIDTH))
    for field in ("R", "T", "focal_length", "principal_point", "skew"):
        assert_close(getattr(round_trip, field), getattr(cameras, field), atol=1e-9, what=field)
    flipped = from_idr(-world_mats, scale_mats, (HEIGHT, WIDTH))
    assert_close(flipped.R, cameras.R, atol=1e-9, what="P and -P are the same camera")
    unscaled = from_idr(world_mats, None, (HEIGHT, WIDTH))
    assert_close(to_opencv(unscaled).R_w2c, rig["R"], atol=1e-9, what="no scale_mat: world frame")
    assert_close(unscaled.T * torch.tensor([-1.0, -1.0, 1.0], dtype=F64), rig["t"], atol=1e-9)


# ---------------------------------------------------------------- one point, every convention


def test_known_point_lands_on_the_same_pixel_in_every_convention(tmp_path):
    R_cv = Rotation.from_euler("xyz", [10.0, -20.0, 30.0], degrees=True).as_matrix()
    t_cv = np.array([0.1, -0.2, 3.0])
    fx, fy, cx, cy = 800.0, 820.0, 320.0, 240.0  # our convention: OpenCV K has 319.5, 239.5
    point = np.array([0.3, -0.2, 0.5])
    x_cam = R_cv @ point + t_cv
    expected = np.array([fx * x_cam[0] / x_cam[2] + cx, fy * x_cam[1] / x_cam[2] + cy])
    K_cv = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    size = (HEIGHT, WIDTH)
    projected = {}

    # PyTorch3D: X_view = X @ R + T with R = R_cv^T diag(-1, -1, 1), T = diag(-1, -1, 1) t.
    flip = np.array([-1.0, -1.0, 1.0])
    p3d = Cameras(
        R=torch.from_numpy(R_cv.T * flip)[None],
        T=torch.from_numpy(t_cv * flip)[None],
        focal_length=torch.tensor([[fx, fy]], dtype=F64),
        principal_point=torch.tensor([[cx, cy]], dtype=F64),
        image_size=torch.tensor([size]),
    )
    projected["pytorch3d"] = p3d.project(torch.from_numpy(point)[None])[0]

    opencv = from_opencv(R_cv[None], t_cv[None], K_cv[None], size)
    projected["opencv"] = opencv.project(torch.from_numpy(point)[None])[0]
    projected["cv2.projectPoints + 0.5"] = _cv2_project(point[None], R_cv, t_cv, K_cv, None) + 0.5

    c2w_gl = np.eye(4)
    c2w_gl[:3, :3] = R_cv.T @ np.diag([1.0, -1.0, -1.0])
    c2w_gl[:3, 3] = -R_cv.T @ t_cv
    opengl = from_opengl_c2w(c2w_gl[None], [[fx, fy]], [[cx, cy]], size)
    projected["opengl"] = opengl.project(torch.from_numpy(point)[None])[0]

    meta = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": WIDTH, "h": HEIGHT}
    meta["frames"] = [{"file_path": "a.png", "transform_matrix": c2w_gl.tolist()}]
    nerf, _ = from_nerf_transforms(meta, dtype=F64)
    projected["nerf"] = nerf.project(torch.from_numpy(point)[None])[0]

    quat = Rotation.from_matrix(R_cv).as_quat()  # x, y, z, w
    (tmp_path / "cameras.txt").write_text(f"1 PINHOLE {WIDTH} {HEIGHT} {fx} {fy} {cx} {cy}\n")
    qvec = " ".join(repr(float(v)) for v in (quat[3], *quat[:3]))
    tvec = " ".join(repr(float(v)) for v in t_cv)
    (tmp_path / "images.txt").write_text(f"1 {qvec} {tvec} 1 a.png\n\n")
    (tmp_path / "points3D.txt").write_text("")
    colmap, _ = from_colmap(tmp_path, dtype=F64)
    projected["colmap"] = colmap.project(torch.from_numpy(point)[None])[0]
    image = next(iter(pycolmap.Reconstruction(str(tmp_path)).images.values()))
    projected["pycolmap"] = image.project_point(point)

    world_mat = np.eye(4)
    world_mat[:3] = K_cv @ np.concatenate([R_cv, t_cv[:, None]], axis=1)
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [0.1, 0.2, 0.3]
    point_norm = np.linalg.solve(scale_mat, np.append(point, 1.0))
    idr = from_idr(world_mat[None], scale_mat[None], size)
    projected["idr"] = idr.project(torch.from_numpy(point_norm[:3])[None])[0]
    homogeneous = world_mat @ scale_mat @ point_norm
    projected["P @ X + 0.5"] = homogeneous[:2] / homogeneous[2] + 0.5

    for name, uv in projected.items():
        uv = uv.reshape(2) if isinstance(uv, torch.Tensor) else np.reshape(uv, 2)
        assert_close(uv, expected, atol=1e-7, what=name)
