"""What every subcommand shares: exit codes and the hidden per-subcommand ``--debug``."""

from __future__ import annotations

import argparse

EXIT_FAILED, EXIT_ERROR = 1, 2


def add_debug(parser: argparse.ArgumentParser) -> None:
    """Accept ``--debug`` after the subcommand too (``triclip convert ... --debug``)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
