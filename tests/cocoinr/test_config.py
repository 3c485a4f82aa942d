"""CoCo-INR's confs: the authors' keys and values (reference section 3), our defaults, ``--set``
overrides, unknown keys and syntax errors named, packaged confs found from any folder, and
``runconf.conf`` text that reads back as the same conf."""

from __future__ import annotations

import copy

import pytest
from pyhocon import ConfigFactory

from cocoinr.config import CONF_ROOT, load_conf, resolve_conf_path, to_hocon
from geomkit.errors import ConfigError

from ..helpers import assert_raises_naming

# Reference section 3, written out here independently of the conf files.
LATENT = {"depth": 3, "num_latents": 256, "latent_dim": 128, "latent_heads": 4,
          "latent_dim_head": 32, "cross_heads": 4, "cross_dim_head": 32,
          "decoder_ff": True}  # fmt: skip
DTU = {
    "train": {
        "expname": "dtu",
        "dataset_class": "datasets.scene_dataset.SceneDataset",
        "model_class": "model.coco.VolSDFNetworkPlusplus",
        "loss_class": "model.loss.VolSDFLoss",
        "learning_rate": 5.0e-4,
        "num_pixels": 1024,
        "checkpoint_freq": 1000,
        "plot_freq": 500,
        "split_n_pixels": 1024,
    },
    "plot": {"plot_nimgs": 1, "resolution": 256, "grid_boundary": [-1.5, 1.5]},
    "loss": {"eikonal_weight": 0.1, "rgb_loss": "torch.nn.L1Loss"},
    "dataset": {
        # the authors' "../data/dtu" is relative to their code/ folder; ours to where one runs
        "data_dir": "data/dtu",
        "img_res": [1200, 1600],
        "scan_id": "scan24",
        "num_views": 32,
    },
    "model": {
        "feature_vector_size": 256,
        "scene_bounding_sphere": 3.0,
        "vq_cfg": {
            "ckpt_path": "ckpts/model_16384x256_codebook.ckpt",  # authors: ../ckpts/...
            "n_embed": 16384,
            "embed_dim": 256,
            "state_dict": "state_dict",
        },
        "implicit_network": {
            "d_in": 3, "d_out": 1, "dims": [256, 256, 256, 256], "geometric_init": True,
            "bias": 0.6, "skip_in": [], "weight_norm": True, "multires": 6, **LATENT,
            "num_cross_depth": 1, "activation": "softplus",
        },
        "rendering_network": {
            "mode": "idr", "d_in": 9, "d_out": 3, "multires_view": 4, **LATENT,
            "num_cross_depth": 2, "activation": "gelu", "num_layers": 0, "hidden_dim": 0,
        },
        "density": {"params_init": {"beta": 0.1}, "beta_min": 1e-4},
        "ray_sampler": {
            "near": 0.0, "N_samples": 64, "N_samples_eval": 128, "N_samples_extra": 32,
            "eps": 0.1, "beta_iters": 10, "max_total_iters": 5,
            "N_samples_inverse_sphere": 32, "add_tiny": 1e-6,
        },
        "bg_network": {
            "feature_vector_size": 256,
            "implicit_network": {
                "d_in": 4, "d_out": 1, "dims": [256, 256, 256, 256], "geometric_init": False,
                "bias": 0.0, "skip_in": [], "weight_norm": False, "multires": 10, **LATENT,
                "num_cross_depth": 1, "activation": "softplus",
            },
            "rendering_network": {
                "mode": "nerf", "d_in": 3, "d_out": 3, "multires_view": 4, **LATENT,
                "num_cross_depth": 1, "activation": "gelu", "num_layers": 0, "hidden_dim": 0,
            },
        },
    },
}  # fmt: skip
# What bmvs.conf and h3ds.conf change (reference section 3; the authors' scan_id is "scan24"
# in all three, ours names a scene of each dataset).
OTHERS = {
    "bmvs.conf": {
        "train.expname": "bmvs",
        "train.dataset_class": "datasets.scene_dataset.SceneDataset_bmvs",
        "train.plot_freq": 2000,
        "dataset.data_dir": "data/bmvs",
        "dataset.img_res": [576, 768],
        "dataset.scan_id": "scan1",
    },
    "h3ds.conf": {
        "train.expname": "h3ds",
        "train.dataset_class": "datasets.scene_dataset.SceneDataset_h3ds",
        "train.plot_freq": 2000,
        "dataset.data_dir": "data/h3ds",
        "dataset.img_res": [512, 512],
        "dataset.scan_id": "1b2a8613401e42a8",
    },
}
# Our keys (confs/defaults.conf) with the values a conf without them gets.
OURS = {
    "train.seed": 0,
    "train.sched_decay_rate": 0.1,  # absent in the authors' confs: the original's default
    "train.warmup_iters": 0,
    "dataset.split_file": None,
    "dataset.train_views": None,
    "model.use_attention": True,
    "model.original_eikonal_bug": False,
}


def flatten(conf: dict, prefix: str = "") -> dict:
    """{"a.b.c": value}; values keep their types (True is not 1, 3.0 is not 3)."""
    out = {}
    for key, value in conf.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def typed(value):
    """A value with its type (and its items' types), so that True != 1 and 3.0 != 3."""
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def assert_same_conf(actual: dict, expected: dict) -> None:
    a, e = flatten(actual), flatten(expected)
    missing, extra = sorted(e.keys() - a.keys()), sorted(a.keys() - e.keys())
    differ = {k: (a[k], e[k]) for k in a.keys() & e.keys() if typed(a[k]) != typed(e[k])}
    assert not (missing or extra or differ), f"missing {missing}, extra {extra}, differ {differ}"


