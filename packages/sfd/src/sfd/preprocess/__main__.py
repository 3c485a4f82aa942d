"""``python -m sfd.preprocess --object airplane --instances 6``: the authors' preprocess/run.py
(steps 0-8) as one command; ``--steps 3`` runs one step from the previous steps' files.

Steps: 0 mask and crop, 1 pairwise matching under trial rotations, 2 pair filtering, 3 global
in-plane rotations, 4 final matching, 5 SfM, 6 point cloud, 7 poses, 8 monocular normals.
Steps 1 and 4 match with upright SIFT, or with ``--matcher superglue --superglue_weights DIR``
the original's SuperPoint + SuperGlue (DIR holds superpoint_v1.pth and superglue_outdoor.pth).
Existing outputs of the requested steps are refused unless --overwrite is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import cv2

from geomkit.errors import ArgumentParser, ConfigError, run_main
from sfd.preprocess import crop, final_match, normals, pairs, poses, rotation, sfm
from sfd.preprocess.layout import Layout, refuse_existing, require_inputs
from sfd.preprocess.matchers import Matcher, SuperGlueMatcher

ALL_STEPS = tuple(range(9))


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m sfd.preprocess", description=__doc__.splitlines()[0])
    p.add_argument("--object", required=True, help="object name: data_root/<object>/raw/")
    p.add_argument("--instances", type=int, required=True, help="number of instances")
    p.add_argument("--data_root", default="data")
    p.add_argument("--crop_size", type=int, default=1200, help="square crop per instance (raw px)")
    p.add_argument("--train_res", type=int, default=800, help="training image size (px)")
    p.add_argument("--rotate_delta_angle", type=int, default=8, help="trial rotation step (deg)")
    p.add_argument("--iters", type=int, default=100, help="random restarts of step 3")
    p.add_argument("--steps", default=",".join(map(str, ALL_STEPS)), help="e.g. 0,1,2 or 5")
    p.add_argument("--matcher", choices=("sift", "superglue"), default="sift")
    p.add_argument(
        "--superglue_weights",
        default=None,
        help="folder with superpoint_v1.pth and superglue_outdoor.pth (--matcher superglue)",
    )
    p.add_argument("--omnidata_ckpt", default=None, help="omnidata_dpt_normal_v2.ckpt (step 8)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ConfigError(f"--steps {text!r}: give step numbers 0-8 separated by commas") from None
    if not steps or any(s not in ALL_STEPS for s in steps):
        raise ConfigError(f"--steps {text!r}: give step numbers 0-8 separated by commas")
    return steps


def check_args(args) -> None:
    """ConfigError for values the steps cannot run with."""
    if args.instances < 2:
        raise ConfigError(f"--instances {args.instances}: SfD needs at least 2 instances")
    for name in ("crop_size", "train_res", "iters"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be positive, got {getattr(args, name)}")
    if not 1 <= args.rotate_delta_angle <= 180:
        raise ConfigError(f"--rotate_delta_angle {args.rotate_delta_angle}: give 1..180 degrees")
    if args.superglue_weights is not None and args.matcher != "superglue":
        raise ConfigError("--superglue_weights is only used with --matcher superglue; add it")


def load_matcher(args, steps: list[int]) -> Matcher | None:
    """The SuperGlue matcher when steps 1 or 4 need it (None: SIFT); loaded before any step
    writes, so a missing weight file stops the run with nothing written."""
    if args.matcher != "superglue" or not {1, 4} & set(steps):
        return None
    return SuperGlueMatcher.load(args.superglue_weights)


def step_inputs(layout: Layout, step: int, n: int) -> list[Path]:
    """Files a step reads (made by earlier steps)."""
    made = layout.outputs
    needs = {
        0: [layout.raw_rgb, layout.raw_seg],
        1: [layout.centers] + [layout.cropped(i) for i in range(n)],
        2: made(1, n),
        3: made(2, n) + [layout.cropped(i) for i in range(n)],
        4: made(3, n)[:1] + made(2, n) + [layout.centers, layout.masked(0)],
        5: made(4, n) + [layout.resized(i) for i in range(n)],
        6: made(5, n),
        7: made(6, n) + made(5, n),
        8: [],
    }
    return needs[step]


def raw_size(layout: Layout) -> int:
    """Side of the raw image (from step 0's masked image of instance 0)."""
    header = cv2.imread(str(layout.masked(0)), cv2.IMREAD_UNCHANGED)
    if header is None:
        raise ConfigError(f"cannot read {layout.masked(0)}; rerun step 0")
    return int(header.shape[0])


def run_step(step: int, layout: Layout, args, matcher: Matcher | None) -> None:
    n = args.instances
    if step == 0:
        crop.run(layout, n, args.train_res)
    elif step == 1:
        delta = args.rotate_delta_angle
        pairs.run_matching(layout, n, args.train_res, delta, raw_size(layout), matcher)
    elif step == 2:
        pairs.run_filtering(layout, n)
    elif step == 3:
        rotation.run(layout, n, args.iters)
    elif step == 4:
        final_match.run(layout, n, args.train_res, raw_size(layout), matcher)
    elif step == 5:
        sfm.run(layout, n, args.train_res)
    elif step == 6:
        poses.run_points(layout, n)
    elif step == 7:
        poses.run_poses(layout, n, args.object)
    else:
        normals.run(layout, args.omnidata_ckpt)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    check_args(args)
    steps = parse_steps(args.steps)
    if 8 in steps:
        normals.check(args.omnidata_ckpt)
    layout = Layout(Path(args.data_root) / args.object, args.crop_size)
    require_inputs(step_inputs(layout, steps[0], args.instances), steps[0])
    writes = [s for s in steps if s != 8 or args.omnidata_ckpt is not None]
    outputs = [p for s in writes for p in layout.outputs(s, args.instances)]
    refuse_existing(outputs, args.overwrite)
    matcher = load_matcher(args, steps)
    for step in steps:
        require_inputs(step_inputs(layout, step, args.instances), step)
        started = time.perf_counter()
        run_step(step, layout, args, matcher)
        print(f"step {step} took {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
