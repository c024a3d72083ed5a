"""Model throughput against transformers 4.57, per backend, as ratios measured in one process.

Both contenders get the same random ViT-B/32 weights (transformers loads them from a checkpoint written by triclip);
they alternate, warm up first, and the figure is the median over repeats. The float32 / bfloat16 matrix-multiply
rates of this machine, measured in the same run, are the yardstick (a ViT-B/32 image costs 8.82 GFLOPs, a 77-token
text 5.96).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

IMAGE_GFLOPS, TEXT77_GFLOPS = 8.82, 5.96
CAPTIONS = [
    "a photo of a cat", "a diagram of the water cycle with arrows", "two dogs playing in the snow near a red barn",
    "an astronaut riding a horse on the moon, digital art", "a bowl of ramen", "the skyline of a city at night",
    "a close-up photograph of a hummingbird drinking nectar from a bright flower",
    "a hand-drawn map of an island",
]


def timeit(contenders: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each contender; contenders alternate within every repeat."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_rates(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of an n x n matrix product in float32 and bfloat16 (PyTorch), the machine's yardstick."""
    import torch

    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        seconds = timeit({"mm": lambda: a @ b}, repeats=repeats)["mm"]
        out[str(dtype).split(".")[-1]] = 2 * n ** 3 / seconds / 1e9
    return out


def _inputs(batch: int, text_length: int | None, size: int = 224) -> dict[str, np.ndarray]:
    """Images and captions for ``batch`` items; text padded to ``text_length`` or to the longest caption."""
    rng = np.random.default_rng(0)
    tokenizer = _tokenizer()
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    enc = tokenizer(texts, padding="max_length" if text_length else True, max_length=text_length,
                    truncation=True, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
            "pixel_values": rng.standard_normal((batch, 3, size, size)).astype(np.float32)}


