"""Generator3D on analytic occupancy "networks" (exact surfaces known), the real ONet model,
and the onet.generate command line."""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from torch import nn

from geomkit.errors import CheckpointError, ConfigError, InputError, OutputExistsError
from geomkit.io import read_image, read_mesh
from geomkit.mesh import is_watertight, signed_volume
from onet.config import load_config
from onet.generation import Generator3D, get_generator, refinement_loss
from onet.models import build_model
from tests.helpers import assert_close

TAU = 0.2
LOGIT_TAU = math.log(TAU / (1 - TAU))  # -1.386...


class Analytic(nn.Module):
    """The OccupancyNetwork interface around a closed-form logit field (no parameters)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def encode_inputs(self, inputs):
        return torch.empty(inputs.shape[0], 0, device=inputs.device)

    def get_z_from_prior(self, batch_size, sample=True):
        return torch.empty(batch_size, 0)

    def decode(self, p, z, c):
        return self.logits(p)


def sphere_logits(radius=0.3, slope=20.0, centre=(0.013, -0.021, 0.008)):
    return lambda p: slope * (radius - (p - p.new_tensor(centre)).norm(dim=-1))


def torus_distance(p, major=0.3, minor=0.1):
    ring = torch.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - major
    return torch.sqrt(ring**2 + p[..., 2] ** 2) - minor


def assert_same_vertices(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Equal vertex sets: same count, and a one-to-one nearest match within atol (sorting alone
    can pair rows differently when values differ in the last bits)."""
    assert actual.shape == expected.shape
    distance, index = cKDTree(expected).query(actual)
    assert len(np.unique(index)) == len(expected), "vertices are not matched one to one"
    assert_close(distance, np.zeros_like(distance), atol=atol, what="vertex distance")


@pytest.mark.parametrize("upsampling_steps, resolution0", [(0, 17), (2, 8)])
def test_plane_vertices_have_no_half_voxel_offset(upsampling_steps, resolution0):
    # A linear logit field: marching cubes' linear interpolation puts every vertex exactly on
    # the plane n . p = d, unless the lattice -> box mapping is shifted (PyMCubes' +0.5 would
    # move it by half a voxel, 0.034 here). The -1e6 padding closes the solid on the box walls.
    normal = torch.tensor([1.0, 2.0, 3.0]) / math.sqrt(14.0)
    model = Analytic(lambda p: 8.0 * (p @ normal - 0.0731))
    generator = Generator3D(
        model, threshold=0.5, resolution0=resolution0, upsampling_steps=upsampling_steps
    )
    mesh, _ = generator.generate_mesh({})
    v = mesh.vertices
    on_plane = np.abs(v @ normal.double().numpy() - 0.0731) < 1e-6
    on_wall = np.abs(v).max(axis=1) > 0.55 - 1e-9
    assert on_plane.sum() > 20
    assert (on_plane | on_wall).all()
    # The walls sit within a hair of the padded box (1.1 wide): the pad is a lattice step out.
    assert_close(np.abs(v).max(), 0.55, atol=1e-5, what="box wall")


@pytest.mark.parametrize("shape", ["torus", "sphere"])
def test_mise_gives_the_dense_mesh_with_fewer_queries(shape):
    logits = (lambda p: -30.0 * torus_distance(p)) if shape == "torus" else sphere_logits()
    model = Analytic(logits)
    mise = Generator3D(model, threshold=TAU, resolution0=32, upsampling_steps=2)
    dense = Generator3D(model, threshold=TAU, resolution0=129, upsampling_steps=0)
    mesh_mise, stats_mise = mise.generate_mesh({})
    mesh_dense, stats_dense = dense.generate_mesh({})
    assert stats_dense["points queried"] == 129**3
    assert len(mesh_mise.faces) == len(mesh_dense.faces) > 1000
    assert_same_vertices(mesh_mise.vertices, mesh_dense.vertices, atol=1e-6)
    ratio = stats_dense["points queried"] / stats_mise["points queried"]
    print(f"{shape}: MISE {stats_mise['points queried']} queries, dense 129^3, ratio {ratio:.1f}")
    assert ratio >= 4.0


