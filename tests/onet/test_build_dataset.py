"""python -m onet.build_dataset end to end on procedural shapes, checked against their exact
signed distance functions, get_r2n2_cameras.py's camera formulas, and the error paths."""

from __future__ import annotations

import hashlib
import math
import shutil

import numpy as np
import pytest
import yaml

from geomkit.errors import run_main
from geomkit.io import load_npz, read_image, read_mesh, write_obj, write_off, write_ply
from geomkit.mesh import contains, is_watertight
from geomkit.structures import TriMesh
from geomkit.synth import make_shape
from onet import build_dataset
from onet.choy import ChoyViews, choy_w2c_opencv
from onet.data.binvox import load_binvox
from tests.helpers import assert_close

N_POINTS = 4000
N_SURFACE = 3000
FAST_SAMPLING = ["--points", str(N_POINTS), "--pointcloud-size", str(N_SURFACE)]
SHAPES = {"torus": ".off", "sphere": ".obj", "box": ".ply"}
WRITERS = {".off": write_off, ".obj": write_obj, ".ply": write_ply}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run the entry point as ``python -m`` does; returns (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(build_dataset.main, argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def _write_shapes(folder) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    shapes = {}
    for name, suffix in SHAPES.items():
        shape = make_shape(name, seed=1)
        mesh = shape.mesh(48)
        if name == "sphere":
            mesh = TriMesh(
                mesh.vertices,
                mesh.faces,
                vertex_colors=np.tile([0.9, 0.1, 0.1], (len(mesh.vertices), 1)),
            )
        WRITERS[suffix](folder / f"{name}{suffix}", mesh)
        shapes[name] = shape
    return shapes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Three procedural watertight shapes built with --no-fusion; (OUT, shapes, input dir)."""
    root = tmp_path_factory.mktemp("build")
    shapes = _write_shapes(root / "meshes")
    argv = [
        str(root / "meshes"),
        str(root / "out"),
        "--no-fusion",
        "--val",
        "0.34",
        "--test",
        "0.34",
    ]
    assert build_dataset.main(argv + FAST_SAMPLING) == 0
    return root / "out", shapes, root / "meshes"


def _object(built, name):
    out, shapes, meshes = built
    return out / "00000000" / name, shapes[name], read_mesh(meshes / f"{name}{SHAPES[name]}")


def _to_input_frame(points, arrays):
    return points.astype(np.float64) * arrays["scale"] + arrays["loc"]


def test_every_object_has_every_file(built):
    out = built[0]
    expected = {"points.npz", "pointcloud.npz", "model.binvox", "model_watertight.off"}
    expected |= {f"img_choy2016/{i:03d}.jpg" for i in range(24)} | {"img_choy2016/cameras.npz"}
    for name in SHAPES:
        folder = out / "00000000" / name
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert files == expected, name


def test_points_npz(built):
    folder, shape, mesh = _object(built, "torus")
    arrays = load_npz(folder / "points.npz", {"points": (N_POINTS, 3), "loc": (3,), "scale": ()})
    assert set(arrays) == {"points", "occupancies", "loc", "scale"}
    assert arrays["points"].dtype == np.float16
    assert arrays["occupancies"].dtype == np.uint8 and arrays["occupancies"].shape == (
        N_POINTS // 8,
    )
    assert arrays["loc"].dtype == np.float64 and arrays["scale"].dtype == np.float64
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    assert_close(arrays["loc"], (lo + hi) / 2, atol=1e-12, what="loc = bbox centre")
    assert_close(arrays["scale"], (hi - lo).max(), atol=1e-12, what="scale = longest side")
    points = arrays["points"].astype(np.float64)
    assert np.abs(points).max() <= 0.55 and np.abs(points).max() > 0.54
    labels = np.unpackbits(arrays["occupancies"])[:N_POINTS].astype(bool)
    sdf = shape.sdf(_to_input_frame(arrays["points"], arrays))
    clear = np.abs(sdf) > 0.01 * arrays["scale"]
    assert (labels[clear] == (sdf[clear] < 0)).all()
    assert labels.mean() > 0.05
    watertight = read_mesh(folder / "model_watertight.off")
    agree = (labels == contains(watertight, points)).mean()
    assert agree >= 0.995  # float16 rounding moves a few points across the surface


def test_pointcloud_npz(built):
    folder, shape, _ = _object(built, "torus")
    spec = {"points": (N_SURFACE, 3), "normals": (N_SURFACE, 3), "loc": (3,), "scale": ()}
    arrays = load_npz(folder / "pointcloud.npz", spec)
    assert arrays["points"].dtype == np.float16 and arrays["normals"].dtype == np.float16
    points = _to_input_frame(arrays["points"], arrays)
    sdf = shape.sdf(points)
    assert np.abs(sdf).max() <= 0.005
    normals = arrays["normals"].astype(np.float64)
    assert_close(np.linalg.norm(normals, axis=1), np.ones(N_SURFACE), atol=2e-3, what="|normal|")
    step = 1e-4
    gradient = np.stack(
        [
            (shape.sdf(points + step * e) - shape.sdf(points - step * e)) / (2 * step)
            for e in np.eye(3)
        ],
        axis=1,
    )
    gradient /= np.linalg.norm(gradient, axis=1, keepdims=True)
    assert np.quantile((normals * gradient).sum(axis=1), 0.01) > 0.95  # outward face normals


def test_watertight_mesh_is_the_normalised_input(built):
    folder, _, mesh = _object(built, "sphere")
    arrays = load_npz(folder / "points.npz")
    watertight = read_mesh(folder / "model_watertight.off")
    assert is_watertight(watertight)
    expected = (mesh.vertices - arrays["loc"]) / arrays["scale"]
    assert_close(watertight.vertices, expected, atol=1e-9, what="normalised vertices")
    np.testing.assert_array_equal(watertight.faces, mesh.faces)


def test_binvox(built):
    folder, shape, _ = _object(built, "torus")
    arrays = load_npz(folder / "points.npz")
    grid = load_binvox(folder / "model.binvox")
    assert grid.occupancy.shape == (32, 32, 32) and grid.occupancy.dtype == bool
    assert_close(grid.translate, arrays["loc"] - arrays["scale"] / 2, atol=1e-12, what="translate")
    assert_close(grid.scale, arrays["scale"], atol=1e-12, what="scale")
    index = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"), axis=-1)
    centres = grid.scale * (index + 0.5) / 32 + grid.translate  # binvox: input-frame centres
    sdf = shape.sdf(centres)
    half_diagonal = math.sqrt(3) / 2 * grid.scale / 32
    assert grid.occupancy[sdf < -0.01].all()
    assert not grid.occupancy[sdf > half_diagonal + 0.01].any()
    # Voxels whose centre is outside but that the surface crosses are occupied too.
    assert grid.occupancy[(sdf > 0) & (sdf < half_diagonal)].any()


def _blender_world_mat(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    """get_r2n2_cameras.py's getBlenderProj extrinsics and its blender_T axis change, written
    out from the formulas (world -> object -> Blender camera -> camera with y, z flipped)."""
    sa, ca = math.sin(math.radians(-azimuth)), math.cos(math.radians(-azimuth))
    se, ce = math.sin(math.radians(-elevation)), math.cos(math.radians(-elevation))
    world_to_object = np.array([[ca * ce, -sa, ca * se], [sa * ce, ca, sa * se], [-se, 0, ce]]).T
    cam_rot = np.array(
        [
            [1.910685676922942e-15, 4.371138828673793e-08, 1.0],
            [1.0, -4.371138828673793e-08, -0.0],
            [4.371138828673793e-08, 1.0, -4.371138828673793e-08],
        ]
    )
    object_to_camera = cam_rot.T
    rotation = object_to_camera @ world_to_object
    translation = -object_to_camera @ np.array([distance, 0.0, 0.0])
    flip = np.diag([1.0, -1.0, -1.0])
    rotation, translation = flip @ rotation, flip @ translation
    blender_t = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    return np.concatenate([rotation @ blender_t, translation[:, None]], axis=1)


def test_choy_pose_matches_r2n2_camera_formula():
    views = ChoyViews(
        np.array([0.0, 37.0, 200.0, 333.0]),
        np.array([25.0, 26.5, 30.0, 28.0]),
        np.array([1.2, 1.4, 1.5, 1.6]),
    )
    ours = choy_w2c_opencv(views)
    for i in range(4):
        expected = _blender_world_mat(
            views.azimuth_deg[i], views.elevation_deg[i], views.distance[i]
        )
        assert_close(ours[i], expected, atol=1e-6, what=f"view {i}")


def _project(world_mat, camera_mat, points):
    camera = points @ world_mat[:, :3].T + world_mat[:, 3]
    pixels = camera @ camera_mat.T
    return pixels[:, :2] / pixels[:, 2:], camera[:, 2]


def test_choy_images_and_cameras(built):
    folder, _, _ = _object(built, "sphere")
    images = sorted((folder / "img_choy2016").glob("*.jpg"))
    assert [p.name for p in images] == [f"{i:03d}.jpg" for i in range(24)]
    cameras = load_npz(folder / "img_choy2016" / "cameras.npz")
    assert set(cameras) == {f"{k}_{i}" for k in ("camera_mat", "world_mat") for i in range(24)}
    focal = 35.0 * 137 / 32
    expected_K = np.array([[focal, 0, 68.5], [0, focal, 68.5], [0, 0, 1]])
    cloud = load_npz(folder / "pointcloud.npz")
    normalized = cloud["points"].astype(np.float64)
    for i in (0, 7, 23):
        image = read_image(images[i])
        assert image.shape == (137, 137, 3)
        assert image[0, 0].min() > 0.98  # white background
        world_mat, camera_mat = cameras[f"world_mat_{i}"], cameras[f"camera_mat_{i}"]
        assert world_mat.shape == (3, 4)
        assert_close(camera_mat, expected_K, atol=1e-12, what="camera_mat")
        uv, depth = _project(world_mat, camera_mat, _to_input_frame(cloud["points"], cloud))
        assert (depth > 0).all() and (uv >= 0).all() and (uv < 137).all()
        # ONet's fix_Rt_camera(world_mat, loc, scale) acts on normalised points.
        fixed = np.concatenate(
            [
                world_mat[:, :3] * cloud["scale"],
                (world_mat[:, 3] + world_mat[:, :3] @ cloud["loc"])[:, None],
            ],
            axis=1,
        )
        uv_fixed, _ = _project(fixed, camera_mat, normalized)
        assert_close(uv_fixed, uv, atol=1e-6, what="fix_Rt_camera")
        pixel = image[np.floor(uv[:, 1]).astype(int), np.floor(uv[:, 0]).astype(int)]
        assert (pixel.min(axis=1) < 0.9).mean() >= 0.99  # surface points land on the object
        red = pixel[pixel.min(axis=1) < 0.9]
        assert (red[:, 0] > red[:, 1] + 0.1).mean() > 0.95  # the vertex colours are used


def test_splits_and_metadata(built, tmp_path):
    out = built[0]
    (tmp_path / "plain").mkdir()
    mode = (tmp_path / "plain").stat().st_mode & 0o777
    assert all((out / "00000000" / n).stat().st_mode & 0o777 == mode for n in SHAPES)
    lists = {
        s: (out / "00000000" / f"{s}.lst").read_text().split("\n") for s in ("train", "val", "test")
    }
    assert sorted(sum(lists.values(), [])) == sorted(SHAPES)
    assert [len(lists[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    metadata = yaml.safe_load((out / "metadata.yaml").read_text())
    assert metadata == {"00000000": {"id": "00000000", "name": "00000000"}}


def test_split_ids_partition_and_reproducibility():
    ids = [f"model_{i:02d}" for i in range(37)]
    first = build_dataset.split_ids(ids, 0.1, 0.2, seed=3, category="03001627")
    assert [len(first[s]) for s in ("train", "val", "test")] == [27, 3, 7]
    assert sorted(first["train"] + first["val"] + first["test"]) == ids
    assert build_dataset.split_ids(ids[::-1], 0.1, 0.2, seed=3, category="03001627") == first
    assert build_dataset.split_ids(ids, 0.1, 0.2, seed=4, category="03001627") != first


def _snapshot(folder) -> dict:
    return {
        p.relative_to(folder): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_existing_output_refused_without_overwrite(built, capsys):
    out, _, meshes = built
    before = _snapshot(out)
    status, stdout, stderr = _run([str(meshes), str(out), "--no-fusion", *FAST_SAMPLING], capsys)
    assert status == 2
    assert len(stderr.strip().splitlines()) == 1
    assert "already exists" in stderr and "--overwrite" in stderr
    assert _snapshot(out) == before


def test_overwrite_with_two_processes_reproduces_the_build(built, tmp_path, capsys):
    out, _, meshes = built
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    before = _snapshot(copy)
    argv = [str(meshes), str(copy), "--no-fusion", "--val", "0.34", "--test", "0.34"]
    assert _run(argv + FAST_SAMPLING + ["--jobs", "2", "--overwrite"], capsys)[0] == 0
    after = _snapshot(copy)
    assert after.keys() == before.keys()
    for path, (digest, mtime) in after.items():
        assert digest == before[path][0], f"{path} differs from the one-process build"
        if path.name == "points.npz":
            assert mtime != before[path][1], f"{path} was not rewritten"
    assert not [p for p in (copy / "00000000").iterdir() if p.name.startswith(".")]


def test_broken_mesh_is_reported_and_the_others_are_built(tmp_path, capsys):
    meshes = tmp_path / "meshes" / "03001627"
    meshes.mkdir(parents=True)
    write_off(meshes / "good.off", make_shape("sphere").mesh(32))
    (meshes / "corrupt.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    write_off(meshes / "flat.off", TriMesh(np.zeros((3, 3)), np.array([[0, 1, 2]])))
    status, stdout, stderr = _run(
        [str(tmp_path / "meshes"), str(tmp_path / "out"), "--no-fusion", *FAST_SAMPLING], capsys
    )
    assert status == 2
    errors = stderr.strip().splitlines()
    assert len(errors) == 2
    assert any(str(meshes / "corrupt.off") in line for line in errors)
    assert any(str(meshes / "flat.off") in line and "degenerate" in line for line in errors)
    assert (tmp_path / "out" / "03001627" / "good" / "points.npz").is_file()
    assert not (tmp_path / "out" / "03001627" / "corrupt").exists()
    assert "1 built, 2 failed" in stdout
    assert (tmp_path / "out" / "03001627" / "train.lst").read_text() == "good"
    assert (
        yaml.safe_load((tmp_path / "out" / "metadata.yaml").read_text())["03001627"]["name"]
        == "chair"
    )


def test_no_fusion_refuses_an_open_mesh(tmp_path, capsys):
    mesh = make_shape("sphere").mesh(32)
    write_off(tmp_path / "open.off", TriMesh(mesh.vertices, mesh.faces[1:]))
    status, _, stderr = _run(
        [str(tmp_path), str(tmp_path / "out"), "--no-fusion", *FAST_SAMPLING], capsys
    )
    assert status == 2
    assert "open.off" in stderr and "not watertight" in stderr and "--no-fusion" in stderr


def test_fusion_path_makes_an_open_mesh_watertight(tmp_path, capsys):
    mesh = make_shape("torus").mesh(48)
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    write_off(meshes / "open.off", TriMesh(mesh.vertices, mesh.faces[::2]))
    argv = [
        str(meshes),
        str(tmp_path / "out"),
        "--resolution",
        "48",
        "--depth-views",
        "30",
        *FAST_SAMPLING,
    ]
    status, stdout, _ = _run(argv, capsys)
    assert status == 0 and "1 built, 0 failed" in stdout
    folder = tmp_path / "out" / "00000000" / "open"
    watertight = read_mesh(folder / "model_watertight.off")
    assert is_watertight(watertight)
    arrays = load_npz(folder / "points.npz")
    labels = np.unpackbits(arrays["occupancies"])[:N_POINTS].astype(bool)
    points = arrays["points"].astype(np.float64)
    assert (labels == contains(watertight, points)).mean() >= 0.995


def test_usage_errors(tmp_path, capsys):
    status, _, stderr = _run([str(tmp_path), str(tmp_path / "out")], capsys)
    assert status == 2 and "no .off/.obj/.ply meshes" in stderr
    status, _, stderr = _run(
        [str(tmp_path), str(tmp_path / "out"), "--val", "0.8", "--test", "0.3"], capsys
    )
    assert status == 2 and "--val" in stderr


@pytest.mark.realdata
def test_real_chairs_precise_build_is_watertight_and_matches_the_original(shared_data, tmp_path):
    """Acceptance: the two non-watertight ModelNet chairs through the CLI. Occupancy of the
    fused mesh vs ONet's inside test on the original normalised mesh, counted only where that
    test's upward and downward rays agree. chair_0890 stores each face twice (once per side),
    which makes every parity even; the comparison uses it with each face once."""
    from onet.fusion import PRECISE
    from tests.onet.test_fusion import _single_sided

    mesh_dir = tmp_path / "chairs"
    mesh_dir.mkdir()
    for name in ("chair_0890", "chair_0891"):
        shutil.copy(shared_data / "onet" / "meshes" / f"{name}.off", mesh_dir)
    out = tmp_path / "ShapeNet"
    status = build_dataset.main(
        [
            str(mesh_dir),
            str(out),
            "--precise",
            "--points",
            "2000",
            "--pointcloud-size",
            "2000",
            "--val",
            "0",
            "--test",
            "0",
        ]
    )
    assert status == 0 and PRECISE["truncation_factor"] == 3.0
    points = np.random.default_rng(0).random((100_000, 3)) - 0.5
    for name in ("chair_0890", "chair_0891"):
        folder = out / build_dataset.DEFAULT_CATEGORY / name
        fused = read_mesh(folder / "model_watertight.off")
        assert is_watertight(fused), name
        original = read_mesh(mesh_dir / f"{name}.off")
        arrays = load_npz(folder / "points.npz")
        normalised = TriMesh((original.vertices - arrays["loc"]) / arrays["scale"], original.faces)
        from geomkit.mesh import contains_with_agreement

        truth = contains_with_agreement(_single_sided(normalised), points)
        occupied = contains(fused, points)
        agree = truth.agree
        iou = (occupied & truth.inside & agree).sum() / ((occupied | truth.inside) & agree).sum()
        print(
            f"\n{name}: IoU {iou:.3f} over the {agree.mean():.3f} of points where both rays agree"
        )
        assert iou >= 0.9, name
