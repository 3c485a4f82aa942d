"""ONet configs in the authors' YAML layout: ``default.yaml`` under everything, ``inherit_from``
chains, and the file's own keys on top.

Paths in ``inherit_from`` (and config paths given on the command line) are looked up as given,
then inside this package's ``configs/`` folder, so the authors' ``configs/img/onet.yaml`` works
from any directory. A key that default.yaml does not define is an error naming the key and the
file, except the few keys the authors' configs carry but no code reads (DEAD_KEYS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from geomkit import config as gconfig
from geomkit.config import merge
from geomkit.errors import ConfigError

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_ROOT / "default.yaml"
# Keys present in the authors' configs that nothing reads (reference notes, section 1).
DEAD_KEYS = {"generation.refine", "generation.n_x", "generation.n_z"}
# Sections whose contents are free-form keyword arguments, checked where they are used.
FREE_FORM = {"model.decoder_kwargs", "model.encoder_kwargs", "model.encoder_latent_kwargs"}


def resolve_config_path(path: str | Path) -> Path:
    """``path`` if it exists, else the same path inside the package's configs folder."""
    given = Path(path)
    if given.is_file():
        return given
    parts = given.parts[1:] if given.parts and given.parts[0] == "configs" else given.parts
    packaged = CONFIG_ROOT.joinpath(*parts) if parts else CONFIG_ROOT
    if packaged.is_file():
        return packaged
    raise ConfigError(
        f"config file not found: {path} (looked in the current folder and {CONFIG_ROOT})"
    )


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(path: str | Path, default_path: str | Path | None = DEFAULT_CONFIG) -> dict:
    """The merged config of ``path``: defaults, then its inherit_from chain, then itself."""
    path = resolve_config_path(path)
    own = read_yaml(path)
    parent = own.pop("inherit_from", None)
    if parent is not None:
        base = load_config(parent, default_path)
    elif default_path is not None:
        base = read_yaml(Path(default_path))
    else:
        base = {}
    merged = merge(base, own)
    check_keys(merged, read_yaml(Path(DEFAULT_CONFIG)), str(path))
    return merged


def check_keys(config: Mapping, reference: Mapping, source: str) -> None:
    """ConfigError for keys that the reference (default.yaml) does not define."""
    gconfig.check_keys(config, reference, source, skip=DEAD_KEYS | FREE_FORM)


def set_key(config: dict, dotted: str, value) -> None:
    """Set ``section.key`` (must exist in the config) to ``value``."""
    gconfig.set_key(config, dotted, value, FREE_FORM)


def _yaml_value(raw: str):
    return yaml.safe_load(raw)


def add_override_argument(parser, example: str) -> None:
    """The repeatable ``--set section.key=value`` option of every onet command."""
    gconfig.add_override_argument(parser, example)


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """Apply ``section.key=value`` strings in order (values read as YAML); returns the config."""
    return gconfig.apply_overrides(config, overrides, _yaml_value, FREE_FORM)
