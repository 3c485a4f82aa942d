"""geomkit.transforms against scipy.spatial.transform.Rotation, numpy and hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from geomkit import transforms as T
from tests.helpers import assert_close

F64 = torch.float64


def _scipy_quaternions(rotation: Rotation) -> np.ndarray:
    """scipy's (x, y, z, w) as canonical (w, x, y, z) with w >= 0."""
    xyzw = np.atleast_2d(rotation.as_quat())
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    return wxyz * np.where(wxyz[:, :1] < 0, -1.0, 1.0)


def _random_axes(n: int, seed: int = 0) -> np.ndarray:
    axes = np.random.default_rng(seed).normal(size=(n, 3))
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


# Angles near 0 and near pi (where naive formulas lose precision), and ordinary ones.
ANGLES = [0.0, 1e-12, 1e-7, 1e-4, 0.5, 2.0, math.pi - 1e-4, math.pi - 1e-7, math.pi - 1e-10]


def test_quaternion_to_matrix_matches_scipy():
    rotations = Rotation.random(200, random_state=1)
    quaternions = torch.from_numpy(_scipy_quaternions(rotations))
    assert_close(T.quaternion_to_matrix(quaternions), rotations.as_matrix(), atol=1e-12)


def test_quaternion_to_matrix_accepts_non_unit_quaternions():
    rotations = Rotation.random(20, random_state=2)
    quaternions = torch.from_numpy(_scipy_quaternions(rotations)) * 3.7
    assert_close(T.quaternion_to_matrix(quaternions), rotations.as_matrix(), atol=1e-12)


def test_matrix_to_quaternion_matches_scipy_canonical():
    rotations = Rotation.random(500, random_state=3)
    quaternions = T.matrix_to_quaternion(torch.from_numpy(rotations.as_matrix()))
    assert bool((quaternions[:, 0] >= 0).all())
    assert_close(quaternions, _scipy_quaternions(rotations), atol=1e-12)


@pytest.mark.parametrize("angle", ANGLES)
def test_quaternion_matrix_axis_angle_round_trips(angle):
    rotvecs = _random_axes(64, seed=4) * angle
    expected = Rotation.from_rotvec(rotvecs).as_matrix()
    matrices = T.axis_angle_to_matrix(torch.from_numpy(rotvecs))
    assert_close(matrices, expected, atol=1e-12, what="axis_angle_to_matrix")
    quaternions = T.matrix_to_quaternion(matrices)
    assert_close(T.quaternion_to_matrix(quaternions), expected, atol=1e-6, what="quat round trip")
    back = T.matrix_to_axis_angle(matrices)
    assert_close(back, rotvecs, atol=1e-6, what="matrix_to_axis_angle")
    assert_close(back, Rotation.from_matrix(expected).as_rotvec(), atol=1e-6, what="vs scipy")


def test_matrix_to_axis_angle_at_exactly_pi_gives_the_same_rotation():
    axes = _random_axes(32, seed=5)
    matrices = torch.from_numpy(Rotation.from_rotvec(axes * math.pi).as_matrix())
    back = T.matrix_to_axis_angle(matrices)
    assert_close(back.norm(dim=-1), np.full(32, math.pi), atol=1e-9, what="angle")
    # v and -v are both valid at pi; the rotation must be the same.
    assert_close(T.axis_angle_to_matrix(back), matrices, atol=1e-9, what="matrix")


def test_matrix_to_quaternion_exact_half_turns():
    half_turn_x = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))
    assert_close(T.matrix_to_quaternion(half_turn_x).abs(), [0.0, 1.0, 0.0, 0.0], atol=1e-15)
    half_turn_z = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=F64))
    assert_close(T.matrix_to_quaternion(half_turn_z).abs(), [0.0, 0.0, 0.0, 1.0], atol=1e-15)


def test_quaternion_multiply_and_invert_match_scipy():
    a = Rotation.random(50, random_state=6)
    b = Rotation.random(50, random_state=7)
    qa = torch.from_numpy(_scipy_quaternions(a))
    qb = torch.from_numpy(_scipy_quaternions(b))
    product = T.standardize_quaternion(T.quaternion_multiply(qa, qb))
    assert_close(product, _scipy_quaternions(a * b), atol=1e-12, what="multiply")
    inverse = T.standardize_quaternion(T.quaternion_invert(qa))
    assert_close(inverse, _scipy_quaternions(a.inv()), atol=1e-12, what="invert")
    identity = T.quaternion_multiply(qa * 2.0, T.quaternion_invert(qa * 2.0))
    assert_close(identity, np.tile([1.0, 0.0, 0.0, 0.0], (50, 1)), atol=1e-12, what="q q^-1")


CONVENTIONS = ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX", "XYX", "XZX", "YXY", "YZY", "ZXZ", "ZYZ"]


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_euler_angles_match_scipy_intrinsic(convention):
    angles = np.random.default_rng(8).uniform(-math.pi, math.pi, size=(40, 3))
    expected = Rotation.from_euler(convention, angles).as_matrix()
    assert_close(
        T.euler_angles_to_matrix(torch.from_numpy(angles), convention), expected, atol=1e-12
    )


def test_euler_angles_reject_bad_conventions():
    with pytest.raises(ValueError, match="repeats"):
        T.euler_angles_to_matrix(torch.zeros(3), "XXY")
    with pytest.raises(ValueError, match="3 letters"):
        T.euler_angles_to_matrix(torch.zeros(3), "xyz")


