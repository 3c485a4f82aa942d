"""python -m onet.demo with a checkpoint laid out like the authors' release, on the real demo
images of ../shared/data/onet/demo."""

from __future__ import annotations

import csv
import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from geomkit.errors import InputError, run_main
from geomkit.io import read_mesh
from onet import demo, demo_summary
from onet.config import apply_overrides, load_config
from onet.data.fields import PointCloudField, PointsField
from onet.demo_page import METRIC_COLUMNS, format_metric
from onet.evaluation import MeshEvaluator
from onet.models import build_model

from ..helpers import assert_close, fresh_venv, import_every_module
from .conftest import TINY_MODEL
from .official_layout import write_official_checkpoint

REPO = Path(__file__).resolve().parents[2]

# Seed 2 of the fabricated checkpoint puts the median occupancy of the demo images near 0.61: a
# threshold of 0.6 crosses the field, so the random network has a surface to extract.
SEED, THRESHOLD = 2, "test.threshold=0.6"
FAST = ["generation.refinement_step=2", "generation.resolution_0=16"]
FAST += ["generation.upsampling_steps=1", "generation.simplify_nfaces=500"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("onet_demo") / "onet_img2mesh_3-f786b04a.pt"
    write_official_checkpoint(path, SEED)
    return path


def demo_images(shared_data, names=("00", "05")):
    return [str(shared_data / "onet" / "demo" / f"{name}.jpg") for name in names]


def run(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(demo.main, argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_demo_output(out, stems) -> None:
    for stem in stems:
        for suffix in (".obj", ".ply"):
            mesh = read_mesh(out / "meshes" / f"{stem}{suffix}")
            assert len(mesh.faces) > 50, f"{stem}{suffix} has {len(mesh.faces)} faces"
    page = (out / "index.html").read_text()
    assert len(re.findall(r"<img src='data:image/png;base64,", page)) == len(stems)
    assert all(f'id="mesh{k}"' in page for k in range(len(stems)))


@pytest.mark.realdata
def test_demo_writes_meshes_and_a_page(shared_data, checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [*demo_images(shared_data), "--checkpoint", str(checkpoint), "--out", str(out)]
    status, stdout, _ = run([*argv, *sets(THRESHOLD, *FAST)], capsys)
    assert status == 0
    assert_demo_output(out, ["00", "05"])
    assert "wrote 2 meshes" in stdout


@pytest.mark.realdata
def test_demo_refuses_bad_input_without_touching_outputs(shared_data, checkpoint, tmp_path, capsys):
    images = demo_images(shared_data)
    out = tmp_path / "demo"
    fine = ["--checkpoint", str(checkpoint), "--out", str(out)]

    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a jpeg")
    status, _, err = run([*images, str(not_an_image), *fine], capsys)
    assert status == 2 and "cannot read image" in err and err.count("\n") == 1
    assert not out.exists()

    missing = ["--checkpoint", str(tmp_path / "absent.pt"), "--out", str(out)]
    status, _, err = run([*images, *missing], capsys)
    assert status == 2 and "absent.pt" in err
    assert not out.exists()

    out.mkdir()
    (out / "index.html").write_text("earlier results")
    status, _, err = run([*images, *fine], capsys)
    assert status == 2 and "--overwrite" in err
    assert (out / "index.html").read_text() == "earlier results"


@pytest.mark.slow
@pytest.mark.realdata
def test_fresh_venv_install_runs_the_demo(shared_data, checkpoint, tmp_path):
    """pip install ./shared ./packages/onet into a new venv: every onet module imports (the
    declared dependencies suffice), and the demo runs on all nine images with the demo config's
    settings (30 refinement steps, 5000 faces)."""
    python = fresh_venv(tmp_path / "venv", "shared", "packages/onet")
    import_every_module(python, "onet", tmp_path)
    images = sorted(str(p) for p in (shared_data / "onet" / "demo").glob("*.jpg"))
    out = tmp_path / "demo"
    command = [str(python), "-m", "onet.demo", *images]
    command += ["--checkpoint", str(checkpoint), "--out", str(out), *sets(THRESHOLD)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_demo_output(out, [f"{k:02d}" for k in range(len(images))])


def test_output_names_stay_unique_when_stems_repeat():
    renders = [Path(f"ShapeNet/{c}/{m}/img_choy2016/000.jpg") for c, m in (("1", "a"), ("2", "b"))]
    assert demo.output_names(renders) == ["a_img_choy2016_000", "b_img_choy2016_000"]
    assert demo.output_names([Path("x/00.jpg"), Path("x/05.png")]) == ["00", "05"]
    with pytest.raises(InputError, match="given twice"):
        demo.output_names([Path("x/00.jpg"), Path("x/00.jpg")])


def test_demo_summary_reads_the_class_means_for_the_index(tmp_path):
    out = tmp_path / "onet"
    generation = out / "train" / "generation"
    generation.mkdir(parents=True)
    torch.save({"it": 200}, out / "train" / "model.pt")
    (generation / "eval_meshes.csv").write_text(
        "class name,iou (mesh),chamfer-L1 (mesh),normals (mesh)\n"
        "sphere,0.9,0.02,0.95\nmean,0.642,0.0563,0.91\n"
    )
    (out / "demo_small").mkdir()
    (out / "demo_small" / "index.html").write_text("<html></html>")
    (out / "demo_small" / "metrics.csv").write_text("image,iou\n")
    assert demo_summary.main([str(out), "--eval", str(generation / "eval_meshes.csv")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["numbers"] == pytest.approx(
        {"IoU": 0.642, "normal consistency": 0.91, "Chamfer-L1 x10": 0.563}
    )
    assert summary["pages"] == {
        "held-out reconstructions beside the ground truth": "demo_small/index.html",
        "their IoU and Chamfer-L1 (metrics.csv)": "demo_small/metrics.csv",
        "eval_meshes.csv": "train/generation/eval_meshes.csv",
    }
    assert "200 iterations" in summary["ran"]
    with pytest.raises(InputError, match="run python -m onet.eval_meshes first"):
        demo_summary.main([str(out), "--eval", str(tmp_path / "missing.csv")])


# Ground truth and metrics on the page: a random tiny image model on the tiny dataset's renders
# (the metrics' values do not matter, only that the page shows MeshEvaluator's).
TINY_SETS = [*TINY_MODEL, *FAST]


def tiny_config():
    return apply_overrides(load_config("configs/img/onet.yaml"), TINY_SETS)


@pytest.fixture(scope="module")
def tiny_demo(tiny_shapenet, tmp_path_factory):
    """(checkpoint, threshold override, test objects): a random tiny model, and a threshold at
    the median occupancy of the first render's lattice, so that the untrained net has a
    surface."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("onet_demo_tiny") / "tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    objects = [
        tiny_shapenet / c / (tiny_shapenet / c / "test.lst").read_text().split()[0]
        for c in ("00000001", "00000002")
    ]
    tensor, _ = demo.load_image(objects[0] / "img_choy2016" / "000.jpg", 32)
    lattice = torch.from_numpy(np.indices((9,) * 3).reshape(3, -1).T / 8 - 0.5).float()
    with torch.no_grad():
        logits = model(lattice[None], tensor[None], sample=False)
    threshold = torch.sigmoid(logits.median()).item()
    return path, f"test.threshold={threshold!r}", objects


def tiny_argv(images, checkpoint, threshold, out) -> list[str]:
    return [
        *map(str, images),
        *("--checkpoint", str(checkpoint), "--out", str(out)),
        *("--config", "configs/img/onet.yaml", "--no-cuda"),
        *sets(*TINY_SETS, threshold),
    ]


def page_metrics(page: str) -> dict[str, dict[str, str]]:
    """The metrics table of the page: object name -> {column title: printed value}."""
    table = {}
    for name, cells in re.findall(r"<tr data-object='([^']+)'>(.*?)</tr>", page):
        found = re.findall(r"<td class='num' data-metric='([^']+)'>([^<]*)</td>", cells)
        table[html.unescape(name)] = {html.unescape(k): v for k, v in found}
    return table


def evaluator_metrics(mesh_path: Path, folder: Path) -> dict[str, float]:
    """MeshEvaluator on the written mesh and the object's files, loaded as onet.eval_meshes
    loads them (jitter seed demo.TRUTH_SEED)."""
    rng = np.random.default_rng(demo.TRUTH_SEED)
    iou = PointsField("points.npz", unpackbits=True).load(folder, 0, 0, rng)
    cloud = PointCloudField("pointcloud.npz").load(folder, 0, 0, rng)
    evaluator = MeshEvaluator(n_points=100_000)
    return evaluator.eval_mesh(
        read_mesh(mesh_path), cloud[None], cloud["normals"], iou[None], iou["occ"]
    )


def test_demo_page_shows_the_truth_and_meshevaluator_metrics(tiny_demo, tmp_path, capsys):
    checkpoint, threshold, objects = tiny_demo
    images = [folder / "img_choy2016" / "000.jpg" for folder in objects]
    out = tmp_path / "demo"
    status, stdout, err = run(tiny_argv(images, checkpoint, threshold, out), capsys)
    assert status == 0, err
    page = (out / "index.html").read_text()
    names = demo.output_names(images)

    # Each image comes from a dataset object: its watertight mesh is shown beside the prediction
    # (two scenes with linked cameras), and its metrics are in the table.
    assert page.count("ground truth: watertight mesh model_watertight.off") == 2
    assert page.count('"scene":"scene2"') == 2
    assert page.count("Plotly.relayout(gd, update)") == 2
    assert '"flatshading":false' in page and '"flatshading":true' not in page
    assert "Chamfer-L1 x10" in page and "normalised frame" in page and "points.npz" in page
    table = page_metrics(page)
    assert sorted(table) == sorted(names)
    with open(out / "metrics.csv", newline="") as handle:
        written = {row["image"]: row for row in csv.DictReader(handle)}
    for name, folder in zip(names, objects, strict=True):
        mesh_path = out / "meshes" / f"{name}.ply"
        assert len(read_mesh(mesh_path).faces) > 0, f"{name}: the test needs a surface"
        expected = evaluator_metrics(mesh_path, folder)
        for key, title, scale in METRIC_COLUMNS:
            assert table[name][title] == format_metric(expected.get(key), scale), (name, title)
        for key in ("iou", "chamfer-L1", "normals", "accuracy", "completeness"):
            assert_close(float(written[name][key]), expected[key], rtol=1e-12, what=key)
        assert f"IoU {expected['iou']:.4f}" in stdout


def test_demo_ground_truth_option(tiny_demo, tmp_path, capsys):
    """--ground-truth: an object folder is scored, a mesh file is shown unscored, '-' is none."""
    checkpoint, threshold, objects = tiny_demo
    image = tmp_path / "photo.png"  # outside the dataset: no truth by itself
    image.write_bytes((objects[1] / "img_choy2016" / "000.jpg").read_bytes())
    source_mesh = objects[0].parent.parent.parent / "meshes" / "00000001" / "sphere_0000.ply"
    images = [objects[0] / "img_choy2016" / "000.jpg", image, image.with_name("again.png")]
    images[2].write_bytes(image.read_bytes())
    out = tmp_path / "demo"
    truth = ["--ground-truth", str(objects[1]), str(source_mesh), "-"]
    status, _, err = run([*tiny_argv(images, checkpoint, threshold, out), *truth], capsys)
    assert status == 0, err
    page = (out / "index.html").read_text()
    names = demo.output_names(images)
    assert sorted(page_metrics(page)) == [names[0]]  # scored against the box object
    expected = evaluator_metrics(out / "meshes" / f"{names[0]}.ply", objects[1])
    assert page_metrics(page)[names[0]]["IoU"] == format_metric(expected["iou"])
    assert page.count("ground truth: source mesh, in ONet's unit box") == 1  # subplot title
    assert html.escape("not scored: ONet's metrics need the object's points.npz") in page
    assert page.count("(no ground truth given for this image)") == 1


def test_demo_refuses_missing_ground_truth_with_one_line(tiny_demo, tmp_path, capsys):
    checkpoint, threshold, objects = tiny_demo
    images = [objects[0] / "img_choy2016" / "000.jpg"]
    out = tmp_path / "demo"
    argv = tiny_argv(images, checkpoint, threshold, out)

    status, _, err = run([*argv, "--ground-truth", str(tmp_path / "absent.off")], capsys)
    assert status == 2 and "absent.off" in err and err.count("\n") == 1
    assert not out.exists()

    empty = tmp_path / "object"
    empty.mkdir()
    status, _, err = run([*argv, "--ground-truth", str(empty)], capsys)
    assert status == 2 and "has no points.npz" in err and err.count("\n") == 1
    assert not out.exists()

    status, _, err = run([*argv, "--ground-truth", "-", "-"], capsys)
    assert status == 2 and "one path per image" in err and err.count("\n") == 1
    assert not out.exists()
