"""numcc's parser has the original's flags and defaults (reference notes, section 3)."""

from __future__ import annotations

import pytest

from numcc.args import get_args_parser

REFERENCE_DEFAULTS = {  # ../shared/reference/numcc.md, section 3
    "batch_size": 16, "eval_batch_size": 2, "accum_iter": 8, "lr": None, "blr": 1e-4,
    "min_lr": 0.0, "warmup_epochs": 5, "epochs": 100, "weight_decay": 0.05, "drop_path": 0.1,
    "exp_name": "test", "resume": "", "start_epoch": 0, "seed": 0, "device": "cuda",
    "run_val": False, "run_viz": False, "debug": False, "max_n_viz_obj": 10, "fix": 0,
    "train_epoch_len_multiplier": 32, "eval_epoch_len_multiplier": 1,
    "co3d_path": "/mnt/cache_dataset/co3d_source/co3d/dataset", "holdout_categories": False,
    "use_hypersim": False, "hypersim_path": "hypersim_data", "one_class": "",
    "random_scale_delta": 0.2, "random_shift": 1.0, "random_rotate_degree": 180,
    "co3d_world_size": 3.0, "shrink_threshold": 10.0, "semisphere_size": 6.0, "n_queries": 550,
    "train_dist_threshold": 0.1, "eval_granularity": 0.1, "viz_granularity": 0.1,
    "eval_dist_threshold": 0.1, "eval_score_threshold": 0.4, "val_every": 5, "viz_every": 5,
    "save_every": 1, "print_every": 200, "n_groups": 200, "nneigh": 4, "nn_seen": 4,
    "xyz_size": 112, "hr": False, "xyz_size_hr": 224, "no_fine": 0, "geo": "udf",
    "reset_geo": False, "cd_norm": 1, "udf_threshold": 0.23, "udf_n_iter": 10, "repulsive": 1,
    "n_query_udf": 12000, "save_pc": False, "input_size": 224, "occupancy_weight": 1.0,
    "rgb_weight": 0.01, "clip_grad": 1.0, "num_workers": 8, "num_eval_workers": 4,
    "pin_mem": True,
}  # fmt: skip


def test_defaults_are_the_originals():
    args = get_args_parser().parse_args([])
    for name, value in REFERENCE_DEFAULTS.items():
        assert getattr(args, name) == value, name
    assert (args.model, args.repel, args.eval_frame) == ("numcc", "chunk", "crc32")


def test_the_authors_commands_parse():
    parse = get_args_parser().parse_args
    args = parse(["--exp_name", "numcc_udf", "--accum_iter", "8"])
    assert args.accum_iter == 8 and args.exp_name == "numcc_udf"
    args = parse(["--run_val", "--resume", "pretrained/udf-ep99.pth", "--n_query_udf", "48000"])
    assert args.run_val and args.n_query_udf == 48000
    args = parse(["--hr", "--xyz_size_hr", "224", "--nneigh", "12", "--nn_seen", "12"])
    assert args.hr and (args.nneigh, args.nn_seen) == (12, 12)
    args = parse(["--run_viz", "--one_class", "teddybear", "--save_pc", "--no_pin_mem"])
    assert args.run_viz and args.save_pc and args.one_class == "teddybear" and not args.pin_mem
    with pytest.raises(SystemExit) as exit_info:
        parse(["--geo", "sdf"])
    assert exit_info.value.code == 2
