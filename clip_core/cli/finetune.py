"""``triclip finetune``: contrastive fine-tuning (or training from scratch) in PyTorch, TensorFlow or JAX/Flax."""

from __future__ import annotations

import json
from pathlib import Path

from clip_core.cli._common import add_debug


def register(sub) -> None:
    p = sub.add_parser("finetune", help="train CLIP on image-caption pairs in any backend",
                       description="Fine-tune a CLIP checkpoint (or train one from a config-only folder) on a CSV, "
                                   "JSONL or parquet file of (image, caption) rows, or a folder of webdataset .tar "
                                   "shards. One seed gives the same batches in every backend. Checkpoints "
                                   "(transformers' layout + optimizer state) go to OUT/checkpoint-STEP; --resume "
                                   "continues from the newest; OUT/log.jsonl records every step.")
    p.add_argument("--model", required=True, help="checkpoint folder/file or Hub id; a folder with only config.json "
                                                  "(+ processor files) trains from scratch")
    p.add_argument("--data", required=True, type=Path, help="CSV / JSONL / parquet of (image, caption), or a folder "
                                                            "of webdataset .tar shards")
    p.add_argument("--backend", default="pt", choices=["pt", "tf", "flax"])
    p.add_argument("--out", required=True, type=Path, help="output folder")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="number of updates")
    length.add_argument("--epochs", type=int, help="number of passes over the data")
    p.add_argument("--batch-size", type=int, default=32, help="global batch size (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (default 0), then cosine decay")
    p.add_argument("--weight-decay", type=float, default=0.2, help="decoupled AdamW weight decay (default 0.2)")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.98)
    p.add_argument("--eps", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0, help="data order (and from-scratch weights) seed")
    p.add_argument("--lock-image", action="store_true", help="freeze the vision tower and its projection")
    p.add_argument("--freeze", action="append", default=[], metavar="NAME",
                   help="freeze a canonical parameter, a prefix or a glob (repeatable)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute encoder layers in the backward pass")
    p.add_argument("--devices", type=int, default=1, help="data-parallel workers (default 1)")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (default: every epoch)")
    p.add_argument("--eval", type=Path, dest="eval_data", help="image-caption data for recall@k at every epoch end")
    p.add_argument("--processor", help="processor folder (default: the model's)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_debug(p)


def run(args) -> int:
    from clip_core.tasks.training import TrainingConfig

    cfg = TrainingConfig(lr=args.lr, weight_decay=args.weight_decay, betas=(args.beta1, args.beta2), eps=args.eps,
                         warmup_steps=args.warmup, seed=args.seed, batch_size=args.batch_size,
                         lock_image=args.lock_image, freeze=tuple(args.freeze),
                         grad_checkpointing=args.grad_checkpointing, devices=args.devices)
    job = dict(model=args.model, data=args.data, out=args.out, backend=args.backend, cfg=cfg, steps=args.steps,
               epochs=args.epochs, save_every=args.save_every, eval_data=args.eval_data, resume=args.resume,
               processor=args.processor, progress=not args.no_progress)
    if args.devices > 1:  # data-parallel: clip_<backend>.distributed starts the workers (PyTorch: one process each)
        import importlib
        importlib.import_module(f"clip_{args.backend}.distributed").launch(_finetune, args.devices, job)
    else:
        _finetune(job)
    return 0


def _finetune(job: dict) -> None:
    """Run the fine-tuning loop and print its summary (only the first worker of a PyTorch process group prints)."""
    import os

    from clip_core.tasks.finetune import finetune

    result = finetune(job.pop("model"), job.pop("data"), job.pop("out"), **job)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    losses = result["losses"]
    summary = {"step": result["step"], "out": result["out"], "seconds": round(result["seconds"], 2),
               "last_loss": losses[-1] if losses else None, "eval": result["eval"]}
    print(json.dumps(summary))
