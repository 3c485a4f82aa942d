"""``--run_val`` and ``--run_viz``: every evaluation object reconstructed from its one view.

Evaluation (batch 1, as the original): the encoder and anchors once per object, the 216k-point
grid in chunks of --n_query_udf (times (xyz_size / xyz_size_hr)^2 with --hr, as the original),
Repulsive UDF or occupancy, the metrics against the 20k ground-truth points. Objects are split
across processes; rank 0 prints per-class and mean metrics and writes
``metrics/epoch<E>/metrics.json`` (per object, per class, mean). With --save_pc each
prediction and its ground truth are also written as PLY files.

Visualisation: the first --max_n_viz_obj evaluation objects of each process, random queries
(216k, or 5M with --save_pc) within the anchors' box, a Plotly page per object under
``viz/epoch<E>/`` with the seen points, the prediction and the ground truth (PLY files too with
--save_pc).
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch

from geomkit import dist as gdist
from geomkit.io import atomic_write, write_ply
from geomkit.log import progress
from geomkit.structures import PointCloud
from geomkit.training import eval_batches
from geomkit.viz import save_scene_html
from numcc.metrics import format_metrics, mean_metrics, object_metrics
from numcc.predict import (
    VIZ_QUERIES,
    VIZ_QUERIES_SAVE_PC,
    chunked_args,
    eval_queries,
    object_decoder,
    reconstruct,
    seen_colour_cloud,
    viz_queries,
)


def object_name(name) -> str:
    """category_sequence_frame (CO3D) or scene_frame (Hypersim) of a sample's name."""
    return "_".join(str(part) for part in name)


def predict_object(model, sample: dict, args, device, queries: torch.Tensor):
    """(points, colours, anchors) of one dataset sample, on the CPU."""
    hr = sample.get("seen_xyz_hr")
    decode, anchors = object_decoder(
        model,
        sample["seen_xyz"].to(device),
        sample["seen_rgb"].to(device),
        None if hr is None else hr.to(device),
    )
    colour = "expectation" if args.model == "mcc" else "argmax"
    points, rgb = reconstruct(decode, queries.to(device), chunked_args(args), colour)
    return points.cpu(), rgb.cpu(), None if anchors is None else anchors.cpu()


def save_clouds(folder: Path, name: str, clouds: dict[str, tuple]) -> None:
    for label, (points, rgb) in clouds.items():
        cloud = PointCloud(points.numpy(), colors=None if rgb is None else rgb.numpy())
        write_ply(folder / f"{name}_{label}.ply", cloud)


@torch.no_grad()
def evaluate(model, dataset, args, out_dir: Path, epoch, device) -> dict:
    """Metrics of every evaluation object (this rank's share, gathered on every rank)."""
    model.eval()
    rank, world = gdist.rank(), gdist.world_size()
    mine = [i for batch in eval_batches(len(dataset), 1, rank, world) for i in batch]
    queries = eval_queries(args)
    folder = out_dir / "metrics" / f"epoch{epoch}"
    rows = []
    for index in progress(mine, desc="run_val"):
        sample = dataset[index]
        start = time.perf_counter()
        points, rgb, _ = predict_object(model, sample, args, device, queries)
        scores = object_metrics(
            points, sample["gt_xyz"], rgb, sample["gt_rgb"], args.eval_dist_threshold
        )
        name = object_name(sample["name"])
        rows.append(
            {
                "object": name,
                "class": str(sample["name"][0]),
                "n_points": len(points),
                "seconds": time.perf_counter() - start,
                **scores,
            }
        )
        if args.save_pc:
            folder.mkdir(parents=True, exist_ok=True)
            save_clouds(
                folder, name, {"pred": (points, rgb), "gt": (sample["gt_xyz"], sample["gt_rgb"])}
            )
    rows = [row for part in gdist.gather_objects(rows) for row in part]
    summary = summarise(rows)
    if gdist.is_main_process():
        report(summary, folder / "metrics.json")
    return summary


def summarise(rows: list[dict]) -> dict:
    """Per object, per class and mean (over objects) metrics."""
    by_class = defaultdict(list)
    for row in rows:
        by_class[row["class"]].append(row)
    return {
        "objects": sorted(rows, key=lambda row: row["object"]),
        "classes": {name: mean_metrics(group) for name, group in sorted(by_class.items())},
        "mean": mean_metrics(rows),
    }


def report(summary: dict, path: Path) -> None:
    """Print the classes and the mean as the original prints them, and write the JSON."""
    for name, scores in summary["classes"].items():
        print(f"{name:>16}  {format_metrics(scores)}")
    print(f"{'mean':>16}  {format_metrics(summary['mean'])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w") as handle:
        json.dump(summary, handle, indent=1, default=_json_number)
    print(f"metrics: {path}")


def _json_number(value):
    return None if isinstance(value, float) and math.isnan(value) else float(value)


@torch.no_grad()
def visualise(model, dataset, args, out_dir: Path, epoch, device) -> list[Path]:
    """Plotly pages (and PLY files with --save_pc) of this rank's first objects."""
    model.eval()
    rank, world = gdist.rank(), gdist.world_size()
    mine = [i for batch in eval_batches(len(dataset), 1, rank, world) for i in batch]
    folder = out_dir / "viz" / f"epoch{epoch}"
    folder.mkdir(parents=True, exist_ok=True)
    n_queries = args.n_viz_queries or (VIZ_QUERIES_SAVE_PC if args.save_pc else VIZ_QUERIES)
    pages = []
    for index in progress(mine[: args.max_n_viz_obj], desc="run_viz"):
        sample = dataset[index]
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        decode, anchors = object_decoder(
            model, sample["seen_xyz"].to(device), sample["seen_rgb"].to(device)
        )
        queries = viz_queries(anchors, n_queries, args.co3d_world_size, generator)
        colour = "expectation" if args.model == "mcc" else "argmax"
        points, rgb = (t.cpu() for t in reconstruct(decode, queries.to(device), args, colour))
        name = object_name(sample["name"])
        clouds = {
            "seen": seen_colour_cloud(sample["seen_xyz"], sample["seen_rgb"]),
            "pred": (points, rgb),
        }
        clouds["gt"] = (sample["gt_xyz"], sample["gt_rgb"])
        items = {label: PointCloud(p.numpy(), colors=c.numpy()) for label, (p, c) in clouds.items()}
        pages.append(save_scene_html(folder / f"{name}.html", items, title=name))
        if args.save_pc:
            save_clouds(folder, name, clouds)
    return pages
