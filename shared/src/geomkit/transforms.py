"""Rotations, rigid and similarity transforms.

Conventions used throughout this module:

* Rotation matrices act on COLUMN vectors: ``x' = R @ x``. To apply one to points stored as rows
  (``(P, 3)``), use ``points @ R.transpose(-1, -2)``.
* Quaternions are ``(w, x, y, z)``, real part first (scipy uses ``(x, y, z, w)``).
* Axis-angle vectors are ``axis * angle``, angle in radians, right-hand rule.
* Rigid transforms are ``x -> R x + t``; similarities are ``x -> s R x + t``.

Every function accepts any leading batch shape, float32 or float64, on any device, and returns
tensors of the input's dtype and device.
"""

from __future__ import annotations

import math

import torch

_AXES = "XYZ"


def quaternion_to_matrix(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of quaternions.

    Args:
        quaternions: (..., 4) float, (w, x, y, z), real part first. Need not be unit: the result
            is the rotation of ``q / |q|``.

    Returns:
        (..., 3, 3) rotation matrices acting on column vectors.
    """
    w, x, y, z = quaternions.unbind(-1)
    two_s = 2.0 / (quaternions * quaternions).sum(-1)
    rows = (
        1 - two_s * (y * y + z * z),
        two_s * (x * y - z * w),
        two_s * (x * z + y * w),
        two_s * (x * y + z * w),
        1 - two_s * (x * x + z * z),
        two_s * (y * z - x * w),
        two_s * (x * z - y * w),
        two_s * (y * z + x * w),
        1 - two_s * (x * x + y * y),
    )
    return torch.stack(rows, -1).reshape(quaternions.shape[:-1] + (3, 3))


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Unit quaternions of rotation matrices, canonical (w >= 0).

    Each of the four components is recovered from the diagonal, and the other three from the
    off-diagonal terms divided by the largest of them, so the result stays accurate near 180
    degrees where w -> 0.

    Args:
        matrix: (..., 3, 3) rotation matrices (column-vector convention).

    Returns:
        (..., 4) unit quaternions (w, x, y, z) with w >= 0. At exactly 180 degrees (w == 0) the
        sign of the vector part is whichever the computation gives.
    """
    if matrix.shape[-2:] != (3, 3):
        raise ValueError(f"matrix must have shape (..., 3, 3), got {tuple(matrix.shape)}")
    m = matrix.unbind(-1)
    m00, m10, m20 = m[0].unbind(-1)
    m01, m11, m21 = m[1].unbind(-1)
    m02, m12, m22 = m[2].unbind(-1)
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 for a unit quaternion.
    four_sq = torch.stack(
        (
            1 + m00 + m11 + m22,
            1 + m00 - m11 - m22,
            1 - m00 + m11 - m22,
            1 - m00 - m11 + m22,
        ),
        -1,
    )
    two_abs = torch.sqrt(four_sq.clamp_min(0))
    # Row i is 4 * q_i * q, computed from the formulas that are exact when q_i is large.
    candidates = torch.stack(
        (
            torch.stack((four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20), -1),
            torch.stack((m02 - m20, m10 + m01, four_sq[..., 2], m12 + m21), -1),
            torch.stack((m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]), -1),
        ),
        -2,
    )
    candidates = candidates / (2.0 * two_abs[..., None].clamp_min(0.1))
    best = two_abs.argmax(-1)
    index = best[..., None, None].expand(best.shape + (1, 4))
    quaternion = candidates.gather(-2, index).squeeze(-2)
    quaternion = quaternion / quaternion.norm(dim=-1, keepdim=True)
    return standardize_quaternion(quaternion)


