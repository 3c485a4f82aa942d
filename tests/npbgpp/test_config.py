"""The authors' README overrides compose unchanged; mistakes are one-line config errors."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from geomkit.errors import ConfigError
from npbgpp.config import CONFIG_DIR, enter_run_dir, load_config

# The README's commands (rakhimovv/npbgpp), after `python train_net.py`, as a shell passes them.
README = {
    "eval": r"trainer.gpus=1 hydra.run.dir=experiments/npbgpp_eval_scan118 datasets=dtu_one_scene "
    r"datasets.data_root=$\{hydra:runtime.cwd\}/example/DTU_masked datasets.scene_name=scan118 "
    r"system=npbgpp_sphere system.visibility_scale=1.0 "
    r"weights_path=./checkpoints/npbgpp_dtu_nm_mvs_ft_epoch35.ckpt eval_only=true dataloader=small",
    "coefficients_ft": r"trainer.gpus=1 hydra.run.dir=experiments/npbgpp_5ae021f2805c0854_ft "
    r"datasets=h3ds_one_scene datasets.data_root=$\{hydra:runtime.cwd\}/example/H3DS "
    r"datasets.selection_count=0 datasets.train_num_samples=2000 datasets.train_image_size=null "
    r"datasets.train_random_shift=false datasets.train_random_zoom=[0.5,2.0] "
    r"datasets.scene_name=5ae021f2805c0854 system=coefficients_ft system.max_points=1e6 "
    r"system.descriptors_save_dir=$\{hydra:run.dir\}/descriptors trainer.max_epochs=20 "
    r"system.descriptors_pretrained_dir=experiments/npbgpp_eval_5ae021f2805c0854/descriptors "
    r"weights_path=$\{hydra:runtime.cwd\}/checkpoints/npbgpp_h3ds.ckpt dataloader=small",
    "pretrain": "trainer.gpus=4 hydra.run.dir=experiments/npbgpp_scannet datasets=scannet_pretrain "
    "datasets.n_point=6e6 system=npbgpp_sphere system.visibility_scale=0.5 trainer.max_epochs=39 "
    "dataloader.train_data_mode=each trainer.reload_dataloaders_every_n_epochs=1",
    "npbg": "trainer.gpus=4 hydra.run.dir=experiments/npbg_dtu_nm_scan110 datasets=dtu_one_scene "
    "datasets.scene_name=scan110 datasets.train_random_zoom=[0.5,2.0] "
    "datasets.train_image_size=512 datasets.selection_count=0 system=npbg "
    "system.descriptors_save_dir=experiments/npbg_dtu_nm_scan110/result/descriptors "
    "system.max_scenes_per_train_epoch=1 trainer.max_epochs=20 "
    "weights_path=experiments/npbg_dtu_nm/result/checkpoints/epoch35.ckpt system.max_points=3e6",
}


def overrides(command: str) -> list[str]:
    return shlex.split(command)


def test_readme_eval_command_composes_with_hydra_interpolations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = load_config(overrides(README["eval"]))
    cfg = run.cfg
    assert cfg.eval_only is True and cfg.trainer.gpus == 1
    assert cfg.datasets.type == "dtu" and cfg.datasets.scene_name == "scan118"
    assert Path(cfg.datasets.data_root) == tmp_path / "example" / "DTU_masked"
    assert cfg.datasets.test_scenes == ["scan118"]
    assert cfg.datasets.holdout_indices == [7, 12, 17, 22, 27, 32, 37, 42, 47]
    assert cfg.dataloader.train_data_mode == "each" and cfg.dataloader.test.total_batch_size == 1
    assert cfg.system.system_class == "npbgpp" and cfg.system.aggregator.m == 6
    assert cfg.system.rasterizer.descriptor_dim == 8
    assert run.folder == Path("experiments/npbgpp_eval_scan118")
    assert (
        run.absolute(cfg.weights_path) == tmp_path / "checkpoints/npbgpp_dtu_nm_mvs_ft_epoch35.ckpt"
    )


def test_readme_fine_tuning_command_resolves_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides(README["coefficients_ft"])).cfg
    assert cfg.system.descriptors_save_dir == "experiments/npbgpp_5ae021f2805c0854_ft/descriptors"
    assert cfg.datasets.train_image_size is None and cfg.datasets.train_random_zoom == [0.5, 2.0]
    assert cfg.system.max_points == 1e6 and cfg.system.loss_factors.vgg_loss == 1e-7
    assert cfg.weights_path == str(tmp_path / "checkpoints/npbgpp_h3ds.ckpt")


@pytest.mark.parametrize("name", ["pretrain", "npbg"])
def test_readme_training_commands_compose(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides(README[name])).cfg
    assert cfg.trainer.gpus == 4
    if name == "pretrain":
        assert len(cfg.datasets.train_scenes) == 78 and cfg.datasets.n_point == 6e6
        assert cfg.trainer.reload_dataloaders_every_n_epochs == 1
    else:
        assert cfg.system.system_class == "npbg" and cfg.system.rasterizer.learnable is True
        assert cfg.system.align_during_rendering is False


def test_every_config_group_option_composes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datasets = sorted(p.stem for p in (CONFIG_DIR / "datasets").glob("*.yaml"))
    systems = sorted(p.stem for p in (CONFIG_DIR / "system").glob("*.yaml"))
    assert len(datasets) == 10 and len(systems) == 5
    pairs = [(d, "npbgpp_sphere") for d in datasets] + [("dtu_one_scene", s) for s in systems]
    for dataset, system in pairs:
        cfg = load_config([f"datasets={dataset}", f"system={system}"]).cfg
        assert cfg.datasets.type in {"dtu", "h3ds", "blender", "colmap", "scannet", "ngp"}
        assert cfg.system.descriptor_dim in (3, 8)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["datasets=dtu_one_scene", "system=npbgpp_sphere", "system.foo=1"], "system.foo"),
        (["datasets=dtu_one_scene", "system=nope"], "system/nope"),
        (["datasets=dtu_one_scene"], "system"),
        (["datasets=dtu_one_scene", "system=npbg", "trainer.gpus=[1"], "[1"),
    ],
)
def test_config_mistakes_are_one_line_config_errors(bad, message):
    with pytest.raises(ConfigError, match="configuration") as error:
        load_config(bad)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_run_dir_is_entered_and_config_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = load_config(["datasets=dtu_one_scene", "system=npbg", "hydra.run.dir=exp/a"])
    folder = enter_run_dir(run)
    assert folder == tmp_path / "exp" / "a" and Path(os.getcwd()) == folder
    saved = (folder / ".hydra" / "config.yaml").read_text()
    assert "system_class: npbg" in saved and "hydra" not in saved.split("\n")[0]
