"""Convert ONet's ShapeNet folder into project-noisypixel's HDF5 files.

``python -m onet.data_process --dataroot DATASET --output OUT``: their
src/dataset/data_process.py, with the same flags and layout.

DATASET holds ``<synset>/`` folders (names containing "metadata" are skipped), each with
``{train,val,test}.lst`` and one folder per object holding points.npz, pointcloud.npz and
img_choy2016/ (NNN.jpg + cameras.npz). OUT/hdf_data/ gets, as the layout of
:mod:`onet.data.hdf5` describes:

- ``<synset>_<model>.h5`` per object: /images (its views as RGB uint8, grey repeated to 3
  channels), /camera/<every key of cameras.npz>, /points/<every key of points.npz>,
  /pointcloud/<every key of pointcloud.npz>, dtypes as stored (float16 points stay float16,
  occupancies stay packed bits);
- ``{train,val,test}.lst``: the converted objects of every ``<synset>/<split>.lst``, entries
  ``<synset>_<model>.h5`` joined by "\\n", synsets in sorted order;
- ``subtrain.lst`` with ``--subtrain N``: N objects per synset drawn from train.lst with
  ``--seed`` (their training reads it; their notebook drew it unseeded);
- ``metadata.yaml``, a copy of DATASET's, when it has one (class names for the tables; their
  loader does not read it).

Their loader reads these files as before (``--compression gzip`` too: h5py decompresses
transparently). Fixed from theirs: /images[k] is NNN.jpg number k in sorted order, so it lines
up with camera_mat_k (theirs took os.listdir order); an object that cannot be converted prints
one line naming it and why and is left out of the lists (theirs listed it anyway, and the
loader crashed on it later); every file is written under a temporary name and renamed when
complete, so an interrupted run never leaves a partial file under a final name (theirs skipped
such files on the next run); nothing existing is replaced without --overwrite (checked before
anything is written).

Exit status: 0 when at least one object was converted, even if others failed (the failures
are listed, with a count at the end, and the lists name only good files, so they are usable);
2 when nothing could be converted or the arguments are wrong.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
from tqdm import tqdm

from geomkit.errors import ArgumentParser, InputError, OutputExistsError, run_main
from geomkit.io import atomic_path, atomic_write, require_dir
from geomkit.log import progress
from onet.data.fields import POINTCLOUD_SPEC, POINTS_SPEC, ObjectFolder
from onet.data.hdf5 import object_file

SPLITS = ("train", "val", "test")
IMG_FOLDER = "img_choy2016"


class Object(NamedTuple):
    """One object folder of DATASET."""

    category: str
    model: str
    folder: Path

    @property
    def file_name(self) -> str:
        return object_file(self.category, self.model)


class Failure(NamedTuple):
    """An object left out, and why (one line)."""

    category: str
    model: str
    reason: str


def positive_int(text: str) -> int:
    """argparse type of --subtrain: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def parse_args(argv):
    parser = ArgumentParser(prog="python -m onet.data_process", description=__doc__.splitlines()[0])
    parser.add_argument("--dataroot", required=True, help="ONet's ShapeNet folder (<synset>/...)")
    parser.add_argument("--output", required=True, help="writes OUTPUT/hdf_data/")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--subtrain", type=positive_int, metavar="N", help="also write subtrain.lst: N per class"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --subtrain (default 0)")
    parser.add_argument(
        "--compression", choices=["gzip"], help="compress the datasets (default: none, as theirs)"
    )
    return parser.parse_args(argv)


