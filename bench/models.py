"""Model throughput against transformers 4.57, per backend, as ratios measured in one process.

Both contenders get the same random ViT-B/32 weights (transformers loads them from a checkpoint written by triclip)
and the same input tensors; they alternate within every repeat, warm up first (the first call of an XLA-compiled
function compiles), the garbage collector is held off while timing, and each figure is the median over repeats.
``ratio`` is transformers' median time over ours: above 1, triclip is faster.

Three tables come out:

- ``models``: get_image_features / get_text_features against transformers' same backend and dtype (TensorFlow:
  against its eager call and against it under ``tf.function(jit_compile=True)``; Flax: both under ``jax.jit``).
  ``ours_gflops`` counts a ViT-B/32 image as 8.82 GFLOPs and a text as 5.96 * length / 77, for the length given.
- ``efficiency``: float32 image throughput as a fraction of a 2048 x 2048 float32 matrix product in the same
  framework, timed in the same alternation (so both see the same machine load).
- ``bfloat16``: ours in bfloat16 against ours in float32 (same alternation), with the largest difference of the
  L2-normalised features and the smallest cosine similarity (DESIGN.md: within 2e-2, above 0.999).
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

IMAGE_GFLOPS, TEXT77_GFLOPS = 8.82, 5.96
MATMUL_N = 2048
CAPTIONS = [
    "a photo of a cat", "a diagram of the water cycle with arrows", "two dogs playing in the snow near a red barn",
    "an astronaut riding a horse on the moon, digital art", "a bowl of ramen", "the skyline of a city at night",
    "a close-up photograph of a hummingbird drinking nectar from a bright flower",
    "a hand-drawn map of an island",
]


class Timings(dict):
    """Median seconds per call by contender, and :meth:`ratio` of two contenders."""

    def __init__(self, rounds: dict[str, list[float]]):
        super().__init__({name: statistics.median(values) for name, values in rounds.items()})
        self.rounds = rounds

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median over rounds of ``numerator``'s time over ``denominator``'s in the same round: calls next to
        each other see the same machine load, so this is steadier than a ratio of medians on a shared machine."""
        return statistics.median(a / b for a, b in zip(self.rounds[numerator], self.rounds[denominator]))


def timeit(contenders: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 2,
           min_seconds: float = 6.0) -> Timings:
    """Seconds per call of each contender (:class:`Timings`): contenders alternate within every round, after
    ``warmup`` calls each, with the garbage collector paused (as the standard ``timeit`` does); every other round
    runs them in reverse order, so that no contender always follows the same one (a call can leave the caches,
    the thread pool or the clock speed in a state that helps or hurts the next). Quick cases get more rounds (up
    to twenty times ``repeats``), so that every case is timed for about ``min_seconds`` at least."""
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    start = time.perf_counter()
    for fn in contenders.values():
        fn()
    round_seconds = time.perf_counter() - start
    repeats = max(repeats, min(20 * repeats, int(min_seconds / max(round_seconds, 1e-6)) + 1))
    times: dict[str, list[float]] = {name: [] for name in contenders}
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(repeats):
            for name, fn in list(contenders.items())[::-1 if round_ % 2 else 1]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return Timings(times)


