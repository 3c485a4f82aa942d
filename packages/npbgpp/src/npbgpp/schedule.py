"""Which scenes and items an epoch trains on, as the original's ``train_dataloader`` decides,
computed from (epoch, rank) alone so that a resumed or distributed run repeats a single one."""

from __future__ import annotations

import torch

from geomkit.errors import ConfigError

SCENE_SEED = 123  # the original's scene permutation is seeded 123 + epoch


def epoch_scenes(n_scenes: int, per_epoch: int, epoch: int) -> list[int]:
    """The training scenes of ``epoch`` (0-based): with more scenes than ``per_epoch``, a cycle
    of epochs walks through a permutation seeded 123 + (the cycle's first epoch), padded as the
    original pads it (its first ``n_scenes % per_epoch`` scenes repeated, so the last epoch of a
    cycle may hold fewer than ``per_epoch``); otherwise every scene, every epoch."""
    if n_scenes < 1 or per_epoch < 1:
        raise ConfigError("configuration: no training scenes, or max_scenes_per_train_epoch < 1")
    if n_scenes <= per_epoch:
        return list(range(n_scenes))
    cycle: list[int] = []
    # replay the cycles from epoch 0: a cycle begins when the previous one is used up
    for current in range(epoch + 1):
        if not cycle:
            order = torch.randperm(
                n_scenes, generator=torch.Generator().manual_seed(SCENE_SEED + current)
            ).tolist()
            cycle = order + order[: n_scenes % per_epoch]
        chosen, cycle = cycle[:per_epoch], cycle[per_epoch:]
    return chosen


def rank_scenes(scenes: list[int], mode: str, rank: int, world: int) -> list[int]:
    """The scenes this rank trains on: all of them (``common``), or its own share (``each``:
    an equal split, or, with more ranks than scenes, ranks grouped per scene)."""
    if mode not in ("common", "each"):
        raise ConfigError(
            f"configuration: dataloader.train_data_mode must be common or each, got {mode}"
        )
    if mode == "common" or world == 1:
        return list(scenes)
    if len(scenes) >= world:
        if len(scenes) % world:
            raise ConfigError(
                f"configuration: {len(scenes)} scenes this epoch cannot be split evenly over "
                f"{world} processes (train_data_mode=each); change max_scenes_per_train_epoch"
            )
        share = len(scenes) // world
        return list(scenes[share * rank : share * (rank + 1)])
    if world % len(scenes):
        raise ConfigError(
            f"configuration: {world} processes cannot be grouped evenly over {len(scenes)} "
            "scenes (train_data_mode=each)"
        )
    return [scenes[rank // (world // len(scenes))]]


def epoch_items(
    n_items: list[int], epoch: int, seed: int, batch: int, limit: float | int
) -> list[list[tuple[int, int]]]:
    """This epoch's batches of (scene position, item index), shuffled with a generator seeded
    by (seed, epoch); ``limit`` is Lightning's limit_train_batches (a fraction or a count)."""
    pairs = [(s, i) for s, n in enumerate(n_items) for i in range(n)]
    order = torch.randperm(
        len(pairs), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    )
    pairs = [pairs[i] for i in order.tolist()]
    batches = [pairs[i : i + batch] for i in range(0, len(pairs) - batch + 1, batch)]
    count = int(limit) if isinstance(limit, int) or limit > 1 else int(len(batches) * float(limit))
    return batches[:count]
