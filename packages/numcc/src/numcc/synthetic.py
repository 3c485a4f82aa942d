"""Write a small CO3D v2-layout dataset of procedural shapes (one category per shape family):
``python -m numcc.synthetic OUT [--categories sphere,torus,box] [--sequences 6] [--val 1]``.

The files are laid out as CO3D's release (annotations, set lists, images, depths with their
scale, masks, a coloured pointcloud.ply per sequence), so ``numcc.main --co3d_path OUT`` reads
them as it reads CO3D (geomkit.synth.layouts.co3d).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from geomkit.errors import ArgumentParser, run_main
from geomkit.io import check_can_write
from geomkit.synth.layouts.co3d import generate_co3d
from geomkit.synth.shapes import FAMILIES


def size_hw(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m numcc.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (the --co3d_path of numcc.main)")
    parser.add_argument(
        "--categories",
        default="sphere,torus,box",
        help=f"comma-separated families from {', '.join(sorted(FAMILIES))}",
    )
    parser.add_argument("--sequences", type=int, default=6, help="sequences per category")
    parser.add_argument("--val", type=int, default=1, help="of them in the val list (the last)")
    parser.add_argument("--views", type=int, default=4, help="frames per sequence")
    parser.add_argument("--size", type=size_hw, default=(96, 128), help="image HxW (96x128)")
    parser.add_argument("--points", type=int, default=4000, help="point cloud size")
    parser.add_argument(
        "--world-scale",
        type=float,
        default=2.5,
        help="scene scale: 2.5 gives objects about 2 units across, inside the [-3, 3]^3 the "
        "model queries, with room for its +-1 shifts (2.5)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    unknown = [c for c in categories if c not in FAMILIES]
    if unknown:
        parser.error(f"unknown categories {unknown}; choose from {sorted(FAMILIES)}")
    if not 0 < args.val < args.sequences:
        parser.error("--val must be at least 1 and below --sequences")
    check_can_write(args.out, args.overwrite)
    if args.out.exists():
        shutil.rmtree(args.out)
    generate_co3d(
        args.out,
        categories,
        args.sequences,
        args.views,
        args.size,
        args.points,
        args.seed,
        args.val,
        args.world_scale,
    )
    print(f"wrote {len(categories)} categories x {args.sequences} sequences to {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