def test_dtu_conf_is_the_authors_plus_ours():
    conf = load_conf("dtu.conf")
    assert_same_conf(conf, {**flatten(DTU), **OURS})
    assert set(conf) == {"train", "plot", "loss", "dataset", "model"}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_bmvs_and_h3ds_differ_from_dtu_only_where_the_reference_says(name):
    conf = load_conf(name)
    assert_same_conf(conf, {**flatten(DTU), **OURS, **OTHERS[name]})
    dtu, other = flatten(load_conf("dtu.conf")), flatten(conf)
    assert {k for k, v in dtu.items() if typed(other[k]) != typed(v)} == set(OTHERS[name])


def test_defaults_fill_what_a_conf_lacks(tmp_path):
    path = tmp_path / "mine.conf"
    path.write_text("train { expname = mine }\nmodel { use_attention = false }\n")
    conf = load_conf(path)
    assert conf["train"] == {
        "seed": 0, "sched_decay_rate": 0.1, "warmup_iters": 0, "expname": "mine",
    }  # fmt: skip
    assert conf["dataset"] == {"split_file": None, "train_views": None}
    assert conf["model"] == {"use_attention": False, "original_eikonal_bug": False}
    assert flatten(load_conf(CONF_ROOT / "defaults.conf")) == OURS


def test_overrides_parse_hocon_values():
    conf = load_conf("dtu.conf", ["dataset.num_views=3", "dataset.train_views=[0,3,6]",
                                  "model.use_attention=false", "train.learning_rate=1e-3",
                                  "dataset.scan_id=scan37", "dataset.split_file=null",
                                  "model.implicit_network.dims=[64, 64]"])  # fmt: skip
    assert typed(conf["dataset"]["num_views"]) == ("int", 3)
    assert typed(conf["dataset"]["train_views"]) == typed([0, 3, 6])
    assert conf["model"]["use_attention"] is False
    assert typed(conf["train"]["learning_rate"]) == ("float", 1e-3)
    assert conf["dataset"]["scan_id"] == "scan37" and conf["dataset"]["split_file"] is None
    assert conf["model"]["implicit_network"]["dims"] == [64, 64]
    # Later overrides win, and the packaged file is untouched for the next load.
    conf = load_conf("dtu.conf", ["dataset.num_views=3", "dataset.num_views=8"])
    assert conf["dataset"]["num_views"] == 8
    assert load_conf("dtu.conf")["dataset"]["num_views"] == 32


def test_unknown_keys_are_named(tmp_path):
    typo = tmp_path / "typo.conf"
    typo.write_text('include "' + str(CONF_ROOT / "dtu.conf") + '"\ntrain.learning_rte = 1e-3\n')
    assert_raises_naming(ConfigError, lambda: load_conf(typo), "train.learning_rte", str(typo))
    nested = tmp_path / "nested.conf"
    nested.write_text("model { bg_network { implicit_network { dimz = [1] } } }\n")
    assert_raises_naming(ConfigError, lambda: load_conf(nested),
                         "model.bg_network.implicit_network.dimz")  # fmt: skip
    section = tmp_path / "section.conf"
    section.write_text("trian { seed = 1 }\n")
    assert_raises_naming(ConfigError, lambda: load_conf(section), "trian")
    named = {"train.learning_rte=1e-3": "train.learning_rte", "trian.seed=1": "trian",
             "model.implicit_network.dimz=[1]": "model.implicit_network.dimz"}  # fmt: skip
    for override, name in named.items():
        assert_raises_naming(ConfigError, lambda o=override: load_conf("dtu.conf", [o]), name)
    assert_raises_naming(ConfigError, lambda: load_conf("dtu.conf", ["train.seed"]), "train.seed")


def test_packaged_confs_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for given in ("./confs/dtu.conf", "confs/bmvs.conf", "h3ds.conf", "../code/confs/dtu.conf"):
        found = resolve_conf_path(given)
        assert found == CONF_ROOT / given.rsplit("/", 1)[-1] and found.is_file(), given
    assert load_conf("./confs/dtu.conf")["train"]["expname"] == "dtu"
    # A file that exists where the path points is taken first.
    (tmp_path / "confs").mkdir()
    (tmp_path / "confs" / "dtu.conf").write_text("train { expname = local }\n")
    assert resolve_conf_path("./confs/dtu.conf").samefile(tmp_path / "confs" / "dtu.conf")
    assert load_conf("./confs/dtu.conf")["train"]["expname"] == "local"
    assert_raises_naming(ConfigError, lambda: resolve_conf_path("./confs/nope.conf"), "nope.conf")


@pytest.mark.parametrize("text", ["train { expname = dtu\n", "train { expname = = }\n",
                                  "train { learning_rate 5e-4 ]\n"])  # fmt: skip
def test_syntax_errors_are_config_errors(tmp_path, text):
    path = tmp_path / "broken.conf"
    path.write_text(text)
    assert_raises_naming(ConfigError, lambda: load_conf(path), str(path))


@pytest.mark.parametrize("name", ["dtu.conf", "bmvs.conf", "h3ds.conf", "small.conf"])
def test_runconf_text_reads_back_as_the_same_conf(tmp_path, name):
    overrides = ["dataset.train_views=[0, 3, 6]", "dataset.split_file=splits/my split.toml"]
    conf = load_conf(name, overrides)
    original = copy.deepcopy(conf)
    text = to_hocon(conf)
    assert conf == original  # to_hocon does not change its argument
    assert ConfigFactory.parse_string(text).as_plain_ordered_dict() == conf
    path = tmp_path / "runconf.conf"
    path.write_text(text)
    reread = load_conf(path)  # what val_runner does with an experiment's runconf.conf
    assert_same_conf(reread, conf)
