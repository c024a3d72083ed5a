"""``triclip bench``: the benchmark harness (``python -m bench``), ratios against transformers in one process."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks against transformers (see docs/performance.md)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for python -m bench")


def run(args) -> int:
    from bench.__main__ import main as bench_main

    return bench_main(args.args)
