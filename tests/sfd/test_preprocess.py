"""sfd.preprocess: pose conventions (round trip on synthetic cameras), the fixed bugs of steps
1-3, user errors, and the whole pipeline (steps 0-8) on a small ray-cast pile of textured boxes
whose poses are known exactly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates, zoom
from scipy.spatial.transform import Rotation

from geomkit.errors import OutputExistsError, run_main
from sfd.data import load_scene
from sfd.evaluation import pose_errors
from sfd.preprocess.__main__ import main
from sfd.preprocess.features import Features, rotate_image, unrotate_points
from sfd.preprocess.layout import Layout
from sfd.preprocess.matchers import SuperGlueMatcher
from sfd.preprocess.pairs import PairRange, good_range, longest_circular_run, match_pair
from sfd.preprocess.poses import FLIP, neus_c2w, object_poses, points_to_world
from sfd.preprocess.rotation import circular_distance, objective, optimize

BOX_HALF = np.array([1.0, 0.7, 0.45])


# --- a tiny pile: boxes with a different noise texture per face, ray-cast in numpy ---------


def box_poses(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4, 4) object-to-camera poses (OpenCV axes) on a grid: any in-plane angle, the same
    tilt +-15 degrees, so the instances show the same faces from nearby viewpoints."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        angles = [rng.uniform(0, 360), 35 + rng.uniform(-15, 15), 25 + rng.uniform(-15, 15)]
        poses[i, :3, :3] = Rotation.from_euler("ZXY", angles, degrees=True).as_matrix()
        r, c = divmod(i, cols)
        poses[i, :3, 3] = [(c - (cols - 1) / 2) * 2.6, (r - (rows - 1) / 2) * 2.6, 8.0]
        poses[i, 2, 3] += rng.uniform(-0.5, 0.5)
    return poses


def render_boxes(size: int, focal: float, poses: np.ndarray, seed: int = 1):
    """(rgb (S, S, 3) float in [0, 1], labels (S, S) 0..n) of the boxes seen from the origin."""
    rng = np.random.default_rng(seed)
    textures = np.stack(
        [0.6 * zoom(rng.random((24, 24)), 8, order=3) + 0.4 * zoom(rng.random((96, 96)), 2, order=1)
         for _ in range(6)]
    )  # fmt: skip
    v, u = np.mgrid[0:size, 0:size] + 0.5
    rays = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1)
    rays = rays.reshape(-1, 3)
    depth, labels, shade = np.full(len(rays), np.inf), np.zeros(len(rays), int), np.zeros(len(rays))
    light = np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0])
    for k, pose in enumerate(poses):
        R, t = pose[:3, :3], pose[:3, 3]
        origin, dirs = -R.T @ t, rays @ R
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-BOX_HALF - origin) / dirs, (BOX_HALF - origin) / dirs
        near, far = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
        hit = (far >= near) & (near > 0) & (near < depth)
        q = (origin + dirs[hit] * near[hit, None]) / BOX_HALF
        rows = np.arange(len(q))
        axis = np.argmax(np.abs(q), 1)
        sign = np.sign(q[rows, axis])
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        uv = (q[rows[:, None], other] + 1) / 2 * (textures.shape[1] - 1)
        albedo = map_coordinates(textures, [axis * 2 + (sign > 0), uv[:, 0], uv[:, 1]], order=1)
        normal = np.zeros_like(q)
        normal[rows, axis] = sign
        depth[hit], labels[hit] = near[hit], k + 1
        shade[hit] = albedo * (0.25 + 0.75 * np.abs(normal @ R.T @ light))
    rgb = np.clip(shade.reshape(size, size, 1) * [1.0, 0.9, 0.8], 0, 1)
    return rgb, labels.reshape(size, size)


def write_box_pile(root: Path, n: int, size: int, focal: float) -> np.ndarray:
    """raw/000_rgb.png and raw/000_instance_seg.png of ``n`` boxes; returns their poses."""
    poses = box_poses(n)
    rgb, labels = render_boxes(size, focal, poses)
    (root / "raw").mkdir(parents=True)
    cv2.imwrite(str(root / "raw/000_rgb.png"), np.rint(rgb[..., ::-1] * 255).astype(np.uint8))
    seg = np.rint(labels / n * 255).astype(np.uint8)
    cv2.imwrite(str(root / "raw/000_instance_seg.png"), seg)
    return poses


# --- step 6/7 conventions --------------------------------------------------------------------


def random_rigid(rng, scale: float = 1.0) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix() * scale
    matrix[:3, 3] = rng.normal(size=3) * 3
    return matrix


def project_opengl(points: np.ndarray, c2w: np.ndarray, focal: float) -> np.ndarray:
    """(P, 2) pixel positions, the trainer's model: u = W/2 + f x/-z, v = H/2 - f y/-z."""
    cam = (np.concatenate([points, np.ones((len(points), 1))], 1) @ np.linalg.inv(c2w).T)[:, :3]
    return np.stack([focal * cam[:, 0] / -cam[:, 2], -focal * cam[:, 1] / -cam[:, 2]], 1)


