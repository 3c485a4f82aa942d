"""ONet configs in the authors' YAML layout: ``default.yaml`` under everything, ``inherit_from``
chains, and the file's own keys on top.

Paths in ``inherit_from`` (and config paths given on the command line) are looked up as given,
then inside this package's ``configs/`` folder, so the authors' ``configs/img/onet.yaml`` works
from any directory. A key that default.yaml does not define is an error naming the key and the
file, except the few keys the authors' configs carry but no code reads (DEAD_KEYS).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

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


def merge(base: Mapping, update: Mapping) -> dict:
    """Recursive update: nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_keys(config: Mapping, reference: Mapping, source: str, prefix: str = "") -> None:
    """ConfigError for keys that the reference (default.yaml) does not define."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in DEAD_KEYS or name in FREE_FORM:
            continue
        if key not in reference:
            known = ", ".join(sorted(reference))
            raise ConfigError(f"unknown config key {name!r} in {source} (known here: {known})")
        if isinstance(value, Mapping) and isinstance(reference[key], Mapping):
            check_keys(value, reference[key], source, f"{name}.")


def set_key(config: dict, dotted: str, value) -> None:
    """Set ``section.key`` (must exist in the config) to ``value``."""
    *sections, key = dotted.split(".")
    node = config
    for section in sections:
        if not isinstance(node.get(section), dict):
            raise ConfigError(f"unknown config section {section!r} in {dotted!r}")
        node = node[section]
    if key not in node and ".".join(sections) not in FREE_FORM:
        raise ConfigError(f"unknown config key {dotted!r}")
    node[key] = value


def parse_override(text: str) -> tuple[str, object]:
    """``section.key=value`` with value parsed as YAML (numbers, booleans, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from err
    return key.strip(), value


def add_override_argument(parser, example: str) -> None:
    """The repeatable ``--set section.key=value`` option of every onet command."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (repeatable)",
    )


def apply_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """Apply ``section.key=value`` strings in order; returns the config."""
    for override in overrides:
        set_key(config, *parse_override(override))
    return config
