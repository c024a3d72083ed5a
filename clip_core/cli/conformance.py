"""``triclip conformance``: load one canonical state into every installed backend and compare every output."""

from __future__ import annotations

from pathlib import Path

from clip_core.cli._common import EXIT_FAILED, add_debug


def register(sub) -> None:
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
    conf.add_argument("--artifact", type=Path, metavar="OUT", help="an export folder (triclip export): run every "
                      "artifact in its own runtime against the source model (with --checkpoint: recomputed from it)")
    conf.add_argument("--gradients", action="store_true", help="compare every parameter's gradient of the loss, "
                      "by canonical name, across backends and with transformers' PyTorch autograd (hf)")
    conf.add_argument("--train-steps", type=int, metavar="K", help="K AdamW steps in every backend and in "
                      "transformers + torch.optim: per-step losses and final outputs")
    add_debug(conf)


def run(args) -> int:
    from clip_core.config import CLIPConfig
    from conformance import run_conformance

    if args.artifact is not None:
        from conformance.artifacts import run_artifact_conformance

        report = run_artifact_conformance(args.artifact, checkpoint=args.checkpoint)
        print(report.table())
        return 0 if report.ok else EXIT_FAILED
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.gradients or args.train_steps is not None:
        return _run_training_checks(args, backends)
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


def _run_training_checks(args, backends) -> int:
    """``--gradients`` and ``--train-steps K`` (float32 only; "hf" joins the backends when installed)."""
    from clip_core.config import CLIPConfig
    from conformance.gradients import run_gradient_conformance
    from conformance.training import run_training_conformance

    if args.dtype != "float32":
        raise ValueError("--gradients and --train-steps compare float32 training")
    if args.fixture is not None:
        raise ValueError("--gradients and --train-steps take --config, --preset or --checkpoint, not --fixture")
    if "hf" not in backends:
        backends = backends + ["hf"]
    kwargs = dict(backends=backends, seed=args.seed, checkpoint=args.checkpoint, preset=args.preset,
                  config=CLIPConfig.from_pretrained(args.config) if args.config is not None else None)
    ok = True
    if args.gradients:
        report = run_gradient_conformance(**kwargs)
        print(report.table())
        ok = ok and report.ok
    if args.train_steps is not None:
        report = run_training_conformance(steps=args.train_steps, **kwargs)
        print(report.table())
        ok = ok and report.ok
    return 0 if ok else EXIT_FAILED
