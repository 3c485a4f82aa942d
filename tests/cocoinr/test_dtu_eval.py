"""cocoinr.dtu_eval: DTU's Chamfer protocol on generated ground truth in DTU's file formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from scipy.io import loadmat, savemat
from scipy.spatial import cKDTree

from cocoinr.dtu_eval import (
    dtu_chamfer,
    main,
    radius_downsample,
    sample_triangles,
)
from geomkit.errors import InputError, run_main
from geomkit.io import write_ply
from geomkit.mesh import largest_component
from geomkit.structures import PointCloud, TriMesh
from geomkit.synth.layouts.dtu_eval import write_dtu_eval

SCAN = 24
CENTRE = np.array([50.0, -30.0, 600.0])  # DTU-like world millimetres
RADIUS = 20.0


def _sphere(radius: float = RADIUS, centre=CENTRE, subdivisions: int = 4) -> TriMesh:
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return TriMesh(np.asarray(sphere.vertices) + centre, np.asarray(sphere.faces))


def _concat(*meshes: TriMesh) -> TriMesh:
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return TriMesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)]),
    )


@pytest.fixture(scope="module")
def dtu_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dtu")
    write_dtu_eval(out, SCAN, _sphere())
    return out


def test_truth_scores_near_zero_and_a_1mm_offset_scores_1mm(dtu_dir):
    truth = dtu_chamfer(_sphere(), SCAN, dtu_dir)
    # The floor comes from the random 0.2 mm scan samples and the 0.2 mm thinning.
    assert truth["overall"] < 0.6 * 0.2, truth
    # Every point of the radius-21 sphere is 1 mm from the radius-20 truth, both ways.
    offset = dtu_chamfer(_sphere(RADIUS + 1.0), SCAN, dtu_dir)
    for name in ("mean_d2s", "mean_s2d", "overall"):
        assert abs(offset[name] - 1.0) < 0.05, offset
    assert offset["overall"] == pytest.approx((offset["mean_d2s"] + offset["mean_s2d"]) / 2)


def test_points_outside_the_obs_mask_are_not_scored(dtu_dir, tmp_path):
    # A floater inside BB (the sphere's box + 5 mm) but > 3 voxels from the scan: not observed.
    floater = _sphere(4.0, CENTRE - 19.0, subdivisions=3)
    with_floater = _concat(_sphere(), floater)
    clean = dtu_chamfer(_sphere(), SCAN, dtu_dir)
    masked = dtu_chamfer(with_floater, SCAN, dtu_dir)
    # Another thinning order changes the last digits only.
    assert masked["mean_d2s"] == pytest.approx(clean["mean_d2s"], rel=0.01)
    assert masked["mean_s2d"] == pytest.approx(clean["mean_s2d"], rel=0.01)

    # Control: with every voxel observed the same floater ruins the accuracy.
    for name in ("Plane24.mat", "ObsMask24_10.mat"):
        target = tmp_path / "ObsMask" / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((dtu_dir / "ObsMask" / name).read_bytes())
    (tmp_path / "Points").symlink_to(dtu_dir / "Points")
    content = loadmat(tmp_path / "ObsMask" / "ObsMask24_10.mat")
    content["ObsMask"][:] = 1
    savemat(
        tmp_path / "ObsMask" / "ObsMask24_10.mat", {k: content[k] for k in ("ObsMask", "BB", "Res")}
    )
    unmasked = dtu_chamfer(with_floater, SCAN, tmp_path)
    assert unmasked["mean_d2s"] > clean["mean_d2s"] + 0.2, unmasked


def test_plane_drops_scan_points_below_it(tmp_path):
    # Plane through the centre: the lower half of the scan is not asked for, so the upper
    # hemisphere alone is complete.
    write_dtu_eval(tmp_path, SCAN, _sphere(), plane_z=CENTRE[2])
    sphere = _sphere()
    upper = sphere.vertices[sphere.faces][:, :, 2].min(axis=1) > CENTRE[2] - 1.0
    # DTUeval scores every vertex, used or not: drop the lower ones.
    hemisphere = largest_component(TriMesh(sphere.vertices, sphere.faces[upper]))
    cut = dtu_chamfer(hemisphere, SCAN, tmp_path)
    assert cut["mean_s2d"] < 0.15, cut
    write_dtu_eval(tmp_path, SCAN, _sphere())  # plane below the sphere: the bottom is missing
    assert dtu_chamfer(hemisphere, SCAN, tmp_path)["mean_s2d"] > 3.0


def test_matches_brute_force_on_the_same_points(dtu_dir):
    mesh = _sphere(RADIUS + 0.5)
    ours = dtu_chamfer(mesh, SCAN, dtu_dir, seed=3)

    data = radius_downsample(sample_triangles(mesh, 0.2), 0.2, seed=3)
    mat = loadmat(dtu_dir / "ObsMask" / "ObsMask24_10.mat")
    bb, res, mask = mat["BB"].astype(np.float32).astype(float), mat["Res"].item(), mat["ObsMask"]
    plane = loadmat(dtu_dir / "ObsMask" / "Plane24.mat")["P"].ravel()
    stl = np.asarray(trimesh.load(dtu_dir / "Points" / "stl" / "stl024_total.ply").vertices)
    in_box = ((data >= bb[0] - 60) & (data < bb[1] + 120)).all(axis=1)
    data_in = data[in_box]
    observed = []
    for point in data_in:
        i, j, k = np.rint((point - bb[0]) / res).astype(int)
        inside = 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1] and 0 <= k < mask.shape[2]
        observed.append(inside and bool(mask[i, j, k]))
    d2s = cKDTree(stl).query(data_in[np.array(observed)])[0]
    above = np.hstack([stl, np.ones((len(stl), 1))]) @ plane > 0
    s2d = cKDTree(data_in).query(stl[above])[0]
    acc, comp = d2s[d2s < 20].mean(), s2d[s2d < 20].mean()

    assert ours["mean_d2s"] == pytest.approx(acc, rel=1e-6)
    assert ours["mean_s2d"] == pytest.approx(comp, rel=1e-6)
    assert ours["overall"] == pytest.approx((acc + comp) / 2, rel=1e-6)


def test_radius_downsample_is_the_sequential_greedy():
    points = np.random.default_rng(1).uniform(0, 3, (3000, 3))
    points[100:110] = points[0]  # duplicates
    kept = radius_downsample(points, 0.2, seed=7)

    order = np.random.default_rng(7).permutation(len(points))
    expected = []
    tree = cKDTree(points)
    taken = np.zeros(len(points), dtype=bool)
    for index in order:
        if not taken[tree.query_ball_point(points[index], 0.2)].any():
            taken[index] = True
            expected.append(index)
    np.testing.assert_array_equal(kept, points[expected])
    assert cKDTree(kept).query(kept, k=2)[0][:, 1].min() > 0.2


def test_sample_triangles_density_and_extent():
    triangle = TriMesh(np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]]), np.array([[0, 1, 2]]))
    points = sample_triangles(triangle, 0.2)
    assert np.array_equal(points[:3], triangle.vertices)
    grid = points[3:]
    assert abs(len(grid) - 50.0 / 0.2**2) < 0.05 * 50.0 / 0.2**2, len(grid)
    assert (grid[:, :2] > 0).all() and (grid[:, 0] + grid[:, 1] < 10).all()
    assert np.abs(grid[:, 2]).max() == 0
    # Every point of the triangle has a sample within 0.2 mm.
    probe = np.random.default_rng(0).uniform(0, 10, (2000, 2))
    probe = probe[probe.sum(1) < 10]
    dist = cKDTree(points[:, :2]).query(probe)[0]
    assert dist.max() < 0.2


def _triangle_grid_loop(a, b, c, spacing):
    """The per-triangle grid written as plain loops (the protocol, one triangle at a time)."""
    e1, e2 = b - a, c - a
    l1, l2 = np.linalg.norm(e1), np.linalg.norm(e2)
    step = spacing * np.sqrt(l1 * l2 / np.linalg.norm(np.cross(e1, e2)))
    n1, n2 = int(l1 // step), int(l2 // step)
    points = []
    for i in range(n1 + 1):
        for j in range(n2 + 1):
            u, v = (i + 0.5) / max(n1, 1e-7), (j + 0.5) / max(n2, 1e-7)
            if u + v < 1:
                points.append(a + u * e1 + v * e2)
    return points


def test_sample_triangles_matches_a_loop_per_triangle():
    rng = np.random.default_rng(2)
    vertices = rng.uniform(0, 2, (60, 3)) * rng.uniform(0.05, 1, (60, 1))
    faces = np.vstack([rng.permutation(60).reshape(-1, 3) for _ in range(3)])
    faces = np.vstack([faces, [[0, 0, 1]]])  # a zero-area triangle gives no samples
    mesh = TriMesh(vertices, faces)
    expected = [vertices]
    for a, b, c in vertices[faces[:-1]]:
        expected += [np.reshape(_triangle_grid_loop(a, b, c, 0.2), (-1, 3))]
    np.testing.assert_allclose(sample_triangles(mesh, 0.2), np.vstack(expected), atol=1e-12)


@pytest.mark.parametrize(
    "name, remove",
    [
        ("ObsMask24_10.mat", "ObsMask/ObsMask24_10.mat"),
        ("Plane24.mat", "ObsMask/Plane24.mat"),
        ("stl024_total.ply", "Points/stl/stl024_total.ply"),
    ],
)
def test_missing_ground_truth_is_a_one_line_error(tmp_path, name, remove):
    write_dtu_eval(tmp_path, SCAN, _sphere(subdivisions=2))
    (tmp_path / remove).unlink()
    with pytest.raises(InputError) as error:
        dtu_chamfer(_sphere(subdivisions=2), SCAN, tmp_path)
    message = str(error.value)
    assert name in message and "SampleSet" in message and "Points" in message
    assert "\n" not in message


def test_normalised_mesh_is_an_input_error(dtu_dir):
    with pytest.raises(InputError, match="world millimetres"):
        dtu_chamfer(_sphere(1.0, np.zeros(3)), SCAN, dtu_dir)


def test_cli(dtu_dir, tmp_path, capsys):
    missing = tmp_path / "missing.ply"
    with pytest.raises(SystemExit) as exit_:
        run_main(main, ["--mesh", str(missing), "--scan", "24", "--dtu", str(dtu_dir)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1

    mesh_path, out = tmp_path / "mesh.ply", tmp_path / "metrics.json"
    write_ply(mesh_path, _sphere())
    argv = ["--mesh", str(mesh_path), "--scan", "24", "--dtu", str(dtu_dir), "--out", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["scan"] == 24 and metrics["overall"] < 0.12
    with pytest.raises(SystemExit) as exit_:
        run_main(main, argv)
    assert exit_.value.code == 2 and "--overwrite" in capsys.readouterr().err

    write_ply(mesh_path, PointCloud(_sphere(subdivisions=6).vertices))  # "pcd" mode
    assert main([*argv, "--overwrite"]) == 0
    assert json.loads(out.read_text())["overall"] < 0.2