def _tokenizer():
    from clip_core.tokenizer import CLIPTokenizerFast

    shared = Path(os.environ.get("TRICLIP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return CLIPTokenizerFast.from_pretrained(shared / "data" / "clip-bpe")


def _checkpoint(tmp: Path, preset: str = "ViT-B/32") -> Path:
    from clip_core.checkpoints import save_checkpoint
    from clip_core.config import CLIPConfig
    from clip_core.weights import init_state

    config = CLIPConfig.preset(preset)
    save_checkpoint(tmp / "ckpt", config, init_state(config, "clip", seed=0))
    return tmp / "ckpt"


# ---------------------------------------------------------------------------------------------- per backend
def bench_pt(ckpt: Path, cases, repeats: int) -> list[dict]:
    import torch
    import transformers

    import clip_pt

    rows = []
    for dtype in ("float32", "bfloat16"):
        tdtype = getattr(torch, dtype)
        ours = clip_pt.CLIPModel.from_pretrained(ckpt, dtype=tdtype)
        theirs = transformers.CLIPModel.from_pretrained(ckpt, torch_dtype=tdtype).eval()
        for case, batch, length in cases:
            x = _inputs(batch, length)
            pix = torch.from_numpy(x["pixel_values"]).to(tdtype)
            ids, mask = torch.from_numpy(x["input_ids"]), torch.from_numpy(x["attention_mask"])
            if case == "image":
                fns = {"ours": lambda m=ours: m.get_image_features(pixel_values=pix),
                       "transformers": lambda m=theirs: m.get_image_features(pixel_values=pix)}
            else:
                fns = {"ours": lambda m=ours: m.get_text_features(input_ids=ids, attention_mask=mask),
                       "transformers": lambda m=theirs: m.get_text_features(input_ids=ids, attention_mask=mask)}
            with torch.inference_mode():
                t = timeit(fns, repeats)
            rows.append(_row("pt", dtype, case, batch, ids.shape[1], t, "transformers"))
    return rows


def bench_tf(ckpt: Path, cases, repeats: int) -> list[dict]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import transformers

    import clip_tf

    rows = []
    ours = clip_tf.TFCLIPModel.from_pretrained(ckpt)
    theirs = transformers.TFCLIPModel.from_pretrained(ckpt, from_pt=False) if (ckpt / "tf_model.h5").exists() \
        else transformers.TFCLIPModel.from_pretrained(ckpt, from_pt=True)
    img_xla = tf.function(lambda p: theirs.get_image_features(pixel_values=p), jit_compile=True)
    txt_xla = tf.function(lambda i, m: theirs.get_text_features(input_ids=i, attention_mask=m), jit_compile=True)
    for case, batch, length in cases:
        x = _inputs(batch, length)
        pix = tf.constant(x["pixel_values"])
        ids, mask = tf.constant(x["input_ids"].astype(np.int32)), tf.constant(x["attention_mask"].astype(np.int32))
        if case == "image":
            fns = {"ours": lambda: ours.get_image_features(pixel_values=x["pixel_values"]).numpy(),
                   "transformers-eager": lambda: theirs.get_image_features(pixel_values=pix).numpy(),
                   "transformers-xla": lambda: img_xla(pix).numpy()}
        else:
            fns = {"ours": lambda: ours.get_text_features(input_ids=x["input_ids"],
                                                          attention_mask=x["attention_mask"]).numpy(),
                   "transformers-eager": lambda: theirs.get_text_features(input_ids=ids, attention_mask=mask).numpy(),
                   "transformers-xla": lambda: txt_xla(ids, mask).numpy()}
        t = timeit(fns, repeats)
        rows.append(_row("tf", "float32", case, batch, x["input_ids"].shape[1], t, "transformers-eager"))
        rows.append(_row("tf", "float32", case, batch, x["input_ids"].shape[1], t, "transformers-xla"))
    return rows


def bench_flax(ckpt: Path, cases, repeats: int) -> list[dict]:
    import jax
    import transformers

    import clip_flax

    rows = []
    ours = clip_flax.FlaxCLIPModel.from_pretrained(ckpt)
    theirs = transformers.FlaxCLIPModel.from_pretrained(ckpt, from_pt=not (ckpt / "flax_model.msgpack").exists())
    our_img = jax.jit(lambda p, x: ours.get_image_features(pixel_values=x, params=p))
    our_txt = jax.jit(lambda p, i, m: ours.get_text_features(input_ids=i, attention_mask=m, params=p))
    their_img = jax.jit(lambda p, x: theirs.get_image_features(pixel_values=x, params=p))
    their_txt = jax.jit(lambda p, i, m: theirs.get_text_features(input_ids=i, attention_mask=m, params=p))
    for case, batch, length in cases:
        x = _inputs(batch, length)
        if case == "image":
            fns = {"ours": lambda: our_img(ours.params, x["pixel_values"]).block_until_ready(),
                   "transformers": lambda: their_img(theirs.params, x["pixel_values"]).block_until_ready()}
        else:
            ids, mask = x["input_ids"].astype(np.int32), x["attention_mask"].astype(np.int32)
            fns = {"ours": lambda: our_txt(ours.params, ids, mask).block_until_ready(),
                   "transformers": lambda: their_txt(theirs.params, ids, mask).block_until_ready()}
        t = timeit(fns, repeats)
        rows.append(_row("flax", "float32", case, batch, x["input_ids"].shape[1], t, "transformers"))
    return rows


def _row(backend, dtype, case, batch, length, times, against) -> dict:
    ours = times["ours"]
    gflops = (IMAGE_GFLOPS if case == "image" else TEXT77_GFLOPS * length / 77) * batch
    return {"backend": backend, "dtype": dtype, "case": case, "batch": batch,
            "text_length": None if case == "image" else length, "ours_s": ours, "against": against,
            "theirs_s": times[against], "ratio": times[against] / ours, "ours_gflops": gflops / ours}


def default_cases(batches=(1, 8, 32)):
    cases = [("image", b, None) for b in batches]
    cases += [("text", b, 77) for b in batches]
    cases += [("text", b, None) for b in batches]  # padded to the longest caption in the batch
    return cases


def run(backends=("pt", "tf", "flax"), batches=(1, 8, 32), repeats: int = 3) -> list[dict]:
    """Benchmark each backend against transformers' same backend; returns one dict per measurement."""
    cases = default_cases(batches)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp))
        runners = {"pt": bench_pt, "tf": bench_tf, "flax": bench_flax}
        for name in backends:
            rows += runners[name](ckpt, cases, repeats)
    return rows
