"""Few-view split files (the H3DS toolkit's TOML format, as CoCo-INR ships for DTU, BlendedMVS
and H3DS).

A file holds ``[scenes.<scan_id>]`` tables with ``views = N`` and a ``default_views_configs``
table mapping "3", "4", "8", "16", "32" to lists of view indices (into the scene's sorted image
files). The training views are one list; every other view is a test view.

The shipped files have lists the original loader indexes out of range (DTU's "4" and "16" hold
index 65, BlendedMVS scan3's "32" index 36): those raise an error naming the list here. Repeated
indices (H3DS eef826f0c1f6deb0 "32" repeats 2) are dropped with a warning.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from geomkit.errors import InputError

logger = logging.getLogger(__name__)

_SHOWN_SCENES = 5


def train_views(split_file: Path, scan_id: str, num_views: int | str, n_images: int) -> list[int]:
    """The training views of one scene: a list of ``split_file``, sorted and unique.

    Args:
        split_file: TOML split file.
        scan_id: scene table name, e.g. "scan24" (DTU, BlendedMVS) or "1b2a8613401e42a8" (H3DS).
        num_views: list key, e.g. 3 or "3".
        n_images: the scene's image count; every index must lie in [0, n_images).

    Returns:
        Sorted unique view indices.

    Raises:
        InputError: missing or unparsable file, unknown scene or list, an index out of range.
    """
    split_file = Path(split_file)
    scene = _scene(_load(split_file), split_file, str(scan_id))
    where = f"{split_file}: scene {scan_id}"
    if isinstance(scene.get("views"), int) and scene["views"] != n_images:
        logger.warning(
            "%s says views = %d but the scene has %d images", where, scene["views"], n_images
        )
    indices = _view_list(scene, where, str(num_views))
    return unique_views(indices, n_images, f'{where}, list "{num_views}"')


def unique_views(indices: Iterable[int], n_images: int, source: str) -> list[int]:
    """Check view indices against ``n_images``; sorted, repeats dropped with a warning.

    Args:
        indices: view indices (ints, numpy or 0-d tensor integers).
        n_images: the scene's image count.
        source: what holds them, for messages (e.g. 'dtu.toml: scene scan24, list "3"').

    Raises:
        InputError: no indices, a non-integer one or one outside [0, n_images).
    """
    indices = [_as_index(index, source) for index in indices]
    if not indices:
        raise InputError(f"{source} is empty: no training views")
    outside = sorted({i for i in indices if not 0 <= i < n_images})
    if outside:
        held = f"index {outside[0]}" if len(outside) == 1 else f"indices {_join(outside)}"
        raise InputError(
            f"{source} holds {held} but the scene has {n_images} images (0-{n_images - 1})"
        )
    unique = sorted(set(indices))
    if len(unique) < len(indices):
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        logger.warning(
            "%s repeats index %s; using its %d unique views", source, _join(repeated), len(unique)
        )
    return unique


def test_views(train: Iterable[int], n_images: int) -> list[int]:
    """Every view index in [0, n_images) not in ``train``, sorted."""
    taken = set(train)
    return [i for i in range(n_images) if i not in taken]


def _join(values: Iterable[int]) -> str:
    return ", ".join(map(str, values))


def _as_index(value, source: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise InputError(
            f"{source} holds {value!r}, which is not a view index (an integer)"
        ) from None


def _load(split_file: Path) -> dict:
    if not split_file.is_file():
        raise InputError(f"split file not found: {split_file}")
    try:
        with open(split_file, "rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{split_file}: not valid TOML ({err})") from None


def _scene(data: dict, split_file: Path, scan_id: str) -> dict:
    scenes = data.get("scenes")
    scenes = scenes if isinstance(scenes, dict) else {}
    scene = scenes.get(scan_id)
    if isinstance(scene, dict):
        return scene
    known = list(scenes)
    shown = ", ".join(known[:_SHOWN_SCENES]) + (", ..." if len(known) > _SHOWN_SCENES else "")
    raise InputError(
        f"{split_file}: no scene {scan_id!r}; it has {len(known)} scenes ({shown or 'none'}), "
        "given as [scenes.<scan_id>]"
    )


def _view_list(scene: dict, where: str, key: str) -> list:
    configs = scene.get("default_views_configs")
    configs = configs if isinstance(configs, dict) else {}
    views = configs.get(key)
    if isinstance(views, list):
        return views
    available = ", ".join(f'"{k}"' for k in configs) or "none"
    raise InputError(f'{where} has no view list "{key}" (num_views); available: {available}')
