"""Per-instance poses (the authors' ``model/pose.py: ObjectPose``): instance i's canonical frame
maps to the world by [R_i | t_i] S, with (q_i, t_i) from ``object_pred_pose.json`` (trainable
with ``train_pose``) and S from ``object_scale_matrix.json``; or the ground-truth rigid poses of
``blender_object_gt_pose.json`` (``--init_method GT``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from geomkit.errors import ConfigError, InputError
from geomkit.io.arrays import load_json

INIT_METHODS = ("GT", "SFM", "SFM_noise")


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(N, 4) real-first quaternions (normalised here) -> (N, 3, 3)."""
    w, x, y, z = torch.nn.functional.normalize(q, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)  # fmt: skip


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations -> (N, 4) real-first quaternions with w >= 0 (Shepperd's method)."""
    m = R.double()
    xx, xy, xz = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    yx, yy, yz = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    zx, zy, zz = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    trace = xx + yy + zz
    candidates = torch.stack(
        [
            torch.stack([1 + trace, zy - yz, xz - zx, yx - xy], -1),
            torch.stack([zy - yz, 1 + xx - yy - zz, xy + yx, xz + zx], -1),
            torch.stack([xz - zx, xy + yx, 1 - xx + yy - zz, yz + zy], -1),
            torch.stack([yx - xy, xz + zx, yz + zy, 1 - xx - yy + zz], -1),
        ],
        dim=1,
    )
    diagonal = torch.stack([trace, xx, yy, zz], -1)
    best = candidates[torch.arange(len(m)), diagonal.argmax(-1)]
    q = torch.nn.functional.normalize(best, dim=-1)
    return (q * torch.where(q[:, :1] < 0, -1.0, 1.0)).to(R.dtype)


def read_pose_file(path: Path) -> torch.Tensor:
    """(N, 4, 4) poses of ``{name}_00``, ``{name}_01``... in index order."""
    meta = load_json(path)
    if not isinstance(meta, dict) or not meta:
        raise InputError(f"{path}: expected an object of 4x4 poses keyed name_00, name_01, ...")
    prefix = next(iter(meta)).rsplit("_", 1)[0]
    poses = []
    for i in range(len(meta)):
        key = f"{prefix}_{i:02d}"
        if key not in meta:
            raise InputError(f"{path}: missing {key} (keys: {', '.join(meta)})")
        pose = np.asarray(meta[key], dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise InputError(f"{path}: {key} is not a finite 4x4 matrix")
        poses.append(pose)
    return torch.tensor(np.stack(poses), dtype=torch.float32)


def read_scale_matrix(path: Path) -> torch.Tensor:
    meta = load_json(path, required_keys=("scale_matrix",))
    matrix = torch.tensor(meta["scale_matrix"], dtype=torch.float32)
    if matrix.shape != (4, 4):
        raise InputError(f"{path}: scale_matrix must be 4x4")
    return matrix


def _check_rigid(poses: torch.Tensor, path: Path) -> None:
    R = poses[:, :3, :3]
    error = (R @ R.transpose(1, 2) - torch.eye(3)).abs().amax().item()
    if error > 1e-3:
        raise InputError(f"{path}: the poses must be rigid (R R^T - I reaches {error:.3g})")


class ObjectPose(nn.Module):
    """Keys ``object_q`` (N, 4) and ``object_t`` (N, 3, 1) as the original; S and the ground truth
    are buffers that are not saved (they come from the data folder)."""

    def __init__(
        self, data_dir: Path, init_method: str, visible_num: int, train_pose: bool = False
    ):
        super().__init__()
        if init_method not in INIT_METHODS:
            raise ConfigError(
                f"--init_method must be one of {', '.join(INIT_METHODS)}, got {init_method!r}"
            )
        self.init_method, self.visible_num = init_method, visible_num
        gt_path, sfm_path = (
            data_dir / "blender_object_gt_pose.json",
            data_dir / "object_pred_pose.json",
        )
        gt = read_pose_file(gt_path) if gt_path.is_file() else None
        if gt is not None:
            _check_rigid(gt, gt_path)
        self.register_buffer("gt", gt, persistent=False)
        if init_method == "GT":
            if gt is None:
                raise InputError(f"--init_method GT needs {gt_path}")
            self.register_buffer("scale_mat", torch.eye(4), persistent=False)
            return
        if not sfm_path.is_file():
            raise InputError(f"{sfm_path} not found (made by preprocessing step 7)")
        sfm = read_pose_file(sfm_path)
        _check_rigid(sfm, sfm_path)
        self.register_buffer(
            "scale_mat", read_scale_matrix(data_dir / "object_scale_matrix.json"), persistent=False
        )
        q, t = matrix_to_quaternion(sfm[:, :3, :3]), sfm[:, :3, 3:4].clone()
        if init_method == "SFM_noise":
            q, t = q + torch.rand_like(q) * 0.03, t + torch.rand_like(t) * 0.03
        self.object_q = nn.Parameter(q, requires_grad=train_pose)
        self.object_t = nn.Parameter(t, requires_grad=train_pose)

    def rigid(self) -> torch.Tensor:
        """(V, 4, 4) object-to-world rigid poses (without S)."""
        if self.init_method == "GT":
            return self.gt[: self.visible_num]
        pose = torch.eye(4).repeat(len(self.object_q), 1, 1)
        pose = torch.cat(
            [torch.cat([quaternion_to_matrix(self.object_q), self.object_t], 2), pose[:, 3:]], 1
        )
        return pose[: self.visible_num]

    def get_pose(self) -> torch.Tensor:
        """(V, 4, 4) canonical-to-world: [R|t] S."""
        return self.rigid() @ self.scale_mat

    def get_inv_pose(self) -> torch.Tensor:
        """(V, 4, 4) world-to-canonical."""
        return torch.linalg.inv(self.get_pose())
