"""Steps 1 and 2: match every instance pair under trial in-plane rotations, then keep, per
pair, the longest run of rotations that match well.

Step 1 rotates crop j by 0, delta, ... < 360 degrees against crop i unrotated, matches them
(upright SIFT, or SuperPoint + SuperGlue: see matchers.py),
maps the matches back to training-image pixels and fits an essential matrix (placeholder
intrinsics, only to tell a geometric fit from none). Features are extracted once per rotated
crop and shared by all pairs. Step 2 calls a rotation good when it has a relative pose and at
least ``max(1.2 x median, MIN_MATCHES)`` matches; the pair's range is the longest circular run
of good rotations (a single rotation widened by +-delta), weighted by its mean match count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from geomkit.errors import InputError
from geomkit.io.files import atomic_write
from sfd.preprocess.crop import read_centres, read_gray
from sfd.preprocess.features import (
    Features,
    SiftSettings,
    crop_to_train,
    match,
    rotate_image,
    unrotate_points,
)
from sfd.preprocess.layout import Layout
from sfd.preprocess.matchers import Matcher, SiftMatcher

MIN_MATCHES = 8
MEDIAN_FACTOR = 1.2


def rotations(delta: int) -> list[int]:
    """Trial angles 0, delta, ... < 360 (degrees)."""
    return list(range(0, 360, delta))


def all_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def relative_rotation(x0: np.ndarray, x1: np.ndarray, train_res: int) -> np.ndarray | None:
    """(3, 3) rotation from an essential matrix of pixel matches, or None when none fits.

    The intrinsics are a placeholder (f = 1000 at 800 px, centred) as in the original: the
    result only says whether a two-view geometry exists. Each call starts from nothing, so a
    failed fit never inherits an earlier rotation's R (the original's stale-R bug).
    """
    if len(x0) < 5:
        return None
    focal = 1000.0 * train_res / 800.0
    K = np.array([[focal, 0, train_res / 2], [0, focal, train_res / 2], [0, 0, 1.0]])
    E, inliers = cv2.findEssentialMat(x0, x1, K, cv2.RANSAC, 0.999, 1.0)
    if E is None or E.shape != (3, 3):
        return None
    _, R, _, _ = cv2.recoverPose(E, x0, x1, K, mask=inliers)
    return R


@dataclass
class CropFeatures:
    """Features of each instance's crop, computed lazily per (instance, angle) and kept."""

    layout: Layout
    matcher: Matcher
    cache: dict

    def __call__(self, i: int, angle: int) -> Features:
        if (i, angle) not in self.cache:
            gray = read_gray(self.layout.cropped(i))
            self.cache[(i, angle)] = self.matcher.extract(rotate_image(gray, angle))
        return self.cache[(i, angle)]


def match_pair(
    features: Callable[[int, int], Features],
    i: int,
    j: int,
    delta: int,
    to_train: Callable[[int, np.ndarray], np.ndarray],
    train_res: int,
    crop_size: int,
    match_fn: Callable[[Features, Features], np.ndarray] = match,
) -> dict[str, dict]:
    """Per trial angle of crop j: {"mkpts0back", "mkpts1back" (M, 2) training px, "R"}."""
    base = features(i, 0)
    out = {}
    for angle in rotations(delta):
        turned = features(j, angle)
        matches0 = match_fn(base, turned)
        valid = matches0 >= 0
        x0 = to_train(i, base.xy[valid])
        x1 = to_train(j, unrotate_points(turned.xy[matches0[valid]], crop_size, angle))
        out[str(angle)] = {
            "mkpts0back": x0,
            "mkpts1back": x1,
            "R": relative_rotation(x0, x1, train_res),
        }
    return out