def standardize_quaternion(quaternions: torch.Tensor) -> torch.Tensor:
    """Flip quaternions to the canonical half, w >= 0 (q and -q are the same rotation).

    Args:
        quaternions: (..., 4) (w, x, y, z).

    Returns:
        (..., 4) the same rotations with non-negative real part.
    """
    return torch.where(quaternions[..., :1] < 0, -quaternions, quaternions)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b``, the rotation "b first, then a".

    ``quaternion_to_matrix(a * b) == quaternion_to_matrix(a) @ quaternion_to_matrix(b)``.
    The product is returned as is (not standardised to w >= 0).

    Args:
        a, b: (..., 4) quaternions (w, x, y, z), broadcastable.

    Returns:
        (..., 4) the product.
    """
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        -1,
    )


def quaternion_invert(quaternions: torch.Tensor) -> torch.Tensor:
    """Multiplicative inverse ``conj(q) / |q|^2`` (the conjugate for unit quaternions).

    Args:
        quaternions: (..., 4) (w, x, y, z), non-zero.

    Returns:
        (..., 4) q^-1, so that ``q * q^-1 = (1, 0, 0, 0)``.
    """
    conjugate = quaternions * quaternions.new_tensor([1.0, -1.0, -1.0, -1.0])
    return conjugate / (quaternions * quaternions).sum(-1, keepdim=True)


def _axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    half_angle = 0.5 * axis_angle.norm(dim=-1, keepdim=True)
    # sin(angle/2) / angle, written with sinc so that it is exact (and differentiable) at 0.
    vector_scale = 0.5 * torch.sinc(half_angle / math.pi)
    return torch.cat((torch.cos(half_angle), vector_scale * axis_angle), -1)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of axis-angle vectors (Rodrigues), exact down to angle 0.

    Args:
        axis_angle: (..., 3) axis * angle (radians), right-hand rule.

    Returns:
        (..., 3, 3) rotation matrices (column-vector convention).
    """
    return quaternion_to_matrix(_axis_angle_to_quaternion(axis_angle))


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Axis-angle vectors of rotation matrices, angle in [0, pi].

    Goes through the canonical quaternion, so it is accurate near 0 (series for the scale) and
    near pi (robust quaternion extraction). At exactly pi, v and -v are the same rotation and
    either may be returned.

    Args:
        matrix: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) axis * angle in radians.
    """
    quaternion = matrix_to_quaternion(matrix)
    w = quaternion[..., :1]
    vector = quaternion[..., 1:]
    sin_half = vector.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, w)
    small = sin_half < 1e-6
    # angle / sin(angle/2) -> 2 / w (1 - sin^2 / (3 w^2)) as sin(angle/2) -> 0 (then w ~ 1).
    series = 2.0 / w * (1.0 - sin_half**2 / (3.0 * w**2))
    scale = torch.where(small, series, angle / torch.where(small, torch.ones_like(w), sin_half))
    return vector * scale


def _elementary_rotation(axis: str, angle: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == "X":
        rows = (one, zero, zero, zero, cos, -sin, zero, sin, cos)
    elif axis == "Y":
        rows = (cos, zero, sin, zero, one, zero, -sin, zero, cos)
    else:
        rows = (cos, -sin, zero, sin, cos, zero, zero, zero, one)
    return torch.stack(rows, -1).reshape(angle.shape + (3, 3))


def euler_angles_to_matrix(angles: torch.Tensor, convention: str = "XYZ") -> torch.Tensor:
    """Rotation matrices from intrinsic Euler angles.

    ``R = R_a(angles[..., 0]) @ R_b(angles[..., 1]) @ R_c(angles[..., 2])`` for
    ``convention = "abc"``: intrinsic rotations (each about the already rotated axes), the same
    as PyTorch3D's ``euler_angles_to_matrix`` and scipy's upper-case
    ``Rotation.from_euler("XYZ", ...)``. An extrinsic sequence "xyz" equals the intrinsic "ZYX"
    with the angles reversed.

    Args:
        angles: (..., 3) radians.
        convention: three letters from "X", "Y", "Z", no two consecutive equal (Tait-Bryan such
            as "XYZ" or proper Euler such as "ZYZ").

    Returns:
        (..., 3, 3) rotation matrices (column-vector convention).
    """
    if len(convention) != 3 or any(c not in _AXES for c in convention):
        raise ValueError(f"convention must be 3 letters from 'XYZ', got {convention!r}")
    if convention[0] == convention[1] or convention[1] == convention[2]:
        raise ValueError(f"convention {convention!r} repeats an axis consecutively")
    if angles.shape[-1] != 3:
        raise ValueError(f"angles must have shape (..., 3), got {tuple(angles.shape)}")
    first, second, third = (
        _elementary_rotation(axis, angle)
        for axis, angle in zip(convention, angles.unbind(-1), strict=True)
    )
    return first @ second @ third


def rotation_about_axis(
    axis: str,
    degrees: float | torch.Tensor,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotation by ``degrees`` about a coordinate axis (counter-clockwise looking down the axis).

    Same rotation as PyTorch3D's ``RotateAxisAngle(degrees, axis)`` but in this module's
    column-vector convention: PyTorch3D stores the row-vector matrix, so
    ``rotation_about_axis(a, d) == RotateAxisAngle(d, a).get_matrix()[:, :3, :3].transpose(1, 2)``
    and ``points @ rotation_about_axis(a, d).T`` equals ``RotateAxisAngle(d, a).transform_points``.

    Args:
        axis: "X", "Y" or "Z".
        degrees: float or tensor of any shape (...), in degrees.
        dtype, device: used when ``degrees`` is a Python number.

    Returns:
        (..., 3, 3) rotation matrices (column-vector convention).
    """
    axis = axis.upper()
    if axis not in ("X", "Y", "Z"):
        raise ValueError(f"axis must be 'X', 'Y' or 'Z', got {axis!r}")
    if not isinstance(degrees, torch.Tensor):
        degrees = torch.tensor(degrees, dtype=dtype, device=device)
    return _elementary_rotation(axis, torch.deg2rad(degrees))


