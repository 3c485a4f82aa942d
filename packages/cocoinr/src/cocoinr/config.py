"""CoCo-INR's pyhocon confs: the authors' files (``confs/dtu.conf`` ...) over our few extra keys
(``confs/defaults.conf``), ``--set section.key=value`` overrides, and the checks.

A conf path is looked up as given, then by its name inside this package's ``confs/`` folder,
so the authors' ``--conf ./confs/dtu.conf`` works from any folder. A key that neither dtu.conf
nor defaults.conf defines is an error naming it (a typo would otherwise be ignored).
"""

from __future__ import annotations

from pathlib import Path

from pyhocon import ConfigFactory, HOCONConverter
from pyhocon.exceptions import ConfigException
from pyparsing import ParseBaseException

from geomkit import config as gconfig
from geomkit.errors import ConfigError

CONF_ROOT = Path(__file__).resolve().parent / "confs"


def resolve_conf_path(path: str | Path) -> Path:
    given = Path(path)
    if given.is_file():
        return given
    packaged = CONF_ROOT / given.name
    if packaged.is_file():
        return packaged
    raise ConfigError(f"conf file not found: {path} (looked in the current folder and {CONF_ROOT})")


def read_conf(path: Path) -> dict:
    try:
        return ConfigFactory.parse_file(str(path)).as_plain_ordered_dict()
    except (ConfigException, ParseBaseException) as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(f"{path} is not a valid HOCON conf: {first}") from err


def parse_value(raw: str):
    """A HOCON value: numbers, booleans, null, lists, quoted or bare strings."""
    return ConfigFactory.parse_string(f"value = {raw}").as_plain_ordered_dict()["value"]


def reference_conf() -> dict:
    return gconfig.merge(read_conf(CONF_ROOT / "dtu.conf"), read_conf(CONF_ROOT / "defaults.conf"))


def load_conf(path: str | Path, overrides=()) -> dict:
    """defaults.conf, then the conf file, then the overrides; every key checked."""
    path = resolve_conf_path(path)
    conf = gconfig.merge(read_conf(CONF_ROOT / "defaults.conf"), read_conf(path))
    reference = reference_conf()
    gconfig.check_keys(conf, reference, str(path))
    return gconfig.apply_overrides(conf, overrides, parse_value)


def to_hocon(conf: dict) -> str:
    """The conf as HOCON text (the run's ``runconf.conf``)."""
    return HOCONConverter.to_hocon(ConfigFactory.from_dict(conf)) + "\n"
