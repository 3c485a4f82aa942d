"""project-noisypixel's HDF5 data: python -m onet.data_process on a tiny ShapeNet folder, its
layout checked with h5py/numpy/PIL directly, samples of data.dataset hdf5 equal to the folder
dataset's, the converter's fixes (failures left out, atomic files, no overwrite, seeded
subtrain), bad files as one line and exit 2, and a short training run on the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from geomkit.errors import run_main
from onet import data_process, eval_meshes, run_evals, train
from onet.config import load_config
from onet.data import build_dataset

SPLITS = ("train", "val", "test")


def convert(*argv: str, capsys=None) -> tuple[int, str, str]:
    """Run the converter as ``python -m`` does; (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(data_process.main, list(argv))
    out, err = capsys.readouterr() if capsys else ("", "")
    return exit_info.value.code, out, err


def error_lines(err: str) -> list[str]:
    """stderr without tqdm's progress bars."""
    lines = [part.strip() for line in err.splitlines() for part in line.split("\r")]
    return [line for line in lines if line and "object/s]" not in line]


@pytest.fixture(scope="module")
def hdf_data(tiny_shapenet, tmp_path_factory) -> Path:
    """The tiny dataset converted, with subtrain.lst (1 per class, seed 3)."""
    out = tmp_path_factory.mktemp("hdf5")
    status, _, _ = convert(
        "--dataroot", str(tiny_shapenet), "--output", str(out), "--subtrain", "1", "--seed", "3"
    )
    assert status == 0
    return out / "hdf_data"


def configs(shapenet: Path, hdf: Path, **data) -> tuple[dict, dict]:
    """The same small image config over the folder and over the HDF5 files."""
    pair = []
    for extra in ({"path": str(shapenet)}, {"path": str(hdf), "dataset": "hdf5"}):
        cfg = load_config("configs/img/onet.yaml")
        cfg["data"].update(img_size=32, points_subsample=64, voxels_file=None, **data, **extra)
        pair.append(cfg)
    return pair[0], pair[1]


def assert_same_samples(ours, theirs) -> None:
    assert [ours.model_info(i) for i in range(len(ours))] == [
        theirs.model_info(i) for i in range(len(theirs))
    ]
    assert ours.metadata == theirs.metadata and len(ours) > 0
    for idx in range(len(ours)):
        a, b = ours[idx], theirs[idx]
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert type(a[key]) is type(b[key]) and np.array_equal(a[key], b[key]), key


def test_layout_and_dtypes_are_theirs(tiny_shapenet, hdf_data):
    objects = sorted(p for p in tiny_shapenet.glob("*/*") if p.is_dir())
    assert len(objects) == 12
    for folder in objects:
        with h5py.File(hdf_data / f"{folder.parent.name}_{folder.name}.h5", "r") as handle:
            for group, npz in (("points", "points.npz"), ("pointcloud", "pointcloud.npz")):
                with np.load(folder / npz) as arrays:
                    assert set(handle[group]) == set(arrays.files)
                    for key in arrays.files:
                        stored = handle[f"{group}/{key}"]
                        assert stored.dtype == arrays[key].dtype and stored.compression is None
                        assert np.array_equal(stored[()], arrays[key])
            assert handle["points/occupancies"].dtype == np.uint8  # packed bits, as stored
            with np.load(folder / "img_choy2016" / "cameras.npz") as cameras:
                assert set(handle["camera"]) == set(cameras.files)
                for key in cameras.files:
                    assert np.array_equal(handle[f"camera/{key}"][()], cameras[key])
            assert handle["camera/world_mat_0"].shape == (3, 4)
            assert handle["camera/camera_mat_0"].shape == (3, 3)
            images = handle["images"]
            jpgs = sorted((folder / "img_choy2016").glob("*.jpg"))
            assert images.dtype == np.uint8 and images.shape[0] == len(jpgs) == 24
            assert images.shape[3] == 3
            for k in (0, 7, 23):  # /images[k] is NNN.jpg number k
                assert jpgs[k].name == f"{k:03d}.jpg"
                assert np.array_equal(images[k], np.asarray(Image.open(jpgs[k]).convert("RGB")))
    for split in SPLITS:
        expected = [
            f"{synset.name}_{model}.h5"
            for synset in sorted(p for p in tiny_shapenet.iterdir() if p.is_dir())
            for model in (synset / f"{split}.lst").read_text().split()
        ]
        assert (hdf_data / f"{split}.lst").read_text() == "\n".join(expected)
    assert (hdf_data / "metadata.yaml").read_bytes() == (
        tiny_shapenet / "metadata.yaml"
    ).read_bytes()
    assert not list(hdf_data.glob(".*")), "no temporary files left"


@pytest.mark.parametrize("mode", SPLITS)
def test_samples_equal_the_folder_datasets(tiny_shapenet, hdf_data, mode):
    folder_cfg, hdf_cfg = configs(tiny_shapenet, hdf_data)
    ours = build_dataset(hdf_cfg, mode, return_idx=True, return_category=True, seed=5)
    theirs = build_dataset(folder_cfg, mode, return_idx=True, return_category=True, seed=5)
    for epoch in (0, 1):
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert_same_samples(ours, theirs)
    sample = ours[0]
    assert {"points", "points.occ", "inputs", "idx", "category"} <= set(sample)
    assert sample["inputs"].shape == (3, 32, 32) and sample["points"].shape == (64, 3)
    if mode != "train":
        assert sample["points_iou"].shape == (2000, 3)
    assert_same_samples(
        eval_meshes.evaluation_dataset(hdf_cfg), eval_meshes.evaluation_dataset(folder_cfg)
    )


def test_cameras_transforms_and_pointcloud_inputs_equal_too(tiny_shapenet, hdf_data):
    for data in ({"img_with_camera": True, "img_augment": True}, {"input_type": "pointcloud"}):
        folder_cfg, hdf_cfg = configs(tiny_shapenet, hdf_data, **data)
        for cfg in (folder_cfg, hdf_cfg):
            cfg["model"]["use_camera"] = True
        for mode in ("train", "val"):
            assert_same_samples(build_dataset(hdf_cfg, mode), build_dataset(folder_cfg, mode))


def test_gzip_files_read_the_same(tiny_shapenet, tmp_path, capsys):
    status, _, _ = convert(
        "--dataroot", str(tiny_shapenet), "--output", str(tmp_path), "--compression", "gzip"
    )
    assert status == 0
    some = sorted((tmp_path / "hdf_data").glob("*.h5"))[0]
    with h5py.File(some, "r") as handle:
        assert handle["images"].compression == "gzip"
        assert handle["images"].chunks == (1, *handle["images"].shape[1:])
        assert handle["points/points"].compression == "gzip"
    folder_cfg, hdf_cfg = configs(tiny_shapenet, tmp_path / "hdf_data")
    assert_same_samples(build_dataset(hdf_cfg, "val"), build_dataset(folder_cfg, "val"))


def test_subtrain_is_seeded_and_reproducible(tiny_shapenet, hdf_data, tmp_path):
    again = tmp_path / "again"
    args = ["--dataroot", str(tiny_shapenet), "--output", str(again), "--subtrain", "1"]
    assert convert(*args, "--seed", "3")[0] == 0
    subtrain = (hdf_data / "subtrain.lst").read_text().split("\n")
    assert (again / "hdf_data" / "subtrain.lst").read_text().split("\n") == subtrain
    train_entries = (hdf_data / "train.lst").read_text().split("\n")
    assert set(subtrain) <= set(train_entries) and len(subtrain) == 3
    assert sorted(entry.split("_")[0] for entry in subtrain) == ["00000001", "00000002", "00000003"]
    draws = set()
    for seed in range(8):
        assert convert(*args, "--seed", str(seed), "--overwrite")[0] == 0
        draws.add((again / "hdf_data" / "subtrain.lst").read_text())
    assert len(draws) > 1, "the seed changes the draw"
    _, cfg = configs(tiny_shapenet, hdf_data, train_split="subtrain")
    dataset = build_dataset(cfg, "train")
    assert [f"{m['category']}_{m['model']}.h5" for m in dataset.models] == subtrain


def test_failed_objects_are_reported_and_left_out_of_the_lists(tiny_shapenet, tmp_path, capsys):
    root = tmp_path / "ShapeNet"
    shutil.copytree(tiny_shapenet, root)
    (root / "00000001" / "sphere_0000" / "points.npz").unlink()
    (root / "00000002" / "box_0001" / "img_choy2016" / "003.jpg").write_bytes(b"not a jpeg")
    with open(root / "00000003" / "test.lst", "a") as handle:
        handle.write("\nghost\n")
    status, out, err = convert("--dataroot", str(root), "--output", str(tmp_path), capsys=capsys)
    assert status == 0
    failed = [line for line in error_lines(err) if line.startswith("failed:")]
    assert len(failed) == 3
    assert "00000001/sphere_0000" in failed[1] and "points.npz" in failed[1]
    assert "00000002/box_0001" in failed[2] and "003.jpg" in failed[2]
    assert "00000003/ghost" in failed[0] and "no such folder" in failed[0]
    assert "converted 10 of 12" in out and "3 failed" in out
    hdf = tmp_path / "hdf_data"
    listed = {e for s in SPLITS for e in (hdf / f"{s}.lst").read_text().split("\n")}
    assert len(listed) == 10 and not listed & {
        "00000001_sphere_0000.h5",
        "00000002_box_0001.h5",
        "00000003_ghost.h5",
    }
    assert all((hdf / name).is_file() for name in listed)
    assert not (hdf / "00000001_sphere_0000.h5").exists()
    assert len(list(hdf.glob("*.h5"))) == 10 and not list(hdf.glob(".*"))


def test_nothing_converted_is_exit_2(tmp_path, capsys):
    (tmp_path / "ShapeNet" / "00000001" / "empty_object").mkdir(parents=True)
    status, _, err = convert(
        "--dataroot", str(tmp_path / "ShapeNet"), "--output", str(tmp_path), capsys=capsys
    )
    lines = error_lines(err)
    assert status == 2 and lines[-1].startswith("error: no object of")
    assert not list((tmp_path / "hdf_data").glob("*.lst"))
    assert convert("--output", str(tmp_path))[0] == 2  # --dataroot is required (theirs: cwd)


def test_existing_outputs_are_not_overwritten(tiny_shapenet, hdf_data, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(hdf_data.parent, out)
    before = {p.name: p.read_bytes() for p in (out / "hdf_data").iterdir()}
    (out / "hdf_data" / "train.lst").write_text("mine")
    before["train.lst"] = b"mine"
    status, _, err = convert("--dataroot", str(tiny_shapenet), "--output", str(out), capsys=capsys)
    assert status == 2 and len(error_lines(err)) == 1 and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in (out / "hdf_data").iterdir()} == before
    assert convert("--dataroot", str(tiny_shapenet), "--output", str(out), "--overwrite")[0] == 0
    assert (out / "hdf_data" / "train.lst").read_text() == (hdf_data / "train.lst").read_text()


def test_an_interrupted_write_leaves_no_final_named_file(tiny_shapenet, tmp_path, monkeypatch):
    calls = []
    storage = data_process.storage

    def interrupt_mid_file(array, compression, chunks=None):
        calls.append(1)
        if len(calls) == 2 * 57 + 10:  # inside the 3rd file (/images, 48 cameras, 4 + 4 arrays)
            raise KeyboardInterrupt
        return storage(array, compression, chunks)

    monkeypatch.setattr(data_process, "storage", interrupt_mid_file)
    assert convert("--dataroot", str(tiny_shapenet), "--output", str(tmp_path))[0] == 130
    hdf = tmp_path / "hdf_data"
    names = sorted(p.name for p in hdf.iterdir())
    assert names == ["00000001_sphere_0000.h5", "00000001_sphere_0001.h5"], "no temp, no lists"
    with h5py.File(hdf / names[1], "r") as handle:
        assert handle["pointcloud/points"].shape == (1000, 3)


def break_group(path: Path) -> str:
    with h5py.File(path, "a") as handle:
        del handle["pointcloud"]
    return "/pointcloud: no such group"


def break_shape(path: Path) -> str:
    with h5py.File(path, "a") as handle:
        points = handle["points/points"][:, :2]
        del handle["points/points"]
        handle["points/points"] = points
    return "array 'points' has shape (2000, 2), expected (?, 3)"


def truncate(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "cannot be opened as HDF5"


def remove(path: Path) -> str:
    path.unlink()
    return "not found (it is named in the split list)"


@pytest.mark.parametrize("damage", [break_group, break_shape, truncate, remove])
def test_bad_files_are_one_line_and_exit_2(hdf_data, tmp_path, capsys, damage):
    hdf = tmp_path / "hdf_data"
    shutil.copytree(hdf_data, hdf)
    victim = hdf / (hdf / "test.lst").read_text().split("\n")[1]
    expected = damage(victim)
    sets = [f"data.path={hdf}", "data.dataset=hdf5", "data.voxels_file=null"]
    sets.append(f"training.out_dir={tmp_path / 'out'}")
    argv = ["configs/img/onet.yaml", *[a for s in sets for a in ("--set", s)]]
    with pytest.raises(SystemExit) as exit_info:
        run_main(eval_meshes.main, argv)
    lines = error_lines(capsys.readouterr().err)
    assert exit_info.value.code == 2 and len(lines) == 1
    assert str(victim) in lines[0] and expected in lines[0]


def test_bad_images_and_voxels_config_are_one_line_and_exit_2(hdf_data, tmp_path, capsys):
    hdf = tmp_path / "hdf_data"
    shutil.copytree(hdf_data, hdf)
    victim = hdf / (hdf / "val.lst").read_text().split("\n")[0]
    with h5py.File(victim, "a") as handle:
        grey = handle["images"][..., 0]
        del handle["images"]
        handle["images"] = grey
    _, cfg = configs(hdf, hdf)

    def build_val(argv) -> None:
        build_dataset(cfg, "val")

    for voxels, message in ((None, f"{victim}:/images"), ("model.binvox", "data.voxels_file")):
        cfg["data"]["voxels_file"] = voxels
        with pytest.raises(SystemExit) as exit_info:
            run_main(build_val)
        lines = error_lines(capsys.readouterr().err)
        assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0]


def test_training_runs_on_the_hdf5_folder(hdf_data, tmp_path):
    out = tmp_path / "run"
    sets = [
        "data.dataset=hdf5",
        f"data.path={hdf_data}",
        "data.voxels_file=null",
        "data.img_size=32",
        "model.c_dim=32",
        "model.decoder_kwargs.hidden_size=32",
        "training.batch_size=2",
        "training.num_workers=2",  # workers open the files themselves
        "training.validate_every=2",
        f"training.out_dir={out}",
    ]
    argv = ["configs/img/onet.yaml", "--no-cuda", "--no-pretrained", "--max-iterations", "3"]
    assert train.main([*argv, *[a for s in sets for a in ("--set", s)]]) == 0
    assert (out / "model.pt").is_file() and (out / "model_best.pt").is_file()


def test_their_commands_train_and_evaluate_on_the_converted_folder(hdf_data, tmp_path):
    """Their flags only (no config file): the HDF5 folder selects their preset."""
    small = ["data.img_size=32", "training.num_workers=0", "training.validate_every=0"]
    sets = [a for s in small for a in ("--set", s)]
    argv = ["--data_root", str(hdf_data), "--encoder", "resnet-18", "--decoder", "decoder-cbn"]
    argv += ["--cdim", "16", "--hdim", "16", "--batch_size", "2", "--output_path", str(tmp_path)]
    assert train.main([*argv, "--exp_name", "run", "--no-cuda", "--no-pretrained", *sets,
                       "--max-iterations", "3"]) == 0  # fmt: skip
    checkpoint = tmp_path / "run" / "model.pt"
    assert torch.load(checkpoint, weights_only=True)["it"] == 3
    fast = ["generation.resolution_0=16", "generation.upsampling_steps=1", *small]
    evals = [*argv, "--exp_name", "run", "--checkpoint", str(checkpoint), "--no-cuda"]
    evals += ["--num-objects", "2", *[a for s in fast for a in ("--set", s)]]
    assert run_evals.main(evals) == 0
    rows = (tmp_path / "run" / "run_evals" / "eval_full.csv").read_text().splitlines()
    assert len(rows) == 3 and "iou (mesh)" in rows[0]  # header + 2 objects
