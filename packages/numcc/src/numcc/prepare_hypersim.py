"""Write NU-MCC's Hypersim ground truth: ``python -m numcc.prepare_hypersim --hypersim_path
PATH [--out DIR] [--overwrite]`` -> DIR/hypersim_gt_train.pt and DIR/hypersim_gt_val.pt
(see :mod:`numcc.data.hypersim`; scenes are found in either of Hypersim's folder layouts)."""

from __future__ import annotations

from pathlib import Path

import torch

from geomkit.errors import ArgumentParser, run_main
from geomkit.io import atomic_write, check_can_write
from numcc.data.hypersim import GT_SPLITS, prepare_gt


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m numcc.prepare_hypersim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--hypersim_path", required=True, help="Hypersim root")
    parser.add_argument("--out", default=".", help="output folder (default: here, as the original)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    targets = {split: Path(args.out) / f"hypersim_gt_{split}.pt" for split in GT_SPLITS}
    for path in targets.values():
        check_can_write(path, args.overwrite)
    for split, path in targets.items():
        gt = prepare_gt(args.hypersim_path, split)
        with atomic_write(path, "wb") as handle:
            torch.save(gt, handle)
        print(f"{path}: {len(gt)} scenes, {sum(len(x) for x, _ in gt.values())} points")
    return 0


if __name__ == "__main__":
    run_main(main)