def test_virtual_cameras_round_trip_to_instance_poses():
    """Synthetic truth (real camera, instance poses G_i) -> COLMAP virtual cameras in an
    arbitrary similarity frame -> O_i, points: the points land where the real camera sees each
    instance, O_0 = I, O_i maps instance 0's points onto instance i's, and O_i equals the true
    motion G_i G_0^-1 up to the frame (pose errors ~0)."""
    rng = np.random.default_rng(3)
    camera_c2w = random_rigid(rng)  # real camera, OpenGL axes
    G = np.stack([random_rigid(rng) for _ in range(5)])  # object -> world
    similarity = random_rigid(rng, scale=0.37)  # object frame -> COLMAP frame
    object_points = rng.normal(size=(40, 3))
    virtual_c2w = np.linalg.inv(G) @ camera_c2w  # virtual camera i in the object frame
    w2c = np.stack([FLIP @ np.linalg.inv(_rigid_part(similarity, v)) for v in virtual_c2w])
    colmap_points = (np.c_[object_points, np.ones(40)] @ similarity.T)[:, :3]

    c2w = neus_c2w(w2c)
    O = object_poses(c2w)
    worlds = [points_to_world(colmap_points, w2c[i], c2w[0]) for i in range(5)]
    for i in range(5):
        true_world = (np.c_[object_points, np.ones(40)] @ G[i].T)[:, :3]
        np.testing.assert_allclose(
            project_opengl(worlds[i], c2w[0], 1.0),
            project_opengl(true_world, camera_c2w, 1.0),
            atol=1e-9,
        )
        np.testing.assert_allclose(
            (np.c_[worlds[0], np.ones(40)] @ O[i].T)[:, :3], worlds[i], atol=1e-9
        )
    np.testing.assert_allclose(O[0], np.eye(4), atol=1e-12)
    errors = pose_errors(O, G, c2w[0], camera_c2w)
    assert errors.rotation_deg.max() < 1e-5
    assert errors.translation_normalized.max() < 1e-6


def _rigid_part(similarity: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """c2w of a camera after a similarity of its world (rotation and centre move, no scale)."""
    scale = np.cbrt(np.linalg.det(similarity[:3, :3]))
    out = np.eye(4)
    out[:3, :3] = similarity[:3, :3] / scale @ c2w[:3, :3]
    out[:3, 3] = similarity[:3, :3] @ c2w[:3, 3] + similarity[:3, 3]
    return out


# --- steps 1-3 -------------------------------------------------------------------------------


def test_unrotate_points_inverts_rotate_image():
    """A bright pixel found in the rotated image maps back to where it was (corner-origin px)."""
    image = np.zeros((64, 64), np.uint8)
    image[20, 41] = 255
    for angle in (0, 37, 180, 293):
        turned = rotate_image(cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5), angle)
        y, x = np.unravel_index(np.argmax(turned), turned.shape)
        back = unrotate_points(np.array([[x + 0.5, y + 0.5]]), 64, angle)[0]
        assert np.abs(back - [41.5, 20.5]).max() < 1.0, angle


