"""Scenes and items per epoch, as the original's train_dataloader draws them."""

from __future__ import annotations

import pytest
import torch

from geomkit.errors import ConfigError
from npbgpp.schedule import epoch_items, epoch_scenes, rank_scenes


def test_epoch_scenes_walk_seeded_permutations_padded_like_the_original():
    first = torch.randperm(11, generator=torch.Generator().manual_seed(123)).tolist()
    padded = first + first[:3]  # the original pads with n % per_epoch = 3 repeats: 14 scenes
    assert [epoch_scenes(11, 4, e) for e in range(4)] == [
        padded[0:4],
        padded[4:8],
        padded[8:12],
        padded[12:14],
    ]
    # the next cycle starts at epoch 4 with the permutation seeded 123 + 4
    second = torch.randperm(11, generator=torch.Generator().manual_seed(127)).tolist()
    assert epoch_scenes(11, 4, 4) == second[:4]
    assert epoch_scenes(3, 4, 7) == [0, 1, 2]


def test_rank_scenes_common_each_and_grouped():
    assert rank_scenes([5, 6, 7, 8], "common", 1, 2) == [5, 6, 7, 8]
    assert rank_scenes([5, 6, 7, 8], "each", 1, 2) == [7, 8]
    assert rank_scenes([5], "each", 1, 2) == [5]
    assert [rank_scenes([5, 6], "each", r, 4) for r in range(4)] == [[5], [5], [6], [6]]
    with pytest.raises(ConfigError, match="evenly"):
        rank_scenes([5, 6, 7], "each", 0, 2)


def test_epoch_items_are_seeded_and_limited():
    batches = epoch_items([3, 2], epoch=1, seed=7, batch=2, limit=1.0)
    assert len(batches) == 2 and all(len(b) == 2 for b in batches)  # 5 items: the last dropped
    assert batches == epoch_items([3, 2], epoch=1, seed=7, batch=2, limit=1.0)
    assert batches != epoch_items([3, 2], epoch=2, seed=7, batch=2, limit=1.0)
    flat = [pair for b in epoch_items([3, 2], 1, 7, 1, 1.0) for pair in b]
    assert sorted(flat) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert len(epoch_items([3, 2], 1, 7, 1, 2)) == 2 and len(epoch_items([3, 2], 1, 7, 1, 0.5)) == 2