def run_matching(
    layout: Layout,
    n: int,
    train_res: int,
    delta: int,
    raw_size: int,
    matcher: Matcher | None = None,
) -> None:
    """Step 1: write ``pairwise_match/{i}_rgb_{j}_rgb_matches.npz`` for every pair i < j.

    ``matcher`` None: upright SIFT.
    """
    centres = read_centres(layout, n)
    scale = train_res / raw_size
    # Trial rotations only need match counts: SIFT's 4x faster octave setting is enough.
    matcher = matcher or SiftMatcher.create(SiftSettings(first_octave=0))
    features = CropFeatures(layout, matcher, {})

    def to_train(k: int, xy: np.ndarray) -> np.ndarray:
        return crop_to_train(xy, centres[k], layout.crop_size, scale)

    layout.pair_matches(0, 1).parent.mkdir(parents=True, exist_ok=True)
    for i, j in tqdm(all_pairs(n), desc="step 1: pairs x rotations", leave=False):
        result = match_pair(
            features, i, j, delta, to_train, train_res, layout.crop_size, matcher.match
        )
        with atomic_write(layout.pair_matches(i, j)) as handle:
            np.savez(handle, **result)
    print(f"step 1: matched {len(all_pairs(n))} pairs at {len(rotations(delta))} rotations each")


def read_pair(path) -> dict[int, tuple[int, bool]]:
    """Angle -> (match count, whether a relative pose was found) of a step 1 file."""
    try:
        with np.load(path, allow_pickle=True) as data:
            items = {key: data[key].item() for key in data.files}
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"{path} is not a step 1 match file ({err}); rerun step 1") from None
    return {int(k): (len(v["mkpts0back"]), v["R"] is not None) for k, v in items.items()}


@dataclass
class PairRange:
    """A pair's good relative rotation range (degrees, start <= end) and its weight."""

    i: int
    j: int
    start: int
    end: int
    weight: float

    def line(self) -> str:
        return f"pair {self.i}_{self.j}_rot_{self.start}_to_{self.end}: avg_kpnum={self.weight}\n"


def good_range(i: int, j: int, counts: dict[int, tuple[int, bool]]) -> PairRange | str:
    """The pair's range, or a sentence saying why it has none."""
    angles = sorted(counts)
    delta = angles[1] - angles[0] if len(angles) > 1 else 360
    numbers = np.array([counts[a][0] for a in angles])
    threshold = max(MEDIAN_FACTOR * float(np.median(numbers)), MIN_MATCHES)
    good = np.array([counts[a][1] and counts[a][0] >= threshold for a in angles])
    if not good.any():
        return f"pair {i}_{j}: no rotation with >= {threshold:.1f} matches and a relative pose"
    first, length = longest_circular_run(good)
    run = [(first + k) % len(angles) for k in range(length)]
    weight = float(numbers[run].mean())
    if length == len(angles):
        return PairRange(i, j, 0, 360, weight)
    start = angles[first]
    end = start + (length - 1) * delta
    if length == 1:
        start, end = start - delta, end + delta
    return PairRange(i, j, start, end, weight)


def longest_circular_run(good: np.ndarray) -> tuple[int, int]:
    """(first index, length) of the longest run of True in a circular boolean array."""
    n = len(good)
    if good.all():
        return 0, n
    best_first, best_length = 0, 0
    for first in range(n):
        if good[first] and not good[first - 1]:
            length = 0
            while good[(first + length) % n]:
                length += 1
            if length > best_length:
                best_first, best_length = first, length
    return best_first, best_length


def run_filtering(layout: Layout, n: int) -> list[PairRange]:
    """Step 2: write ``good_pair_range.txt`` (one line per good pair) and return the ranges."""
    ranges, rejected = [], []
    for i, j in all_pairs(n):
        result = good_range(i, j, read_pair(layout.pair_matches(i, j)))
        (ranges if isinstance(result, PairRange) else rejected).append(result)
    for reason in rejected:
        print(f"step 2: {reason}")
    if not ranges:
        raise InputError(
            f"no instance pair of {n} matched at any rotation: the crops need more texture or "
            "resolution (a larger input image, or a smaller --rotate_delta_angle)"
        )
    layout.good_pairs.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(layout.good_pairs, "w") as handle:
        handle.writelines(r.line() for r in ranges)
    print(f"step 2: {len(ranges)} of {len(all_pairs(n))} pairs have a good rotation range")
    return ranges