def random_rotations(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotations drawn uniformly (Haar measure): normalised Gaussian quaternions.

    Args:
        n: how many.
        generator: optional torch.Generator (on ``device``) for reproducibility.
        dtype, device: of the result.

    Returns:
        (n, 3, 3) rotation matrices.
    """
    quaternions = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(quaternions / quaternions.norm(dim=-1, keepdim=True))


def apply_rigid(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Apply ``x -> R x + t`` to points stored as rows.

    Args:
        points: (..., P, 3).
        R: (..., 3, 3) rotation (column-vector convention), batch-broadcastable with points.
        t: (..., 3) translation.

    Returns:
        (..., P, 3) transformed points.
    """
    return points @ R.transpose(-1, -2) + t[..., None, :]


def invert_rigid(R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of ``x -> R x + t``: ``(R^T, -R^T t)``.

    Args:
        R: (..., 3, 3) rotation.
        t: (..., 3).

    Returns:
        (R_inv (..., 3, 3), t_inv (..., 3)).
    """
    R_inv = R.transpose(-1, -2)
    return R_inv, -(R_inv @ t[..., None])[..., 0]


def compose_rigid(
    R_left: torch.Tensor, t_left: torch.Tensor, R_right: torch.Tensor, t_right: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composition in 4x4 product order: ``left @ right`` applies ``right`` first.

    ``x -> R_left (R_right x + t_right) + t_left``, i.e. ``(R_left R_right, R_left t_right +
    t_left)``. For example ``compose_rigid(*cam_from_world, *world_from_object)`` gives
    cam_from_object.

    Args:
        R_left, t_left: (..., 3, 3), (..., 3) the transform applied second.
        R_right, t_right: (..., 3, 3), (..., 3) the transform applied first.

    Returns:
        (R (..., 3, 3), t (..., 3)).
    """
    return R_left @ R_right, (R_left @ t_right[..., None])[..., 0] + t_left


def to_homogeneous_matrix(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """4x4 matrices ``[[R, t], [0, 0, 0, 1]]`` (column-vector convention).

    Args:
        R: (..., 3, 3).
        t: (..., 3).

    Returns:
        (..., 4, 4).
    """
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    matrix = R.new_zeros(batch + (4, 4))
    matrix[..., :3, :3] = R
    matrix[..., :3, 3] = t
    matrix[..., 3, 3] = 1.0
    return matrix


def from_homogeneous_matrix(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``[[R, t], [0, 0, 0, 1]]`` (or its top 3x4 block) into R and t.

    Args:
        matrix: (..., 4, 4) or (..., 3, 4). The bottom row is not checked.

    Returns:
        (R (..., 3, 3), t (..., 3)).
    """
    if matrix.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"matrix must have shape (..., 4, 4) or (..., 3, 4), got {matrix.shape}")
    return matrix[..., :3, :3], matrix[..., :3, 3]


def apply_similarity(
    points: torch.Tensor, s: torch.Tensor | float, R: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Apply ``x -> s R x + t`` to points stored as rows.

    Args:
        points: (..., P, 3).
        s: float or (...) scale.
        R: (..., 3, 3) rotation.
        t: (..., 3).

    Returns:
        (..., P, 3).
    """
    s = torch.as_tensor(s, dtype=points.dtype, device=points.device)
    return s[..., None, None] * (points @ R.transpose(-1, -2)) + t[..., None, :]


def invert_similarity(
    s: torch.Tensor, R: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of ``x -> s R x + t``: ``(1/s, R^T, -R^T t / s)``.

    Args:
        s: (...) non-zero scale.
        R: (..., 3, 3).
        t: (..., 3).

    Returns:
        (s_inv (...), R_inv (..., 3, 3), t_inv (..., 3)).
    """
    R_inv, t_rigid_inv = invert_rigid(R, t)
    return 1.0 / s, R_inv, t_rigid_inv / s[..., None]


def umeyama_alignment(
    src: torch.Tensor, dst: torch.Tensor, with_scale: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Least-squares similarity (Umeyama 1991) minimising ``sum |s R src_i + t - dst_i|^2``.

    Args:
        src: (..., P, 3) source points, P >= 3 and not all collinear for a unique answer.
        dst: (..., P, 3) corresponding target points.
        with_scale: False fixes s = 1 (rigid Procrustes/Kabsch).

    Returns:
        (s (...), R (..., 3, 3) proper rotation, t (..., 3)) such that
        ``apply_similarity(src, s, R, t) ~ dst``.
    """
    if src.shape != dst.shape or src.shape[-1] != 3 or src.dim() < 2:
        raise ValueError(
            f"src and dst must both have shape (..., P, 3), got {tuple(src.shape)} and "
            f"{tuple(dst.shape)}"
        )
    if src.shape[-2] < 3:
        raise ValueError(f"need at least 3 point pairs, got {src.shape[-2]}")
    mean_src = src.mean(-2)
    mean_dst = dst.mean(-2)
    src_c = src - mean_src[..., None, :]
    dst_c = dst - mean_dst[..., None, :]
    covariance = dst_c.transpose(-1, -2) @ src_c / src.shape[-2]
    U, singular, Vh = torch.linalg.svd(covariance)
    # Force a proper rotation: flip the weakest direction when the best orthogonal map reflects.
    sign = torch.sign(torch.det(U) * torch.det(Vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    signs = torch.ones_like(singular)
    signs[..., 2] = sign
    R = U @ (signs[..., :, None] * Vh)
    if with_scale:
        variance_src = (src_c * src_c).sum((-1, -2)) / src.shape[-2]
        s = (singular * signs).sum(-1) / variance_src
    else:
        s = torch.ones_like(singular[..., 0])
    t = mean_dst - s[..., None] * (R @ mean_src[..., None])[..., 0]
    return s, R, t
