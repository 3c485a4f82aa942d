"""The demos' input processing: the web demo's rays, normalisation and the way back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from geomkit.errors import InputError
from numcc.demo_inputs import prepare_seen, record3d_points, web_inputs, web_points


def test_web_rays_span_the_field_of_view():
    depth = torch.full((30, 40), 2.0)
    points = web_points(depth, fov_deg=35)
    rays = (points - torch.tensor([1.0, 0, 0])) / 2.0
    assert torch.allclose(rays[..., 0], torch.ones(30, 40))  # z-depth along +x
    # Pixel centres span (W - 1) / W of the horizontal field of view.
    left, right = rays[15, 0], rays[15, -1]
    angle = math.degrees(math.atan2(abs(left[2]), 1) + math.atan2(abs(right[2]), 1))
    assert angle == pytest.approx(
        2 * math.degrees(math.atan(39 / 40 * math.tan(math.radians(17.5))))
    )
    assert left[2] > 0 > right[2] and rays[0, 20, 1] > 0  # image right is -z, image top is +y


def test_normalised_points_map_back_to_the_input_frame():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(24, 24, 3, generator=g) * 5 + torch.tensor([10.0, -3.0, 2.0])
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[4:20, 4:20] = True  # a 16 x 16 box: with no margin, no resizing at xyz_size 16
    seen = prepare_seen(points, torch.rand(24, 24, 3, generator=g), mask, margin=0, xyz_size=16)
    valid = torch.isfinite(seen.seen_xyz).all(-1)
    assert valid.all()
    assert seen.seen_xyz.reshape(-1, 3).mean(0).abs().max() < 1e-5
    torch.testing.assert_close(seen.to_input_frame(seen.seen_xyz), points[4:20, 4:20])


@pytest.mark.realdata
def test_gudetama_inputs_match_the_originals(shared_data):
    folder = shared_data / "numcc" / "web" / "gudetama"
    seen = web_inputs(folder / "im.png", folder / "depth.png", folder / "seg.png")
    valid = torch.isfinite(seen.seen_xyz).all(-1)
    # An independent simulation of the original's preprocessing gave scale 2517.75 and 7,489
    # valid pixels at 112^2 (reference notes, section 4).
    assert seen.scale == pytest.approx(2517.75, abs=0.01)
    assert int(valid.sum()) == 7489
    assert seen.seen_rgb.shape == (3, 800, 800)


def test_record3d_vertex_count_is_checked(tmp_path):
    path = tmp_path / "pc.obj"
    np.savetxt(path, np.random.default_rng(0).normal(size=(1000, 3)), fmt="v %.4f %.4f %.4f")
    with pytest.raises(InputError, match="1000 vertices.*640 x 480"):
        record3d_points(path)
    Image.new("L", (4, 4)).save(tmp_path / "seg.png")
    with pytest.raises(InputError, match="image not found"):
        web_inputs(tmp_path / "im.png", tmp_path / "depth.png", tmp_path / "seg.png")
