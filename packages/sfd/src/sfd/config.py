"""Configs as the original reads them: ``configs/base.yaml`` always, then the ``--conf`` overlay,
then ``--section.key=value`` arguments; the overlay and the arguments may only set keys that
base.yaml defines (the original's ``recursive_update_strict``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from geomkit.config import apply_overrides, check_keys, merge
from geomkit.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_conf(conf: str | Path) -> Path:
    """A config path as given, or the packaged file of that name (``configs/debug.yaml`` works
    from any folder, as it did from the authors' repository root)."""
    path = Path(conf)
    if path.is_file():
        return path
    packaged = CONFIG_DIR / path.name
    if packaged.is_file():
        return packaged
    known = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config {conf} not found (packaged configs: {known})")


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"config {path} is not readable YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of sections")
    return data


def load_config(conf: str | Path | None, overrides: Sequence[str] = ()) -> dict:
    """base.yaml, the ``conf`` overlay (None: base only) and ``--a.b=v`` overrides."""
    base = read_yaml(CONFIG_DIR / "base.yaml")
    config = base
    if conf:
        path = resolve_conf(conf)
        overlay = read_yaml(path)
        check_keys(overlay, base, str(path))
        config = merge(base, overlay)
    return apply_overrides(config, [_strip_dashes(o) for o in overrides], _parse_value)


def _strip_dashes(text: str) -> str:
    if not text.startswith("--"):
        raise ConfigError(
            f"unexpected argument {text!r} (config overrides look like --train.ckpt_freq=500)"
        )
    return text[2:]


def _parse_value(raw: str):
    return yaml.safe_load(raw)


def dump_config(config: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
