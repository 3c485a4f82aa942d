"""onet's section of the demo index: the test-split means of eval_meshes.csv and the demo pages.

python -m onet.demo_summary outputs/onet --eval outputs/onet/train/generation/eval_meshes.csv
"""

from __future__ import annotations

import csv
from pathlib import Path

from geomkit.checkpoint import load_checkpoint
from geomkit.demo_index import write_summary
from geomkit.errors import ArgumentParser, InputError, run_main
from onet.eval_meshes import CHAMFER_L1, PAPER_SCALE

HEADLINE = {"IoU": "iou (mesh)", "normal consistency": "normals (mesh)"}


def mean_row(path: Path) -> dict[str, str]:
    """The 'mean' row of an eval_meshes.csv (class means, written by onet.eval_meshes)."""
    if not path.is_file():
        raise InputError(f"{path} not found: run python -m onet.eval_meshes first")
    with open(path, newline="") as handle:
        rows = {row.get("class name"): row for row in csv.DictReader(handle)}
    if "mean" not in rows or any(column not in rows["mean"] for column in HEADLINE.values()):
        raise InputError(f"{path} has no 'mean' row with {sorted(HEADLINE.values())}")
    return rows["mean"]


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m onet.demo_summary", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="onet's demo folder (outputs/onet)")
    parser.add_argument("--eval", type=Path, required=True, help="eval_meshes.csv of the run")
    args = parser.parse_args(argv)
    mean = mean_row(args.eval)
    numbers = {name: float(mean[column]) for name, column in HEADLINE.items()}
    if mean.get(CHAMFER_L1):
        numbers[f"Chamfer-L1 x{PAPER_SCALE}"] = PAPER_SCALE * float(mean[CHAMFER_L1])
    train_dir = args.eval.parent.parent  # eval_meshes.csv is in out_dir/generation/
    iterations = load_checkpoint(train_dir / "model.pt")["it"]
    path = write_summary(
        args.out,
        "onet: Occupancy Networks (CVPR'19)",
        f"A small image model trained for {iterations} iterations on procedural spheres, boxes "
        "and tori, scored on the held-out test split (means of the class means).",
        numbers,
        {
            "held-out reconstructions beside the ground truth": "demo_small/index.html",
            "their IoU and Chamfer-L1 (metrics.csv)": "demo_small/metrics.csv",
            "authors' checkpoint on real photos": "demo/index.html",
            "eval_meshes.csv": str(args.eval.resolve().relative_to(args.out.resolve())),
        },
        order=10,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
