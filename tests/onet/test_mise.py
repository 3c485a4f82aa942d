"""MISE against a slow octree written here from the rules (onet.mise docstring), on analytic
fields: a sphere, thin features, and fields with many values exactly at the threshold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from onet.mise import MISE


class SlowMISE:
    """Straightforward octree: leaves as (level, i, j, k), points as {(x, y, z): value|None}.

    Each update: every leaf below ``depth`` whose closed box [i s, (i + 1) s]^3 holds a known
    value >= t and a known value <= t (judged before any split of this update) is replaced by
    its 8 children, and the points of its 3x3x3 lattice are created.
    """

    def __init__(self, resolution_0: int, depth: int, threshold: float):
        self.depth, self.threshold = depth, threshold
        self.size_0 = 2**depth
        self.resolution = resolution_0 * self.size_0
        self.leaves = {(0, *ijk) for ijk in itertools.product(range(resolution_0), repeat=3)}
        self.points = {
            tuple(self.size_0 * np.array(ijk)): None
            for ijk in itertools.product(range(resolution_0 + 1), repeat=3)
        }
        self.split_log: list[tuple[int, int]] = []  # (update number, level) of every split
        self.updates = 0

    def size(self, level: int) -> int:
        return 2 ** (self.depth - level)

    def query(self) -> np.ndarray:
        unknown = sorted(p for p, value in self.points.items() if value is None)
        return np.array(unknown, dtype=np.int64).reshape(-1, 3)

    def box_values(self, leaf) -> list[float]:
        level, *ijk = leaf
        s = self.size(level)
        ranges = [range(i * s, (i + 1) * s + 1) for i in ijk]
        values = (self.points.get(p) for p in itertools.product(*ranges))
        return [v for v in values if v is not None]

    def update(self, points: np.ndarray, values: np.ndarray) -> None:
        self.updates += 1
        for p, v in zip(points, values, strict=True):
            self.points[tuple(int(x) for x in p)] = float(v)
        to_split = []
        for leaf in self.leaves:
            if leaf[0] == self.depth:
                continue
            values_in_box = self.box_values(leaf)
            if any(v >= self.threshold for v in values_in_box) and any(
                v <= self.threshold for v in values_in_box
            ):
                to_split.append(leaf)
        for leaf in to_split:
            self.split(leaf)

    def split(self, leaf) -> None:
        level, *ijk = leaf
        self.split_log.append((self.updates, level))
        self.leaves.remove(leaf)
        half = self.size(level) // 2
        for offset in itertools.product(range(2), repeat=3):
            child = tuple(2 * i + o for i, o in zip(ijk, offset, strict=True))
            self.leaves.add((level + 1, *child))
        corner = [i * self.size(level) for i in ijk]
        for offset in itertools.product(range(3), repeat=3):
            p = tuple(c + o * half for c, o in zip(corner, offset, strict=True))
            self.points.setdefault(p, None)

    def to_dense(self) -> np.ndarray:
        n = self.resolution + 1
        dense = np.full((n, n, n), np.nan)
        for p, value in self.points.items():
            dense[p] = 0.0 if value is None else value
        for i, j, k in itertools.product(range(1, n), range(n), range(n)):
            if np.isnan(dense[i, j, k]):
                dense[i, j, k] = dense[i - 1, j, k]
        for i, j, k in itertools.product(range(n), range(1, n), range(n)):
            if np.isnan(dense[i, j, k]):
                dense[i, j, k] = dense[i, j - 1, k]
        for i, j, k in itertools.product(range(n), range(n), range(1, n)):
            if np.isnan(dense[i, j, k]):
                dense[i, j, k] = dense[i, j, k - 1]
        return dense


def run_both(resolution_0: int, depth: int, threshold: float, field) -> SlowMISE:
    """Drive MISE and SlowMISE with the same field; every query and the dense grids match."""
    fast, slow = MISE(resolution_0, depth, threshold), SlowMISE(resolution_0, depth, threshold)
    for round_number in range(4 * depth + 4):
        points = fast.query()
        np.testing.assert_array_equal(points, slow.query(), f"query {round_number}")
        if len(points) == 0:
            break
        values = field(points.astype(np.float64))
        fast.update(points, values)
        slow.update(points, values)
    else:
        raise AssertionError("MISE did not finish")
    np.testing.assert_array_equal(fast.to_dense(), slow.to_dense())
    assert not np.isnan(fast.to_dense()).any()
    return slow


def sphere(centre, radius):
    return lambda p: radius - np.linalg.norm(p - np.asarray(centre), axis=1)


def test_sphere_matches_slow_octree():
    slow = run_both(4, 2, 0.0, sphere((8.3, 7.6, 8.9), 4.7))
    assert {level for _, level in slow.split_log} == {0, 1}


def test_threshold_is_compared_with_the_values_given():
    # A field of logits and a non-zero threshold: the surface is where value == -1.386.
    run_both(4, 2, -1.386, lambda p: 0.5 * (5.2 - np.linalg.norm(p - 7.9, axis=1)))


@pytest.mark.parametrize(
    "name, field",
    [
        # A slab 0.6 steps thick at x = 8 (on the coarse lattice): found by coarse points.
        ("slab on coarse points", lambda p: 0.3 - np.abs(p[:, 0] - 8.0)),
        # The same slab between coarse planes: invisible to the first pass, never refined.
        ("slab between coarse points", lambda p: 0.3 - np.abs(p[:, 0] - 6.0)),
        # A thin tilted plate crossing some coarse points only.
        ("tilted plate", lambda p: 0.4 - np.abs(p[:, 0] + 0.37 * p[:, 1] - 0.21 * p[:, 2] - 9.1)),
        # A thin rod along z, 0.5 steps wide, through a line of coarse points.
        ("rod", lambda p: 0.5 - np.hypot(p[:, 0] - 4.0, p[:, 1] - 12.0)),
    ],
)
def test_thin_features_match_slow_octree(name, field):
    run_both(4, 2, 0.0, field)


def test_values_equal_to_threshold_count_for_both_sides():
    # Integer-valued field with threshold 0: many lattice values are exactly 0.
    slow = run_both(4, 2, 0.0, lambda p: np.round(3.0 - np.linalg.norm(p - 8.0, axis=1) / 2))
    assert slow.split_log
    # A voxel whose box values are all exactly the threshold straddles it (>= and <=).
    flat = MISE(2, 1, 0.0)
    flat.update(flat.query(), np.zeros(27))
    assert len(flat.query()) == 5**3 - 3**3


def lattice_field(table: np.ndarray):
    return lambda p: table[tuple(p.astype(int).T)].astype(np.float64)


def test_neighbours_face_points_trigger_later_splits():
    # Voxel W = [0, 4]^3 has a negative corner and splits in update 1; its 3x3x3 lattice puts a
    # point at (4, 2, 2), the centre of the face it shares with V = [4, 8] x [0, 4] x [0, 4],
    # whose 8 corners are positive. That point is negative, so V splits in update 2.
    table = np.ones((13, 13, 13))
    table[0, 0, 0] = table[4, 2, 2] = -1
    slow = run_both(3, 2, 0.0, lattice_field(table))
    assert (2, 0) in slow.split_log
    assert slow.split_log.count((1, 0)) == 1


def test_random_fields_with_ties_match_slow_octree():
    rng = np.random.default_rng(3)
    for _ in range(3):
        table = rng.integers(-1, 2, size=(25, 25, 25)) * (rng.random((25, 25, 25)) < 0.05)
        table[::8, ::8, ::8] = rng.choice([-1, 1], size=(4, 4, 4), p=[0.1, 0.9])
        slow = run_both(3, 3, 0.0, lattice_field(table))
        assert max(level for _, level in slow.split_log) == 2


def test_first_query_is_the_coarse_lattice():
    mise = MISE(32, 2, 0.0)
    points = mise.query()
    assert points.shape == (33**3, 3) and points.dtype == np.int64
    assert set(np.unique(points)) == set(range(0, 129, 4))
    assert mise.resolution == 128


def test_depth_zero_never_subdivides():
    mise = MISE(5, 0, 0.0)
    points = mise.query()
    mise.update(points, sphere((2.5, 2.5, 2.5), 1.8)(points.astype(float)))
    assert len(mise.query()) == 0
    assert mise.to_dense().shape == (6, 6, 6)


def test_update_rejects_points_not_created():
    mise = MISE(4, 2, 0.0)
    with pytest.raises(ValueError, match="not in grid"):
        mise.update(np.array([[1, 1, 1]]), np.array([0.5]))
    with pytest.raises(ValueError, match="not in grid"):
        mise.update(np.array([[0, 0, 20]]), np.array([0.5]))
    with pytest.raises(ValueError, match="NaN"):
        mise.update(np.array([[0, 0, 0]]), np.array([np.nan]))
