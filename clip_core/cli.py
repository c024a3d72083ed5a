"""The ``triclip`` command.

``triclip conformance``  run every installed backend on one state and compare all outputs (exit 1 on any failure)
``triclip convert``      move a checkpoint between formats (safetensors, pytorch, tf, flax; OpenAI/open_clip in)
``triclip bench``        the benchmark harness (ratios against transformers, measured in one process)

Errors are one line on stderr and a non-zero exit; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

EXIT_FAILED, EXIT_ERROR = 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triclip", description="One CLIP for PyTorch, TensorFlow and JAX.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    conf = sub.add_parser("conformance", help="compare every backend's outputs on one state",
                          description="Load one canonical state into every installed backend, feed the same inputs "
                                      "and compare every output pairwise. Without arguments: the built-in tiny "
                                      "config with random weights (seconds, nothing downloaded).")
    source = conf.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="a config.json (random weights)")
    source.add_argument("--preset", help="a named architecture: tiny, ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336")
    source.add_argument("--checkpoint", help="a checkpoint directory or file, any format (real weights)")
    source.add_argument("--fixture", type=Path, help="a folder with a checkpoint and expected.npz to compare with")
    conf.add_argument("--backends", default="pt,tf,flax", help="comma-separated: pt, tf, flax, hf (default pt,tf,flax)")
    conf.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    conf.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    conf.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    conv = sub.add_parser("convert", help="convert a checkpoint to other formats",
                          description="Read SRC (a checkpoint directory or file in any supported format, including "
                                      "OpenAI's and open_clip's) and write a transformers-layout directory DST. What "
                                      "is written is read back and checked against what was read.")
    conv.add_argument("src")
    conv.add_argument("dst", type=Path)
    conv.add_argument("--format", default="safetensors", help="safetensors, pytorch, tf, flax, all, or a "
                                                              "comma-separated list (default safetensors)")
    conv.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                      help="cast the weights (default: keep)")
    conv.add_argument("--hparams", type=Path, help="OpenAI / open_clip sources: a JSON of what shapes cannot tell "
                                                   "(e.g. transformer_heads), as OpenAI's CLIP(...) arguments or an "
                                                   "open_clip_config.json")
    conv.add_argument("--overwrite", action="store_true", help="write into a non-empty directory that is not a "
                                                               "checkpoint")
    conv.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    bench = sub.add_parser("bench", help="benchmarks against transformers (see docs/performance.md)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for python -m bench")
    return parser


# ---------------------------------------------------------------------------------------------- commands
def cmd_conformance(args) -> int:
    from clip_core.config import CLIPConfig
    from conformance import run_conformance

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    kwargs = dict(backends=backends, dtype=args.dtype, seed=args.seed)
    if args.config is not None:
        kwargs["config"] = CLIPConfig.from_pretrained(args.config)
    elif args.preset is not None:
        kwargs["preset"] = args.preset
    elif args.checkpoint is not None:
        kwargs["checkpoint"] = args.checkpoint
    elif args.fixture is not None:
        kwargs["fixture"] = args.fixture
    report = run_conformance(**kwargs)
    print(report.table())
    return 0 if report.ok else EXIT_FAILED


def cmd_convert(args) -> int:
    from clip_core.checkpoints import convert_checkpoint

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    formats = "all" if formats == ["all"] else formats
    _, arch, state = convert_checkpoint(args.src, args.dst, formats=formats, dtype=args.dtype, hparams=args.hparams,
                                        overwrite=args.overwrite)
    n_params = sum(int(np.prod(np.shape(v))) for v in state.values())
    written = sorted(p.name for p in Path(args.dst).iterdir())
    print(f"converted {args.src} -> {args.dst}: {arch} model, {n_params:,} parameters; wrote "
          f"{', '.join(written)} (read back and verified)")
    return 0


def cmd_bench(args) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(args.args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``triclip`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is not our output
    commands = {"conformance": cmd_conformance, "convert": cmd_convert, "bench": cmd_bench}
    try:
        return commands[args.command](args)
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
