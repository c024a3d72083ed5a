"""``triclip index``: a FAISS index over a ``triclip embed`` output (exact, or IVF / HNSW with measured recall)."""

from __future__ import annotations

import json
from pathlib import Path

from clip_core.cli._common import add_debug


def register(sub) -> None:
    p = sub.add_parser("index", help="build a FAISS index from embed output",
                       description="Index the embeddings in OUT (a triclip embed folder) into the folder INDEX. "
                                   "'auto' is exact (flat) up to --exact-below rows and IVF above; approximate "
                                   "indexes report their recall@10 against exact search.")
    p.add_argument("embeddings", type=Path, metavar="OUT")
    p.add_argument("index", type=Path, metavar="INDEX")
    p.add_argument("--kind", default="auto", choices=["auto", "flat", "ivf", "hnsw"])
    p.add_argument("--exact-below", type=int, default=50_000, help="auto: largest collection indexed exactly")
    p.add_argument("--nlist", type=int, default=None, help="IVF clusters (default ~4 sqrt(n))")
    p.add_argument("--nprobe", type=int, default=None, help="IVF clusters searched (default 16)")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth")
    p.add_argument("--overwrite", action="store_true", help="replace an existing INDEX")
    add_debug(p)


def run(args) -> int:
    from clip_core.tasks.index import build_index

    info = build_index(args.embeddings, args.index, kind=args.kind, exact_below=args.exact_below, nlist=args.nlist,
                       nprobe=args.nprobe, hnsw_m=args.hnsw_m, ef_search=args.ef_search, overwrite=args.overwrite)
    print(json.dumps({"index": str(args.index), **info}))
    return 0
