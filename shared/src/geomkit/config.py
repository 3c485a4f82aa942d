"""Nested config dictionaries, whatever file format they come from: recursive merging, checks
against a reference config (a key it does not define is an error naming the key and the file),
and ``--set section.key=value`` overrides from the command line."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence

from geomkit.errors import ConfigError


def merge(base: Mapping, update: Mapping) -> dict:
    """Recursive update: nested mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_keys(
    config: Mapping, reference: Mapping, source: str, skip: Collection[str] = (), prefix: str = ""
) -> None:
    """ConfigError for keys that ``reference`` does not define; dotted names in ``skip`` (and
    everything under them) are not checked."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in skip:
            continue
        if key not in reference:
            known = ", ".join(sorted(reference))
            raise ConfigError(f"unknown config key {name!r} in {source} (known here: {known})")
        if isinstance(value, Mapping) and isinstance(reference[key], Mapping):
            check_keys(value, reference[key], source, skip, f"{name}.")


def set_key(config: dict, dotted: str, value, free_form: Collection[str] = ()) -> None:
    """Set ``section.key`` (which must exist, unless its section is in ``free_form``)."""
    *sections, key = dotted.split(".")
    node = config
    for section in sections:
        if not isinstance(node.get(section), dict):
            raise ConfigError(f"unknown config section {section!r} in {dotted!r}")
        node = node[section]
    if key not in node and ".".join(sections) not in free_form:
        raise ConfigError(f"unknown config key {dotted!r}")
    node[key] = value


def split_override(text: str) -> tuple[str, str]:
    """``section.key=value`` -> (``section.key``, raw ``value``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip(), raw


def apply_overrides(
    config: dict,
    overrides: Sequence[str],
    parse_value: Callable[[str], object],
    free_form: Collection[str] = (),
) -> dict:
    """Apply ``section.key=value`` strings in order, each value read by ``parse_value``."""
    for override in overrides:
        key, raw = split_override(override)
        try:
            value = parse_value(raw)
        except Exception as err:  # the parsers raise their own error types
            raise ConfigError(f"override {override!r}: the value cannot be parsed") from err
        set_key(config, key, value, free_form)
    return config


def add_override_argument(parser, example: str) -> None:
    """The repeatable ``--set section.key=value`` option."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (repeatable)",
    )
