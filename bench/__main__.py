"""``python -m bench`` / ``triclip bench``: speed against transformers 4.57, as ratios measured in one run.

Sections (all by default): ``yardstick`` (matrix-multiply GFLOP/s), ``models`` (feature throughput per backend,
float32 efficiency, bfloat16), ``tokenizer``, ``image`` (preprocessing), ``load`` (checkpoint load time and peak
memory); a summary of the issue's targets closes the report. A ratio above 1 means triclip is faster. Absolute times
mean little on shared machines; ratios are medians of alternating runs. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

SECTIONS = ("yardstick", "models", "tokenizer", "image", "load")
#: sections run only when named (long): ``train`` is bench/bench_train.py (``--quick`` for its small configs),
#: ``latency`` bench/latency.py (first calls in fresh processes)
EXTRA_SECTIONS = ("train", "latency")


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n== {title}")
    if not rows:
        print("(nothing measured)")
        return
    keys = list(dict.fromkeys(k for row in rows for k in row))  # every column, in order of appearance
    fmt = lambda v: "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(k), *(len(fmt(r.get(k))) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)).rstrip())
    for row in rows:
        print("  ".join(fmt(row.get(k)).ljust(w) for k, w in zip(keys, widths)).rstrip(), flush=True)


def _summary(results: dict) -> list[dict]:
    """The issue's targets, each with the figure measured in this run (the worst case where there are several)."""
    models, rows = results.get("models", []), []

    def worst(backend, dtype, against):
        ratios = [r["ratio"] for r in models if (r["backend"], r["dtype"], r["against"]) == (backend, dtype, against)]
        return min(ratios) if ratios else None

    for backend, dtype, against, target in (("pt", "float32", "transformers", 1.0),
                                            ("pt", "bfloat16", "transformers", 1.0),
                                            ("tf", "float32", "transformers-eager", 1.3),
                                            ("tf", "float32", "transformers-xla", 1.0),
                                            ("flax", "float32", "transformers", 1.0),
                                            ("flax", "bfloat16", "transformers", 1.0)):
        value = worst(backend, dtype, against)
        if value is not None:
            rows.append({"target": f"{backend} {dtype} vs {against}: worst ratio", "needed": target, "measured": value,
                         "met": value >= target})
    if results.get("efficiency"):  # strictest reading: the best image rate against the best matmul rate of the run
        best = max(results["efficiency"], key=lambda r: r["ours_gflops"])
        ratio = best["ours_gflops"] / max(r["matmul_gflops"] for r in results["efficiency"])
        rows.append({"target": f"best float32 image rate ({best['backend']}, batch {best['batch']}) / best "
                               "same-run matmul", "needed": 0.85, "measured": ratio, "met": ratio >= 0.85})
    images = [r for r in results.get("bfloat16", []) if r["case"] == "image"]
    if images:
        best = max(images, key=lambda r: r["speedup"])
        rows.append({"target": f"best bfloat16 / float32 image speed-up ({best['backend']}, batch {best['batch']})",
                     "needed": 1.8, "measured": best["speedup"], "met": best["speedup"] >= 1.8})
        err = max(r["max_abs_err"] for r in results["bfloat16"])
        cos = min(r["min_cosine"] for r in results["bfloat16"])
        rows.append({"target": "bfloat16 features: largest error (all backends)", "needed": 2e-2, "measured": err,
                     "met": err <= 2e-2})
        rows.append({"target": "bfloat16 features: smallest cosine (all backends)", "needed": 0.999, "measured": cos,
                     "met": cos > 0.999})
    for row in results.get("image", []):
        if row["name"] == "ratio":  # issue 4: at least 3x transformers' image processor, identical output
            rows.append({"target": "image preprocessing vs transformers (identical output)", "needed": 3.0,
                         "measured": row["speedup"], "met": row["speedup"] >= 3.0 and row["identical"]})
    loads = {(r["backend"], r["loader"]): r for r in results.get("load", [])}
    for backend in ("pt", "tf", "flax"):
        ours, theirs = loads.get((backend, "ours")), loads.get((backend, "transformers"))
        if ours and theirs:
            for key in ("load_s", "peak_mb"):
                rows.append({"target": f"{backend} load {key}: ours / transformers", "needed": 1.0,
                             "measured": ours[key] / max(theirs[key], 1e-9), "met": ours[key] <= theirs[key]})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {SECTIONS + EXTRA_SECTIONS} (default: {SECTIONS})")
    parser.add_argument("--quick", action="store_true", help="train section: 2-layer towers, batch 8")
    parser.add_argument("--backends", default="pt,tf,flax")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per contender and case (medians)")
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # transformers' TF classes need tf-keras: set before importing
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS) - set(EXTRA_SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    backends = [b for b in args.backends.split(",") if b]
    print(f"python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(), flush=True)
    results = {}
    if "yardstick" in sections:
        from bench.models import matmul_rates

        results["yardstick"] = matmul_rates(args.repeats, frameworks=backends)
        _print_table("matrix-multiply yardstick (2048 x 2048, GFLOP/s)", results["yardstick"])
    if "models" in sections:
        from bench.models import run

        tables = run(backends, tuple(int(b) for b in args.batches.split(",")), args.repeats)
        results.update(tables)
        _print_table("feature throughput, ViT-B/32, ratio = transformers time / ours", tables["models"])
        _print_table("float32 image throughput / same-run matmul (same framework)", tables["efficiency"])
        _print_table("bfloat16 against float32 (ours; speed and normalised-feature error)", tables["bfloat16"])
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

        results["load"] = run_load(repeats=min(args.repeats, 3), backends=backends)
        _print_table("loading a ViT-B/32 safetensors checkpoint (CLIPModel)", results["load"])
    if "train" in sections:
        from bench.bench_train import run as run_train, summary as train_summary

        results["train"] = run_train(backends, quick=args.quick, repeats=args.repeats)
        _print_table("training step, ratio = other time / ours (checkpointing: with / without)", results["train"])
        _print_table("training targets (issue 18)", train_summary(results["train"]))
    if "latency" in sections:
        from bench.latency import run as run_latency

        results["latency"] = run_latency(backends, repeats=min(args.repeats, 3))
        _print_table("latency: first calls (ratio = ours / theirs) and steady state (theirs / ours)",
                     results["latency"])
    results["summary"] = _summary(results)
    _print_table("targets (issues 4 and 8)", results["summary"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
