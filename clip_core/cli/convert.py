"""``triclip convert``: read a checkpoint in any format, write a transformers-layout folder in others."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from clip_core.cli._common import add_debug


def register(sub) -> None:
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
    add_debug(conv)


def run(args) -> int:
    from clip_core.checkpoints import convert_checkpoint

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    formats = "all" if formats == ["all"] else formats
    _, arch, state = convert_checkpoint(args.src, args.dst, formats=formats, dtype=args.dtype, hparams=args.hparams,
                                        overwrite=args.overwrite)
    n_params = sum(int(np.prod(np.shape(v))) for v in state.values())
    written = sorted(p.name for p in Path(args.dst).iterdir())
    try:
        print(f"converted {args.src} -> {args.dst}: {arch} model, {n_params:,} parameters; wrote "
              f"{', '.join(written)} (read back and verified)", flush=True)
    except BrokenPipeError:  # `triclip convert ... | head -c0`: the conversion itself succeeded
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
    return 0
