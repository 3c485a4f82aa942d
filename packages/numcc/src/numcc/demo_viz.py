"""What the two demos share: the original's visualisation path on one object, and its outputs.

The demos take every flag of ``numcc.main`` (as the originals took main_numcc's parser) plus
their own. The model is loaded strictly from --checkpoint; --model_size, unless given, is the
checkpoint's own (base for the authors' files). Then, as the original's run_viz_udf:
--n_viz_queries random queries in [-3, 3]^3 (seeded by --seed), for NU-MCC those within the
anchors' box +- 0.3; Repulsive UDF on chunks of --batch_query (NU-MCC) or the occupancy
threshold (MCC checkpoints); colour by argmax (NU-MCC) or MCC's softmax expectation at T=0.1.

Outputs, beside the --output prefix (the original appended to <output>.html; here nothing
existing is replaced without --overwrite, checked before any work):

- <output>.html: the seen points, the anchors and the prediction (normalised frame);
- <output>_pred.ply, <output>_seen.ply: the coloured prediction and seen points in the
  model's normalised frame;
- <output>_pred_input_frame.ply, <output>_seen_input_frame.ply: the same in the input's own
  frame (the depth or point cloud given), which the original could not map back to (MCC #20).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from geomkit.errors import ArgumentParser
from geomkit.io import check_can_write, write_ply
from geomkit.structures import PointCloud
from geomkit.viz import save_scene_html
from numcc.args import get_args_parser
from numcc.checkpoints import load_model
from numcc.demo_inputs import SeenInputs
from numcc.predict import (
    VIZ_QUERIES,
    VIZ_QUERIES_SAVE_PC,
    chunked_args,
    object_decoder,
    reconstruct,
    seen_colour_cloud,
    viz_queries,
)

DEFAULT_CHECKPOINT = "pretrained/udf-ep99.pth"
DEFAULT_OUTPUT = "demo/output"
OUTPUTS = {
    "html": ".html",
    "pred": "_pred.ply",
    "pred_input": "_pred_input_frame.ply",
    "seen": "_seen.ply",
    "seen_input": "_seen_input_frame.ply",
}
InputReader = Callable[[int], SeenInputs]  # the demo's inputs at a given seen-map size


def demo_parser(prog: str, description: str) -> ArgumentParser:
    """numcc.main's flags (--n_viz_queries, --model_size, --seed ...) plus the demos' common
    ones; the inputs are each demo's."""
    parser = get_args_parser(prog)
    parser.description = description
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="output prefix: <output>.html and <output>_*.ply"
    )
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="model checkpoint")
    parser.add_argument(
        "--batch_query",
        default=48000,
        type=int,
        help="batch query for repulsive UDF (queries per decoder pass)",
    )
    parser.add_argument("--overwrite", action="store_true", help="added: replace outputs")
    return parser


def output_paths(prefix: str | Path) -> dict[str, Path]:
    return {name: Path(f"{prefix}{suffix}") for name, suffix in OUTPUTS.items()}


def run_demo(args: argparse.Namespace, read_inputs: InputReader) -> int:
    """Check the outputs are free, read the inputs, load the model, predict, write."""
    paths = output_paths(args.output)
    for path in paths.values():
        check_can_write(path, args.overwrite)
    seen = read_inputs(args.xyz_size)
    model, args = demo_model(args)
    seen_hr = read_inputs(args.xyz_size_hr).seen_xyz if use_hr(args) else None
    start = time.perf_counter()
    points, colours, anchors = predict(model, seen, seen_hr, args)
    seconds = time.perf_counter() - start
    write_outputs(paths, seen, points, colours, anchors, f"{args.model} on {args.checkpoint}")
    report(paths, len(points), seconds)
    return 0


def demo_model(args: argparse.Namespace) -> tuple[torch.nn.Module, argparse.Namespace]:
    """The checkpoint's model in eval mode, frozen, on the device, and the run's flags."""
    loaded = load_model(args.checkpoint, args)
    run = loaded.args
    run.device = run.device if run.device == "cpu" or torch.cuda.is_available() else "cpu"
    run.n_query_udf = args.batch_query
    run = chunked_args(run)
    model = loaded.model.eval().requires_grad_(False).to(run.device)
    return model, run


def use_hr(args: argparse.Namespace) -> bool:
    return bool(args.hr) and args.model == "numcc"


def predict(
    model, seen: SeenInputs, seen_hr, args
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(points, colours, anchors or None) in the normalised frame, on the CPU."""
    device = torch.device(args.device)
    seen_hr = None if seen_hr is None else seen_hr.to(device)
    decode, anchors = object_decoder(
        model, seen.seen_xyz.to(device), seen.seen_rgb.to(device), seen_hr
    )
    n_queries = args.n_viz_queries or (VIZ_QUERIES_SAVE_PC if args.save_pc else VIZ_QUERIES)
    generator = torch.Generator().manual_seed(args.seed)
    queries = viz_queries(anchors, n_queries, args.co3d_world_size, generator).to(device)
    colour = "expectation" if args.model == "mcc" else "argmax"
    points, colours = reconstruct(decode, queries, args, colour)
    anchors = None if anchors is None else anchors.cpu()
    return points.detach().cpu(), colours.cpu(), anchors


def write_outputs(paths, seen: SeenInputs, points, colours, anchors, title: str) -> None:
    seen_xyz, seen_rgb = seen_colour_cloud(seen.seen_xyz, seen.seen_rgb)
    pred, seen_points = cloud(points, colours), cloud(seen_xyz, seen_rgb)
    write_ply(paths["pred"], pred)
    write_ply(paths["pred_input"], cloud(seen.to_input_frame(points), colours))
    write_ply(paths["seen"], seen_points)
    write_ply(paths["seen_input"], cloud(seen.to_input_frame(seen_xyz), seen_rgb))
    items = {"seen": seen_points, "prediction": pred}
    if anchors is not None:
        items["anchors"] = anchors.numpy()
    save_scene_html(paths["html"], items, f"{title} (normalised frame)")


def cloud(points: torch.Tensor, colours: torch.Tensor) -> PointCloud:
    return PointCloud(points.numpy().astype(np.float32), colors=colours.clamp(0, 1).numpy())


def report(paths: dict[str, Path], n_points: int, seconds: float) -> None:
    print(f"{n_points:,} points predicted in {seconds:.1f} s")
    if n_points == 0:
        print("no query met the threshold (--udf_threshold; MCC: occupancy 0.1): empty PLYs")
    print(f"page: {paths['html']}")
    print(f"prediction: {paths['pred']} (normalised), {paths['pred_input']} (input frame)")
    print(f"seen points: {paths['seen']} (normalised), {paths['seen_input']} (input frame)")
