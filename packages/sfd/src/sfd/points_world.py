"""Rebuild ``points_world.npy`` (never published with the authors' sample) from a data folder's
poses and segmentation: ``python -m sfd.points_world data/airplane``.

The N instances are N views of one canonical object: instance i sees it through the camera
composed with its pose O_i S. Carving the canonical cube [-1, 1]^3 against every instance's
silhouette gives the visual hull; its surface voxels, mapped to the world by each O_i S, stand in
for the SfM points the loader needs (near/far, scene centre and radius). A voxel is carved by
instance i only where the pixel is background or another instance that lies farther from the
camera (a nearer one may hide part of instance i).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from geomkit.errors import ArgumentParser, InputError, OutputExistsError, run_main
from geomkit.io.files import atomic_path
from sfd.data import decode_segmentation, instance_count, read_camera
from sfd.models.pose import ObjectPose


def visual_hull(
    seg: torch.Tensor, c2w: torch.Tensor, focal: float, poses: torch.Tensor, resolution: int
) -> np.ndarray:
    """(M, 3) canonical surface points of the hull carved by every instance's silhouette.

    Args:
        seg: (H, W) instance ids (0 background); c2w: (4, 4) OpenGL camera-to-world.
        poses: (N, 4, 4) canonical-to-world transforms of the instances, O_i S.
    """
    axis = torch.linspace(-1.0, 1.0, resolution)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    w2c = torch.linalg.inv(c2w)
    depth_order = _instance_depths(poses, w2c)
    keep = torch.ones(len(grid), dtype=torch.bool)
    for i, pose in enumerate(poses):
        camera = (grid @ (w2c @ pose)[:3, :3].T) + (w2c @ pose)[:3, 3]
        label = _lookup(seg, camera, focal)
        nearer = torch.tensor(
            [depth_order[j] < depth_order[i] for j in range(len(poses))] + [False]
        )
        keep &= (label == i + 1) | nearer[(label - 1).clamp(min=0)] & (label > 0)
    occupied = keep.reshape(resolution, resolution, resolution)
    if occupied.sum() == 0:
        raise InputError(
            "the instance silhouettes carve away the whole canonical cube: "
            "the poses do not match the segmentation"
        )
    return grid[_surface(occupied).reshape(-1)].numpy()


def _instance_depths(poses: torch.Tensor, w2c: torch.Tensor) -> list[float]:
    centres = (w2c[:3, :3] @ poses[:, :3, 3].T).T + w2c[:3, 3]
    return (-centres[:, 2]).tolist()


def _lookup(seg: torch.Tensor, camera: torch.Tensor, focal: float) -> torch.Tensor:
    """Segmentation label at each camera-frame point's pixel (0 outside the image or behind)."""
    height, width = seg.shape
    z = -camera[:, 2]
    u = torch.round(camera[:, 0] / z.clamp(min=1e-6) * focal + width / 2).long()
    v = torch.round(-camera[:, 1] / z.clamp(min=1e-6) * focal + height / 2).long()
    inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    label = torch.zeros(len(camera), dtype=torch.long)
    label[inside] = seg[v[inside], u[inside]]
    return label


def _surface(occupied: torch.Tensor) -> torch.Tensor:
    padded = torch.nn.functional.pad(occupied.float()[None, None], (1, 1, 1, 1, 1, 1))
    kernel = torch.zeros(1, 1, 3, 3, 3)
    kernel[0, 0, 1, 1, :] = kernel[0, 0, 1, :, 1] = kernel[0, 0, :, 1, 1] = 1
    neighbours = torch.nn.functional.conv3d(padded, kernel)[0, 0]
    return occupied & (neighbours < 7)


def rebuild(
    root: Path, resolution: int = 96, init_method: str = "SFM", overwrite: bool = False
) -> dict:
    """Write ``root/points_world.npy`` from the data folder's poses; returns the dict written."""
    target = root / "points_world.npy"
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite to replace it")
    c2w, focal, stem = read_camera(root / "transforms_train.json")
    n = instance_count(root)
    seg = decode_segmentation(root / f"{stem}_instance_seg.png", n)
    poses = ObjectPose(root, init_method, n).get_pose().detach()
    canonical = visual_hull(seg, c2w, focal, poses, resolution)
    points = {
        f"points_world_{i}": canonical @ pose[:3, :3].numpy().T + pose[:3, 3].numpy()
        for i, pose in enumerate(poses)
    }
    points["points_world_all"] = np.concatenate(list(points.values()))
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, points, allow_pickle=True)
    return points


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m sfd.points_world", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--resolution", type=int, default=96, help="carving grid per axis")
    parser.add_argument(
        "--init_method", default="SFM", choices=["SFM", "GT"], help="which poses to use"
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    points = rebuild(args.data_dir, args.resolution, args.init_method, args.overwrite)
    count = len(points["points_world_0"])
    print(
        f"wrote {args.data_dir / 'points_world.npy'}: {count} hull surface points per instance",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    run_main(main)
