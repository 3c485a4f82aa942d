"""python -m geomkit.synth --shape NAME --views N --format FORMAT --out DIR

Render a procedural shape (or a mesh file) from N cameras into a dataset layout, with the
ground-truth surface (gt_mesh.ply, gt_points.ply) at the top of DIR.

python -m geomkit.synth pile --out DIR [--n-instances 6 --shape chair ...] writes a
Structure-from-Duplicates pile instead: N copies in one image (see geomkit.synth.pile).
"""

from __future__ import annotations

import sys
from pathlib import Path

from geomkit.errors import ArgumentParser, run_main
from geomkit.synth.camera_paths import CAMERA_PATHS
from geomkit.synth.generate import generate_scene
from geomkit.synth.layouts import LAYOUTS
from geomkit.synth.pile import make_pile
from geomkit.synth.shapes import FAMILIES, MESH_SUFFIXES


def _size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 8:
        raise ValueError(text)
    return parts[0], parts[1]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pile"]:
        return pile_main(argv[1:])
    parser = ArgumentParser(
        prog="python -m geomkit.synth",
        description=__doc__.splitlines()[0],
        epilog="python -m geomkit.synth pile --help: a Structure-from-Duplicates pile instead",
    )
    parser.add_argument(
        "--shape",
        required=True,
        help=f"one of {', '.join(sorted(FAMILIES))}, or a mesh file (.obj, .ply, .off)",
    )
    parser.add_argument("--views", type=int, required=True, help="number of (training) views")
    parser.add_argument("--format", choices=LAYOUTS, required=True, help="dataset layout")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=_size, default=(256, 256), help="HxW or one side (256)")
    parser.add_argument("--cameras", choices=CAMERA_PATHS, default="hemisphere")
    parser.add_argument("--test-views", type=int, help="held-out views (nerf; default views/4)")
    parser.add_argument("--seed", type=int, default=0, help="shape parameters, colours, cameras")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.add_argument(
        "--volsdf-margin",
        type=float,
        default=1.1,
        help="volsdf: scale_mat maps the unit sphere to the bounding sphere times this",
    )
    parser.add_argument("--camera-distance", type=float, default=2.5, help="from the origin")
    args = parser.parse_args(argv)
    if args.views < 1:
        parser.error("--views must be >= 1")
    if args.shape not in FAMILIES and Path(args.shape).suffix.lower() not in MESH_SUFFIXES:
        parser.error(f"--shape {args.shape!r} is neither a shape family nor a mesh file")
    out = generate_scene(
        args.out,
        args.shape,
        args.views,
        args.format,
        args.size,
        args.cameras,
        args.test_views,
        args.seed,
        overwrite=args.overwrite,
        volsdf_margin=args.volsdf_margin,
        camera_distance=args.camera_distance,
    )
    print(f"wrote {args.format} scene of {args.shape} ({args.views} views) to {out}")
    return 0


def pile_main(argv) -> int:
    """N copies of one shape in one image, in SfD's data layout (the ``pile`` subcommand)."""
    parser = ArgumentParser(
        prog="python -m geomkit.synth pile", description=pile_main.__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-instances", type=int, default=6, help="copies in the image")
    parser.add_argument(
        "--shape",
        default="chair",
        help=f"one of {', '.join(sorted(FAMILIES))} (chair has no rotational symmetry) or a mesh",
    )
    parser.add_argument("--train-res", type=int, default=256, help="side of train/ images")
    parser.add_argument("--raw-res", type=int, default=512, help="side of raw/ images")
    parser.add_argument("--seed", type=int, default=0, help="shape, texture, poses, camera")
    parser.add_argument("--tilt-deg", type=float, default=0.0, help="largest tilt of a copy")
    parser.add_argument(
        "--fov-deg", type=float, default=60.0, help="field of view across the image"
    )
    parser.add_argument("--mesh-resolution", type=int, default=96, help="marching-cubes grid")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    pile = make_pile(
        args.out,
        args.n_instances,
        args.shape,
        args.train_res,
        args.raw_res,
        args.seed,
        overwrite=args.overwrite,
        tilt_deg=args.tilt_deg,
        fov_deg=args.fov_deg,
        mesh_resolution=args.mesh_resolution,
    )
    print(f"wrote a pile of {pile.n_instances} {pile.name} to {pile.root}")
    return 0


if __name__ == "__main__":
    run_main(main)
