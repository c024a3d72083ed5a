"""``python -m bench`` / ``triclip bench``: speed against transformers 4.57, as ratios measured in one run.

Sections (all by default): ``yardstick`` (matrix-multiply GFLOP/s), ``models`` (feature throughput per backend),
``tokenizer``, ``image`` (preprocessing), ``load`` (checkpoint load time and peak memory). A ratio above 1 means
triclip is faster. Absolute times mean little on shared machines; ratios are medians of alternating runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

SECTIONS = ("yardstick", "models", "tokenizer", "image", "load")


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n== {title}")
    if not rows:
        print("(nothing measured)")
        return
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(k), *(len(fmt(r.get(k))) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for row in rows:
        print("  ".join(fmt(row.get(k)).ljust(w) for k, w in zip(keys, widths)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--backends", default="pt,tf,flax")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    results = {}
    if "yardstick" in sections:
        from bench.models import matmul_rates

        rates = matmul_rates()
        results["yardstick"] = [{"dtype": k, "matmul_gflops": v} for k, v in rates.items()]
        _print_table("matrix-multiply yardstick (PyTorch, 2048x2048)", results["yardstick"])
    if "models" in sections:
        from bench.models import run

        results["models"] = run([b for b in args.backends.split(",") if b],
                                tuple(int(b) for b in args.batches.split(",")), args.repeats)
        _print_table("feature throughput, ViT-B/32, ratio = transformers time / ours", results["models"])
    if "tokenizer" in sections:
        from bench.bench_tokenizer import run as run_tok

        results["tokenizer"] = run_tok(repeats=args.repeats)
        _print_table("tokenization", results["tokenizer"])
    if "image" in sections:
        from bench.bench_image import run as run_img

        results["image"] = run_img(repeats=args.repeats)
        _print_table("image preprocessing", results["image"])
    if "load" in sections:
        from bench.load import run as run_load

        results["load"] = run_load(repeats=args.repeats)
        _print_table("loading a ViT-B/32 safetensors checkpoint (CLIPModel, PyTorch)", results["load"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