def test_failed_essential_matrix_leaves_no_stale_rotation():
    """Rotation 0 matches (R found); rotation 90 has two matches: its R is None, not rotation
    0's (the original kept the last R of the pair)."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(10, 90, (60, 2))
    desc = rng.normal(size=(60, 128)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    few = Features(xy[:2], desc[:2])

    def features(i, angle):
        return Features(xy, desc) if i == 0 or angle == 0 else few

    result = match_pair(features, 0, 1, 90, lambda k, p: p * 1.0, 100, 100)
    assert result["0"]["R"] is not None
    assert len(result["90"]["mkpts0back"]) == 2 and result["90"]["R"] is None


def test_good_range_counts_zero_start_and_wraps():
    """A run through 0 degrees is one circular run; a single good rotation widens by +-delta."""
    counts = {a: (5, True) for a in range(0, 360, 30)}
    counts.update({330: (40, True), 0: (50, True), 30: (45, True)})
    assert longest_circular_run(np.array([a in (330, 0, 30) for a in sorted(counts)])) == (11, 3)
    found = good_range(0, 1, counts)
    assert (found.start, found.end) == (330, 390) and found.weight == 45.0
    counts = {a: (5, True) for a in range(0, 360, 30)}
    counts[0] = (50, True)
    found = good_range(2, 3, counts)
    assert (found.start, found.end) == (-30, 30)
    counts[0] = (50, False)  # no relative pose: not good
    assert isinstance(good_range(2, 3, counts), str)


def test_global_rotation_uses_ranges_starting_at_zero():
    """Ranges that start at 0 degrees constrain the solution (the original dropped them)."""
    truth = np.array([0.0, 0.0, 120.0, 250.0])
    ranges = [
        PairRange(0, 1, 0, 10, 1.0),
        PairRange(1, 2, 115, 125, 1.0),
        PairRange(0, 3, 245, 255, 1.0),
        PairRange(2, 3, 125, 135, 1.0),
    ]
    angles = optimize(ranges, 4, iters=5)
    diff = (angles - truth + 180) % 360 - 180
    assert np.abs(diff).max() < 10.0
    pairs = np.array([[r.i, r.j, np.radians(r.start), np.radians(r.end), 1.0] for r in ranges])
    assert objective(np.radians(angles[1:]), pairs) < 1e-6
    assert circular_distance(np.radians(350.0), 0.0, np.radians(10.0)) == pytest.approx(
        np.radians(10.0)
    )


# --- user errors -----------------------------------------------------------------------------


def _args(root: Path, n: int, *extra: str) -> list[str]:
    return ["--object", root.name, "--instances", str(n), "--data_root", str(root.parent),
            "--crop_size", "192", "--train_res", "192", *extra]  # fmt: skip


def test_user_errors_exit_2_and_write_nothing(tmp_path, capsys):
    root = tmp_path / "box"
    write_box_pile(root, 3, 256, 350.0)
    for extra, expected in [
        (["--instances", "4"], "holds 3 instance values"),
        (["--crop_size", "40"], "does not fit a 40 px crop"),
        (["--matcher", "superglue"], "superpoint_v1.pth"),
        (["--steps", "3"], "step 3 needs"),
        (["--omnidata_ckpt", "omni.ckpt"], "omni.ckpt not found"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, _args(root, 3) + extra)
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == ["raw"]
    cv2.imwrite(str(root / "raw/000_rgb.png"), np.zeros((256, 200, 3), np.uint8))
    with pytest.raises(Exception, match="square image"):
        main(_args(root, 3, "--steps", "0"))


# --- the whole pipeline ------------------------------------------------------------------------


def test_pipeline_recovers_box_pile_poses(tmp_path, capsys):
    """Steps 0-8 on 4 boxes (384 px input, 192 px training image): every instance registers,
    each object pose is within 2 degrees and 5% of the scene size of the truth, the
    focal within 2% of the true 262.5 px, the points project onto their instance's mask with
    the trainer's camera model, and sfd.data reads the result; a rerun is refused without
    --overwrite and step 3 reruns alone with it."""
    root = tmp_path / "box"
    truth = write_box_pile(root, 4, 384, 525.0)
    assert main(_args(root, 4, "--rotate_delta_angle", "12", "--iters", "5")) == 0
    assert "no Omnidata checkpoint given" in capsys.readouterr().out

    order = np.loadtxt(root / "non_empty_indexes.txt").astype(int).tolist()
    assert order == [0, 1, 2, 3]
    poses = json.loads((root / "object_pred_pose.json").read_text())
    assert list(poses) == [f"box_{k:02d}" for k in range(4)]
    O = np.array([poses[k] for k in poses])
    np.testing.assert_allclose(O[0], np.eye(4), atol=1e-9)
    c2w = np.array(
        json.loads((root / "transforms_train.json").read_text())["frames"][0]["transform_matrix"]
    )
    errors = pose_errors(O, truth, c2w, FLIP)  # true camera: OpenCV axes at the origin
    print("rotation error (deg)", errors.rotation_deg.numpy().round(3), "translation / size",
          errors.translation_normalized.numpy().round(4))  # fmt: skip
    assert errors.rotation_deg.max() < 2.0
    assert errors.translation_normalized.max() < 0.05

    transforms = json.loads((root / "transforms_train.json").read_text())
    assert isinstance(transforms["focal"], str)
    focal = float(transforms["focal"])
    assert abs(focal / 262.5 - 1) < 0.02
    points = np.load(root / "points_world.npy", allow_pickle=True).item()
    seg = cv2.imread(str(root / "train/000_instance_seg.png"), cv2.IMREAD_UNCHANGED)
    labels = np.rint(seg / 255 * 4).astype(int)
    for k in range(4):
        uv = np.rint(project_opengl(points[f"points_world_{k}"], c2w, focal) + 96).astype(int)
        inside = (uv >= 0).all(1) & (uv < 192).all(1)
        on_mask = labels[uv[inside, 1], uv[inside, 0]] == k + 1
        assert inside.all() and on_mask.mean() > 0.9, (k, on_mask.mean())

    scene = load_scene(root)
    assert scene.n_instances == 4 and scene.focal == pytest.approx(focal)

    with pytest.raises(OutputExistsError):
        main(_args(root, 4, "--steps", "3"))
    assert main(_args(root, 4, "--steps", "3", "--iters", "2", "--overwrite")) == 0


# --- SuperPoint + SuperGlue matcher ------------------------------------------------------------


def identity_superglue_weights(folder: Path) -> Path:
    """The authors' three files (random, tests.geomkit.test_superglue) with SuperGlue's graph
    and keypoint-encoder updates zeroed, a projection of 160 x identity and the dustbin at
    cosine 0.998: it then matches SuperPoint descriptors by sharp mutual similarity (random
    SuperPoint descriptors are all within a few degrees of each other)."""
    from tests.geomkit.test_superglue import write_official_weights

    write_official_weights(folder)
    path = folder / "superglue_outdoor.pth"
    state = torch.load(path, weights_only=True)
    for key in state:
        if key.startswith("kenc.encoder.12.") or ".mlp.3." in key:
            state[key] = torch.zeros_like(state[key])
    state["final_proj.weight"] = 160.0 * torch.eye(256)[..., None]
    state["final_proj.bias"] = torch.zeros(256)
    state["bin_score"] = torch.tensor(0.998 * 160.0**2 / 16.0)  # scores: 160^2 cos / sqrt(256)
    torch.save(state, path)
    return folder


def test_superglue_matcher_finds_a_shift_by_one_cell(tmp_path):
    """SuperPoint keypoints come back in corner-origin pixels (integers + 0.5) with unit
    256-d descriptors; an image shifted by 8 px (one SuperPoint cell) matches most keypoints
    to their shifted selves."""
    matcher = SuperGlueMatcher.load(identity_superglue_weights(tmp_path / "w"))
    rng = np.random.default_rng(0)
    gray = cv2.resize(rng.uniform(0, 255, (24, 30)), (240, 192), interpolation=cv2.INTER_CUBIC)
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    a, b = matcher.extract(gray), matcher.extract(np.roll(gray, 8, axis=1))
    assert 20 < len(a) <= 1024 and a.image_size == (192, 240) and len(a.scores) == len(a)
    np.testing.assert_allclose(a.xy - 0.5, np.round(a.xy - 0.5))
    np.testing.assert_allclose(np.linalg.norm(a.descriptors, axis=1), 1.0, rtol=1e-5)
    matches0 = matcher.match(a, b)
    valid = matches0 >= 0
    offsets = b.xy[matches0[valid]] - a.xy[valid]
    shifted = (np.abs(offsets - [8.0, 0.0]).max(1) < 1.0).mean()
    print(f"{valid.sum()} of {len(a)} keypoints matched, {shifted:.0%} shifted by 8 px")
    assert valid.sum() > 0.3 * len(a) and shifted > 0.9


def test_superglue_cli_writes_step_1_files(tmp_path):
    """Steps 0-1 on two boxes with --matcher superglue: the pair file holds every trial angle
    with matched training-image points (the crop canvas reaches past the 192 px image by up
    to 0.75 x 192 px) and a relative rotation or None (the original's format)."""
    root = tmp_path / "box"
    write_box_pile(root, 2, 256, 350.0)
    weights = identity_superglue_weights(tmp_path / "w")
    args = _args(root, 2, "--steps", "0,1", "--rotate_delta_angle", "180", "--matcher",
                 "superglue", "--superglue_weights", str(weights))  # fmt: skip
    assert main(args) == 0
    counts = []
    with np.load(Layout(root, 192).pair_matches(0, 1), allow_pickle=True) as data:
        assert sorted(data.files, key=int) == ["0", "180"]
        for angle in data.files:
            entry = data[angle].item()
            x0, x1, R = entry["mkpts0back"], entry["mkpts1back"], entry["R"]
            assert x0.shape == x1.shape and x0.shape[1:] == (2,)
            assert (np.abs(np.r_[x0, x1] - 96) <= 96 + 144).all()
            assert R is None or R.shape == (3, 3)
            counts.append(len(x0))
    print("matches per angle", counts)
    assert sum(counts) > 0


def test_superglue_weight_errors_exit_2_before_writing(tmp_path, capsys):
    root = tmp_path / "box"
    write_box_pile(root, 3, 256, 350.0)
    weights = identity_superglue_weights(tmp_path / "w")
    (weights / "superglue_outdoor.pth").unlink()
    for extra, expected in [
        (["--matcher", "superglue", "--superglue_weights", str(weights)],
         f"{weights / 'superglue_outdoor.pth'} not found"),
        (["--superglue_weights", str(weights)], "only used with --matcher superglue"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, _args(root, 3) + extra)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err and err.count("\n") == 1
    assert sorted(p.name for p in root.iterdir()) == ["raw"]
