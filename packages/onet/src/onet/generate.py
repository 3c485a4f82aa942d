"""Generate meshes for the test split: ``python -m onet.generate CONFIG [--no-cuda]
[--checkpoint PATH] [--object NAME ...] [--set key=value] [--overwrite]`` (the authors'
generate.py).

Loads test.model_file (a relative name is looked up in training.out_dir, as the authors'
CheckpointIO; an absolute or existing path is used as given; --checkpoint overrides it) and
writes into <training.out_dir>/<generation.generation_dir>:

- meshes/<category>/<model>.off, one per test object;
- input/<category>/<model>.png (image inputs; .ply point clouds, .off voxel surfaces) when
  generation.copy_input;
- vis/<category>_<name>/NN_mesh.off, NN_in.* (and NN_gt.off with copy_groundtruth) for the
  first generation.vis_n_outputs objects of each category;
- time_generation_full.pkl / .csv (one row per object: total 'mesh' time, the generator's
  timings and 'points queried') and time_generation.pkl (per-class means, printed with the mean
  of the class means). The .pkl files hold lists of row dicts (``pandas.DataFrame(rows)``).

An existing non-empty generation folder is kept unless --overwrite. ``--object NAME``
(``<category>_<model>``, ``<category>/<model>`` or ``<model>``; repeatable) meshes only those
objects, the single-object use of project-noisypixel's notebook; their meshes join an existing
generation folder, and only an existing mesh of the same object needs --overwrite. Point clouds
(generation.generate_pointcloud) are not generated: ONet's generator has none, as in the
original, which only warned.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from geomkit.errors import ArgumentParser, run_main
from geomkit.io import (
    atomic_write,
    check_can_write,
    prepare_output_dir,
    write_image,
    write_off,
    write_ply,
)
from geomkit.log import progress
from geomkit.structures import TriMesh
from onet.checkpoints import load_model_weights, resolve_model_file
from onet.config import add_override_argument, apply_overrides, load_config
from onet.data import build_dataset
from onet.data.subset import ObjectSubset, find_object
from onet.evaluation import class_means, format_table, write_csv, write_pickle
from onet.generation import get_generator
from onet.models import build_model


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.generate", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="config file, e.g. configs/img/onet_pretrained.yaml")
    parser.add_argument("--no-cuda", action="store_true", help="run on the CPU")
    parser.add_argument("--checkpoint", help="model file to load instead of test.model_file")
    parser.add_argument(
        "--object",
        action="append",
        metavar="NAME",
        help="mesh only this test object, <category>_<model> (repeatable)",
    )
    add_override_argument(parser, "generation.resolution_0=64")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing generation folder's files"
    )
    return parser.parse_args(argv)


def load_test_model(
    cfg: dict, given: str | None, dataset_size: int, device: torch.device
) -> tuple[torch.nn.Module, Path]:
    """The config's model with the weights of ``given`` or test.model_file (see
    resolve_model_file), on ``device`` in eval mode, and the file it came from."""
    model = build_model(cfg, dataset_size=dataset_size)
    checkpoint = resolve_model_file(cfg, given)
    load_model_weights(model, checkpoint)
    return model.to(device).eval(), checkpoint


def category_names(dataset, category_id: str) -> tuple[str, str]:
    """(class name, vis folder name) of a category, as the authors name them."""
    name = dataset.metadata.get(category_id, {}).get("name", "n/a")
    folder = category_id if name == "n/a" else f"{category_id}_{name.split(',')[0]}"
    return name, folder


def copy_input(data: dict, input_type: str | None, folder: Path, model_name: str) -> Path | None:
    """Write the network's input beside the meshes: image -> PNG, point cloud -> PLY,
    voxels -> OFF of the voxels' surface. Returns the file, or None for other inputs."""
    if "inputs" not in data:
        return None
    inputs = torch.as_tensor(data["inputs"]).detach().cpu()
    if input_type == "img":
        path = folder / f"{model_name}.png"
        write_image(path, inputs.permute(1, 2, 0).numpy())
    elif input_type == "pointcloud":
        path = folder / f"{model_name}.ply"
        write_ply(path, inputs.numpy().astype(np.float32))
    elif input_type == "voxels":
        path = folder / f"{model_name}.off"
        write_off(path, voxel_surface(inputs.numpy() >= 0.5))
    else:
        return None
    return path


def voxel_surface(occupied: np.ndarray) -> TriMesh:
    """The boundary squares of occupied voxels as a closed, outward-oriented triangle mesh.

    Args:
        occupied: (X, Y, Z) bool; voxel (i, j, k) spans [i / X - 0.5, (i + 1) / X - 0.5] in x,
            and likewise in y and z (the unit box centred at the origin, as ONet's voxel inputs).

    Returns:
        TriMesh: two triangles per boundary square, shared vertices, float64 coordinates.
    """
    padded = np.pad(occupied, 1)
    squares = []
    for axis in range(3):
        b, c = (axis + 1) % 3, (axis + 2) % 3
        # Index [plane along axis, cell along b, cell along c]; (axis, b, c) is right-handed.
        cells = np.moveaxis(padded, (axis, b, c), (0, 1, 2))[:, 1:-1, 1:-1]
        before, after = cells[:-1], cells[1:]
        for outward_positive, mask in ((True, before & ~after), (False, ~before & after)):
            plane, j, k = np.nonzero(mask)
            # Counter-clockwise seen from +axis; reversed for squares facing -axis.
            offsets = [(0, 0), (1, 0), (1, 1), (0, 1)]
            corners = np.zeros((len(plane), 4, 3), dtype=np.int64)
            for n, (dj, dk) in enumerate(offsets if outward_positive else offsets[::-1]):
                corners[:, n, axis], corners[:, n, b], corners[:, n, c] = plane, j + dj, k + dk
            squares.append(corners)
    corners = np.concatenate(squares)
    lattice, index = np.unique(corners.reshape(-1, 3), axis=0, return_inverse=True)
    index = index.reshape(-1, 4)
    faces = np.concatenate([index[:, [0, 1, 2]], index[:, [0, 2, 3]]])
    return TriMesh(lattice / np.asarray(occupied.shape) - 0.5, faces)


