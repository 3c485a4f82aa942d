"""Step 4: match the good pairs once more, each crop turned by its absolute angle.

Features are extracted once per instance, so a keypoint index means the same point in every
pair (what COLMAP needs for tracks). Pairs with fewer than 8 matches are dropped. With
SuperPoint + SuperGlue, final_feats.npz also holds each instance's keypoint "scores", as the
original's does.
"""

from __future__ import annotations

import numpy as np

from geomkit.errors import InputError
from geomkit.io.files import atomic_write
from sfd.preprocess.crop import read_centres, read_gray
from sfd.preprocess.features import (
    Features,
    SiftSettings,
    crop_to_train,
    rotate_image,
    unrotate_points,
)
from sfd.preprocess.layout import Layout, stem
from sfd.preprocess.matchers import Matcher, SiftMatcher
from sfd.preprocess.pairs import MIN_MATCHES
from sfd.preprocess.rotation import read_angles, read_ranges


def instance_features(
    layout: Layout, instances, angles, centres, scale: float, matcher: Matcher
) -> tuple[dict, dict[int, Features]]:
    """(instance -> {"keypoints" (K, 2) rotated-crop px, "keypoints_back" (K, 2) training px,
    "descriptors" (D, K)[, "scores" (K,)]} (the layout of the original's final_feats.npz),
    instance -> its Features)."""
    feats, found = {}, {}
    for i in instances:
        found[i] = matcher.extract(rotate_image(read_gray(layout.cropped(i)), angles[i]))
        back = unrotate_points(found[i].xy, layout.crop_size, angles[i])
        feats[i] = {
            "keypoints": found[i].xy,
            "keypoints_back": crop_to_train(back, centres[i], layout.crop_size, scale),
            "descriptors": found[i].descriptors.T.copy(),
        }
        if found[i].scores is not None:
            feats[i]["scores"] = found[i].scores
    return feats, found


def run(
    layout: Layout, n: int, train_res: int, raw_size: int, matcher: Matcher | None = None
) -> list[tuple[int, int]]:
    """Step 4: write final_feats.npz, final_matches.npz and image_pair.txt; return the pairs.

    ``matcher`` None: upright SIFT.
    """
    angles = read_angles(layout.abs_rotate, n)
    pairs = [(r.i, r.j) for r in read_ranges(layout.good_pairs, n)]
    instances = sorted({k for pair in pairs for k in pair})
    # Once per instance: COLMAP's finer first octave and a lower contrast threshold give SfM
    # more (weaker) features than the trial rotations of step 1 need.
    matcher = matcher or SiftMatcher.create(
        SiftSettings(first_octave=-1, peak_threshold=1.0 / 300.0)
    )
    feats, found = instance_features(
        layout, instances, angles, read_centres(layout, n), train_res / raw_size, matcher
    )
    kept, matches, dropped = [], {}, []
    for i, j in pairs:
        matches0 = matcher.match(found[i], found[j])
        valid = matches0 >= 0
        if valid.sum() < MIN_MATCHES:
            dropped.append(f"{i}_{j} ({valid.sum()} matches)")
            continue
        kept.append((i, j))
        matches[f"{i}_{j}"] = {
            "mkpts0back": feats[i]["keypoints_back"][valid],
            "mkpts1back": feats[j]["keypoints_back"][matches0[valid]],
            "matches0": matches0,
        }
    if dropped:
        print(f"step 4: pairs with fewer than {MIN_MATCHES} matches dropped: {', '.join(dropped)}")
    if not kept:
        raise InputError("step 4: no good pair kept 8 matches after the global rotation")
    layout.sfm_inputs.mkdir(parents=True, exist_ok=True)
    with atomic_write(layout.final_feats) as handle:
        np.savez(handle, **{str(i): v for i, v in feats.items()})
    with atomic_write(layout.final_matches) as handle:
        np.savez(handle, **matches)
    with atomic_write(layout.image_pairs, "w") as handle:
        handle.writelines(f"{stem(i)}.png {stem(j)}.png\n" for i, j in kept)
    print(f"step 4: {len(kept)} pairs, " + ", ".join(f"{k}: {int((v['matches0'] >= 0).sum())}"
                                                     for k, v in matches.items()))  # fmt: skip
    return kept
