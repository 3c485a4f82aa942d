"""MISE, ONet's multiresolution isosurface extraction (the authors' libmise), in numpy.

Points live on the integer lattice {0, ..., R}^3 with R = resolution_0 * 2^depth. The octree
starts as resolution_0^3 leaf voxels (level 0, edge 2^depth) whose corners are the first points
to evaluate. After each :meth:`MISE.update`, every leaf below level ``depth`` whose CLOSED box
holds a known value >= threshold and a known value <= threshold (a value equal to the threshold
counts for both) is split into 8 children, and the 3x3x3 lattice of the split voxel joins the
points; the box includes points that neighbours created on shared faces and edges. All leaves are
tested against the state before the update's splits, so a voxel splits at most once per update.
Repeat :meth:`MISE.query` / :meth:`MISE.update` until the query is empty, then
:meth:`MISE.to_dense` gives the (R + 1)^3 grid, where never-created points copy their lower
neighbour along x, then y, then z (forward fill, no interpolation).

Leaves are kept as one boolean map per level (voxel grid resolution_0 * 2^level); the "some value
>= / <= threshold in the closed box" tests are separable any-reductions over the point lattice.
"""

from __future__ import annotations

import numpy as np


class MISE:
    """Octree isosurface search on the lattice {0..R}^3, R = resolution_0 * 2**depth.

    Args:
        resolution_0: voxels per axis at level 0 (ONet: 32 for images, the generator's 16).
        depth: number of subdivision levels (ONet's upsampling_steps).
        threshold: the iso value, compared with the values given to :meth:`update` (ONet passes
            the occupancy logit, log(t / (1 - t))).
    """

    def __init__(self, resolution_0: int, depth: int, threshold: float):
        if resolution_0 < 1 or depth < 0:
            raise ValueError(f"need resolution_0 >= 1 and depth >= 0, got {resolution_0}, {depth}")
        self.resolution_0 = int(resolution_0)
        self.depth = int(depth)
        self.threshold = float(threshold)
        self.voxel_size_0 = 1 << self.depth
        self.resolution = self.resolution_0 * self.voxel_size_0
        shape = (self.resolution + 1,) * 3
        self._created = np.zeros(shape, dtype=bool)
        self._known = np.zeros(shape, dtype=bool)
        self._values = np.zeros(shape, dtype=np.float64)
        coarse = (slice(None, None, self.voxel_size_0),) * 3
        self._created[coarse] = True
        self._leaves = [
            np.zeros((self.resolution_0 << level,) * 3, dtype=bool) for level in range(depth + 1)
        ]
        self._leaves[0][...] = True

    def query(self) -> np.ndarray:
        """Created points whose value is not yet known: (M, 3) int64 lattice coordinates in
        {0..R}, sorted x, then y, then z. Empty (0, 3) when the search is finished."""
        return np.argwhere(self._created & ~self._known).astype(np.int64)

    def update(self, points, values) -> None:
        """Set the values of created points, then split the leaves that straddle the threshold.

        Args:
            points: (M, 3) int lattice coordinates of created points (as :meth:`query` gives).
            values: (M,) float values at those points; not NaN.

        Raises:
            ValueError: wrong shapes, NaN values, or a point that is not in the grid.
        """
        points = np.asarray(points)
        values = np.asarray(values, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or values.shape != (len(points),):
            raise ValueError(
                f"points must be (M, 3) and values (M,), got {points.shape} and {values.shape}"
            )
        if np.isnan(values).any():
            raise ValueError(f"{int(np.isnan(values).sum())} of the values are NaN")
        index = tuple(points.astype(np.int64).T)
        in_range = ((points >= 0) & (points <= self.resolution)).all(axis=1)
        if not in_range.all() or not self._created[index].all():
            raise ValueError("point not in grid: update only the points that query() returned")
        self._values[index] = values
        self._known[index] = True
        self._subdivide()

    def to_dense(self) -> np.ndarray:
        """The (R + 1, R + 1, R + 1) float64 grid of values, indexed [x, y, z].

        Created points hold their value (0 for one never updated, as libmise); the others copy
        their lower neighbour along x, then along y, then along z.
        """
        dense = np.where(self._created, self._values, np.nan)
        for axis in range(3):
            dense = _forward_fill(dense, axis)
        return dense

    def _subdivide(self) -> None:
        above = self._known & (self._values >= self.threshold)
        below = self._known & (self._values <= self.threshold)
        splits = []
        for level in range(self.depth):
            stride = 1 << (self.depth - level)
            straddles = _any_in_closed_boxes(above, stride) & _any_in_closed_boxes(below, stride)
            splits.append(self._leaves[level] & straddles)
        for level, split in enumerate(splits):
            self._split(level, split)

    def _split(self, level: int, split: np.ndarray) -> None:
        """Replace the level-``level`` leaves marked in ``split`` by their 8 children and create
        the 3x3x3 lattice points of each."""
        if not split.any():
            return
        self._leaves[level] &= ~split
        children = split.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
        self._leaves[level + 1] |= children
        half = 1 << (self.depth - level - 1)
        self._created[::half, ::half, ::half] |= _dilate_to_points(split)


def _any_in_closed_boxes(flags: np.ndarray, stride: int) -> np.ndarray:
    """For each voxel of edge ``stride`` on the point lattice, whether any point of its closed
    box is flagged.

    Args:
        flags: (n, n, n) bool on the point lattice, n = V * stride + 1.
        stride: voxel edge in lattice steps.

    Returns:
        (V, V, V) bool; voxel (i, j, k) covers points [i * stride, (i + 1) * stride] per axis.
    """
    out = flags
    for axis in range(3):
        out = np.moveaxis(out, axis, 0)
        voxels = (out.shape[0] - 1) // stride
        # Points i*stride .. i*stride + stride - 1 by a reshape, plus the closing point.
        half_open = out[:-1].reshape(voxels, stride, *out.shape[1:]).any(axis=1)
        out = np.moveaxis(half_open | out[stride::stride], 0, axis)
    return out


def _dilate_to_points(split: np.ndarray) -> np.ndarray:
    """(V, V, V) voxel marks -> (2V + 1,)^3 marks of the points at half-voxel spacing that
    belong to the 3x3x3 lattice of a marked voxel."""
    out = split
    for axis in range(3):
        out = np.moveaxis(out, axis, 0)
        points = np.zeros((2 * out.shape[0] + 1, *out.shape[1:]), dtype=bool)
        for offset in range(3):
            points[offset : offset + 2 * out.shape[0] : 2] |= out
        out = np.moveaxis(points, 0, axis)
    return out


def _forward_fill(values: np.ndarray, axis: int) -> np.ndarray:
    """Replace NaN by the last non-NaN value before it along ``axis`` (NaN when there is none)."""
    shape = [1, 1, 1]
    shape[axis] = values.shape[axis]
    position = np.arange(values.shape[axis]).reshape(shape)
    source = np.where(np.isnan(values), 0, position)
    np.maximum.accumulate(source, axis=axis, out=source)
    return np.take_along_axis(values, source, axis=axis)
