"""instant-ngp ``transforms.json`` scenes (npbgpp.datasets.ngp): a generated scene in the fox's
layout (32 x 48 images, one frame with k1 != 0, one image missing) read with the right
cameras, undistorted pixels and splits; bad files are one error line and exit status 2 through
the train_net CLI; and (slow) the real fox photos when ../shared/data/nerf_fox is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from geomkit.errors import InputError
from npbgpp.datasets import NgpScene, build_scene
from tests.npbgpp.test_train_net import fails

W, H = 32, 48
FX, FY, CX, CY = 40.0, 42.0, 16.5, 23.5
K1 = 0.2  # frame 2's radial distortion
CENTRES = [(1.0, 2.0, 3.0), (1.5, 2.0, 3.0), (2.0, 2.0, 3.0), (2.5, 2.0, 3.0), (3.0, 2.0, 3.0)]
MISSING = 3  # frame 3's image is not written

pytestmark = pytest.mark.usefixtures("one_thread")


def pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth grey pattern of OpenCV pixel coordinates of the pinhole image."""
    return 0.5 + 0.4 * np.sin(0.35 * u) * np.cos(0.25 * v)


def distorted_pattern() -> np.ndarray:
    """The (H, W) image a camera with k1 = K1 records of :func:`pattern`: each recorded pixel
    looks up the pinhole pixel it comes from (cv2.undistortPoints, independent of npbgpp)."""
    xd, yd = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    K = np.array([[FX, 0, CX - 0.5], [0, FY, CY - 0.5], [0, 0, 1]])
    points = np.stack([xd.ravel(), yd.ravel()], 1)[:, None, :]
    undistorted = cv2.undistortPoints(points, K, np.array([K1, 0, 0, 0]), P=K)[:, 0, :]
    return pattern(undistorted[:, 0], undistorted[:, 1]).reshape(H, W)


def write_png(path: Path, grey: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(np.clip(grey, 0, 1) * 65535).astype(np.uint16)
    cv2.imwrite(str(path), np.repeat(pixels[..., None], 3, axis=2))


def write_scene(root: Path, **changes) -> Path:
    """A fox-layout scene: global intrinsics, OpenGL camera-to-world poses (no rotation, the
    centres in CENTRES), frame 2 with its own k1, frame 3's image missing."""
    frames = []
    for i, centre in enumerate(CENTRES):
        pose = np.eye(4)
        pose[:3, 3] = centre
        frame = {"file_path": f"images/{i:04d}.png", "transform_matrix": pose.tolist()}
        if i == 2:
            frame["k1"] = K1
        frames.append(frame)
        if i != MISSING:
            xs, ys = np.meshgrid(np.arange(W), np.arange(H))
            image = distorted_pattern() if i == 2 else pattern(xs, ys)
            write_png(root / frame["file_path"], image)
    meta = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H, "k1": 0.0}
    meta.update({"k2": 0.0, "p1": 0.0, "p2": 0.0, "aabb_scale": 4, "frames": frames})
    meta.update(changes)
    root.mkdir(parents=True, exist_ok=True)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def config(root: Path, **changes) -> dict:
    cfg = {"type": "ngp", "data_root": str(root.parent), "scene_name": root.name}
    return {**cfg, "holdout_every": 2, "val_indices": None, "holdout_indices": None, **changes}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("ngp") / "fox")


