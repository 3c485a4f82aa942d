"""Checkpoints in the authors' Lightning layout: a file laid out like
``npbgpp_dtu_nm_mvs_ft_epoch35.ckpt`` loads strictly with weights_only; a wrong key is an error
that lists it (the original's bare ``except`` swallowed it), one line and exit 2 from the
command line; what we write is that layout and reads back the same."""

from __future__ import annotations

import collections
import functools
import sys
import types

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from geomkit.errors import CheckpointError, run_main
from npbgpp import checkpoints
from npbgpp.config import load_config
from npbgpp.synthetic import cached_scene
from npbgpp.system import NPBGPlusPlus
from npbgpp.train_net import main

# the top-level modules of the authors' NPBG++ state dict (reference section 2)
AUTHORS_PREFIXES = {"rgb_converter", "rasterizer", "refiner", "feature_extractor", "aggregator"}
MODEL_CHECKPOINT = "pytorch_lightning.callbacks.model_checkpoint"


class fake_lightning_module:  # noqa: N801 - read as a phrase: with fake_lightning_module() as cls
    """``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint`` importable while a
    checkpoint is pickled (pickle names classes by module and attribute); removed after."""

    def __enter__(self):
        parts = MODEL_CHECKPOINT.split(".")
        self.added = [".".join(parts[: i + 1]) for i in range(len(parts))]
        assert not any(name in sys.modules for name in self.added), "Lightning is imported"
        for name in self.added:
            sys.modules[name] = types.ModuleType(name)
        cls = type("ModelCheckpoint", (), {"__module__": MODEL_CHECKPOINT})
        sys.modules[MODEL_CHECKPOINT].ModelCheckpoint = cls
        return cls

    def __exit__(self, *exc):
        for name in self.added:
            sys.modules.pop(name, None)


def npbgpp_config() -> DictConfig:
    return load_config(["datasets=dtu_one_scene", "system=npbgpp_sphere"]).cfg


