"""sfd.evaluation: image, material, normal, lighting, pose and geometry metrics, and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from geomkit.errors import CheckpointError, InputError, OutputExistsError
from geomkit.mesh import marching_cubes
from geomkit.transforms import axis_angle_to_matrix, random_rotations
from sfd.evaluation import (
    albedo_metrics,
    chamfer_to_truth,
    envmap_error,
    image_metrics,
    normal_angle,
    pose_errors,
    rotation_angle_deg,
    roughness_mse,
    tone_map,
    write_report,
)
from tests.helpers import assert_close

H, W = 32, 40


def display_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two random tone-mapped (H, W, 3) float64 images in [0.2, 0.8]."""
    generator = torch.Generator().manual_seed(seed)
    pred = 0.2 + 0.6 * torch.rand(H, W, 3, generator=generator, dtype=torch.float64)
    gt = 0.2 + 0.6 * torch.rand(H, W, 3, generator=generator, dtype=torch.float64)
    return pred, gt


def linear(display: torch.Tensor) -> torch.Tensor:
    return display**2.2


def disc_mask() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    return (y - H / 2) ** 2 + (x - W / 2) ** 2 < 12**2


def test_tone_map_clips_then_applies_gamma():
    values = tone_map(torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64))
    assert_close(values, [0.0, 0.0, 0.5 ** (1 / 2.2), 1.0, 1.0], atol=1e-15)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    _, gt = display_pair()
    metrics = image_metrics(linear(gt), linear(gt), disc_mask())
    assert metrics["psnr"] == math.inf
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["lpips"] is None


def test_known_error_inside_the_mask_gives_known_psnr_and_outside_is_ignored():
    _, gt = display_pair()
    mask = disc_mask()
    sign = torch.where((torch.arange(H)[:, None] + torch.arange(W)) % 2 == 0, 1.0, -1.0)
    pred = gt + 0.01 * sign[..., None].double()  # |error| = 0.01 everywhere: MSE 1e-4
    pred[~mask] = 0.95  # wildly wrong outside the mask
    metrics = image_metrics(linear(pred), linear(gt), mask)
    assert metrics["psnr"] == pytest.approx(40.0, abs=1e-6)


def test_ssim_is_the_originals_white_filled_skimage_ssim():
    pred, gt = display_pair()
    mask = disc_mask()
    metrics = image_metrics(linear(pred), linear(gt), mask)
    filled = [torch.where(mask[..., None], image, 1.0).numpy() for image in (pred, gt)]
    data_range = max(f.max() for f in filled) - min(f.min() for f in filled)
    expected = structural_similarity(*filled, data_range=data_range, channel_axis=2)
    assert metrics["ssim"] == pytest.approx(expected, abs=1e-9)
    assert metrics["ssim"] < 0.9  # the random images do differ inside the mask


def test_lpips_gets_white_filled_images_in_minus_one_to_one():
    pred, gt = display_pair()
    mask = disc_mask()
    seen = []

    def fake_lpips(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append((a, b))
        return (a - b).abs().mean().reshape(1)

    metrics = image_metrics(linear(pred), linear(gt), mask, lpips=fake_lpips)
    a, b = seen[0]
    assert a.shape == (1, 3, H, W)
    assert bool((a[0, :, ~mask] == 1.0).all()) and bool((b[0, :, ~mask] == 1.0).all())
    assert_close(a[0].permute(1, 2, 0)[mask], 2 * pred[mask] - 1, atol=1e-12, what="pred")
    assert metrics["lpips"] == pytest.approx(float((a - b).abs().mean()))


def test_lpips_vgg_without_its_weight_file_says_which_file(tmp_path, monkeypatch):
    from geomkit.metrics.lpips import LPIPS

    monkeypatch.setenv("GEOMKIT_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(CheckpointError, match="vgg16-397923af.pth"):
        LPIPS("vgg")


def test_albedo_alignment_removes_a_per_channel_scale():
    _, gt = display_pair()
    mask = disc_mask()
    gains = torch.tensor([0.5, 0.8, 1.2], dtype=torch.float64)  # linear, no clipping below 1
    metrics = albedo_metrics(linear(gt) * gains, linear(gt), mask)
    assert_close(metrics["scale"], gains ** (-1 / 2.2), atol=1e-12, what="display scale")
    assert metrics["aligned"]["psnr"] > 250  # equal up to rounding
    assert metrics["raw"]["psnr"] < 25
    reused = albedo_metrics(linear(gt) * gains, linear(gt), mask, scale=metrics["scale"])
    assert reused["aligned"] == metrics["aligned"]
    with pytest.raises(InputError, match="zero over the mask"):
        albedo_metrics(torch.zeros_like(gt), linear(gt), mask)


def test_normal_angle_measures_the_angle_between_normals():
    generator = torch.Generator().manual_seed(3)
    gt = torch.nn.functional.normalize(torch.randn(H, W, 3, generator=generator), dim=-1)
    other = torch.nn.functional.normalize(torch.randn(H, W, 3, generator=generator), dim=-1)
    axis = torch.nn.functional.normalize(torch.cross(gt, other, dim=-1), dim=-1)
    angle = math.radians(17.0)
    pred = axis_angle_to_matrix(axis * angle) @ gt[..., None]
    assert normal_angle(pred[..., 0], gt, disc_mask()) == pytest.approx(17.0, abs=1e-3)


def test_normal_angle_fixes_the_originals_colour_space_angle():
    mask = torch.ones(1, 1, dtype=torch.bool)
    right, left = torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[-1.0, 0.0, 0.0]]])
    assert normal_angle(left, right, mask) == pytest.approx(180.0, abs=1e-3)
    legacy = normal_angle(left, right, mask, legacy_color_space=True)
    assert legacy == pytest.approx(math.degrees(math.acos(1 / math.sqrt(3))), abs=1e-3)