def test_cameras_follow_geomkit_conventions(scene_dir, capsys):
    scene = build_scene(config(scene_dir))
    assert "1 of 5 images" in capsys.readouterr().err  # frame 3 reported, then dropped
    assert isinstance(scene, NgpScene) and scene.names == ["0000", "0001", "0002", "0004"]
    assert scene.cameras.distortion is None  # the scene's cameras are pinhole
    assert scene.cameras.image_size.tolist() == [[H, W]] * 4
    assert scene.cameras.focal_length[0].tolist() == [FX, FY]
    # 5 units in front of camera 0 (OpenGL looks down -z), 0.5 right and 0.25 up of its axis
    uv, depth = scene.cameras[[0]].project(torch.tensor([[1.5, 2.25, -2.0]]))
    torch.testing.assert_close(depth, torch.tensor([[5.0]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([CX + FX * 0.1, CY - FY * 0.05]))
    assert scene.split("holdout") == [0, 2] and scene.split("train") == [1, 3]


def test_downscale_scales_intrinsics(scene_dir):
    scene = build_scene(config(scene_dir, downscale=2))
    assert scene.cameras.image_size[0].tolist() == [H // 2, W // 2]
    assert tuple(scene.image(0).shape) == (3, H // 2, W // 2)
    uv, _ = scene.cameras[[0]].project(torch.tensor([[1.5, 2.25, -2.0]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([CX + FX * 0.1, CY - FY * 0.05]) / 2)


def test_distorted_view_is_undistorted(scene_dir):
    scene = build_scene(config(scene_dir))
    xs, ys = np.meshgrid(np.arange(W), np.arange(H))
    expected = torch.from_numpy(pattern(xs, ys)).float()
    inner = (slice(4, H - 4), slice(4, W - 4))  # the corners map outside the recorded image
    undistorted = scene.image(2)[0][inner]
    error = (undistorted - expected[inner]).abs().mean()
    raw = (torch.from_numpy(distorted_pattern()).float()[inner] - expected[inner]).abs().mean()
    assert error < 0.01 and raw > 5 * error, (float(error), float(raw))
    torch.testing.assert_close(scene.image(0)[0], expected, atol=1e-4, rtol=0)  # k1 = 0: as is


def test_image_of_another_size_is_an_error(tmp_path):
    scene_dir = write_scene(tmp_path / "s")
    write_png(scene_dir / "images" / "0001.png", np.zeros((H // 2, W // 2)))
    scene = build_scene(config(scene_dir))
    with pytest.raises(InputError, match=f"0001.png is {W // 2}x{H // 2} but .* w={W}, h={H}"):
        scene.image(1)


def cli_fails(tmp_path: Path, scene: Path, capsys) -> str:
    """The train_net CLI on ``scene`` exits 2 with one stderr line (returned)."""
    args = [
        "datasets=ngp_one_scene",
        f"datasets.data_root={scene.parent}",
        f"datasets.scene_name={scene.name}",
        "system=npbgpp_sphere",
        "system.feature_extractor.pretrained_encoder=false",
        "system.perceptual_loss=l1_ssim",
        "lpips=none",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    line = fails(tmp_path, args, capsys)
    assert not (tmp_path / "run").exists()
    return line


def test_no_frames_is_one_line(tmp_path, capsys):
    assert "no 'frames'" in cli_fails(tmp_path, write_scene(tmp_path / "s", frames=[]), capsys)


def test_non_numeric_focal_is_one_line(tmp_path, capsys):
    line = cli_fails(tmp_path, write_scene(tmp_path / "s", fl_x="1375.52 px"), capsys)
    assert "fl_x" in line and "transforms.json" in line


def test_unreadable_image_is_one_line(tmp_path, capsys):
    scene = write_scene(tmp_path / "s")
    write_png(scene / "images" / f"{MISSING:04d}.png", np.zeros((H, W)))  # no warning line
    (scene / "images" / "0000.png").write_bytes(b"not a png")
    assert "0000.png" in cli_fails(tmp_path, scene, capsys)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_fox_photos(shared_data, capsys):
    fox = shared_data / "nerf_fox"
    if not (fox / "transforms.json").is_file():
        pytest.skip(f"{fox} (instant-ngp's fox sample) is not on this machine")
    scene = build_scene(config(fox, downscale=8, holdout_every=8))
    assert "17 of 67 images" in capsys.readouterr().err
    assert len(scene) == 50 and scene.split("holdout") == [0, 8, 16, 24, 32, 40, 48]
    assert scene.cameras.image_size[0].tolist() == [240, 135]
    image = scene.image(5)
    assert tuple(image.shape) == (3, 240, 135) and 0.05 < float(image.mean()) < 0.95
