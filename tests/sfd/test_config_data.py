"""Configs, the data folder reader and the points_world.npy rebuild."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from geomkit.errors import ConfigError, InputError
from sfd.config import load_config
from sfd.data import decode_segmentation, load_scene
from sfd.models.pose import ObjectPose, matrix_to_quaternion, quaternion_to_matrix


def test_configs_layer_base_overlay_and_overrides():
    debug = load_config("configs/debug.yaml", ["--train.geo_num_pixels=64", "--model.perturb=0.5"])
    assert debug["model"]["implicit_network"]["dims"] == [64] * 8
    assert debug["model"]["implicit_network"]["skip_in"] == [4]  # from base.yaml
    assert debug["train"]["geo_num_pixels"] == 64 and debug["model"]["perturb"] == 0.5
    assert load_config("default.yaml")["train"]["geo_plot_freq"] == 500
    with pytest.raises(ConfigError, match="model.nope"):
        load_config(None, ["--model.nope=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/absent.yaml")


def test_quaternions_round_trip():
    q = torch.nn.functional.normalize(torch.randn(64, 4, dtype=torch.float64), dim=-1)
    R = quaternion_to_matrix(q)
    assert torch.allclose(
        R @ R.transpose(1, 2), torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-12
    )
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-10)


@pytest.mark.realdata
def test_airplane_sample_loads(airplane):
    scene = load_scene(airplane)
    assert scene.n_instances == 6 and scene.rgb.shape == (800, 800, 3)
    assert scene.focal == pytest.approx(1296.8803916710694)
    assert sorted(scene.seg.unique().tolist()) == list(range(7))
    assert 0 < scene.near < scene.far and scene.scene_radius > 0
    poses = ObjectPose(airplane, "SFM", 6)
    stored = json.loads((airplane / "object_pred_pose.json").read_text())
    scale = torch.tensor(
        json.loads((airplane / "object_scale_matrix.json").read_text())["scale_matrix"]
    )
    expected = torch.tensor(stored["airplane_03"], dtype=torch.float32) @ scale
    assert torch.allclose(poses.get_pose()[3], expected, atol=1e-5)


@pytest.mark.realdata
def test_rebuilt_points_fall_in_their_instance(airplane):
    """The hull points of instance i project into instance i's segment (>= 90% each)."""
    scene = load_scene(airplane)
    points = np.load(airplane / "points_world.npy", allow_pickle=True).item()
    w2c = torch.linalg.inv(scene.c2w)
    for i in range(6):
        cam = torch.from_numpy(points[f"points_world_{i}"]).float() @ w2c[:3, :3].T + w2c[:3, 3]
        u = torch.round(cam[:, 0] / -cam[:, 2] * scene.focal + 400).long().clamp(0, 799)
        v = torch.round(-cam[:, 1] / -cam[:, 2] * scene.focal + 400).long().clamp(0, 799)
        assert (scene.seg[v, u] == i + 1).float().mean() >= 0.9


@pytest.mark.realdata
def test_bad_segmentation_and_focal(airplane, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(airplane, broken)
    from geomkit.io.images import read_image, write_image

    seg = np.rint(read_image(broken / "train/000_instance_seg.png")[..., 0] * 255).astype(np.uint8)
    seg[seg == 255] = 200  # an instance value that does not exist
    write_image(broken / "train/000_instance_seg.png", seg)
    with pytest.raises(InputError, match="unexpected values: \\[200\\]"):
        decode_segmentation(broken / "train/000_instance_seg.png", 6)
    seg[seg == 200] = 0  # instance 6 missing
    write_image(broken / "train/000_instance_seg.png", seg)
    with pytest.raises(InputError, match="instances missing: \\[6\\]"):
        load_scene(broken)
    meta = json.loads((airplane / "transforms_train.json").read_text())
    meta["focal"] = "twelve hundred"
    (broken / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="focal 'twelve hundred' is not a number"):
        load_scene(broken)


def test_unregistered_instances_become_background(small_pile, tmp_path):
    """SfM registered instances 0 and 2 of 3: their poses are renumbered 1, 2; instance 1's
    pixels become background (non_empty_indexes.txt lists the registered ids)."""
    data = tmp_path / "data"
    shutil.copytree(small_pile, data)
    full = load_scene(data)
    poses = json.loads((data / "object_pred_pose.json").read_text())
    names = sorted(poses)
    kept = {f"{names[0][:-3]}_00": poses[names[0]], f"{names[0][:-3]}_01": poses[names[2]]}
    (data / "object_pred_pose.json").write_text(json.dumps(kept))
    (data / "non_empty_indexes.txt").write_text("0.0\n2.0\n")
    scene = load_scene(data)
    assert scene.n_instances == 2
    assert torch.equal(scene.seg == 1, full.seg == 1) and torch.equal(scene.seg == 2, full.seg == 3)
    assert bool((scene.seg[full.seg == 2] == 0).all())
