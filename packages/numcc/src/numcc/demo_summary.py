"""numcc's section of the demo index: the held-out metrics of the demo run and its pages.

python -m numcc.demo_summary outputs/numcc --exp outputs/numcc/experiments/demo
"""

from __future__ import annotations

import json
from pathlib import Path

from geomkit.checkpoint import load_checkpoint
from geomkit.demo_index import write_summary
from geomkit.errors import ArgumentParser, InputError, run_main

HEADLINE = ("F1", "Pr", "Rc", "CD", "Col")


def latest_metrics(exp: Path) -> Path:
    """The metrics.json of the highest evaluated epoch of an experiment folder."""
    found = sorted(exp.glob("metrics/epoch*/metrics.json"), key=lambda p: p.parent.name)
    numbered = [p for p in found if p.parent.name.removeprefix("epoch").isdigit()]
    if not numbered:
        raise InputError(f"no metrics/epoch*/metrics.json in {exp}: run numcc.main first")
    return max(numbered, key=lambda p: int(p.parent.name.removeprefix("epoch")))


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="python -m numcc.demo_summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="numcc's demo folder (outputs/numcc)")
    parser.add_argument("--exp", type=Path, required=True, help="the run's experiments/<name>")
    args = parser.parse_args(argv)
    metrics_path = latest_metrics(args.exp)
    metrics = json.loads(metrics_path.read_text())
    numbers = {name: metrics["mean"][name] for name in HEADLINE}
    checkpoint = load_checkpoint(args.exp / "checkpoint-last.pth")
    run = checkpoint["args"]
    numbers["held-out objects"] = len(metrics["objects"])
    out = args.out.resolve()
    pages = {
        f"held-out object {i + 1}: seen points, prediction, ground truth": str(
            page.resolve().relative_to(out)
        )
        for i, page in enumerate(sorted(args.exp.glob("viz/epoch*/*.html")))
    }
    pages["metrics per object and class (metrics.json)"] = str(
        metrics_path.resolve().relative_to(out)
    )
    pages["authors' checkpoint on the gudetama web sample"] = "gudetama.html"
    n = checkpoint["epoch"] + 1
    epochs = f"{n} epoch" + ("s" if n > 1 else "")
    path = write_summary(
        args.out,
        "numcc: NU-MCC (NeurIPS'23)",
        f"A {run.model_size} NU-MCC trained on the CPU for {epochs} on a generated CO3D-layout "
        "dataset (spheres, tori, boxes), each object from one RGB-D view, scored on the held-out "
        f"sequences at F1@{run.eval_dist_threshold} with Repulsive UDF.",
        numbers,
        pages,
        order=20,
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