def test_vertices_lie_on_the_analytic_surface():
    # Independent check of the whole mapping: the torus' distance at the vertices is the
    # threshold's distance, 1.386 / 30, up to interpolation error (h = 1.1 / 128).
    model = Analytic(lambda p: -30.0 * torus_distance(p))
    mesh, _ = Generator3D(model, threshold=TAU, resolution0=32, upsampling_steps=2).generate_mesh(
        {}
    )
    distance = torus_distance(torch.from_numpy(mesh.vertices)).numpy()
    assert_close(distance, np.full_like(distance, -LOGIT_TAU / 30.0), atol=2e-4, what="distance")
    assert is_watertight(mesh)


def test_empty_field_gives_an_empty_mesh_after_the_coarse_pass():
    model = Analytic(lambda p: torch.full(p.shape[:-1], -5.0))
    mesh, stats = Generator3D(model, resolution0=32, upsampling_steps=2).generate_mesh({})
    assert mesh.is_empty
    assert stats["points queried"] == 33**3


def test_network_nan_is_an_input_error():
    model = Analytic(lambda p: torch.full(p.shape[:-1], float("nan")))
    with pytest.raises(InputError, match="NaN occupancy logits"):
        Generator3D(model, resolution0=4, upsampling_steps=1).generate_mesh({})


def test_refinement_loss_matches_hand_computation():
    # Sphere field s = sigmoid(k (r - |p|)): its -grad points along p / |p|.
    k, r = 20.0, 0.3
    model = Analytic(lambda p: k * (r - p.norm(dim=-1)))
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(12, 3)) * 0.3
    faces = np.array([rng.choice(12, 3, replace=False) for _ in range(20)])
    weights = rng.dirichlet((0.5, 0.5, 0.5), size=20)
    loss = refinement_loss(
        model,
        torch.tensor(vertices, requires_grad=True),
        torch.from_numpy(faces),
        torch.from_numpy(weights),
        torch.empty(1, 0),
        torch.empty(1, 0),
        TAU,
    )
    tri = vertices[faces]
    p = np.einsum("fk,fkd->fd", weights, tri)
    s = 1 / (1 + np.exp(-k * (r - np.linalg.norm(p, axis=1))))
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 1])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    t = p / np.linalg.norm(p, axis=1, keepdims=True)
    expected = np.mean((s - TAU) ** 2) + 0.01 * np.mean(np.sum((n - t) ** 2, axis=1))
    assert_close(loss.item(), expected, rtol=1e-6, what="refinement loss")


def test_refinement_loss_gradient_matches_finite_differences():
    model = Analytic(lambda p: 20.0 * (0.3 - p.norm(dim=-1)))
    rng = np.random.default_rng(1)
    vertices = torch.tensor(rng.normal(size=(6, 3)) * 0.3, requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [1, 4, 5], [0, 5, 3]])
    weights = torch.from_numpy(rng.dirichlet((0.5, 0.5, 0.5), size=4))
    empty = torch.empty(1, 0)
    assert torch.autograd.gradcheck(
        lambda v: refinement_loss(model, v, faces, weights, empty, empty, TAU), (vertices,)
    )


def test_refinement_moves_vertices_onto_the_surface():
    radius = 0.3
    model = Analytic(lambda p: 20.0 * (radius - p.norm(dim=-1)))
    generator = Generator3D(model, threshold=0.5, resolution0=16, upsampling_steps=1)
    mesh, _ = generator.generate_mesh({})
    mesh.vertices = mesh.vertices * 1.05  # push every vertex 0.015 off the surface
    generator.refinement_step = 30
    refined = generator.refine_mesh(mesh, torch.empty(1, 0), torch.empty(1, 0))
    before = np.abs(np.linalg.norm(mesh.vertices, axis=1) - radius).mean()
    after = np.abs(np.linalg.norm(refined.vertices, axis=1) - radius).mean()
    assert before > 0.014
    assert after < 0.4 * before
    np.testing.assert_array_equal(refined.faces, mesh.faces)


def test_simplification_reaches_the_face_count_and_stays_closed():
    model = Analytic(lambda p: -30.0 * torus_distance(p))
    generator = Generator3D(
        model, threshold=TAU, resolution0=32, upsampling_steps=2, simplify_nfaces=1000
    )
    mesh, stats = generator.generate_mesh({})
    assert 900 <= len(mesh.faces) <= 1000
    assert "time (simplify)" in stats
    assert is_watertight(mesh)
    distance = torus_distance(torch.from_numpy(mesh.vertices)).numpy() + LOGIT_TAU / 30.0
    assert np.abs(distance).max() < 0.01


