"""``triclip embed``: images or texts -> parquet shards of normalised embeddings (resumable; local or Ray)."""

from __future__ import annotations

import json
from pathlib import Path

from clip_core.cli._common import add_debug


def add_model_args(parser, required: bool = True) -> None:
    """``--model`` and ``--backend`` (shared by embed, search and eval)."""
    parser.add_argument("--model", required=required, help="model folder (any checkpoint format) or Hub id")
    parser.add_argument("--backend", default="pt", choices=["pt", "tf", "flax", "jax", "onnx"],
                        help="framework that runs the model (default pt); onnx: ONNX Runtime on an export folder, "
                             "or on the model exported once by PyTorch into $TRICLIP_CACHE")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="compute dtype (default float32)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per model call (default 32)")


def register(sub) -> None:
    p = sub.add_parser("embed", help="embed an image folder / list / parquet, or a text file, into parquet shards",
                       description="Embed every image (or text line) with the model and write parquet shards "
                                   "(id, path or text, caption where given, embedding: L2-normalised float32) into "
                                   "OUT. Rerun the same command after a kill: finished shards are kept. Unreadable "
                                   "images are skipped and listed in OUT/errors.jsonl.")
    add_model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="a folder of images, a file listing paths, or a parquet with a "
                                                 "'path' column (optional 'id', 'caption')")
    src.add_argument("--texts", type=Path, help="a UTF-8 text file, one text per line")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--shard-size", type=int, default=4096, help="rows per parquet shard (default 4096)")
    p.add_argument("--workers", type=int, default=None, help="preprocessing threads (default min(4, CPUs))")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="run here, or on a Ray cluster")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray instance)")
    p.add_argument("--num-actors", type=int, default=None, help="Ray model actors (default: one per CPU)")
    p.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs Ray reserves per model actor")
    p.add_argument("--overwrite", action="store_true", help="replace a different job already in OUT")
    add_debug(p)


def run(args) -> int:
    from clip_core.tasks.corpus import image_source, text_source

    corpus = image_source(args.images) if args.images is not None else text_source(args.texts)
    common = dict(model_path=args.model, backend=args.backend, batch_size=args.batch_size,
                  shard_size=args.shard_size, dtype=args.dtype, overwrite=args.overwrite)
    if args.engine == "ray":
        from clip_core.tasks.ray_engine import embed_corpus_ray

        summary = embed_corpus_ray(corpus, args.out, address=args.address, num_actors=args.num_actors,
                                   cpus_per_actor=args.cpus_per_actor, workers=args.workers or 2, **common)
    else:
        from clip_core.tasks.embed import embed_corpus

        summary = embed_corpus(corpus, args.out, workers=args.workers, **common)
    print(json.dumps({"out": str(args.out), **summary}))
    if summary["n_errors"]:
        print(f"triclip embed: {summary['n_errors']} item(s) skipped, listed in {args.out / 'errors.jsonl'}")
    return 0
