"""User errors: mistakes in what a person gave us, as opposed to bugs.

Each is raised with a message that names the file, key or argument and says how to fix it.
Entry points run under :func:`run_main`, which prints that message as one line on stderr and
exits with status 2, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Base class: a problem the user can fix. ``str(error)`` is the one-line message."""


class InputError(UserError):
    """A missing, unreadable, corrupt or wrongly shaped input (file, array, image, mesh)."""


class ConfigError(UserError):
    """An unknown or invalid configuration key, flag or value."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or whose keys or shapes do not match."""


class OutputExistsError(UserError):
    """Writing would replace existing results; pass --overwrite to allow it."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one stderr line (and exit 2) like every user error."""

    def error(self, message: str):
        print(f"error: {self.prog}: {one_line(message)} (see --help)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def one_line(message: str) -> str:
    """Collapse a message onto one line (parts joined by '; ')."""
    parts = [p.strip() for p in str(message).splitlines() if p.strip()]
    return "; ".join(parts)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv=None) -> None:
    """Run an entry point's ``main(argv)``; user errors become one stderr line and exit 2.

    ``main`` returns an exit status (None counts as 0). Bugs propagate with their traceback.
    """
    try:
        status = main(argv)
    except UserError as err:
        print(f"error: {one_line(str(err))}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
