"""The ``triclip`` command: one module per subcommand, each with ``register(subparsers)`` and ``run(args)``.

``triclip conformance``  run every installed backend on one state and compare all outputs (exit 1 on any failure)
``triclip convert``      move a checkpoint between formats (safetensors, pytorch, tf, flax; OpenAI/open_clip in)
``triclip bench``        the benchmark harness (ratios against transformers, measured in one process)

A new command is a module in this package named in :data:`COMMANDS`. Errors are one line on stderr and a non-zero
exit (:data:`EXIT_ERROR`); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from clip_core.cli._common import EXIT_ERROR, EXIT_FAILED  # noqa: F401  (re-exported)

# Subcommand -> module of this package (a module name may not shadow a stdlib one, hence ``eval_``).
COMMANDS = {"conformance": "conformance", "convert": "convert", "bench": "bench", "embed": "embed", "index": "index",
            "search": "search", "eval": "eval_",
            "export": "export", "finetune": "finetune"}


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="triclip", description="One CLIP for PyTorch, TensorFlow and JAX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for command, module in COMMANDS.items():
        modules[command] = importlib.import_module(f"clip_core.cli.{module}")
        modules[command].register(sub)
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``triclip`` console script."""
    parser, modules = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is not our output
    try:
        return modules[args.command].run(args)
    except KeyboardInterrupt:
        print("triclip: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line, no traceback, unless --debug
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"triclip {args.command}: error: {type(err).__name__}: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