@functools.lru_cache(maxsize=2)
def seeded_state(seed: int) -> dict[str, torch.Tensor]:
    """The saved state dict of an NPBG++ built after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return checkpoints.saved_state_dict(NPBGPlusPlus(npbgpp_config().system, None))


def authors_checkpoint(path, epoch: int = 35, seed: int = 35, edit=None) -> dict:
    """Write a checkpoint laid out as the authors' ``npbgpp_dtu_nm_mvs_ft_epoch35.ckpt``
    (Lightning 1.4.8 through plain torch.save: ``hyper_parameters`` the Hydra config as an
    OmegaConf DictConfig, ``callbacks`` keyed by the ModelCheckpoint class) from a seeded NPBG++
    with random weights; ``edit(state_dict)`` may change the keys first. Returns the state dict."""
    cfg = npbgpp_config()
    state = dict(seeded_state(seed))
    if edit is not None:
        edit(state)
    with fake_lightning_module() as model_checkpoint:
        callback = {
            "monitor": None,
            "best_model_score": None,
            "best_model_path": "",
            "dirpath": "x",
        }
        torch.save(
            {
                "epoch": epoch,
                "global_step": 1000 * epoch,
                "pytorch-lightning_version": "1.4.8",
                "state_dict": state,
                "callbacks": {model_checkpoint: callback},
                "optimizer_states": [],
                "lr_schedulers": [],
                "hyper_parameters": cfg,
            },
            path,
        )
    return state


def test_authors_layout_loads_strictly_with_weights_only(tmp_path):
    path = tmp_path / "npbgpp_dtu_nm_mvs_ft_epoch35.ckpt"
    saved = authors_checkpoint(path)
    assert {k.split(".")[0] for k in saved} == AUTHORS_PREFIXES
    assert (
        "rasterizer.bg_feature" in saved and "feature_extractor.encoder.conv_stem.weight" in saved
    )
    # plain weights_only loading refuses it: the allow-list is what makes it readable
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)
    torch.manual_seed(1)  # a differently initialised system receives the weights
    system = NPBGPlusPlus(npbgpp_config().system, None)
    assert not torch.equal(system.refiner.final.weight, saved["refiner.final.weight"])
    checkpoint = checkpoints.load_weights(system, path)
    loaded = checkpoints.saved_state_dict(system)
    assert sorted(loaded) == sorted(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert checkpoint["epoch"] == 35 and checkpoint["global_step"] == 35000
    hyper = checkpoint["hyper_parameters"]
    assert isinstance(hyper, DictConfig) and hyper.system.aggregator.m == 6
    # OmegaConf's resolver cache (a defaultdict when pickled) is a defaultdict again
    assert isinstance(hyper._metadata.resolver_cache, collections.defaultdict)
    assert OmegaConf.to_container(hyper)["datasets"]["type"] == "dtu"
    (callback_class, state), *more = checkpoint["callbacks"].items()
    assert not more and callback_class is checkpoints.CallbackState
    assert state["best_model_path"] == ""


def drop_key(state):
    del state["aggregator.mlp.4.bias"]


def add_key(state):
    state["refiner.extra.weight"] = torch.zeros(1)


def reshape_key(state):
    state["rasterizer.bg_feature"] = torch.zeros(1, 9, 1, 1)


@pytest.fixture(scope="module")
def system() -> NPBGPlusPlus:
    return NPBGPlusPlus(npbgpp_config().system, None)


@pytest.mark.parametrize(
    "edit, named",
    [
        (drop_key, "aggregator.mlp.4.bias"),
        (add_key, "refiner.extra.weight"),
        (reshape_key, "rasterizer.bg_feature"),
    ],
)
def test_a_wrong_key_is_an_error_naming_it(edit, named, tmp_path, system):
    path = tmp_path / "wrong.ckpt"
    authors_checkpoint(path, edit=edit)
    before = {k: v.clone() for k, v in system.state_dict().items()}
    with pytest.raises(CheckpointError) as error:
        checkpoints.load_weights(system, path)
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message
    # nothing was loaded
    assert all(torch.equal(before[k], v) for k, v in system.state_dict().items())


def test_weights_path_with_a_missing_key_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    scene = cached_scene("dtu", views=16, image_size=(32, 32), n_points=3000)
    authors_checkpoint(tmp_path / "missing.ckpt", edit=drop_key)
    monkeypatch.chdir(tmp_path)
    args = [
        "hydra.run.dir=run",
        "datasets=dtu_one_scene",
        f"datasets.data_root={scene.parent}",
        f"datasets.scene_name={scene.name}",
        "datasets.val_indices=[5]",
        "datasets.holdout_indices=[3]",
        "system=npbgpp_sphere",
        f"weights_path={tmp_path / 'missing.ckpt'}",
        "eval_only=true",
        "lpips=none",
    ]
    with pytest.raises(SystemExit) as exit_:
        run_main(main, args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "missing" in lines[0] and "aggregator.mlp.4.bias" in lines[0]
    assert not (tmp_path / "run").exists()  # a failed start leaves no run folder


def test_written_checkpoint_has_the_lightning_layout_and_reads_back(tmp_path):
    cfg = npbgpp_config()
    torch.manual_seed(3)
    system = NPBGPlusPlus(cfg.system, None)
    optimizer = torch.optim.Adam(system.parameters(), lr=1e-4)
    path = checkpoints.write_checkpoint(
        tmp_path / "last.ckpt", system, 4, 40, [optimizer], cfg, resume={"seed": 1}
    )
    raw = torch.load(path, weights_only=True)  # plain containers: no allow-list needed
    assert set(raw) == {
        "epoch",
        "global_step",
        "pytorch-lightning_version",
        "state_dict",
        "callbacks",
        "optimizer_states",
        "lr_schedulers",
        "hyper_parameters",
        "npbgpp_resume",
    }
    assert raw["epoch"] == 4 and raw["global_step"] == 40
    assert raw["hyper_parameters"]["system"]["system_class"] == "npbgpp"
    assert {k.split(".")[0] for k in raw["state_dict"]} == AUTHORS_PREFIXES
    torch.manual_seed(4)
    other = NPBGPlusPlus(cfg.system, None)
    checkpoints.load_weights(other, path)
    a, b = checkpoints.saved_state_dict(system), checkpoints.saved_state_dict(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
