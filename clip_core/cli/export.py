"""``triclip export``: write deployment artifacts of a checkpoint (ONNX, SavedModel, LiteRT, StableHLO)."""

from __future__ import annotations

from pathlib import Path

from clip_core.cli._common import add_debug


def register(sub) -> None:
    exp = sub.add_parser("export", help="export a checkpoint for deployment (onnx, savedmodel, litert, stablehlo)",
                         description="Write the text and image feature functions (and the full forward) of "
                                     "CHECKPOINT to OUT, with a dynamic batch and text length, plus export.json "
                                     "describing every artifact and reference.npz for `triclip conformance "
                                     "--artifact OUT`. OUT appears only once everything is written.")
    exp.add_argument("checkpoint", help="a checkpoint directory or file, any format")
    exp.add_argument("out", type=Path, help="the export folder to create")
    exp.add_argument("--to", default="all", help="onnx, savedmodel, litert, stablehlo, all, or a comma-separated "
                                                 "list (default all)")
    exp.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                     help="the artifacts' weight and computation dtype (inputs and outputs keep theirs)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_debug(exp)


def run(args) -> int:
    from clip_core.exporting import export_checkpoint

    manifest = export_checkpoint(args.checkpoint, args.out, to=args.to, dtype=args.dtype, overwrite=args.overwrite)
    paths = sorted({a["path"] for a in manifest["artifacts"]})
    print(f"exported {args.checkpoint} -> {args.out} ({manifest['dtype']}): {', '.join(paths)}, export.json, "
          f"reference.npz; check with: triclip conformance --artifact {args.out}")
    return 0
