"""Import a project-noisypixel Lightning checkpoint: ``python -m onet.import_lightning CKPT
OUT_DIR [--overwrite]``.

Writes OUT_DIR/model.pt (``{"model": state}`` in onet's key names) and OUT_DIR/config.yaml
(their defaults, configs/img/noisypixel.yaml, with the architecture read from the weights,
training.out_dir OUT_DIR and test.model_file model.pt), so that
``python -m onet.generate OUT_DIR/config.yaml`` (or ``--checkpoint OUT_DIR/model.pt``) and the
other onet commands run their model. The weights are loaded strictly into the model the config
builds before anything is written; existing files are kept unless --overwrite.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from geomkit.checkpoint import save_checkpoint
from geomkit.errors import ArgumentParser, CheckpointError, InputError, run_main
from geomkit.io import atomic_write, check_can_write
from onet.config import load_config, merge
from onet.models import build_model
from onet.noisypixel import (
    architecture,
    is_lightning,
    load_lightning_weights,
    network_state,
    read_checkpoint,
)

BASE_CONFIG = "configs/img/noisypixel.yaml"
FILES = ("model.pt", "config.yaml")


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m onet.import_lightning", description=__doc__.splitlines()[0]
    )
    parser.add_argument("ckpt", help="their Lightning checkpoint, e.g. epoch=131-step=63359.ckpt")
    parser.add_argument("out_dir", help="folder for model.pt and config.yaml")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    return parser.parse_args(argv)


def nested(overrides: dict) -> dict:
    """Dotted keys -> nested sections ({"model.c_dim": 128} -> {"model": {"c_dim": 128}})."""
    out: dict = {}
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = value
    return out


def own_keys(overrides: dict, out_dir: Path) -> dict:
    """What config.yaml sets on top of BASE_CONFIG: the checkpoint's architecture, OUT_DIR."""
    own = {"training": {"out_dir": str(out_dir)}, "test": {"model_file": "model.pt"}}
    return merge(nested(overrides), own)


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder")
    files = {name: check_can_write(out_dir / name, args.overwrite) for name in FILES}
    checkpoint = read_checkpoint(args.ckpt)
    source = f"checkpoint {args.ckpt}"
    if not is_lightning(checkpoint):
        raise CheckpointError(
            f"{args.ckpt} is not a Lightning checkpoint (no state_dict entry); onet model files "
            "load as they are"
        )
    overrides = architecture(network_state(checkpoint, source), source)
    own = own_keys(overrides, out_dir)
    model = build_model(merge(load_config(BASE_CONFIG), own))
    load_lightning_weights(model, checkpoint, source)
    save_checkpoint(files["model.pt"], {"model": model.state_dict()})
    with atomic_write(files["config.yaml"], "w") as handle:
        handle.write(f"# {args.ckpt} imported by python -m onet.import_lightning\n")
        yaml.safe_dump({"inherit_from": BASE_CONFIG, **own}, handle, sort_keys=False)
    summary = ", ".join(f"{k} {v}" for k, v in overrides.items())
    print(f"wrote {files['model.pt']} and {files['config.yaml']}: {summary}")
    return 0


if __name__ == "__main__":
    run_main(main)
