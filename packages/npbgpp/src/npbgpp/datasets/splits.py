"""View splits of a scene from the ``datasets.*`` index keys, with the original's rules.

Index keys accept what the configs in ``npbgpp/configs/datasets`` hold:

* a list of view indices, e.g. DTU's ``val_indices: [5, 15, 25, 35, 45]``;
* ``{start, stop, step}``: ``range(start, stop, step)`` (the original's ``numpy.arange``,
  NeRF-Synthetic's val 100:200:10 and test 200:400);
* ``{linspace_margin, count}``: ``numpy.linspace(margin, N - margin, count, dtype=int)`` over the
  scene's N views (the original's ScanNet one-scene holdout, ``select_indices``);
* ``{offset}`` (``val_indices`` only): the holdout indices shifted by ``offset`` (ScanNet's
  val = holdout - 5, ``offset_indices``);
* null: no index.

Splits (the original builds three datasets per scene, see its ``configs/datasets``):

* ``val``: validation targets; ``holdout``: test targets;
* ``train``: the input (source) views, and the targets of one-scene training: every view but
  val, holdout and ``exclude_indices``, restricted to ``input_indices`` when given
  (NeRF-Synthetic: the 100 training views; indices beyond the scene are ignored there).
  Validation and test aggregate from these too.
* ``all``: every view. The original's multi-scene pretraining configs train on every view of
  a pretraining scene (they pass no ``exclude_indices``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from geomkit.errors import ConfigError, InputError

SPLITS = ("train", "val", "holdout", "all")


def resolve_indices(spec, n_views: int, key: str, holdout: Sequence[int] = ()) -> list[int]:
    """The view indices a config value stands for (see the module docstring).

    Args:
        spec: list, mapping or None (OmegaConf nodes are fine).
        n_views: views in the scene (for ``linspace_margin``).
        key: config key, for error messages (``datasets.val_indices``).
        holdout: the resolved holdout indices (for ``offset``).

    Returns:
        list of int, in the order given.
    """
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        return _from_mapping(dict(spec), n_views, key, holdout)
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise ConfigError(f"{key} must be a list of view indices or a mapping, got {spec!r}")
    values = []
    for value in spec:
        if isinstance(value, bool) or int(value) != value:
            raise ConfigError(f"{key} must hold integer view indices, got {value!r}")
        values.append(int(value))
    return values


def _from_mapping(spec: dict, n_views: int, key: str, holdout: Sequence[int]) -> list[int]:
    if set(spec) <= {"start", "stop", "step"} and "stop" in spec:
        return list(range(int(spec.get("start", 0)), int(spec["stop"]), int(spec.get("step", 1))))
    if set(spec) == {"linspace_margin", "count"}:
        margin, count = int(spec["linspace_margin"]), int(spec["count"])
        return [int(i) for i in np.linspace(margin, n_views - margin, count, dtype=int)]
    if set(spec) == {"offset"}:
        return [int(i) + int(spec["offset"]) for i in holdout]
    raise ConfigError(
        f"{key}: unknown index mapping {spec!r}; use a list, {{start, stop, step}}, "
        "{linspace_margin, count} or {offset} (val_indices only)"
    )


def scene_splits(cfg: Mapping, n_views: int, scene: str) -> dict[str, list[int]]:
    """``train``, ``val``, ``holdout`` and ``all`` view lists of a scene with ``n_views`` views.

    Args:
        cfg: the ``datasets`` config (keys val_indices, holdout_indices, and optionally
            input_indices, exclude_indices).
        n_views: number of views of the scene.
        scene: scene name, for error messages.

    Raises:
        InputError: an index out of range for this scene (names the key, the index and the
            number of views), or a view that is both a val and a holdout target.
    """
    holdout = resolve_indices(cfg.get("holdout_indices"), n_views, "datasets.holdout_indices")
    val = resolve_indices(cfg.get("val_indices"), n_views, "datasets.val_indices", holdout)
    exclude = resolve_indices(cfg.get("exclude_indices"), n_views, "datasets.exclude_indices")
    inputs = cfg.get("input_indices")
    allowed = (
        set(resolve_indices(inputs, n_views, "datasets.input_indices"))
        if inputs is not None
        else set(range(n_views))
    )
    for key, values in (
        ("holdout_indices", holdout),
        ("val_indices", val),
        ("exclude_indices", exclude),
    ):
        _check_range(values, n_views, f"datasets.{key}", scene)
    both = sorted(set(val) & set(holdout))
    if both:
        raise InputError(
            f"scene {scene}: views {both} are in both datasets.val_indices and "
            "datasets.holdout_indices; a view is a validation or a test target, not both"
        )
    removed = set(val) | set(holdout) | set(exclude)
    train = [i for i in range(n_views) if i in allowed and i not in removed]
    return {"train": train, "val": val, "holdout": holdout, "all": list(range(n_views))}


def _check_range(values: Sequence[int], n_views: int, key: str, scene: str) -> None:
    bad = [i for i in values if not 0 <= i < n_views]
    if bad:
        raise InputError(
            f"scene {scene} has {n_views} views (indices 0..{n_views - 1}) but {key} lists "
            f"{bad}; set {key} to indices of this scene"
        )
