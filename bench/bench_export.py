"""Exported artifacts against our own calls, same run: ONNX Runtime against eager PyTorch, and the TF SavedModel and
LiteRT interpreter against our TensorFlow call (XLA-compiled by default), on the image and text towers at batch 1
and 32, ViT-B/32 shapes (random weights), text padded to 77 tokens.

``ratio`` is our call's median time over the artifact's (above 1: the artifact is faster). Contenders alternate
within every round (:func:`bench.models.timeit`), so both see the same machine load. Every artifact's features are
also checked against our call's (max abs difference of the L2-normalised features). Run::

    python -m bench.bench_export                     # ViT-B/32, batches 1 and 32
    python -m bench.bench_export --preset tiny --batches 1,4 --repeats 2     # seconds, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from bench.models import _inputs, timeit


def _unit(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_inputs(config, batch: int) -> dict[str, np.ndarray]:
    """Inputs for a config without the CLIP vocabulary (tiny presets): ids padded to the longest length."""
    text, vision = config.text_config, config.vision_config
    rng = np.random.default_rng(0)
    length = text.max_position_embeddings
    ids = rng.integers(0, text.vocab_size - 1, (batch, length))
    ids[:, -1] = text.eos_token_id % text.vocab_size
    return {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((batch, length), np.int64),
            "pixel_values": rng.standard_normal((batch, vision.num_channels, vision.image_size,
                                                 vision.image_size)).astype(np.float32)}


def _onnx_runner(folder: Path, artifact: dict):
    """An ONNX Runtime session whose idle threads sleep: by default they spin after each run and would take the
    CPU from the contender timed next (PyTorch ran 100x slower on a tiny model beside a spinning session)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(folder / artifact["path"]), options,
                                           providers=["CPUExecutionProvider"])
    names = [o["name"] for o in artifact["outputs"]]
    return lambda feed: dict(zip(names, session.run(names, feed)))


def run(preset: str = "ViT-B/32", batches=(1, 32), repeats: int = 3, formats=("onnx", "savedmodel", "litert"),
        min_seconds: float = 6.0) -> list[dict]:
    """Export one random checkpoint of ``preset`` and time every artifact against our own call; returns rows."""
    from clip_core.checkpoints import save_checkpoint
    from clip_core.config import CLIPConfig
    from clip_core.exporting import export_checkpoint, read_manifest
    from clip_core.weights import init_state
    from conformance.artifacts import load_artifact

    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    rows = []
    try:
        config = CLIPConfig.preset(preset)
        save_checkpoint(tmp / "ckpt", config, init_state(config, "clip", seed=0))
        export_checkpoint(tmp / "ckpt", tmp / "out", to=list(formats))
        manifest = read_manifest(tmp / "out")
        ours = {}
        if "onnx" in formats:
            import torch

            from clip_pt import CLIPModel

            pt = CLIPModel.from_pretrained(tmp / "ckpt")

            def pt_call(function, feed):
                with torch.no_grad():
                    if function == "text_features":
                        return pt.get_text_features(torch.from_numpy(feed["input_ids"]),
                                                    torch.from_numpy(feed["attention_mask"])).numpy()
                    return pt.get_image_features(torch.from_numpy(feed["pixel_values"])).numpy()
            ours["onnx"] = ("pytorch-eager", pt_call)
        if {"savedmodel", "litert"} & set(formats):
            from clip_tf import TFCLIPModel

            tfm = TFCLIPModel.from_pretrained(tmp / "ckpt")

            def tf_call(function, feed):
                if function == "text_features":
                    return tfm.get_text_features(feed["input_ids"], feed["attention_mask"]).numpy()
                return tfm.get_image_features(feed["pixel_values"]).numpy()
            ours["savedmodel"] = ours["litert"] = ("tensorflow", tf_call)
        cache: dict = {}
        for artifact in manifest["artifacts"]:
            if artifact["function"] == "forward":
                continue
            run_artifact = _onnx_runner(tmp / "out", artifact) if artifact["format"] == "onnx" else \
                load_artifact(tmp / "out", artifact, cache)
            name, call = ours[artifact["format"]]
            function = artifact["function"]
            for batch in batches:
                real_vocab = (config.text_config.vocab_size, config.text_config.max_position_embeddings) == (49408, 77)
                data = _inputs(batch, 77, config.vision_config.image_size) if real_vocab else \
                    _random_inputs(config, batch)
                feed = {i["name"]: data[i["name"]].astype(i["dtype"]) for i in artifact["inputs"]}
                got = run_artifact(feed)[artifact["outputs"][0]["name"]]
                want = call(function, feed)
                times = timeit({name: lambda: call(function, feed), "artifact": lambda: run_artifact(feed)},
                               repeats, min_seconds=min_seconds)
                rows.append({"artifact": artifact["path"] + (f":{artifact['signature']}"
                                                             if artifact["format"] == "savedmodel" else ""),
                             "case": "text" if function == "text_features" else "image", "batch": batch,
                             "against": name, "ours_ms": 1e3 * times[name], "artifact_ms": 1e3 * times["artifact"],
                             "ratio": times.ratio(name, "artifact"),
                             "max_unit_diff": float(np.max(np.abs(_unit(got) - _unit(want))))})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ViT-B/32")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", default="onnx,savedmodel,litert")
    parser.add_argument("--min-seconds", type=float, default=6.0, help="time each case for at least this long")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = run(args.preset, [int(b) for b in args.batches.split(",")], args.repeats, args.formats.split(","),
               args.min_seconds)
    for row in rows:
        print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
