"""``triclip search``: the k nearest rows of an index to a text or an image, as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

from clip_core.cli._common import add_debug


def register(sub) -> None:
    p = sub.add_parser("search", help="search an index with a text or an image",
                       description="Embed the query with the model that made the index (or --model) and print the "
                                   "K best rows as JSON lines: id, path (or text), score (cosine similarity).")
    p.add_argument("index", type=Path, metavar="INDEX")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query")
    query.add_argument("--image", type=Path, help="an image file as the query")
    p.add_argument("-k", type=int, default=10, help="results (default 10)")
    p.add_argument("--model", default=None, help="model folder (default: the one recorded in the index)")
    p.add_argument("--backend", default=None, choices=["pt", "tf", "flax", "jax", "onnx"],
                   help="framework for the query (default: the one recorded in the index)")
    add_debug(p)


def run(args) -> int:
    from clip_core.tasks.embed import Embedder
    from clip_core.tasks.index import load_index

    loaded = load_index(args.index)
    model = args.model or loaded.info.get("model")
    if not model:
        raise ValueError(f"{args.index} records no model; pass --model")
    kind = "text" if args.text is not None else "image"
    embedder = Embedder(model, args.backend or loaded.info.get("backend") or "pt", kind, batch_size=1)
    item = args.text if kind == "text" else str(args.image)
    inputs, _, errors = embedder.prepare(["query"], [item])
    if errors:
        raise OSError(f"cannot read the query image {args.image}: {errors[0]['error']}")
    for hit in loaded.search(embedder.embed(inputs), args.k)[0]:
        print(json.dumps(hit, ensure_ascii=False))
    return 0