def copy_file(source: Path, target: Path) -> None:
    with atomic_write(target, "wb") as handle:
        handle.write(source.read_bytes())


class Generation:
    """The authors' generation loop over the test split, writing into ``generation_dir``."""

    def __init__(self, cfg: dict, dataset, generator, generation_dir: Path):
        self.cfg, self.dataset, self.generator = cfg, dataset, generator
        self.generation_dir = generation_dir
        vis_n = cfg["generation"]["vis_n_outputs"]
        self.vis_n_outputs = -1 if vis_n is None else int(vis_n)
        self.vis_count: dict[str, int] = defaultdict(int)
        self.missing_groundtruth: list[Path] = []

    def run(self) -> list[dict]:
        """Generate every object; returns the per-object timing rows."""
        rows = []
        for idx in progress(range(len(self.dataset)), desc="generate", unit="mesh"):
            rows.append(self.generate_one(idx))
        return rows

    def generate_one(self, idx: int) -> dict:
        info = self.dataset.model_info(idx)
        category, model_name = info["category"], info["model"]
        class_name, vis_folder = category_names(self.dataset, category)
        data = self.dataset[idx]
        row = {"idx": idx, "class id": category, "class name": class_name, "modelname": model_name}
        batch = {"inputs": torch.as_tensor(data["inputs"])[None]} if "inputs" in data else {}
        start = time.time()
        mesh, stats = self.generator.generate_mesh(batch)
        row["mesh"] = time.time() - start
        row.update(stats)
        outputs = {"mesh": self.generation_dir / "meshes" / category / f"{model_name}.off"}
        write_off(outputs["mesh"], mesh)
        if self.cfg["generation"]["copy_input"]:
            folder = self.generation_dir / "input" / category
            copied = copy_input(data, self.cfg["data"]["input_type"], folder, model_name)
            if copied is not None:
                outputs["in"] = copied
        if self.cfg["generation"]["copy_groundtruth"]:
            self.add_groundtruth(outputs, category, model_name)
        self.copy_to_vis(outputs, category, vis_folder)
        return row

    def add_groundtruth(self, outputs: dict, category: str, model_name: str) -> None:
        data = self.cfg["data"]
        path = Path(data["path"]) / category / model_name / data["watertight_file"]
        if path.is_file():
            outputs["gt"] = path
        else:
            self.missing_groundtruth.append(path)

    def copy_to_vis(self, outputs: dict, category: str, vis_folder: str) -> None:
        """Copies of the first vis_n_outputs objects' files per category, as NN_<kind>.<ext>."""
        count = self.vis_count[category]
        if count < self.vis_n_outputs:
            for kind, path in outputs.items():
                target = (
                    self.generation_dir / "vis" / vis_folder / f"{count:02d}_{kind}{path.suffix}"
                )
                copy_file(path, target)
        self.vis_count[category] += 1


def write_timings(generation_dir: Path, rows: list[dict]) -> list[dict]:
    """time_generation_full.pkl/.csv (per object) and time_generation.pkl (per class, with the
    mean row); returns the per-class table."""
    write_pickle(generation_dir / "time_generation_full.pkl", rows)
    write_csv(generation_dir / "time_generation_full.csv", rows)
    table = class_means(rows)
    write_pickle(generation_dir / "time_generation.pkl", table)
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.set)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    out_dir = Path(cfg["training"]["out_dir"])
    generation_dir = out_dir / cfg["generation"]["generation_dir"]
    dataset = build_dataset(cfg, "test", return_idx=True, return_category=True)
    model, checkpoint = load_test_model(cfg, args.checkpoint, len(dataset), device)
    if args.object:
        dataset = ObjectSubset(dataset, [find_object(dataset, name) for name in args.object])
        for info in map(dataset.model_info, range(len(dataset))):
            mesh = generation_dir / "meshes" / info["category"] / f"{info['model']}.off"
            check_can_write(mesh, args.overwrite)
        generation_dir.mkdir(parents=True, exist_ok=True)
        cfg["generation"]["vis_n_outputs"] = 0  # vis/ numbers a whole split's objects
    else:
        prepare_output_dir(generation_dir, args.overwrite)
    generator = get_generator(model, cfg, device)
    if cfg["generation"]["generate_pointcloud"]:
        print(
            "note: generation.generate_pointcloud is ignored: ONet's generator makes meshes only",
            file=sys.stderr,
        )
    print(f"{len(dataset)} test objects, checkpoint {checkpoint}, output {generation_dir}")
    generation = Generation(cfg, dataset, generator, generation_dir)
    rows = generation.run() if cfg["generation"]["generate_mesh"] else []
    if generation.missing_groundtruth:
        print(
            f"warning: {len(generation.missing_groundtruth)} ground-truth meshes not found for "
            f"copy_groundtruth (e.g. {generation.missing_groundtruth[0]})",
            file=sys.stderr,
        )
    if rows:
        print("Timings [s]:")
        # The timing files describe a whole split: a few objects leave an earlier run's in place.
        table = class_means(rows) if args.object else write_timings(generation_dir, rows)
        print(format_table(table))
    return 0


if __name__ == "__main__":
    run_main(main)
