"""CO3D v2 files written by geomkit.synth and read by numcc.data.co3d as the release's."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from geomkit.errors import InputError
from geomkit.synth.layouts.co3d import generate_co3d
from geomkit.synth.shapes import make_shape
from numcc.data.co3d import (
    CO3DV2Dataset,
    co3d_categories,
    eval_frame_index,
    load_frame,
    read_jgz,
    seen_points,
)

CATEGORIES = ("sphere", "torus")


@pytest.fixture(scope="module")
def co3d_root(tmp_path_factory):
    return generate_co3d(tmp_path_factory.mktemp("co3d") / "co3d", CATEGORIES)


def shape_of(category: str, sequence: str):
    return make_shape(category, int(sequence.split("_")[1]))


def test_files_are_laid_out_as_the_release(co3d_root):
    frames = json.loads(
        gzip.decompress((co3d_root / "torus" / "frame_annotations.jgz").read_bytes())
    )
    entry = frames[0]
    assert entry["viewpoint"]["intrinsics_format"] == "ndc_isotropic"
    assert entry["depth"]["path"].endswith("/depths/frame000001.jpg.geometric.png")
    with Image.open(co3d_root / entry["depth"]["path"]) as depth:
        bits = np.array(depth, dtype=np.uint16)
    metric = bits.view(np.float16).astype(np.float32) * entry["depth"]["scale_adjustment"]
    assert 1.5 < metric[metric > 0].min() < metric.max() < 3.5  # cameras 2.5 from the origin
    split = json.loads(
        (co3d_root / "torus" / "set_lists" / "set_lists_fewview_dev.json").read_text()
    )
    assert {s for s, _, _ in split["val"]} == {frames[-1]["sequence_name"]}
    assert co3d_categories(co3d_root) == list(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_seen_points_lie_on_the_object(co3d_root, category):
    scales = set()
    for entry in read_jgz(co3d_root / category / "frame_annotations.jgz")[::3]:
        frame = load_frame(co3d_root, entry)
        points = seen_points(frame)
        valid = torch.isfinite(points).all(-1)
        assert points.shape == (112, 112, 3) and valid.sum() > 1000
        distance = np.abs(
            shape_of(category, entry["sequence_name"]).sdf(points[valid].double().numpy())
        )
        # measured: median 0.0012, 90th percentile below 0.004 (marching cubes at 64^3)
        assert np.median(distance) < 0.003 and np.percentile(distance, 90) < 0.01
        scales.add(entry["depth"]["scale_adjustment"])
    assert len(scales) == 2  # the depth scale of each sequence is applied


def test_the_crop_camera_projects_the_object_onto_its_mask(co3d_root):
    entry = read_jgz(co3d_root / "sphere" / "frame_annotations.jgz")[4]
    frame = load_frame(co3d_root, entry)
    assert frame.image.shape == (3, 800, 800) and frame.mask.shape == (1, 800, 800)
    shape = shape_of("sphere", entry["sequence_name"])
    points = torch.from_numpy(shape.mesh(64).vertices).double()
    camera = frame.camera
    view = points @ camera.R + camera.T
    ndc = view[:, :2] / view[:, 2:] * camera.focal + camera.principal
    pixels = ((1 - ndc) * 400).floor().long()  # +x left, +y up; 800 px span [-1, 1]
    # One pixel of the 160 x 120 source is about 13 crop pixels: allow one source pixel.
    grown = torch.nn.functional.max_pool2d(frame.mask[None], 27, stride=1, padding=13)[0, 0]
    inside = grown[pixels[:, 1].clamp(0, 799), pixels[:, 0].clamp(0, 799)] > 0.5
    assert inside.float().mean() > 0.999
    rows, cols = (frame.mask[0] > 0.5).nonzero().double().mean(0)
    centre = pixels.double().mean(0)  # the sphere's vertices are symmetric about its centre
    assert abs(centre[0] - cols) < 3 and abs(centre[1] - rows) < 3


def test_dataset_samples(co3d_root):
    val = CO3DV2Dataset(co3d_root, train=False, categories=list(CATEGORIES), n_gt=5000)
    assert len(val) == 2  # one val sequence per category
    sample = val[0]
    assert sample["gt_xyz"].shape == (5000, 3) and sample["gt_rgb"].shape == (5000, 3)
    assert 0 <= sample["gt_rgb"].min() and sample["gt_rgb"].max() <= 1
    category, sequence, number = sample["name"]
    frames = val.categories[category].frames[sequence]
    assert number == frames[eval_frame_index(sequence, len(frames))]["frame_number"]
    assert val[0]["name"] == sample["name"]
    train = CO3DV2Dataset(co3d_root, train=True, categories=["sphere"], epoch_len_multiplier=4)
    assert len(train) == 4
    chosen = set()
    for epoch in range(6):
        train.set_epoch(epoch)
        chosen.add(train.frame_entry(0, np.random.default_rng([0, epoch, 0]))[2]["frame_number"])
    assert len(chosen) > 1


def test_bad_inputs_name_the_file(co3d_root, tmp_path):
    with pytest.raises(InputError, match="frame_annotations.jgz"):
        CO3DV2Dataset(tmp_path, train=False, categories=["sphere"])
    with pytest.raises(InputError, match="one_class 'chair'"):
        co3d_categories(co3d_root, one_class="chair")
    broken = generate_co3d(tmp_path / "broken", ("sphere",), sequences=1, views=2)
    sequence = read_jgz(broken / "sphere" / "sequence_annotations.jgz")[0]
    (broken / sequence["point_cloud"]["path"]).unlink()
    with pytest.raises(InputError, match="pointcloud.ply"):  # before any sample is read
        CO3DV2Dataset(broken, train=False, categories=["sphere"])
    entry = read_jgz(broken / "sphere" / "frame_annotations.jgz")[0]
    Image.new("L", (10, 10)).save(broken / entry["mask"]["path"])
    with pytest.raises(InputError, match="mask is"):
        load_frame(broken, entry)
