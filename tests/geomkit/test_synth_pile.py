"""The Structure-from-Duplicates pile (geomkit.synth.pile): every written file read back with
plain numpy / JSON and checked against the others (segmentation, camera, poses, scale matrix,
canonical mesh, visible points, normals), determinism, and the real sample's formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geomkit.errors import ConfigError, OutputExistsError
from geomkit.io import read_image, read_ply
from geomkit.ops.rasterize import rasterize_mesh
from geomkit.synth import cached_pile, make_pile, make_shape, pile_cameras, read_pile
from geomkit.synth.__main__ import main as synth_main
from geomkit.synth.pile import FILL

N = 6
TINY = {"n_instances": 3, "train_res": 48, "raw_res": 64, "mesh_resolution": 40}


@pytest.fixture(scope="module")
def pile_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pile") / "chair"
    make_pile(out, n_instances=N, shape="chair", train_res=256, raw_res=512, mesh_resolution=64)
    return out


def load(root: Path, name: str):
    return json.loads((root / name).read_text())


def seg_values(path: Path) -> np.ndarray:
    return np.rint(read_image(path)[..., 0] * 255).astype(np.int64)


def camera(root: Path) -> tuple[np.ndarray, float]:
    meta = load(root, "transforms_train.json")
    return np.array(meta["frames"][0]["transform_matrix"]), float(meta["focal"])


def project_sfd(points: np.ndarray, c2w: np.ndarray, focal: float, res: int) -> np.ndarray:
    """(P, 2) integer (row, col) of world points, by SfD's pinhole: OpenGL camera, rays through
    integer pixel positions, principal point (res/2, res/2)."""
    cam = (points - c2w[:3, 3]) @ c2w[:3, :3]
    u = res / 2 + focal * cam[:, 0] / -cam[:, 2]
    v = res / 2 - focal * cam[:, 1] / -cam[:, 2]
    return np.stack([np.rint(v), np.rint(u)], 1).astype(np.int64)


def test_segmentation_has_one_value_per_instance_and_each_is_large(pile_dir):
    expected = {0} | {round(k / N * 255) for k in range(1, N + 1)}
    for folder, res in (("train", 256), ("raw", 512)):
        seg = seg_values(pile_dir / folder / "000_instance_seg.png")
        assert seg.shape == (res, res)
        assert set(np.unique(seg).tolist()) == expected
        rgb = read_image(pile_dir / folder / "000_rgb.png")
        assert rgb.shape == (res, res, 3)
    seg = seg_values(pile_dir / "train" / "000_instance_seg.png")
    sizes = [(seg == round(k / N * 255)).sum() for k in range(1, N + 1)]
    assert min(sizes) >= 200, sizes
    mask = seg_values(pile_dir / "train" / "000_mask.png")
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert np.array_equal(mask > 0, seg > 0)
    # nothing touches the border: every copy lies wholly inside the image
    assert not seg[[0, -1]].any() and not seg[:, [0, -1]].any()


def test_visible_points_project_into_their_instance(pile_dir):
    points = np.load(pile_dir / "points_world.npy", allow_pickle=True).item()
    c2w, focal = camera(pile_dir)
    seg = seg_values(pile_dir / "train" / "000_instance_seg.png")
    parts = [points[f"points_world_{i}"] for i in range(N)]
    assert np.array_equal(points["points_world_all"], np.concatenate(parts))
    for i, part in enumerate(parts):
        assert len(part) >= 300, (i, len(part))
        row, col = project_sfd(part, c2w, focal, 256).T
        hits = (seg[row.clip(0, 255), col.clip(0, 255)] == round((i + 1) / N * 255)).mean()
        assert hits >= 0.99, (i, hits)  # a half-pixel shift of the convention gives ~0.95


def test_pose_files_map_the_canonical_mesh_onto_each_instance(pile_dir):
    mesh = read_ply(pile_dir / "gt" / "mesh.ply")
    radius = json.loads((pile_dir / "gt" / "pile.json").read_text())["radius"]
    assert np.linalg.norm(mesh.vertices, axis=1).max() <= radius * (1 + 1e-6)
    pred = load(pile_dir, "object_pred_pose.json")
    gt = load(pile_dir, "blender_object_gt_pose.json")
    keys = [f"chair_{i:02d}" for i in range(N)]
    assert list(pred) == keys and list(gt) == keys
    poses = np.array([pred[k] for k in keys])
    scale = np.array(load(pile_dir, "object_scale_matrix.json")["scale_matrix"])
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    truth = np.array([gt[k] for k in keys])
    np.testing.assert_allclose(poses, truth @ np.linalg.inv(truth[0]), atol=1e-12)
    # every copy stands upright on the ground plane z = 0
    unit = mesh.vertices / radius  # SfD's canonical frame, which O_i S maps to the world
    world = unit @ (poses @ scale)[:, :3, :3].transpose(0, 2, 1)
    world += (poses @ scale)[:, None, :3, 3]
    np.testing.assert_allclose(world[..., 2].min(1), 0.0, atol=1e-6)  # PLY stores float32
    # rasterise all copies as placed by O_i S in the written camera: the instance map agrees
    c2w, focal = camera(pile_dir)
    n_faces = len(mesh.faces)
    faces = mesh.faces[None] + len(mesh.vertices) * np.arange(N)[:, None, None]
    cameras = pile_cameras(c2w, focal, 256, 256)
    face_idx = rasterize_mesh(world.reshape(-1, 3), faces.reshape(-1, 3), cameras).face_idx[0]
    ids = np.where(face_idx >= 0, face_idx // n_faces + 1, 0)
    seg = seg_values(pile_dir / "train" / "000_instance_seg.png")
    for k in range(1, N + 1):
        ours, theirs = ids == k, seg == round(k / N * 255)
        iou = (ours & theirs).sum() / (ours | theirs).sum()
        assert iou >= 0.99, (k, iou)


def test_normals_are_unit_vectors_in_the_opengl_camera_frame(pile_dir):
    normal = read_image(pile_dir / "train" / "000_normal.png").astype(np.float64)
    covered = seg_values(pile_dir / "train" / "000_mask.png") > 0
    assert (normal[~covered] == 1.0).all()
    n = normal[covered] * 2 - 1
    assert np.abs(np.linalg.norm(n, axis=1) - 1).max() < 0.02
    c2w, focal = camera(pile_dir)
    rows, cols = np.nonzero(covered)
    rays = np.stack([(cols - 128) / focal, -(rows - 128) / focal, -np.ones(len(rows))], 1)
    facing = ((n * rays).sum(1) < 0).mean()
    assert facing >= 0.99, facing
    # seat tops (horizontal, copies not tilted) turn into world +z; 8-bit rounding alone can
    # shorten a unit vector by 0.2%, i.e. look 3 degrees off unless renormalised
    up = (n @ c2w[:3, :3].T)[:, 2] / np.linalg.norm(n, axis=1)
    assert (up > np.cos(np.radians(3))).mean() >= 0.1


def test_json_and_text_formats(pile_dir):
    train, test = load(pile_dir, "transforms_train.json"), load(pile_dir, "transforms_test.json")
    assert train == test
    assert isinstance(train["focal"], str) and float(train["focal"]) > 0
    assert len(train["frames"]) == 1 and train["frames"][0]["file_path"] == "train/000"
    c2w = np.array(train["frames"][0]["transform_matrix"])
    assert c2w.shape == (4, 4)
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.array(load(pile_dir, "object_scale_matrix.json")["scale_matrix"]).shape == (4, 4)
    lines = (pile_dir / "non_empty_indexes.txt").read_text().splitlines()
    assert lines == [f"{float(i):.18e}" for i in range(N)]
    pile = read_pile(pile_dir)
    assert pile.n_instances == N and pile.name == "chair"
    info = load(pile_dir, "gt/pile.json")
    assert info["settings"]["seed"] == 0 and info["radius"] == pile.radius


@pytest.mark.realdata
def test_formats_match_the_authors_sample(pile_dir, shared_data):
    sample = shared_data / "sfd" / "airplane"
    for name in ("transforms_train.json", "transforms_test.json", "object_scale_matrix.json"):
        assert _structure(load(pile_dir, name)) == _structure(load(sample, name)), name
    ours, theirs = load(pile_dir, "object_pred_pose.json"), load(sample, "object_pred_pose.json")
    assert [k.replace("chair", "airplane") for k in ours] == list(theirs)  # both have N = 6
    assert _structure(list(ours.values())) == _structure(list(theirs.values()))
    sample_lines = (sample / "non_empty_indexes.txt").read_text().splitlines()
    assert (pile_dir / "non_empty_indexes.txt").read_text().splitlines() == sample_lines
    for name in ("000_instance_seg.png", "000_mask.png", "000_rgb.png"):  # L8, L8, RGB8
        ours, theirs = (cv2.imread(str(p / "train" / name), -1) for p in (pile_dir, sample))
        assert (ours.ndim, ours.dtype) == (theirs.ndim, theirs.dtype), name


def _structure(value):
    """The JSON skeleton: key names and list lengths, with every leaf replaced by its type."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return type(value).__name__


