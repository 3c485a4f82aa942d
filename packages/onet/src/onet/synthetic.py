"""Procedural mesh folders for ONet: one sub-folder per class, one watertight mesh per object,
ready for ``python -m onet.build_dataset MESH_DIR OUT --no-fusion``.

    python -m onet.synthetic OUT --classes sphere,box,torus --per-class 40 [--seed 0]

Classes are geomkit.synth shape families; each object draws its own parameters and colours.
Class folders are named by index like ShapeNet synsets ("00000001", ...), and metadata.yaml
maps them to the family names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from geomkit.errors import ArgumentParser, run_main
from geomkit.io import prepare_output_dir, write_ply
from geomkit.structures import TriMesh
from geomkit.synth import FAMILIES, make_shape


def class_id(index: int) -> str:
    return f"{index + 1:08d}"


def write_class_meshes(
    out: str | Path,
    classes: list[str],
    per_class: int,
    seed: int = 0,
    resolution: int = 64,
    overwrite: bool = False,
) -> Path:
    """Write ``per_class`` meshes (PLY with vertex colours) of each family into OUT/<class id>/."""
    unknown = [c for c in classes if c not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; choose from {sorted(FAMILIES)}")
    out = prepare_output_dir(out, overwrite)
    metadata = {}
    for k, name in enumerate(classes):
        cid = class_id(k)
        metadata[cid] = {"id": cid, "name": name}
        for i in range(per_class):
            shape = make_shape(name, seed=seed * 1_000_003 + k * 10_007 + i)
            mesh = shape.mesh(resolution)
            colored = TriMesh(
                mesh.vertices, mesh.faces, vertex_colors=np.clip(shape.color(mesh.vertices), 0, 1)
            )
            write_ply(out / cid / f"{name}_{i:04d}.ply", colored)
    (out / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=True))
    return out


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m onet.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument(
        "--classes",
        default="sphere,box,torus",
        help=f"comma-separated families from {', '.join(sorted(FAMILIES))}",
    )
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=64, help="marching-cubes grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in FAMILIES]
    if unknown:
        parser.error(f"unknown classes {unknown}; choose from {sorted(FAMILIES)}")
    out = write_class_meshes(
        args.out, classes, args.per_class, args.seed, args.resolution, args.overwrite
    )
    print(f"wrote {len(classes)} x {args.per_class} meshes to {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