def test_normals_are_the_outward_field_gradient():
    centre = np.array([0.013, -0.021, 0.008])
    model = Analytic(sphere_logits())
    generator = Generator3D(
        model, threshold=TAU, resolution0=16, upsampling_steps=1, with_normals=True
    )
    mesh, stats = generator.generate_mesh({})
    radial = mesh.vertices - centre
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    assert_close(
        np.sum(mesh.vertex_normals * radial, axis=1), np.ones(len(radial)), atol=1e-5, what="cos"
    )
    assert "time (normals)" in stats


def test_get_generator_reads_the_config():
    cfg = load_config("configs/img/onet.yaml")
    generator = get_generator(Analytic(sphere_logits()), cfg, "cpu")
    assert (generator.resolution0, generator.upsampling_steps) == (32, 2)
    assert generator.threshold == 0.2 and generator.simplify_nfaces is None
    assert generator.points_batch_size == 100000
    cfg["test"]["threshold"] = 1.0
    with pytest.raises(ConfigError, match="test.threshold"):
        get_generator(Analytic(sphere_logits()), cfg, "cpu")
    cfg["test"]["threshold"] = 0.2
    cfg["generation"]["upsampling_steps"] = -1
    with pytest.raises(ConfigError, match="generation.upsampling_steps"):
        get_generator(Analytic(sphere_logits()), cfg, "cpu")


def test_runs_the_image_model_from_its_config():
    # A randomly initialised ONet image model (untrained): the interface, batching and the
    # frame of the mesh are checked, not its shape.
    cfg = load_config("configs/img/onet.yaml")
    model = build_model(cfg).eval()
    generator = Generator3D(
        model, points_batch_size=1000, threshold=0.5, resolution0=8, upsampling_steps=1
    )
    mesh, stats = generator.generate_mesh({"inputs": torch.rand(1, 3, 224, 224)})
    assert stats["points queried"] >= 9**3
    assert set(stats) >= {"time (encode inputs)", "time (eval points)", "time (marching cubes)"}
    if not mesh.is_empty:
        assert np.abs(mesh.vertices).max() <= 0.55 + 1e-5