def _matmul(framework: str, dtype: str = "float32", n: int = MATMUL_N) -> Callable[[], object]:
    """An ``n x n`` matrix product in ``framework`` (``"pt"``: ``torch.mm``, ``"pt-onednn"``: PyTorch's oneDNN
    matrix multiply, ``"tf"``: eager ``tf.matmul``, ``"flax"``: jitted ``jnp.matmul``), returning when done."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    if framework.startswith("pt"):
        import torch

        x, y = (torch.from_numpy(v).to(getattr(torch, dtype)) for v in (a, b))
        if framework == "pt-onednn":
            return lambda: torch.ops.mkldnn._linear_pointwise(x, y, None, "none", [], "")
        return lambda: torch.mm(x, y)
    if framework == "tf":
        import tensorflow as tf

        x, y = (tf.cast(tf.constant(v), dtype) for v in (a, b))
        return lambda: tf.matmul(x, y).numpy()
    import jax
    import jax.numpy as jnp

    x, y = (jnp.asarray(v, dtype=dtype) for v in (a, b))
    product = jax.jit(jnp.matmul)
    return lambda: product(x, y).block_until_ready()


def matmul_rates(repeats: int = 5, frameworks=("pt",)) -> list[dict]:
    """GFLOP/s of a 2048 x 2048 matrix product in float32 and bfloat16, per framework: the machine's yardstick."""
    rows = []
    for framework in [f for name in frameworks for f in ((name, "pt-onednn") if name == "pt" else (name,))]:
        fns = {dtype: _matmul(framework, dtype) for dtype in ("float32", "bfloat16")}
        seconds = timeit(fns, repeats)
        rows += [{"framework": framework, "dtype": dtype, "matmul_gflops": 2 * MATMUL_N ** 3 / s / 1e9}
                 for dtype, s in seconds.items()]
    return rows


