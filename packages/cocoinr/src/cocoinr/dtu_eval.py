"""DTU Chamfer distance: DTUeval-python's port of DTU's official MATLAB evaluation.

python -m cocoinr.dtu_eval --mesh scan24.ply --scan 24 --dtu DTU_EVAL_DIR [--out metrics.json]

The protocol (jzhangbs/DTUeval-python ``eval.py``), on a mesh in world millimetres:

1. sample each triangle on a grid of spacing ``downsample`` (below), plus every vertex of the
   file (used by a face or not);
2. thin to ``downsample`` mm: walk the points in a random order, keep a point when no point
   kept before it lies within ``downsample`` (DTUeval shuffles with a fresh seed every run;
   here ``seed`` fixes it);
3. keep the points in ``[BB[0] - patch, BB[1] + 2 patch)`` (DTUeval's bounds, asymmetric as
   written there; ``BB`` read as float32) = "data in"; of those, the points whose nearest voxel
   ``rint((p - BB[0]) / Res)`` lies in the grid and is set in ``ObsMask`` = "data observed";
4. accuracy ``mean_d2s`` = mean distance from each observed data point to its nearest STL
   point; completeness ``mean_s2d`` = mean distance from each STL point above the plane
   (``[x y z 1] . P > 0``) to its nearest "data in" point; both means over distances
   ``< max_dist`` only; ``overall`` = their mean.

Triangle sampling: with edges e1 = b - a, e2 = c - a (lengths l1, l2) and twice the area A,
``n1 = floor(l1 / t)``, ``n2 = floor(l2 / t)`` where ``t = downsample * sqrt(l1 l2 / A)``;
points ``a + (i + 1/2) / n1 e1 + (j + 1/2) / n2 e2`` for i < n1, j < n2 with the two weights
summing to < 1: about one point per downsample^2 of area (none on zero-area triangles or when
n1 or n2 is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat
from scipy.io.matlab import MatReadError
from scipy.spatial import cKDTree

from geomkit.errors import ArgumentParser, InputError, run_main
from geomkit.io import check_can_write, read_geometry, read_point_cloud, save_json
from geomkit.metrics.pointcloud import nearest_neighbors
from geomkit.structures import PointCloud, TriMesh
from geomkit.synth.layouts.dtu_eval import dtu_eval_paths

DOWNLOADS = (
    "DTU's MVS evaluation downloads: 'SampleSet' (its ObsMask/ folder) and 'Points' "
    "(Points/stl/stlNNN_total.ply), arranged as DIR/ObsMask/ and DIR/Points/stl/"
)
_CANDIDATES_PER_BATCH = 4_000_000


@dataclass
class DTUGroundTruth:
    """One scan's evaluation ground truth, world millimetres.

    stl (S, 3) float64 scan points; obs_mask (X, Y, Z) bool observed voxels; bb (2, 3) float64
    box corners (rounded to float32 as DTUeval reads them); res voxel size; plane (4,) float64.
    """

    stl: np.ndarray
    obs_mask: np.ndarray
    bb: np.ndarray
    res: float
    plane: np.ndarray


def load_dtu_ground_truth(dataset_dir: str | Path, scan: int) -> DTUGroundTruth:
    """Read ObsMask{scan}_10.mat, Plane{scan}.mat and stl{scan:03d}_total.ply.

    Raises:
        InputError: a missing or unreadable file, a missing key or a wrong shape; the message
            names the file and where DTU's files come from.
    """
    paths = dtu_eval_paths(dataset_dir, scan)
    for path in paths.values():
        if not path.is_file():
            raise InputError(f"{path} not found: it comes from {DOWNLOADS}")
    mask_file = _load_mat(paths["obs_mask"], ("ObsMask", "BB", "Res"))
    obs_mask = np.asarray(mask_file["ObsMask"]).astype(bool)
    bb = np.asarray(mask_file["BB"], dtype=np.float32).astype(np.float64)
    res = np.asarray(mask_file["Res"], dtype=np.float64)
    plane = np.asarray(_load_mat(paths["plane"], ("P",))["P"], dtype=np.float64)
    if obs_mask.ndim != 3 or bb.shape != (2, 3) or res.size != 1 or plane.size != 4:
        raise InputError(
            f"{paths['obs_mask']} / {paths['plane']}: expected ObsMask 3-D, BB 2x3, Res 1x1 and "
            f"P 4 values, got {obs_mask.shape}, {bb.shape}, {res.shape}, {plane.shape}"
        )
    stl = read_point_cloud(paths["stl"]).points.astype(np.float64)
    return DTUGroundTruth(stl, obs_mask, bb, float(res.reshape(-1)[0]), plane.reshape(4))


def sample_triangles(mesh: TriMesh, spacing: float) -> np.ndarray:
    """DTUeval's dense samples of a mesh: its vertices, then each triangle's grid (module doc).

    Returns (P, 3) float64.
    """
    tri = mesh.vertices[mesh.faces].astype(np.float64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    l1, l2 = np.linalg.norm(e1, axis=1), np.linalg.norm(e2, axis=1)
    area2 = np.linalg.norm(np.cross(e1, e2), axis=1)
    ok = area2 > 0
    step = spacing * np.sqrt(l1[ok] * l2[ok] / area2[ok])
    n1 = np.floor(l1[ok] / step).astype(np.int64)
    n2 = np.floor(l2[ok] / step).astype(np.int64)
    corner, e1, e2 = tri[ok, 0], e1[ok], e2[ok]
    parts = [mesh.vertices.astype(np.float64)]
    for rows in _batches(n1 * n2, _CANDIDATES_PER_BATCH):
        parts.append(_triangle_grids(corner[rows], e1[rows], e2[rows], n1[rows], n2[rows]))
    return np.concatenate(parts)


def radius_downsample(points: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """Greedy thinning in a seeded random order: a point is kept when no point kept before it
    lies within ``radius`` (inclusive). Returns the kept points, in that random order.

    Sequential greedy, computed in vectorised rounds: a point is dropped once an earlier
    neighbour is kept, and kept once every earlier neighbour is dropped.
    """
    shuffled = points[np.random.default_rng(seed).permutation(len(points))]
    pairs = cKDTree(shuffled).query_pairs(radius, output_type="ndarray")
    return shuffled[_greedy_keep(len(shuffled), pairs[:, 0], pairs[:, 1])]


def filter_to_observed(
    points: np.ndarray, gt: DTUGroundTruth, patch: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """("data in": points in the padded BB, "data observed": those in an ObsMask voxel)."""
    inside = np.all((points >= gt.bb[0] - patch) & (points < gt.bb[1] + 2 * patch), axis=1)
    data_in = points[inside]
    voxel = np.rint((data_in - gt.bb[0]) / gt.res).astype(np.int64)
    in_grid = np.all((voxel >= 0) & (voxel < gt.obs_mask.shape), axis=1)
    observed = np.zeros(len(data_in), dtype=bool)
    observed[in_grid] = gt.obs_mask[tuple(voxel[in_grid].T)]
    return data_in, data_in[observed]


def chamfer_to_ground_truth(
    data_in: np.ndarray, data_observed: np.ndarray, gt: DTUGroundTruth, max_dist: float = 20.0
) -> dict[str, float]:
    """mean_d2s (accuracy), mean_s2d (completeness) and overall from the filtered points.

    Raises:
        InputError: no observed data point (the mesh is probably not in world millimetres).
    """
    if len(data_observed) == 0:
        raise InputError(
            "no mesh point lies inside the scan's observed region (ObsMask): is the mesh in "
            "DTU's world millimetres (normalised meshes need the scan's scale_mat)?"
        )
    dist_d2s = nearest_neighbors(data_observed, gt.stl)[0]
    above = gt.stl @ gt.plane[:3] + gt.plane[3] > 0
    dist_s2d = nearest_neighbors(gt.stl[above], data_in)[0]
    mean_d2s = _mean_below(dist_d2s, max_dist)
    mean_s2d = _mean_below(dist_s2d, max_dist)
    return {"mean_d2s": mean_d2s, "mean_s2d": mean_s2d, "overall": (mean_d2s + mean_s2d) / 2}


def dtu_chamfer(
    mesh_world: TriMesh | PointCloud,
    scan: int,
    dataset_dir: str | Path,
    downsample: float = 0.2,
    patch: float = 60.0,
    max_dist: float = 20.0,
    seed: int = 0,
) -> dict[str, float]:
    """DTU's Chamfer distance of a reconstruction in world millimetres (module doc).

    Args:
        mesh_world: a TriMesh (DTUeval's "mesh" mode: sampled, then thinned) or a PointCloud
            ("pcd" mode: thinned only).
        scan: DTU scan number.
        dataset_dir: the folder with ObsMask/ and Points/stl/.
        downsample, patch, max_dist: DTUeval's ``downsample_density``, ``patch_size``,
            ``max_dist`` (mm).
        seed: the thinning order.

    Returns:
        {"mean_d2s": accuracy, "mean_s2d": completeness, "overall": their mean}, in mm.
    """
    gt = load_dtu_ground_truth(dataset_dir, scan)
    if isinstance(mesh_world, TriMesh):
        points = sample_triangles(mesh_world, downsample)
    else:
        points = np.asarray(mesh_world.points, dtype=np.float64)
    if len(points) == 0:
        raise InputError("the reconstruction has no points")
    data_in, data_observed = filter_to_observed(
        radius_downsample(points, downsample, seed), gt, patch
    )
    return chamfer_to_ground_truth(data_in, data_observed, gt, max_dist)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.out is not None:
        check_can_write(args.out, args.overwrite)
    metrics = dtu_chamfer(
        read_geometry(args.mesh),
        args.scan,
        args.dtu,
        args.downsample_density,
        args.patch_size,
        args.max_dist,
        args.seed,
    )
    print(" ".join(f"{name} {value:.6f}" for name, value in metrics.items()))
    if args.out is not None:
        save_json(args.out, {"scan": args.scan, "mesh": str(args.mesh), **metrics})
    return 0


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m cocoinr.dtu_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", type=Path, required=True, help="mesh or points, world mm")
    parser.add_argument("--scan", type=int, required=True, help="DTU scan number, e.g. 24")
    parser.add_argument("--dtu", type=Path, required=True, help="folder with ObsMask/, Points/")
    parser.add_argument("--out", type=Path, help="write the metrics to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--downsample_density", type=float, default=0.2)
    parser.add_argument("--patch_size", type=float, default=60.0)
    parser.add_argument("--max_dist", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0, help="order of the 0.2 mm thinning")
    return parser


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        content = loadmat(path)
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError) as err:
        raise InputError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    missing = [key for key in keys if key not in content]
    if missing:
        raise InputError(f"{path}: missing variable(s) {', '.join(missing)}; re-download it")
    return content


def _batches(counts: np.ndarray, budget: int):
    """Consecutive row slices whose counts sum to at most ``budget`` (or one row, if more)."""
    cumulative = np.cumsum(counts)
    start = 0
    while start < len(counts):
        before = cumulative[start - 1] if start else 0
        end = int(np.searchsorted(cumulative, before + budget, side="right"))
        yield slice(start, max(end, start + 1))
        start = max(end, start + 1)


def _triangle_grids(corner, e1, e2, n1, n2) -> np.ndarray:
    """All grid points of a batch of triangles (see the module doc)."""
    counts = n1 * n2
    owner = np.repeat(np.arange(len(counts)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    u = (local // n2[owner] + 0.5) / n1[owner]
    v = (local % n2[owner] + 0.5) / n2[owner]
    inside = u + v < 1
    owner, u, v = owner[inside], u[inside, None], v[inside, None]
    return corner[owner] + u * e1[owner] + v * e2[owner]


def _greedy_keep(n: int, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Keep mask (n,) of the sequential greedy over index order; pairs (earlier < later)."""
    state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 dropped
    while True:
        undecided = state == 0
        if not undecided.any():
            return state == 1
        kept_before = np.bincount(later, weights=state[earlier] == 1, minlength=n) > 0
        open_before = np.bincount(later, weights=state[earlier] == 0, minlength=n) > 0
        state[undecided & kept_before] = 2
        state[undecided & ~kept_before & ~open_before] = 1
        # Edges into decided points, or from dropped ones, can no longer matter.
        live = (state[later] == 0) & (state[earlier] != 2)
        earlier, later = earlier[live], later[live]


def _mean_below(distances: np.ndarray, max_dist: float) -> float:
    kept = distances[distances < max_dist]
    return float(kept.mean()) if len(kept) else float("nan")


if __name__ == "__main__":
    run_main(main)