def write_image_dataset(root, objects: dict[str, list[str]]) -> None:
    """ONet's layout for the image model's test split: one view and points.npz per object."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "metadata.yaml").write_text("'00000001': {id: '00000001', name: 'chair,seat'}\n")
    for category, models in objects.items():
        (root / category).mkdir()
        (root / category / "test.lst").write_text("\n".join(models) + "\n")
        for model in models:
            folder = root / category / model
            (folder / "img_choy2016").mkdir(parents=True)
            pixels = rng.integers(0, 256, size=(137, 137, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "img_choy2016" / "000.jpg")
            points = rng.uniform(-0.55, 0.55, size=(64, 3)).astype(np.float16)
            occupancies = np.packbits(np.linalg.norm(points, axis=1) < 0.3)
            np.savez(folder / "points.npz", points=points, occupancies=occupancies)


def test_generate_command_line(tmp_path):
    from onet import generate
    from onet.data import build_dataset

    root, out = tmp_path / "ShapeNet", tmp_path / "out"
    write_image_dataset(root, {"00000001": ["a", "b"], "00000002": ["d"]})
    cfg = load_config("configs/img/onet.yaml")
    cfg["data"].update(path=str(root), voxels_file=None)
    model = build_model(cfg).eval()
    out.mkdir()
    torch.save({"model": model.state_dict()}, out / "model_best.pt")
    # The untrained model's median occupancy on object a's lattice as the threshold, so that
    # object a has a surface.
    image = torch.as_tensor(build_dataset(cfg, "test")[0]["inputs"])[None]
    lattice = torch.from_numpy(np.indices((17,) * 3).reshape(3, -1).T / 16 - 0.5).float()
    with torch.no_grad():
        logits = model(1.1 * lattice[None], image, sample=False)
    threshold = torch.sigmoid(logits.median()).item()
    argv = [
        "configs/img/onet.yaml",
        "--no-cuda",
        *("--set", f"data.path={root}", "--set", f"training.out_dir={out}"),
        *("--set", "data.voxels_file=null", "--set", "generation.vis_n_outputs=1"),
        *("--set", "generation.resolution_0=6", "--set", "generation.upsampling_steps=1"),
        *("--set", f"test.threshold={threshold!r}"),
    ]
    assert generate.main(argv) == 0

    gen = out / "generation"
    assert len(read_mesh(gen / "meshes" / "00000001" / "a.off").faces) > 50
    for category, model in [("00000001", "a"), ("00000001", "b"), ("00000002", "d")]:
        mesh = read_mesh(gen / "meshes" / category / f"{model}.off")
        assert mesh.is_empty or np.abs(mesh.vertices).max() <= 0.55 + 1e-5
        assert read_image(gen / "input" / category / f"{model}.png").shape == (224, 224, 3)
    vis = sorted(p.name for p in (gen / "vis" / "00000001_chair").iterdir())
    assert vis == ["00_in.png", "00_mesh.off"]
    assert sorted(p.name for p in (gen / "vis" / "00000002").iterdir()) == [
        "00_in.png",
        "00_mesh.off",
    ]
    with open(gen / "time_generation_full.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["modelname"] for r in rows] == ["a", "b", "d"]
    assert [r["class name"] for r in rows] == ["chair,seat"] * 2 + ["n/a"]
    assert all(int(r["points queried"]) >= 7**3 for r in rows)
    assert int(rows[0]["points queried"]) > 7**3
    classes = pickle.loads((gen / "time_generation.pkl").read_bytes())
    assert [row["class name"] for row in classes] == ["chair,seat", "n/a", "mean"]
    mesh_times = [float(r["mesh"]) for r in rows]
    assert_close(classes[0]["mesh"], np.mean(mesh_times[:2]), rtol=1e-9, what="class mean time")

    with pytest.raises(OutputExistsError, match="--overwrite"):
        generate.main(argv)
    (out / "model_best.pt").rename(out / "elsewhere.pt")
    with pytest.raises(CheckpointError, match="model_best.pt"):
        generate.main([*argv, "--overwrite"])


def test_checkpoint_is_looked_up_in_the_output_folder(tmp_path, monkeypatch):
    from onet.checkpoints import resolve_model_file

    monkeypatch.chdir(tmp_path)
    cfg = {"training": {"out_dir": "out"}, "test": {"model_file": "model_best.pt"}}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model_best.pt").write_bytes(b"")
    assert resolve_model_file(cfg, None) == Path("out/model_best.pt")
    (tmp_path / "mine.pt").write_bytes(b"")
    cfg["test"]["model_file"] = "mine.pt"  # an existing path is used as given
    assert resolve_model_file(cfg, None) == Path("mine.pt")
    cfg["test"]["model_file"] = str(tmp_path / "out" / "model_best.pt")
    assert resolve_model_file(cfg, None) == tmp_path / "out" / "model_best.pt"
    assert resolve_model_file(cfg, "mine.pt") == Path("mine.pt")
    with pytest.raises(CheckpointError, match="--checkpoint"):
        resolve_model_file(cfg, "missing.pt")
    cfg["test"]["model_file"] = "https://example.org/onet.pt"
    with pytest.raises(CheckpointError, match="nothing is downloaded"):
        resolve_model_file(cfg, None)


def test_voxel_surface_is_closed_and_outward():
    from onet.generate import voxel_surface

    occupied = np.zeros((4, 4, 4), dtype=bool)
    occupied[1, 2, 3] = True
    cube = voxel_surface(occupied)
    assert (len(cube.vertices), len(cube.faces)) == (8, 12)
    assert_close(cube.vertices.min(axis=0), [-0.25, 0.0, 0.25], atol=1e-12, what="cube min")
    assert_close(signed_volume(cube), 1 / 64, rtol=1e-12, what="cube volume")
    occupied[2, 2, 3] = occupied[2, 1, 3] = True  # an L of three voxels: 14 squares
    shape = voxel_surface(occupied)
    assert len(shape.faces) == 28 and is_watertight(shape)
    assert_close(signed_volume(shape), 3 / 64, rtol=1e-12, what="L volume")