def _tokenizer():
    from clip_core.tokenizer import CLIPTokenizerFast

    shared = Path(os.environ.get("TRICLIP_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return CLIPTokenizerFast.from_pretrained(shared / "data" / "clip-bpe")


def _inputs(batch: int, text_length: int | None, size: int = 224) -> dict[str, np.ndarray]:
    """Images and captions for ``batch`` items; text padded to ``text_length`` or to the longest caption."""
    rng = np.random.default_rng(0)
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    enc = _tokenizer()(texts, padding="max_length" if text_length else True, max_length=text_length,
                       truncation=True, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64),
            "pixel_values": rng.standard_normal((batch, 3, size, size)).astype(np.float32)}


def _checkpoint(tmp: Path, preset: str = "ViT-B/32") -> Path:
    from clip_core.checkpoints import save_checkpoint
    from clip_core.config import CLIPConfig
    from clip_core.weights import init_state

    config = CLIPConfig.preset(preset)
    save_checkpoint(tmp / "ckpt", config, init_state(config, "clip", seed=0))
    return tmp / "ckpt"


def default_cases(batches=(1, 8, 32)) -> list[tuple[str, int, int | None]]:
    """``(case, batch, text_length)``: images, text padded to 77, text padded to the longest caption."""
    cases = [("image", b, None) for b in batches]
    cases += [("text", b, 77) for b in batches]
    cases += [("text", b, None) for b in batches]
    return cases


def _gflops(case: str, batch: int, length: int | None) -> float:
    return (IMAGE_GFLOPS if case == "image" else TEXT77_GFLOPS * length / 77) * batch


def _row(backend, dtype, case, batch, length, times, against) -> dict:
    ours = times["ours"]
    return {"backend": backend, "dtype": dtype, "case": case, "batch": batch,
            "text_length": None if case == "image" else length, "against": against,
            "ratio": times.ratio(against, "ours"),
            "ours_ms": ours * 1e3, "theirs_ms": times[against] * 1e3,
            "ours_gflops": _gflops(case, batch, length) / ours}


def _efficiency(backend, batch, times) -> dict:
    """``ours`` against the fastest matrix product timed in the same alternation."""
    ours = _gflops("image", batch, None) / times["ours"]
    best = min((name for name in times if name.startswith("matmul")), key=times.get)
    efficiency = times.ratio(best, "ours") * _gflops("image", batch, None) / (2 * MATMUL_N ** 3 / 1e9)
    return {"backend": backend, "batch": batch, "ours_gflops": ours,
            "matmul_gflops": 2 * MATMUL_N ** 3 / times[best] / 1e9, "efficiency": efficiency}


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _bf16_row(backend, case, batch, length, times, low, full) -> dict:
    low, full = _unit(low), _unit(full)
    return {"backend": backend, "case": case, "batch": batch, "text_length": None if case == "image" else length,
            "float32_ms": times["ours-float32"] * 1e3, "bfloat16_ms": times["ours"] * 1e3,
            "speedup": times.ratio("ours-float32", "ours"), "max_abs_err": float(np.abs(low - full).max()),
            "min_cosine": float((low * full).sum(-1).min())}


def _bf16_cases(cases):
    return [c for c in cases if c[0] == "image" or c[2] is None]  # images and texts padded to the longest


# ---------------------------------------------------------------------------------------------- per backend
def bench_pt(ckpt: Path, cases, repeats: int, out: dict) -> None:
    import torch
    import transformers

    import clip_pt

    models = {}
    for dtype in ("float32", "bfloat16"):
        models[dtype] = (clip_pt.CLIPModel.from_pretrained(ckpt, dtype=dtype),
                         transformers.CLIPModel.from_pretrained(ckpt, dtype=getattr(torch, dtype)).eval())
    matmul, onednn = _matmul("pt"), _matmul("pt-onednn")
    for dtype in ("float32", "bfloat16"):
        ours, theirs = models[dtype]
        for case, batch, length in cases if dtype == "float32" else _bf16_cases(cases):
            x = _inputs(batch, length)
            pix = torch.from_numpy(x["pixel_values"]).to(getattr(torch, dtype))
            ids, mask = torch.from_numpy(x["input_ids"]), torch.from_numpy(x["attention_mask"])

            def call(model, pixels=pix):
                if case == "image":
                    return lambda: model.get_image_features(pixel_values=pixels)
                return lambda: model.get_text_features(input_ids=ids, attention_mask=mask)

            fns = {"ours": call(ours), "transformers": call(theirs)}
            if dtype == "float32" and case == "image":
                fns.update({"matmul": matmul, "matmul-onednn": onednn})
            if dtype == "bfloat16":
                fns["ours-float32"] = call(models["float32"][0], torch.from_numpy(x["pixel_values"]))
            with torch.inference_mode():
                times = timeit(fns, repeats)
                if dtype == "bfloat16":
                    out["bfloat16"].append(_bf16_row("pt", case, batch, ids.shape[1], times,
                                                     fns["ours"]().float(), fns["ours-float32"]()))
            out["models"].append(_row("pt", dtype, case, batch, ids.shape[1], times, "transformers"))
            if "matmul" in fns:
                out["efficiency"].append(_efficiency("pt", batch, times))


def bench_tf(ckpt: Path, cases, repeats: int, out: dict) -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    import transformers

    import clip_tf

    ours = clip_tf.TFCLIPModel.from_pretrained(ckpt)
    low = clip_tf.TFCLIPModel.from_pretrained(ckpt, dtype="bfloat16")
    theirs = transformers.TFCLIPModel.from_pretrained(ckpt, from_pt=not (ckpt / "tf_model.h5").exists())
    image_xla = tf.function(lambda p: theirs.get_image_features(pixel_values=p), jit_compile=True)
    text_xla = tf.function(lambda i, m: theirs.get_text_features(input_ids=i, attention_mask=m), jit_compile=True)
    matmul = _matmul("tf")
    for case, batch, length in cases:
        x = _inputs(batch, length)
        pix = tf.constant(x["pixel_values"])
        ids, mask = tf.constant(x["input_ids"].astype(np.int32)), tf.constant(x["attention_mask"].astype(np.int32))
        if case == "image":
            def call(model):
                return lambda: model.get_image_features(pixel_values=pix).numpy()

            fns = {"ours": call(ours), "transformers-eager": call(theirs),
                   "transformers-xla": lambda: image_xla(pix).numpy(), "matmul": matmul}
        else:
            def call(model):
                return lambda: model.get_text_features(input_ids=ids, attention_mask=mask).numpy()

            fns = {"ours": call(ours), "transformers-eager": call(theirs),
                   "transformers-xla": lambda: text_xla(ids, mask).numpy()}
        times = timeit(fns, repeats)
        for against in ("transformers-eager", "transformers-xla"):
            out["models"].append(_row("tf", "float32", case, batch, ids.shape[1], times, against))
        if "matmul" in fns:
            out["efficiency"].append(_efficiency("tf", batch, times))
    for case, batch, length in _bf16_cases(cases):
        x = _inputs(batch, length)
        if case == "image":
            pix = tf.constant(x["pixel_values"])
            fns = {"ours": lambda: low.get_image_features(pixel_values=pix).numpy(),
                   "ours-float32": lambda: ours.get_image_features(pixel_values=pix).numpy()}
        else:
            ids, mask = tf.constant(x["input_ids"].astype(np.int32)), tf.constant(x["attention_mask"].astype(np.int32))
            fns = {"ours": lambda: low.get_text_features(input_ids=ids, attention_mask=mask).numpy(),
                   "ours-float32": lambda: ours.get_text_features(input_ids=ids, attention_mask=mask).numpy()}
        times = timeit(fns, repeats)
        out["bfloat16"].append(_bf16_row("tf", case, batch, x["input_ids"].shape[1], times, fns["ours"](),
                                         fns["ours-float32"]()))


def bench_flax(ckpt: Path, cases, repeats: int, out: dict) -> None:
    import jax
    import jax.numpy as jnp
    import transformers

    import clip_flax

    from_pt = not (ckpt / "flax_model.msgpack").exists()
    models = {dtype: (clip_flax.FlaxCLIPModel.from_pretrained(ckpt, dtype=getattr(jnp, dtype)),
                      transformers.FlaxCLIPModel.from_pretrained(ckpt, from_pt=from_pt, dtype=getattr(jnp, dtype)))
              for dtype in ("float32", "bfloat16")}

    def jitted(model, case):  # the user's jax.jit around the public call, params as an argument
        if case == "image":
            fn = jax.jit(lambda p, x: model.get_image_features(pixel_values=x, params=p))
            return lambda x: fn(model.params, x["pixel_values"]).block_until_ready()
        fn = jax.jit(lambda p, i, m: model.get_text_features(input_ids=i, attention_mask=m, params=p))
        return lambda x: fn(model.params, x["ids"], x["mask"]).block_until_ready()

    fns_by = {(dtype, who, case): jitted(model, case) for dtype, pair in models.items()
              for who, model in zip(("ours", "transformers"), pair) for case in ("image", "text")}
    matmul = _matmul("flax")
    for dtype in ("float32", "bfloat16"):
        for case, batch, length in cases if dtype == "float32" else _bf16_cases(cases):
            x = _inputs(batch, length)
            x = {"pixel_values": jnp.asarray(x["pixel_values"]), "ids": jnp.asarray(x["input_ids"], jnp.int32),
                 "mask": jnp.asarray(x["attention_mask"], jnp.int32)}
            fns = {who: (lambda f=fns_by[dtype, who, case]: f(x)) for who in ("ours", "transformers")}
            if dtype == "float32" and case == "image":
                fns["matmul"] = matmul
            if dtype == "bfloat16":
                fns["ours-float32"] = lambda f=fns_by["float32", "ours", case]: f(x)
            times = timeit(fns, repeats)
            out["models"].append(_row("flax", dtype, case, batch, x["ids"].shape[1], times, "transformers"))
            if "matmul" in fns:
                out["efficiency"].append(_efficiency("flax", batch, times))
            if dtype == "bfloat16":
                out["bfloat16"].append(_bf16_row("flax", case, batch, x["ids"].shape[1], times, fns["ours"](),
                                                 fns["ours-float32"]()))


def run(backends=("pt", "tf", "flax"), batches=(1, 8, 32), repeats: int = 5) -> dict[str, list[dict]]:
    """Benchmark each backend against transformers' same backend: ``{"models", "efficiency", "bfloat16"}`` rows."""
    cases = default_cases(batches)
    out: dict[str, list[dict]] = {"models": [], "efficiency": [], "bfloat16": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp))
        runners = {"pt": bench_pt, "tf": bench_tf, "flax": bench_flax}
        for name in backends:
            runners[name](ckpt, cases, repeats, out)
            gc.collect()
    return out
