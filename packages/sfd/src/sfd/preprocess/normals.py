"""Step 8: the monocular normal prior (Omnidata DPT-Hybrid) for ``--use_pretrain_normal``.

Not implemented yet: without a checkpoint the step says so and training runs without the
prior; with a checkpoint it stops with a ConfigError rather than pretend.
"""

from __future__ import annotations

from pathlib import Path

from geomkit.errors import ConfigError

SKIP_MESSAGE = (
    "no Omnidata checkpoint given: training will run without the normal prior "
    "(--use_pretrain_normal needs train/000_normal_pretrain.png)"
)


def check(checkpoint: str | None) -> None:
    """ConfigError for a checkpoint this version cannot run (raised before any step runs)."""
    if checkpoint is not None:
        raise ConfigError(
            f"--omnidata_ckpt {Path(checkpoint)}: the Omnidata normal step is not implemented "
            "in this version; drop the flag (training then runs without "
            "train/000_normal_pretrain.png)"
        )


def run(checkpoint: str | None) -> None:
    """Step 8: print the skip line (see :func:`check` for a given checkpoint)."""
    check(checkpoint)
    print(SKIP_MESSAGE)
