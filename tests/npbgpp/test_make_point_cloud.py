"""python -m npbgpp.make_point_cloud: layouts, the PLY it writes, missing images said once,
user errors as one line and exit 2, nothing overwritten."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from pykdtree.kdtree import KDTree

from geomkit.errors import run_main
from geomkit.io import read_ply
from geomkit.synth import cached_scene
from npbgpp.make_point_cloud import detect_layout, main

# The textured box of tests/geomkit/test_sfm.py (SIFT finds its checkerboard corners).
SCENE = dict(
    shape="box", views=16, image_size=(192, 192), cameras="orbit", camera_distance=1.4, seed=1
)


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def median_distance_to_gt(ply, scene) -> float:
    gt = read_ply(scene / "gt_points.ply").points.astype(np.float64)
    points = read_ply(ply).points.astype(np.float64)
    return float(np.median(KDTree(gt).query(points)[0]))


@pytest.mark.parametrize("layout", ["colmap", "volsdf"])
def test_sparse_cloud_from_a_posed_scene(layout, tmp_path, capsys):
    scene = cached_scene(layout=layout, **SCENE)
    out = tmp_path / "mvs_pc.ply"
    code, stdout, err = run([scene, "--out", out, "--no-dense"], capsys)
    assert code == 0, err
    assert detect_layout(scene) == {"colmap": "colmap", "volsdf": "idr"}[layout]
    cloud = read_ply(out)
    assert len(cloud.points) >= 30 and cloud.colors is not None
    assert median_distance_to_gt(out, scene) < 0.01
    assert "images used: " in stdout and "/16 (" in stdout
    error = float(stdout.split("mean reprojection error ")[1].split(" px")[0])
    assert error < 1.0


def test_nerf_frames_without_images_are_reported_once(tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(cached_scene(layout="nerf", **SCENE), scene)
    (scene / "train" / "r_3.png").unlink()
    (scene / "train" / "r_7.png").unlink()
    out = tmp_path / "pc.ply"
    code, stdout, err = run([scene, "--out", out, "--no-dense", "--format", "nerf"], capsys)
    assert code == 0, err
    assert err.count("missing") == 1
    assert "2 of 16 images" in err and "train/r_3.png" in err and "other 14" in err
    assert "/14 (" in stdout
    assert median_distance_to_gt(out, scene) < 0.01


def test_max_images_keeps_evenly_spaced_views(tmp_path, capsys):
    scene = cached_scene(layout="colmap", **SCENE)
    code, stdout, err = run(
        [scene, "--out", tmp_path / "pc.ply", "--no-dense", "--max-images", "12"], capsys
    )
    assert code == 0, err
    assert "/12 (" in stdout


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    scene = cached_scene(layout="colmap", **SCENE)
    out = tmp_path / "pc.ply"
    out.write_bytes(b"keep me")
    code, stdout, err = run([scene, "--out", out, "--no-dense"], capsys)
    assert code == 2 and out.read_bytes() == b"keep me"
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{tmp}/nowhere"], "scene folder not found"),
        (["{tmp}"], "no COLMAP model"),
        (["{tmp}", "--format", "colmap"], "no COLMAP model"),
        (["{tmp}", "--format", "nerf"], "transforms"),
        (["{tmp}", "--format", "bogus"], "invalid choice"),
        (["{tmp}", "--max-images", "1"], "--max-images"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code, _, err = run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_scene_without_enough_images_is_an_error(tmp_path, capsys):
    scene = tmp_path / "scene"
    (scene / "images").mkdir(parents=True)
    meta = {
        "fl_x": 100.0,
        "w": 64,
        "h": 64,
        "frames": [
            {"file_path": f"images/{i}.png", "transform_matrix": np.eye(4).tolist()}
            for i in range(3)
        ],
    }
    (scene / "transforms.json").write_text(json.dumps(meta))
    code, _, err = run([scene], capsys)
    assert code == 2 and "0 image(s) found" in err and not (scene / "mvs_pc.ply").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_fox_photos(shared_data, tmp_path, capsys):
    """The instant-ngp fox: 67 frames listed, 17 images absent. Sparse only (the dense sweep
    of 50 1080x1920 views is a separate, longer run)."""
    start = time.perf_counter()
    out = tmp_path / "mvs_pc.ply"
    code, stdout, err = run([shared_data / "nerf_fox", "--out", out, "--no-dense"], capsys)
    seconds = time.perf_counter() - start
    assert code == 0, err
    assert err.count("missing") == 1 and "17 of 67 images" in err and "other 50" in err
    points = int(stdout.split("triangulated points: ")[1].split(",")[0])
    error = float(stdout.split("mean reprojection error ")[1].split(" px")[0])
    print(
        f"fox: {points} points, {error:.3f} px, {stdout.split('images used: ')[1]}, {seconds:.0f} s"
    )
    assert points > 3000 and error < 1.5
    assert "images used: 50/50" in stdout or "images used: 49/50" in stdout
    assert len(read_ply(out).points) == points