def symmetry_gaps(vertices: np.ndarray) -> list[float]:
    """Mean distance from the rotated vertices to the nearest original vertex, for rotations
    about z by 30..330 degrees and half-turns about x and y."""
    tree = cKDTree(vertices)
    rotations = [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])]
    for a in np.radians(np.arange(30, 331, 10)):
        rotations.append(
            np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        )
    return [float(tree.query(vertices @ r.T)[0].mean()) for r in rotations]


def test_the_chair_has_no_rotational_symmetry(pile_dir):
    """Poses are unambiguous: no rotation maps the canonical shape onto itself (a lamp, made of
    solids of revolution, is the control that the measure finds a symmetry)."""
    chair = read_ply(pile_dir / "gt" / "mesh.ply").vertices
    chair = chair / np.linalg.norm(np.ptp(chair, axis=0)) * 2  # to the unit sphere
    assert min(symmetry_gaps(chair)) > 0.05  # unit-sphere units; the mesh spacing is ~0.02
    lamp = make_shape("lamp", 0).mesh(40).vertices
    assert max(symmetry_gaps(lamp)[2:]) < 0.01


def test_same_seed_same_bytes_and_the_cli_agrees(tmp_path):
    make_pile(tmp_path / "a", seed=5, **TINY)
    args = ["pile", "--out", str(tmp_path / "b"), "--seed", "5", "--n-instances", "3"]
    synth_main([*args, "--train-res", "48", "--raw-res", "64", "--mesh-resolution", "40"])
    make_pile(tmp_path / "c", seed=6, **TINY)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 15
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("train/000_rgb.png", "blender_object_gt_pose.json", "gt/mesh.ply"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_refuses_to_overwrite_and_bad_settings(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="taken"):
        make_pile(tmp_path / "taken", **TINY)
    assert (tmp_path / "taken" / "file.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="n_instances"):
        make_pile(tmp_path / "x", **{**TINY, "n_instances": 0})
    with pytest.raises(ConfigError, match="raw_res"):
        make_pile(tmp_path / "x", **{**TINY, "raw_res": 32})
    with pytest.raises(ConfigError, match="shape"):
        make_pile(tmp_path / "x", shape="teapot", **TINY)
    with pytest.raises(ConfigError, match="fov_deg"):
        make_pile(tmp_path / "x", fov_deg=120.0, **TINY)
    assert not (tmp_path / "x").exists()


def test_cached_pile_is_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOMKIT_SYNTH_CACHE", str(tmp_path / "cache"))
    first = cached_pile(seed=1, **TINY)
    stamp = os.stat(first / "train" / "000_rgb.png").st_mtime_ns
    assert cached_pile(seed=1, **TINY) == first
    assert os.stat(first / "train" / "000_rgb.png").st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]
    pile = read_pile(first)
    np.testing.assert_allclose(pile.scale_matrix[:3, :3] @ pile.scale_matrix[:3, :3].T,
                               np.eye(3) * pile.radius**2, atol=1e-12)  # fmt: skip
    assert pile.cameras(64).focal_length[0, 0].item() == pytest.approx(pile.focal * 64 / 48)
    assert torch.equal(pile.cameras().image_size[0], torch.tensor([48, 48]))


def test_field_of_view_sets_the_focal_and_the_distance(tmp_path):
    """fov_deg fixes the focal, and the camera stands where the pile spans FILL of the image
    half-width: a wider view brings it closer (stronger perspective), the poses unchanged."""
    spans, distances = [], []
    for fov in (40.0, 75.0):
        pile = make_pile(tmp_path / f"fov{fov:g}", seed=2, fov_deg=fov, **TINY)
        assert pile.focal == pytest.approx(24 / np.tan(np.radians(fov) / 2), rel=1e-12)
        mesh = read_ply(pile.root / "gt" / "mesh.ply")
        placed = pile.poses  # object frame to world
        world = mesh.vertices @ placed[:, :3, :3].transpose(0, 2, 1) + placed[:, None, :3, 3]
        world = world.reshape(-1, 3)
        uv, _ = pile.cameras().project(torch.as_tensor(world))
        spans.append(float((uv[0] - 24.5).abs().max()) / 24)
        distances.append(float(np.linalg.norm(pile.c2w[:3, 3] - world.mean(0))))
        seg = seg_values(pile.root / "train" / "000_instance_seg.png")
        assert len(np.unique(seg)) == 4
    np.testing.assert_allclose(spans, FILL, atol=1e-3)  # PLY stores float32
    assert distances[0] > 1.5 * distances[1], distances
