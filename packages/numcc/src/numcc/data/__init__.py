"""The datasets of a run, from the original's flags: CO3D v2 (``--co3d_path``, ``--one_class``,
``--holdout_categories``) or Hypersim (``--use_hypersim --hypersim_path``)."""

from __future__ import annotations

from pathlib import Path

from geomkit.errors import InputError
from numcc.data.co3d import HOLDOUT_CATEGORIES, CO3DV2Dataset, co3d_categories
from numcc.data.hypersim import HypersimDataset


def split_categories(categories: list[str], holdout: bool) -> tuple[list[str], list[str]]:
    """Training and evaluation categories: the same ones, or with --holdout_categories the
    original's ten held out of training and evaluated."""
    if not holdout:
        return categories, categories
    train = [c for c in categories if c not in HOLDOUT_CATEGORIES]
    held = [c for c in categories if c in HOLDOUT_CATEGORIES]
    if not train or not held:
        raise InputError(
            f"--holdout_categories needs categories on both sides; found {categories}, held out "
            f"are {sorted(HOLDOUT_CATEGORIES)}"
        )
    return train, held


def hypersim_gt_file(args, split: str) -> Path:
    """hypersim_gt_<split>.pt in --hypersim_path, else here (where the original writes it)."""
    name = f"hypersim_gt_{split}.pt"
    for candidate in (Path(args.hypersim_path) / name, Path(name)):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{name} not found in {args.hypersim_path} or here: run python -m numcc.prepare_hypersim"
    )


def build_datasets(args, training: bool = True):
    """(training set, evaluation set) of the run; the training set is None when not
    ``training`` (evaluation needs only its own files, unlike the original)."""
    if args.use_hypersim:
        root = Path(args.hypersim_path)
        train = None
        if training:
            gt_file = hypersim_gt_file(args, "train")
            train = HypersimDataset(root, gt_file, True, args.train_epoch_len_multiplier, args.seed)
        val = HypersimDataset(
            root, hypersim_gt_file(args, "val"), False, args.eval_epoch_len_multiplier, args.seed
        )
        return train, val
    root = Path(args.co3d_path)
    train_categories, val_categories = split_categories(
        co3d_categories(root, args.one_class), args.holdout_categories
    )
    common = {
        "subset": args.co3d_subset,
        "xyz_size": args.xyz_size,
        "frame_choice": args.eval_frame,
        "seed": args.seed,
        "xyz_size_hr": args.xyz_size_hr if args.hr else None,
    }
    train = None
    if training:
        train = CO3DV2Dataset(
            root,
            True,
            train_categories,
            epoch_len_multiplier=args.train_epoch_len_multiplier,
            **common,
        )
    val = CO3DV2Dataset(
        root, False, val_categories, epoch_len_multiplier=args.eval_epoch_len_multiplier, **common
    )
    return train, val
