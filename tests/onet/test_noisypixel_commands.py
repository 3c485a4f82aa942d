"""project-noisypixel's commands on onet: their defaults, single-object meshing, run_evals."""

from __future__ import annotations

import csv

import pytest

from geomkit.errors import ConfigError
from onet import eval_meshes, generate, run_evals, train
from onet.config import load_config
from onet.data import build_dataset
from onet.data.subset import find_object, random_objects
from tests.helpers import assert_close
from tests.onet.conftest import TINY_MODEL, tiny_args
from tests.onet.noisypixel_layout import student_state, write_lightning_checkpoint

FAST_GENERATION = ["generation.resolution_0=16", "generation.upsampling_steps=1"]


def sets(*overrides: str) -> list[str]:
    return [arg for s in overrides for arg in ("--set", s)]


@pytest.fixture(scope="module")
def tiny_run(tiny_shapenet, tmp_path_factory):
    """A tiny image model trained for 5 iterations on the tiny dataset; its out_dir."""
    out = tmp_path_factory.mktemp("noisypixel") / "run"
    assert train.main([*tiny_args(tiny_shapenet, out), "--max-iterations", "5"]) == 0
    return out


def read_rows(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_their_names_or_hdf5_folder_select_their_defaults(tmp_path):
    args = train.parse_args(["--encoder", "efficientnet-b0", "--decoder", "decoder-cbn"])
    assert train.default_config(args) == train.NOISYPIXEL_CONFIG
    assert train.default_config(train.parse_args(["--encoder", "resnet18"])) == (
        train.DEFAULT_CONFIG
    )
    (tmp_path / "02691156_abc.h5").write_bytes(b"")
    args = train.parse_args(["--data_root", str(tmp_path)])
    assert train.default_config(args) == train.NOISYPIXEL_CONFIG
    cfg = train.configure(args)
    assert cfg["data"]["dataset"] == "hdf5" and cfg["data"]["path"] == str(tmp_path)

    cfg = load_config(train.NOISYPIXEL_CONFIG)
    theirs = {  # their src/utils Config and train.py defaults
        ("model", "encoder"): "efficientnet-b0",
        ("model", "decoder"): "decoder-cbn",
        ("model", "c_dim"): 128,
        ("data", "img_size"): 137,
        ("data", "points_subsample"): 1024,
        ("training", "learning_rate"): 3e-4,
        ("training", "batch_size"): 64,
        ("training", "model_selection_metric"): "loss",
    }
    for (section, key), value in theirs.items():
        assert cfg[section][key] == value, (section, key)
    assert cfg["model"]["decoder_kwargs"]["hidden_size"] == 128


def test_find_object_and_seeded_subsets(tiny_shapenet):
    cfg = load_config("configs/img/onet.yaml")
    cfg["data"]["path"] = str(tiny_shapenet)
    dataset = build_dataset(cfg, "test")
    info = dataset.model_info(1)
    for name in (f"{info['category']}_{info['model']}", f"{info['category']}/{info['model']}"):
        assert find_object(dataset, name) == 1
    with pytest.raises(Exception, match="no object called 'nope'"):
        find_object(dataset, "nope")
    first = random_objects(dataset, 2, seed=3).indices
    assert first == random_objects(dataset, 2, seed=3).indices and len(set(first)) == 2
    assert random_objects(dataset, 0, seed=3).indices == list(range(len(dataset)))


def test_generate_one_object_joins_the_folder_and_guards_its_mesh(tiny_shapenet, tiny_run):
    args = tiny_args(tiny_shapenet, tiny_run, *FAST_GENERATION)
    argv = [args[0], args[1], *args[3:], "--checkpoint", str(tiny_run / "model.pt")]
    cfg = load_config("configs/img/onet.yaml")
    cfg["data"]["path"] = str(tiny_shapenet)
    info = build_dataset(cfg, "test").model_info(0)
    name = f"{info['category']}_{info['model']}"
    assert generate.main([*argv, "--object", name]) == 0
    meshes = sorted((tiny_run / "generation" / "meshes").rglob("*.off"))
    assert [p.stem for p in meshes] == [info["model"]]
    assert not (tiny_run / "generation" / "time_generation_full.pkl").exists()
    with pytest.raises(Exception, match="--overwrite"):
        generate.main([*argv, "--object", name])
    with pytest.raises(Exception, match="no object called"):
        generate.main([*argv, "--object", "02691156_missing"])


def test_run_evals_scores_like_generate_plus_eval_meshes(tiny_shapenet, tiny_run, tmp_path):
    overrides = [*TINY_MODEL, f"data.path={tiny_shapenet}", *FAST_GENERATION]
    full = tmp_path / "full"
    onet_args = ["configs/img/onet.yaml", "--no-cuda", *sets(*overrides)]
    onet_args += sets(f"training.out_dir={full}")
    assert generate.main([*onet_args, "--checkpoint", str(tiny_run / "model.pt")]) == 0
    assert eval_meshes.main([onet_args[0], *onet_args[2:]]) == 0
    reference = {r["modelname"]: r for r in read_rows(full / "generation" / "eval_meshes_full.csv")}

    argv = ["--config", "configs/img/onet.yaml", "--no-cuda", "--checkpoint"]
    argv += [str(tiny_run / "model.pt"), "--num-objects", "2", "--seed", "1", *sets(*overrides)]
    argv += ["--output_path", str(tmp_path), "--exp_name", "evals"]
    assert run_evals.main(argv) == 0
    rows = read_rows(tmp_path / "evals" / "run_evals" / "eval_full.csv")
    assert len(rows) == 2
    for row in rows:
        ref = reference[row["modelname"]]
        for key in ("iou (mesh)", "accuracy (mesh)", "completeness (mesh)", "normals (mesh)"):
            assert_close(float(row[key]), float(ref[key]), rtol=1e-9, what=key)
        assert float(row["completeness_sq"]) == float(row["completeness2 (mesh)"])
        assert_close(
            float(row["chamfer-L1 x10 (mesh)"]), 10 * float(row["chamfer-L1 (mesh)"]), rtol=1e-12
        )
    table = read_rows(tmp_path / "evals" / "run_evals" / "eval.csv")
    assert table[-1]["class id"] == "mean" and len(table) == 3
    with pytest.raises(Exception, match="--overwrite"):
        run_evals.main(argv)


def test_run_evals_counts_empty_meshes(tiny_shapenet, tiny_run, tmp_path):
    overrides = [*TINY_MODEL, f"data.path={tiny_shapenet}", *FAST_GENERATION]
    argv = ["--config", "configs/img/onet.yaml", "--no-cuda", "--checkpoint"]
    argv += [str(tiny_run / "model.pt"), "--num-objects", "0", *sets(*overrides)]
    argv += sets("test.threshold=0.999999", f"training.out_dir={tmp_path}")
    assert run_evals.main(argv) == 0
    rows = read_rows(tmp_path / "run_evals" / "eval_full.csv")
    assert len(rows) == 3  # every test object, none dropped
    for row in rows:
        assert float(row["iou (mesh)"]) == 0.0
        assert_close(float(row["chamfer-L1 (mesh)"]), 3**0.5, rtol=1e-12)


def test_run_evals_takes_their_checkpoint_and_checks_their_flags(tiny_shapenet, tmp_path):
    ckpt = tmp_path / "epoch=131-step=63359.ckpt"
    state = student_state("resnet-18", "decoder-cbn", c=16, h=16)
    write_lightning_checkpoint(ckpt, state, old_lightning=True)
    overrides = [f"data.path={tiny_shapenet}", *FAST_GENERATION, "training.num_workers=0"]
    argv = ["--config", "configs/img/onet.yaml", "--no-cuda", "--checkpoint", str(ckpt)]
    argv += ["--num-objects", "1", *sets(*overrides), "--output_path", str(tmp_path)]
    assert run_evals.main([*argv, "--exp_name", "theirs", "--cdim", "16"]) == 0
    rows = read_rows(tmp_path / "theirs" / "run_evals" / "eval_full.csv")
    assert len(rows) == 1 and "iou (mesh)" in rows[0]
    with pytest.raises(ConfigError, match="--cdim 32 contradicts the checkpoint"):
        run_evals.main([*argv, "--exp_name", "other", "--cdim", "32"])