def test_rotation_about_axis_is_counter_clockwise_column_convention():
    x, y, z = torch.eye(3, dtype=F64)
    # 90 degrees about Z takes x to y; about X takes y to z; about Y takes z to x (right hand).
    assert_close(T.rotation_about_axis("Z", 90.0, dtype=F64) @ x, y, atol=1e-15)
    assert_close(T.rotation_about_axis("X", 90.0, dtype=F64) @ y, z, atol=1e-15)
    assert_close(T.rotation_about_axis("Y", 90.0, dtype=F64) @ z, x, atol=1e-15)
    degrees = torch.tensor([-170.0, 12.5, 45.0], dtype=F64)
    for axis in "XYZ":
        expected = Rotation.from_euler(axis.lower(), degrees.numpy()[:, None], degrees=True)
        assert_close(
            T.rotation_about_axis(axis, degrees), expected.as_matrix(), atol=1e-12, what=axis
        )


def test_random_rotations_are_rotations_uniform_and_reproducible():
    rotations = T.random_rotations(20000, generator=torch.Generator().manual_seed(0), dtype=F64)
    eye = np.broadcast_to(np.eye(3), (20000, 3, 3))
    assert_close(rotations.transpose(1, 2) @ rotations, eye, atol=1e-12, what="orthonormal")
    assert_close(torch.det(rotations), np.ones(20000), atol=1e-12, what="det")
    # The Haar mean of a rotation matrix is 0; a biased sampler (e.g. uniform Euler angles)
    # is far from it. Standard error per entry is about 1/sqrt(3 * 20000) = 0.004.
    assert_close(rotations.mean(0), np.zeros((3, 3)), atol=0.02, what="mean")
    first = T.random_rotations(7, generator=torch.Generator().manual_seed(1), dtype=F64)
    again = T.random_rotations(7, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert_close(again, first, atol=0.0, what="same seed")
    assert T.random_rotations(3).dtype == torch.float32


def _numpy_homogeneous(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    matrix = np.zeros(R.shape[:-2] + (4, 4))
    matrix[..., :3, :3] = R
    matrix[..., :3, 3] = t
    matrix[..., 3, 3] = 1.0
    return matrix


def test_rigid_helpers_match_4x4_products():
    rng = np.random.default_rng(9)
    R1, R2 = (
        Rotation.random(2, random_state=10).as_matrix(),
        Rotation.random(2, random_state=11).as_matrix(),
    )
    t1, t2 = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    points = rng.normal(size=(2, 7, 3))
    M1, M2 = _numpy_homogeneous(R1, t1), _numpy_homogeneous(R2, t2)
    points_h = np.concatenate([points, np.ones((2, 7, 1))], axis=-1)
    tt = [torch.from_numpy(a) for a in (R1, t1, R2, t2, points)]
    R1_t, t1_t, R2_t, t2_t, points_t = tt
    expected = np.einsum("nij,npj->npi", M1, points_h)[..., :3]
    assert_close(T.apply_rigid(points_t, R1_t, t1_t), expected, atol=1e-12, what="apply")
    assert_close(T.to_homogeneous_matrix(R1_t, t1_t), M1, atol=0.0, what="to_homogeneous")
    R_back, t_back = T.from_homogeneous_matrix(torch.from_numpy(M1))
    assert_close(R_back, R1, atol=0.0, what="from_homogeneous R")
    assert_close(t_back, t1, atol=0.0, what="from_homogeneous t")
    R_inv, t_inv = T.invert_rigid(R1_t, t1_t)
    assert_close(T.to_homogeneous_matrix(R_inv, t_inv), np.linalg.inv(M1), atol=1e-12, what="inv")
    R_c, t_c = T.compose_rigid(R1_t, t1_t, R2_t, t2_t)
    assert_close(T.to_homogeneous_matrix(R_c, t_c), M1 @ M2, atol=1e-12, what="compose")


def test_similarity_inverse_undoes_it():
    points = torch.randn(3, 10, 3, dtype=F64)
    s = torch.tensor([0.5, 2.0, 3.0], dtype=F64)
    R = torch.from_numpy(Rotation.random(3, random_state=12).as_matrix())
    t = torch.randn(3, 3, dtype=F64)
    moved = T.apply_similarity(points, s, R, t)
    expected = s.numpy()[:, None, None] * np.einsum("nij,npj->npi", R.numpy(), points.numpy())
    assert_close(moved, expected + t.numpy()[:, None, :], atol=1e-12, what="apply_similarity")
    assert_close(T.apply_similarity(moved, *T.invert_similarity(s, R, t)), points, atol=1e-12)


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_recovers_a_known_similarity(with_scale):
    src = torch.randn(40, 3, dtype=F64)
    R = torch.from_numpy(Rotation.from_rotvec([0.3, -1.2, 2.0]).as_matrix())
    t = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    scale = 2.5 if with_scale else 1.0
    dst = T.apply_similarity(src, scale, R, t)
    s_est, R_est, t_est = T.umeyama_alignment(src, dst, with_scale=with_scale)
    assert_close(s_est, scale, atol=1e-12, what="s")
    assert_close(R_est, R, atol=1e-12, what="R")
    assert_close(t_est, t, atol=1e-12, what="t")


def test_umeyama_returns_a_proper_rotation_for_mirrored_points():
    src = torch.randn(30, 3, dtype=F64)
    dst = src * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    _, R_est, _ = T.umeyama_alignment(src, dst)
    assert_close(torch.det(R_est), 1.0, atol=1e-12, what="det")


def test_float32_and_batch_shapes_are_preserved():
    matrices = T.random_rotations(6, dtype=torch.float32).reshape(2, 3, 3, 3)
    assert T.matrix_to_quaternion(matrices).shape == (2, 3, 4)
    assert T.matrix_to_quaternion(matrices).dtype == torch.float32
    assert T.matrix_to_axis_angle(matrices).shape == (2, 3, 3)
    back = T.axis_angle_to_matrix(T.matrix_to_axis_angle(matrices))
    assert_close(back, matrices, atol=1e-5, what="float32 round trip")