def test_roughness_mse_is_measured_after_tone_mapping():
    gt = torch.full((H, W), 0.4, dtype=torch.float64)
    pred = linear(tone_map(gt) + 0.1)
    assert roughness_mse(pred, gt, disc_mask()) == pytest.approx(0.01, abs=1e-12)
    assert roughness_mse(gt, gt, disc_mask()) == 0.0


def test_envmap_error_resizes_the_truth_bilinearly_before_tone_mapping():
    columns = torch.arange(32, dtype=torch.float64)
    gt = (0.01 * columns).expand(16, 32)[..., None].expand(16, 32, 3)  # a linear ramp
    # halving a ramp bilinearly (align_corners=False) averages column pairs: 2j + 0.5
    coarse = (0.01 * (2 * torch.arange(16, dtype=torch.float64) + 0.5)).expand(8, 16)
    pred = coarse[..., None].expand(8, 16, 3).contiguous()
    assert envmap_error(pred, gt) == pytest.approx(0.0, abs=1e-20)
    brighter = linear(tone_map(pred) + 0.05)
    assert envmap_error(brighter, gt) == pytest.approx(0.0025, abs=1e-12)
    with pytest.raises(InputError, match="aspect"):
        envmap_error(pred, gt[:, :16])


def scene(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n object-to-world rigid poses and one camera-to-world, float64."""
    generator = torch.Generator().manual_seed(seed)
    rotations = random_rotations(n + 1, generator=generator, dtype=torch.float64)
    poses = torch.eye(4, dtype=torch.float64).repeat(n + 1, 1, 1)
    poses[:, :3, :3] = rotations
    poses[:, :3, 3] = 3 * torch.randn(n + 1, 3, generator=generator, dtype=torch.float64)
    return poses[:n], poses[n]


def similarity(scale: float, seed: int) -> torch.Tensor:
    matrix, _ = scene(1, seed)
    matrix = matrix[0].clone()
    matrix[:3, :3] *= scale
    return matrix


def test_pose_errors_vanish_for_a_similarity_transformed_copy():
    obj2world, cam2world = scene()
    world = similarity(2.5, seed=1)  # another world frame
    canonical = similarity(0.3, seed=2)  # another object frame (e.g. SfD's scale_mat)
    errors = pose_errors(obj2world, world @ obj2world @ canonical, cam2world, world @ cam2world)
    assert float(errors.rotation_deg.abs().max()) < 1e-9
    assert float(errors.translation.max()) < 1e-9
    # the alignment maps predicted canonical coordinates to the GT's: the inverse of `canonical`
    assert_close(errors.alignment @ canonical, torch.eye(4, dtype=torch.float64), atol=1e-9)


def test_pose_errors_report_a_known_rotation_of_one_instance():
    obj2world, cam2world = scene()
    turn = torch.eye(4, dtype=torch.float64)
    turn[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64) * 0.2)
    # rotate instance 2 about the camera centre: its virtual camera keeps its centre
    perturbed = obj2world.clone()
    perturbed[2] = cam2world @ turn.T @ torch.linalg.inv(cam2world) @ obj2world[2]
    errors = pose_errors(perturbed, obj2world, cam2world, cam2world)
    expected = torch.zeros(5, dtype=torch.float64)
    expected[2] = math.degrees(0.2)
    assert_close(errors.rotation_deg, expected, atol=1e-9, what="rotation error")
    assert float(errors.translation.max()) < 1e-9


def test_pose_translation_error_is_in_gt_units_and_normalised_by_the_gt_spread():
    obj2world, cam2world = scene()
    moved = obj2world.clone()
    moved[1, :3, 3] += torch.tensor([0.5, -0.2, 0.1], dtype=torch.float64)
    errors = pose_errors(moved, obj2world, cam2world, cam2world)
    assert float(errors.translation.max()) > 0.05
    shrink = similarity(0.25, seed=4)  # the GT object frame in units four times larger
    scaled = pose_errors(moved, obj2world @ shrink, cam2world, cam2world)
    assert_close(scaled.translation, 4 * errors.translation, rtol=1e-9, what="units")
    assert_close(scaled.translation_normalized, errors.translation_normalized, rtol=1e-9)
    assert_close(scaled.rotation_deg, errors.rotation_deg, atol=1e-9, what="rotation")


def test_pose_errors_refuse_degenerate_inputs():
    obj2world, cam2world = scene()
    with pytest.raises(InputError, match="at least 3 instances"):
        pose_errors(obj2world[:2], obj2world[:2], cam2world, cam2world)
    row = obj2world.clone()
    row[:, :3, :3] = row[0, :3, :3]
    row[:, :3, 3] = torch.arange(5, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2, 0])
    with pytest.raises(InputError, match="collinear"):
        pose_errors(row, row, cam2world, cam2world)
    sheared = obj2world.clone()
    sheared[3, 0, 1] += 0.1
    with pytest.raises(InputError, match=r"pred_obj2world\[3\]"):
        pose_errors(sheared, obj2world, cam2world, cam2world)


def test_rotation_angle_is_exact_at_zero_and_small_angles():
    small = axis_angle_to_matrix(
        torch.tensor([[0.0, 0.0, 1e-7], [0.0, 0.0, 0.0]], dtype=torch.float64)
    )
    assert_close(rotation_angle_deg(small), [math.degrees(1e-7), 0.0], atol=1e-15)


def test_chamfer_to_truth_of_a_shifted_grid_and_of_a_mesh():
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    shifted = grid + torch.tensor([0.1, 0.0, 0.0])
    metrics = chamfer_to_truth(shifted, grid, n=1000, thresholds=(0.05, 0.2))
    assert metrics["chamfer_l1"] == pytest.approx(0.1, abs=1e-6)
    assert metrics["chamfer_l2"] == pytest.approx(0.01, abs=1e-6)
    assert [t["fscore"] for t in metrics["thresholds"]] == [0.0, 1.0]

    axis = np.linspace(-1, 1, 33)
    volume = np.linalg.norm(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1), axis=-1)
    sphere = marching_cubes(volume - 0.6, 0.0, (-1,) * 3, (1,) * 3, inside="below")
    directions = np.random.default_rng(1).normal(size=(20000, 3))
    truth = 0.6 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    metrics = chamfer_to_truth(sphere, truth, n=20000)
    assert metrics["chamfer_l1"] < 0.01  # mostly the ~0.0075 gaps between random samples
    bigger = chamfer_to_truth(sphere, truth * 1.1, n=20000)
    assert bigger["accuracy"] == pytest.approx(0.06, abs=0.003)


def test_write_report_writes_json_and_a_table(tmp_path):
    obj2world, cam2world = scene()
    metrics = {
        "rgb": {"gt_and_hit": {"psnr": math.inf, "ssim": torch.tensor(0.5), "lpips": None}},
        "pose": pose_errors(obj2world, obj2world, cam2world, cam2world),
        "envmap_mse": np.float32(0.25),
    }
    json_path, text_path = write_report(metrics, tmp_path / "eval")
    loaded = json.loads(json_path.read_text())
    assert loaded["rgb"]["gt_and_hit"] == {"psnr": "inf", "ssim": 0.5, "lpips": None}
    assert len(loaded["pose"]["rotation_deg"]) == 5 and loaded["envmap_mse"] == 0.25
    table = text_path.read_text().splitlines()
    assert "rgb/gt_and_hit/psnr" in table[0] and table[0].endswith("inf")
    assert any(line.startswith("pose/rotation_deg") and "(5 values)" in line for line in table)
    with pytest.raises(OutputExistsError):
        write_report(metrics, tmp_path / "eval")
    write_report({"x": 1.0}, tmp_path / "eval", overwrite=True)
    assert json.loads(json_path.read_text()) == {"x": 1.0}
