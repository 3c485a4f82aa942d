"""python -m onet.demo with a checkpoint laid out like the authors' release, on the real demo
images of ../shared/data/onet/demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geomkit.errors import InputError, run_main
from geomkit.io import read_mesh
from onet import demo, demo_summary

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
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.14.1", "torchvision==0.29.1"], check=True)
    packages = [str(REPO / "shared"), str(REPO / "packages" / "onet")]
    subprocess.run([*pip, *packages], check=True, cwd=tmp_path)
    every_module = (
        "import importlib, pkgutil, onet\n"
        "for m in pkgutil.walk_packages(onet.__path__, 'onet.'): importlib.import_module(m.name)"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", every_module], check=True, cwd=tmp_path)
    images = sorted(str(p) for p in (shared_data / "onet" / "demo").glob("*.jpg"))
    out = tmp_path / "demo"
    command = [str(venv / "bin" / "python"), "-m", "onet.demo", *images]
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
    assert demo_summary.main([str(out), "--eval", str(generation / "eval_meshes.csv")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["numbers"] == pytest.approx(
        {"IoU": 0.642, "normal consistency": 0.91, "Chamfer-L1 x10": 0.563}
    )
    assert summary["pages"] == {
        "held-out reconstructions": "demo_small/index.html",
        "eval_meshes.csv": "train/generation/eval_meshes.csv",
    }
    assert "200 iterations" in summary["ran"]
    with pytest.raises(InputError, match="run python -m onet.eval_meshes first"):
        demo_summary.main([str(out), "--eval", str(tmp_path / "missing.csv")])
