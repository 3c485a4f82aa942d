"""Step 3: one absolute in-plane angle per instance from the pairs' good ranges.

Unknowns theta_1..theta_{N-1} (theta_0 = 0); a pair (i, j) with range [s, e] wants
theta_j - theta_i inside [s, e] on the circle and pays its weight times the angular distance
to the range otherwise. Powell (bounded to [0, 2 pi]) from ``iters`` random starts; the best
is kept. Unlike the original, a range that starts at 0 degrees (or below) counts: validity
is whether the pair is listed, not whether its start is positive.
"""

from __future__ import annotations

import re

import numpy as np
from scipy.optimize import minimize

from geomkit.errors import InputError
from geomkit.io import write_image
from geomkit.io.files import atomic_write
from sfd.preprocess.crop import read_gray
from sfd.preprocess.features import rotate_image
from sfd.preprocess.layout import Layout
from sfd.preprocess.pairs import PairRange

_LINE = re.compile(r"pair (\d+)_(\d+)_rot_(-?\d+)_to_(-?\d+): avg_kpnum=([-+0-9.eE]+)")
TWO_PI = 2.0 * np.pi


def read_ranges(path, n: int) -> list[PairRange]:
    """The pairs of ``good_pair_range.txt``."""
    ranges = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        found = _LINE.fullmatch(line.strip())
        if found is None:
            raise InputError(f"{path}:{number}: not a 'pair i_j_rot_s_to_e: avg_kpnum=w' line")
        i, j, s, e = (int(found.group(k)) for k in range(1, 5))
        if not (0 <= i < j < n) or e < s:
            raise InputError(f"{path}:{number}: pair {i}_{j} or range {s}..{e} is out of range")
        ranges.append(PairRange(i, j, s, e, float(found.group(5))))
    return ranges


def circular_distance(angle: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance (radians) from ``angle`` to the arc from ``start`` to ``end`` (start <= end);
    0 inside it, an arc of 2 pi or more contains everything."""
    offset = np.mod(angle - start, TWO_PI)
    width = end - start
    outside = offset > width
    distance = np.minimum(offset - width, TWO_PI - offset)
    return np.where(outside & (width < TWO_PI), distance, 0.0)


def objective(theta: np.ndarray, pairs: np.ndarray) -> float:
    """Weighted sum of range violations; ``pairs`` rows (i, j, start, end, weight)."""
    angles = np.concatenate([[0.0], theta])
    i, j = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    return float(np.sum(pairs[:, 4] * circular_distance(angles[j] - angles[i], *pairs[:, 2:4].T)))


def unconnected(ranges: list[PairRange], n: int) -> list[int]:
    """Instances that no chain of good pairs links to instance 0."""
    reached, frontier = {0}, [0]
    while frontier:
        k = frontier.pop()
        for r in ranges:
            for a, b in ((r.i, r.j), (r.j, r.i)):
                if a == k and b not in reached:
                    reached.add(b)
                    frontier.append(b)
    return sorted(set(range(n)) - reached)


def optimize(ranges: list[PairRange], n: int, iters: int, seed: int = 0) -> np.ndarray:
    """(n,) absolute angles in degrees, angle 0 = 0."""
    lost = unconnected(ranges, n)
    if lost:
        print(
            f"step 3: instances {lost} share no chain of good pairs with instance 0: their "
            "angles are only relative to each other, and SfM may leave them out"
        )
    pairs = np.array([[r.i, r.j, np.radians(r.start), np.radians(r.end), r.weight] for r in ranges])
    pairs[:, 4] /= pairs[:, 4].sum()
    rng = np.random.default_rng(seed)
    best_x, best_loss = np.zeros(n - 1), np.inf
    for _ in range(max(iters, 1)):
        start = rng.uniform(0.0, TWO_PI, n - 1)
        result = minimize(
            objective, start, args=(pairs,), method="Powell", bounds=[(0.0, TWO_PI)] * (n - 1)
        )
        if result.fun < best_loss:
            best_x, best_loss = result.x, result.fun
    print(f"step 3: best range violation {np.degrees(best_loss):.3f} deg (weighted)")
    return np.degrees(np.concatenate([[0.0], best_x]))


def read_angles(path, n: int) -> np.ndarray:
    """(n,) degrees from ``abs_rotate.txt``."""
    try:
        angles = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except ValueError as err:
        raise InputError(f"{path}: not one angle per line ({err})") from None
    if angles.shape != (n,) or not np.isfinite(angles).all():
        raise InputError(f"{path} must hold {n} finite angles, found {angles.shape[0]}")
    return angles


def run(layout: Layout, n: int, iters: int) -> np.ndarray:
    """Step 3: write ``abs_rotate.txt`` and ``rot_{i}.png``; return the angles (degrees)."""
    angles = optimize(read_ranges(layout.good_pairs, n), n, iters)
    with atomic_write(layout.abs_rotate, "w") as handle:
        handle.writelines(f"{a!r}\n" for a in angles.tolist())
    for i in range(n):
        write_image(layout.rotated(i), rotate_image(read_gray(layout.cropped(i)), angles[i]))
    print("step 3: absolute angles (deg) " + " ".join(f"{a:.1f}" for a in angles))
    return angles
