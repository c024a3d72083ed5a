"""``triclip eval zeroshot`` / ``triclip eval retrieval``: CLIP_benchmark-style numbers, any backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clip_core.cli._common import add_debug
from clip_core.cli.embed import add_model_args


def register(sub) -> None:
    p = sub.add_parser("eval", help="zero-shot classification or retrieval evaluation",
                       description="Evaluate a model: 'zeroshot' on an image folder (one sub-folder per class), "
                                   "'retrieval' on image-caption rows. Prints a table and writes the numbers as JSON.")
    tasks = p.add_subparsers(dest="task", required=True, metavar="TASK")
    zs = tasks.add_parser("zeroshot", help="top-1 / top-5 and per-class accuracy on DATA/<class>/<images> or on "
                                           "(image, class name) rows")
    add_model_args(zs)
    zs.add_argument("--data", required=True, type=Path, help="image folder, one sub-folder per class; or a CSV / "
                                                             "JSONL / parquet of (image, caption) rows, the caption "
                                                             "being the class name")
    zs.add_argument("--templates", type=Path, help="prompt templates, one per line with {} (default "
                                                   "'a photo of a {}.')")
    zs.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    add_debug(zs)
    rt = tasks.add_parser("retrieval", help="recall@k, MRR and ranks, text->image and image->text")
    add_model_args(rt)
    rt.add_argument("--data", required=True, type=Path, help="captions: CSV / JSONL / parquet of (image, caption) "
                                                             "rows, or a folder of webdataset shards")
    rt.add_argument("--ks", default="1,5,10", help="recall cut-offs (default 1,5,10)")
    rt.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    add_debug(rt)
    add_debug(p)


def _table(rows) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _write(path: Path, result: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run(args) -> int:
    from clip_core.tasks import evaluate

    common = dict(backend=args.backend, batch_size=args.batch_size, dtype=args.dtype)
    if args.task == "zeroshot":
        templates = evaluate.read_templates(args.templates) if args.templates else ("a photo of a {}.",)
        result = evaluate.evaluate_zeroshot(args.model, args.data, templates=templates, **common)
        rows = [(k, _fmt(v)) for k, v in result.items() if k not in ("per_class_top1", "errors", "task")]
        rows += [(f"  {name}", _fmt(acc)) for name, acc in result["per_class_top1"].items()]
        if result["errors"]:
            rows.append(("skipped images", str(len(result["errors"]))))
    else:
        ks = tuple(int(k) for k in args.ks.split(",") if k.strip())
        result = evaluate.evaluate_retrieval(args.model, args.data, ks=ks, **common)
        rows = [(k, _fmt(v)) for k, v in result.items() if k != "task"]
    result["model"], result["data"] = str(args.model), str(args.data)
    print(_table(rows))
    if args.out:
        _write(args.out, result)
        print(f"wrote {args.out}")
    return 0
