"""The three stages through the authors' command line: exact resume, stage order, outputs,
bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from geomkit.errors import UserError
from sfd.exp_runner import main
from tests.sfd.conftest import exp_args


def _latest_state(exps, stage: str) -> dict:
    runs = sorted((exps / f"{stage}-pile").iterdir())
    return torch.load(runs[-1] / "checkpoints/ModelParameters/latest.pth", weights_only=True)


@pytest.mark.parametrize("stage", ["Geo", "Vis", "Mat"])
def test_resume_gives_the_uninterrupted_parameters(small_pile, tmp_path, stage):
    """4 iterations in one go == 2, then --is_continue to 4 (checkpoint every 2)."""
    results = []
    for name, segments in (("straight", [4]), ("resumed", [2, 4])):
        exps = tmp_path / name
        for previous in ("Geo", "Vis")[: ["Geo", "Vis", "Mat"].index(stage)]:
            main(exp_args(small_pile, exps, previous, "--max_niter", "2"))
        for k, stop in enumerate(segments):
            extra = ["--max_niter", str(stop), "--train.ckpt_freq=2"] + (
                ["--is_continue"] if k else []
            )
            main(exp_args(small_pile, exps, stage, *extra))
        results.append(_latest_state(exps, stage))
    straight, resumed = results
    assert straight["iter"] == resumed["iter"] == 4
    assert straight["model_state_dict"].keys() == resumed["model_state_dict"].keys()
    for key, value in straight["model_state_dict"].items():
        assert torch.equal(value, resumed["model_state_dict"][key]), key
    trained = {
        "Geo": "sdf_network.lin0",
        "Vis": "visibility_network.",
        "Mat": "envmap_material_network.",
    }[stage]
    first = torch.load(
        sorted((tmp_path / "straight" / f"{stage}-pile").iterdir())[0]
        / "checkpoints/ModelParameters/0.pth",
        weights_only=True,
    )["model_state_dict"]
    changed = [
        k
        for k in first
        if k.startswith(trained) and not torch.equal(first[k], straight["model_state_dict"][k])
    ]
    assert changed, f"{stage} did not update {trained}"


def test_outputs_layout_and_exports(small_pile, tmp_path):
    exps = tmp_path / "exps"
    for stage in ("Geo", "Vis", "Mat"):
        main(exp_args(small_pile, exps, stage, "--max_niter", "2"))
    run = next((exps / "Geo-pile").iterdir())
    assert (run / "setting.yaml").is_file() and list(run.glob("events.out.tfevents*"))
    assert (run / "plots" / "rendering_2.png").is_file()
    assert (run / "checkpoints" / "NEUSOptimizerParameters" / "latest.pth").is_file()
    outputs = ["--eval", "--to_mesh", "--to_uv", "--mesh_resolution", "32", "--texture_size", "256"]
    main(exp_args(small_pile, exps, "Mat", *outputs, "--train.validate_resolution_level=2"))
    metrics = json.loads(
        next((exps / "Mat-pile-eval").iterdir()).joinpath("metrics.json").read_text()
    )
    assert {"mask_iou", "rgb_gt_and_hit", "rgb_gt_mask", "normal_angle_deg"} <= metrics.keys()
    meshes = next((exps / "Mat-pile-mesh").iterdir())
    assert sorted(p.name for p in meshes.iterdir()) == [
        "mesh_canonical.ply", "mesh_instance_00.ply", "mesh_instance_01.ply", "mesh_instance_02.ply"
    ]  # fmt: skip
    uv = next((exps / "Mat-pile-uv").iterdir())
    assert {p.name for p in uv.iterdir()} == {
        "mesh_textured.obj", "mesh_textured.mtl", "texture_albedo.png", "texture_roughness.png"
    }  # fmt: skip


def _broken_copy(source, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(source, copy)
    return copy


def test_a_stage_without_its_previous_stage_is_refused(small_pile, tmp_path):
    exps = tmp_path / "exps"
    with pytest.raises(UserError, match="run --trainstage Geo first"):
        main(exp_args(small_pile, exps, "Vis"))
    assert not exps.exists()


def test_bad_inputs_exit_2_with_one_line(small_pile, tmp_path):
    data = _broken_copy(small_pile, tmp_path)
    meta = json.loads((data / "transforms_train.json").read_text())
    meta["focal"] = "f=100"
    (data / "transforms_train.json").write_text(json.dumps(meta))
    exps = tmp_path / "exps"
    command = [sys.executable, "-m", "sfd.exp_runner", *exp_args(data, exps, "Geo")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert (
        result.stderr.strip().count("\n") == 0 and "focal 'f=100' is not a number" in result.stderr
    )
    assert not exps.exists()


@pytest.mark.parametrize("breakage", ["extra_instance_value", "unreadable_image", "no_points"])
def test_broken_data_folders_are_named(small_pile, tmp_path, breakage):
    data = _broken_copy(small_pile, tmp_path)
    if breakage == "extra_instance_value":
        from geomkit.io.images import read_image, write_image

        seg = (
            (read_image(data / "train/000_instance_seg.png")[..., 0] * 255).round().astype("uint8")
        )
        seg[0, 0] = 99
        write_image(data / "train/000_instance_seg.png", seg)
        expected = "unexpected values: \\[99\\]"
    elif breakage == "unreadable_image":
        (data / "train/000_rgb.png").write_bytes(b"not a png")
        expected = "000_rgb.png"
    else:
        (data / "points_world.npy").unlink()
        expected = "python -m sfd.points_world"
    with pytest.raises(UserError, match=expected):
        main(exp_args(data, tmp_path / "exps", "Geo"))
    assert not (tmp_path / "exps").exists()


KILL_TARGET = 40  # iterations, far beyond where the kill lands


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["Geo", "Vis", "Mat"])
def test_kill_9_and_resume_gives_the_uninterrupted_parameters(small_pile, tmp_path, stage):
    """SIGKILL a stage as soon as its iteration-4 checkpoint appears, --is_continue to 40 (from
    whichever checkpoint is newest and whole): the parameters equal those of an uninterrupted
    run to 40 (checkpoint every 2)."""
    import os
    import signal
    import time

    previous = ("Geo", "Vis")[: ["Geo", "Vis", "Mat"].index(stage)]
    results = []
    for name in ("straight", "killed"):
        exps = tmp_path / name
        for before in previous:
            main(exp_args(small_pile, exps, before, "--max_niter", "2"))
        args = exp_args(small_pile, exps, stage, "--train.ckpt_freq=2")
        if name == "killed":
            command = [sys.executable, "-m", "sfd.exp_runner", *args, "--max_niter", "100000"]
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.time() + 300
            while not list(
                (exps / f"{stage}-pile").glob("*/checkpoints/*OptimizerParameters/4.pth")
            ):
                assert time.time() < deadline and process.poll() is None
                time.sleep(0.2)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            main([*args, "--max_niter", str(KILL_TARGET), "--is_continue"])
        else:
            main([*args, "--max_niter", str(KILL_TARGET)])
        results.append(_latest_state(exps, stage))
    straight, resumed = results
    assert straight["iter"] == resumed["iter"] == KILL_TARGET
    for key, value in straight["model_state_dict"].items():
        assert torch.equal(value, resumed["model_state_dict"][key]), key
