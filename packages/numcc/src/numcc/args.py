"""Every flag of NU-MCC's parser_and_builder.py, with its default, plus the few this package
adds (marked "added"). Checkpoints store the parsed Namespace as ``args``, as the authors' do.

Inert in NU-MCC, kept so their commands parse: --input_size, --occupancy_weight, --rgb_weight,
--regress_color, --clip_grad (NU-MCC does not clip; MCC does), --job_dir, --output_dir,
--world_size, --local_rank, --dist_on_itp, --dist_url (torchrun's environment is used).
"""

from __future__ import annotations

from geomkit.errors import ArgumentParser

# (flag, default, type, help); type None = store_true.
FLAGS = [
    # model
    ("input_size", 224, int, "image size (inert: 224 or 800 px images are accepted)"),
    ("occupancy_weight", 1.0, float, "MCC's occupancy loss weight (inert in NU-MCC)"),
    ("rgb_weight", 0.01, float, "MCC's colour loss weight (inert in NU-MCC)"),
    ("drop_path", 0.1, float, "stochastic depth rate of the encoder"),
    ("regress_color", None, None, "MCC: regress colours instead of classifying (inert)"),
    # optimisation
    ("batch_size", 16, int, "batch per process"),
    ("eval_batch_size", 2, int, "evaluation batch per process (UDF evaluation uses 1)"),
    ("accum_iter", 8, int, "gradient accumulation steps"),
    ("lr", None, float, "absolute learning rate (default blr * effective batch / 512)"),
    ("blr", 1e-4, float, "base learning rate"),
    ("min_lr", 0.0, float, "cosine schedule floor"),
    ("warmup_epochs", 5, int, "linear warm-up epochs"),
    ("clip_grad", 1.0, float, "gradient clipping (MCC only; NU-MCC does not clip)"),
    ("weight_decay", 0.05, float, "AdamW weight decay (not on biases and norms)"),
    ("epochs", 100, int, "training epochs"),
    # job
    ("job_dir", "", str, "inert"),
    ("output_dir", "./output_dir", str, "inert: outputs go to experiments/<exp_name>"),
    ("exp_name", "test", str, "experiment folder under experiments/"),
    ("device", "cuda", str, "cuda or cpu (cpu when no GPU is visible)"),
    ("seed", 0, int, "random seed"),
    ("resume", "", str, "checkpoint to resume from or to evaluate"),
    ("start_epoch", 0, int, "first epoch (a resumed checkpoint sets it)"),
    ("num_workers", 8, int, "training data loader processes"),
    ("num_eval_workers", 4, int, "evaluation data loader processes"),
    ("world_size", 1, int, "inert (torchrun sets it)"),
    ("local_rank", -1, int, "inert (torchrun sets it)"),
    ("dist_on_itp", None, None, "inert"),
    ("dist_url", "env://", str, "inert"),
    # modes
    ("debug", None, None, "6 iterations per epoch"),
    ("run_viz", None, None, "visualise the first objects instead of training"),
    ("max_n_viz_obj", 10, int, "objects visualised per process"),
    ("run_val", None, None, "evaluate instead of training"),
    ("fix", 0, int, "deterministic frame in visualisation"),
    # data
    ("train_epoch_len_multiplier", 32, int, "training samples per sequence per epoch"),
    ("eval_epoch_len_multiplier", 1, int, "evaluation samples per sequence"),
    ("co3d_path", "/mnt/cache_dataset/co3d_source/co3d/dataset", str, "CO3D v2 root"),
    ("holdout_categories", None, None, "train on 41 categories, evaluate on the other 10"),
    ("one_class", "", str, "train and evaluate on one category"),
    ("use_hypersim", None, None, "Hypersim instead of CO3D"),
    ("hypersim_path", "hypersim_data", str, "folder of hypersim_gt_{train,val}.pt"),
    # augmentation and geometry
    ("random_scale_delta", 0.2, float, "per-axis scale in [1 - d, 1 + d]"),
    ("random_shift", 1.0, float, "shift in [-s, s] per axis"),
    ("random_rotate_degree", 180, int, "rotations about X, Y, Z in [-r, r] degrees"),
    ("co3d_world_size", 3.0, float, "queries and the evaluation grid span [-w, w]^3"),
    ("shrink_threshold", 10.0, float, "points beyond this radius are shrunk"),
    ("semisphere_size", 6.0, float, "Hypersim query half-ball radius"),
    ("n_queries", 550, int, "training queries per object"),
    ("train_dist_threshold", 0.1, float, "colour labels within this distance of the truth"),
    # evaluation
    ("eval_granularity", 0.1, float, "evaluation grid step"),
    ("viz_granularity", 0.1, float, "Hypersim visualisation grid step"),
    ("eval_score_threshold", 0.4, float, "occupancy threshold (--geo occ)"),
    ("eval_dist_threshold", 0.1, float, "precision / recall distance"),
    ("cd_norm", 1, int, "Chamfer norm of the anchor loss (1: Manhattan)"),
    # schedule
    ("print_every", 200, int, "iterations between log lines"),
    ("val_every", 5, int, "epochs between evaluations"),
    ("viz_every", 5, int, "epochs between visualisations"),
    ("save_every", 1, int, "epochs between checkpoints"),
    # model sizes
    ("n_groups", 200, int, "anchors (550 in the Hypersim checkpoint)"),
    ("nneigh", 4, int, "nearest anchors per query"),
    ("nn_seen", 4, int, "nearest seen pixels per query"),
    ("xyz_size", 112, int, "seen XYZ map size"),
    ("hr", None, None, "nearest seen pixels from a xyz_size_hr map"),
    ("xyz_size_hr", 224, int, "seen XYZ map size with --hr"),
    ("no_fine", 0, int, "1: no pixel tokens in the neighbourhood decoder"),
    ("geo", "udf", str, "udf (NU-MCC) or occ"),
    ("reset_geo", None, None, "re-initialise the geometry output channel"),
    # Repulsive UDF
    ("udf_threshold", 0.23, float, "candidate queries below this distance"),
    ("udf_n_iter", 10, int, "projection and repulsion iterations"),
    ("repulsive", 1, int, "1: push candidates apart, 0: plain projection"),
    ("n_query_udf", 12000, int, "queries per decoder pass"),
    ("save_pc", None, None, "write PLY files (and 5M visualisation queries)"),
]
CHOICES = {"geo": ["udf", "occ"], "repulsive": [0, 1]}
ADDED = [
    ("model", "numcc", str, "added: numcc or mcc", ["numcc", "mcc"]),
    (
        "repel",
        "chunk",
        str,
        "added: repulsion among a chunk's candidates (the original) or all",
        ["chunk", "all"],
    ),
    (
        "udf_final_projection",
        0,
        int,
        "added: 1 projects the points once more after the last push (onto the surface)",
        [0, 1],
    ),
    (
        "udf_push_spacing",
        0.0,
        float,
        "added: push in units of the candidates' mean spacing / this (0: the original's "
        "absolute push; 0.3 with --repel all --udf_final_projection 1 spreads points evenly)",
        None,
    ),
    (
        "eval_frame",
        "crc32",
        str,
        "added: evaluation frame by crc32 or Python's hash (the original; set PYTHONHASHSEED)",
        ["crc32", "python_hash"],
    ),
    ("co3d_subset", "fewview_dev", str, "added: CO3D set list", None),
    (
        "n_viz_queries",
        None,
        int,
        "added: random queries of --run_viz (default 216000, 5000000 with --save_pc)",
        None,
    ),
    (
        "model_size",
        None,
        str,
        "added: base (the published widths) or a reduced model for CPU runs (default: the "
        "checkpoint's, else base)",
        ["base", "small", "tiny"],
    ),
]


def get_args_parser(prog: str = "python -m numcc.main") -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description="NU-MCC and MCC: train, evaluate, visualise")
    for name, default, kind, text in FLAGS:
        if kind is None:
            parser.add_argument(f"--{name}", action="store_true", help=text)
        else:
            parser.add_argument(
                f"--{name}", default=default, type=kind, choices=CHOICES.get(name), help=text
            )
    parser.add_argument("--pin_mem", action="store_true", default=True, help="pinned memory")
    parser.add_argument("--no_pin_mem", action="store_false", dest="pin_mem")
    for name, default, kind, text, choices in ADDED:
        parser.add_argument(f"--{name}", default=default, type=kind, choices=choices, help=text)
    return parser