def scan(dataroot: Path) -> tuple[list[Object], dict[str, dict[str, list[str]]]]:
    """Every object folder of every synset, and each synset's split lists (split -> synset ->
    model ids; a missing list counts as empty, with a warning)."""
    synsets = sorted(
        p.name
        for p in dataroot.iterdir()
        if p.is_dir() and "metadata" not in p.name and not p.name.startswith(".")
    )
    if not synsets:
        raise InputError(f"no <synset> folders in {dataroot} (--dataroot: ONet's ShapeNet folder)")
    objects, lists = [], {split: {} for split in SPLITS}
    for synset in synsets:
        folder = dataroot / synset
        models = sorted(
            p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        objects += [Object(synset, model, folder / model) for model in models]
        for split in SPLITS:
            lists[split][synset] = read_list(folder / f"{split}.lst")
    return objects, lists


def read_list(path: Path) -> list[str]:
    """The model ids of a split list; a missing list is empty (and says so)."""
    if not path.is_file():
        print(f"warning: {path} not found; no objects of that split", file=sys.stderr)
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_object(folder: Path) -> dict[str, dict[str, np.ndarray] | np.ndarray]:
    """The object's arrays, checked: group -> {key: array}, and 'images' (V, H, W, 3) uint8."""
    store = ObjectFolder(folder)
    return {
        "points": store.arrays("points.npz", POINTS_SPEC),
        "pointcloud": store.arrays("pointcloud.npz", POINTCLOUD_SPEC),
        "camera": store.arrays(f"{IMG_FOLDER}/cameras.npz", {}),
        "images": read_views(store),
    }


def read_views(store: ObjectFolder) -> np.ndarray:
    """All views in sorted file order, decoded as the folder dataset decodes them (PIL RGB)."""
    n_views = store.n_views(IMG_FOLDER, "jpg")
    if not n_views:
        raise InputError(f"no .jpg images in {store.where(IMG_FOLDER)}")
    views = [np.asarray(store.image(IMG_FOLDER, "jpg", view)) for view in range(n_views)]
    sizes = sorted({view.shape for view in views})
    if len(sizes) > 1:
        raise InputError(f"{store.where(IMG_FOLDER)}: views of different sizes {sizes}")
    return np.stack(views)


def write_object(path: Path, content: dict, compression: str | None) -> None:
    """The object's .h5 file, written under a temporary name and renamed when complete."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        images = content["images"]
        handle.create_dataset(
            "images", data=images, **storage(images, compression, (1, *images.shape[1:]))
        )
        for group in ("camera", "points", "pointcloud"):
            for key, array in content[group].items():
                handle.create_dataset(f"{group}/{key}", data=array, **storage(array, compression))


def storage(array: np.ndarray, compression: str | None, chunks=None) -> dict:
    """h5py dataset options: compression (with one view per chunk for /images, so a sample
    decompresses only its view); scalars and empty arrays cannot be compressed."""
    if compression is None or array.ndim == 0 or array.size == 0:
        return {}
    return {"compression": compression, **({"chunks": chunks} if chunks else {})}


def convert(objects: list[Object], out: Path, compression: str | None) -> list[Failure]:
    """Write every object's file; the objects that failed, each reported on one line."""
    failures = []
    for obj in progress(objects, desc="convert", unit="object"):
        try:
            write_object(out / obj.file_name, read_object(obj.folder), compression)
        except InputError as err:
            failures.append(Failure(obj.category, obj.model, str(err)))
            report(failures[-1])
    return failures


def report(failure: Failure) -> None:
    """One stderr line, printed above the progress bar."""
    tqdm.write(
        f"failed: {failure.category}/{failure.model}: {failure.reason}; left out of the lists",
        file=sys.stderr,
    )


def missing_folders(lists: dict[str, dict[str, list[str]]], objects: list[Object]) -> list[Failure]:
    """The listed objects that have no folder, once each."""
    present = {(obj.category, obj.model) for obj in objects}
    missing = {}
    for split, by_synset in lists.items():
        for synset, models in by_synset.items():
            for model in models:
                if (synset, model) not in present:
                    reason = f"named in {synset}/{split}.lst but there is no such folder"
                    missing.setdefault((synset, model), Failure(synset, model, reason))
    return list(missing.values())


def split_entries(
    lists: dict[str, dict[str, list[str]]], converted: set[tuple[str, str]]
) -> dict[str, list[str]]:
    """Each split's converted objects as file names, synsets in sorted order."""
    return {
        split: [
            object_file(synset, model)
            for synset, models in by_synset.items()
            for model in models
            if (synset, model) in converted
        ]
        for split, by_synset in lists.items()
    }


def subtrain(train: list[str], per_class: int, seed: int) -> list[str]:
    """``per_class`` entries of each synset of ``train`` (all when it has fewer), drawn with a
    generator seeded by (seed, synset): one class's draw does not depend on the others."""
    chosen = []
    for synset in sorted({entry.partition("_")[0] for entry in train}):
        mine = [entry for entry in train if entry.partition("_")[0] == synset]
        rng = np.random.default_rng([seed, zlib.crc32(synset.encode())])
        picks = rng.choice(len(mine), size=min(per_class, len(mine)), replace=False)
        chosen += [mine[i] for i in sorted(picks)]
    return chosen


def write_list(path: Path, entries: list[str]) -> None:
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(entries))


def check_outputs(paths: list[Path], overwrite: bool) -> None:
    """Refuse, before anything is written, to replace existing outputs without --overwrite."""
    existing = [path for path in paths if path.exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more outputs)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]} already exists{more}; pass --overwrite")


def write_lists(out: Path, entries: dict[str, list[str]], args, metadata: Path) -> None:
    """The split lists, subtrain.lst with --subtrain, and a copy of metadata.yaml."""
    for split, names in entries.items():
        write_list(out / f"{split}.lst", names)
    if args.subtrain:
        write_list(out / "subtrain.lst", subtrain(entries["train"], args.subtrain, args.seed))
    if metadata.is_file():
        with atomic_write(out / "metadata.yaml", "wb") as handle:
            handle.write(metadata.read_bytes())


def main(argv=None) -> int:
    args = parse_args(argv)
    dataroot = require_dir(args.dataroot, "--dataroot folder")
    out = Path(args.output) / "hdf_data"
    objects, lists = scan(dataroot)
    metadata = dataroot / "metadata.yaml"
    names = [obj.file_name for obj in objects] + [f"{split}.lst" for split in SPLITS]
    names += ["subtrain.lst"] * bool(args.subtrain) + ["metadata.yaml"] * metadata.is_file()
    check_outputs([out / name for name in names], args.overwrite)
    failures = missing_folders(lists, objects)
    for failure in failures:
        report(failure)
    out.mkdir(parents=True, exist_ok=True)
    failures += convert(objects, out, args.compression)
    converted = {(o.category, o.model) for o in objects} - {(f.category, f.model) for f in failures}
    if not converted:
        raise InputError(f"no object of {dataroot} could be converted (see the lines above)")
    write_lists(out, split_entries(lists, converted), args, metadata)
    failed = f"; {len(failures)} failed (listed above, left out of the lists)" if failures else ""
    print(f"converted {len(converted)} of {len(objects)} objects into {out}{failed}")
    return 0


if __name__ == "__main__":
    run_main(main)
