"""Latency as a user meets it, against transformers' same backend, ViT-B/32 shapes: the first call in a fresh
process, the first call at a new batch size, the first call at a new text length, and the steady state.

The call is the full forward, ``model(input_ids=..., pixel_values=..., attention_mask=...)`` (texts from
``bench.models.CAPTIONS`` padded to the longest of the batch, as the processor does by default), never wrapped by the
user: triclip's default call path against transformers' plain call (TensorFlow: eager, and under
``tf.function(jit_compile=True)``, which a user wraps to get speed; Flax: the un-jitted call). Each contender runs in
its own fresh interpreter (:func:`_child`) for the loading and the first calls, ``--rounds`` times, alternating
the order (medians); the steady state is timed in
one process with :func:`bench.models.timeit` (paired, alternated), after triclip's background compile is done.
``ratio`` is ours / theirs for the first calls (below 1: triclip waits less) and theirs / ours for the steady state
(above 1: triclip is faster), as in the other sections.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: (batch, number of caption words kept) of the calls in order: first, new batch size, new text length
SHAPES = {"first": (8, None), "new_batch": (5, None), "new_length": (8, 4)}
CONTENDERS = {"pt": ("ours", "transformers"), "tf": ("ours", "transformers-eager", "transformers-xla"),
              "flax": ("ours", "transformers")}


def _inputs(batch: int, words: int | None) -> dict[str, np.ndarray]:
    from bench.models import CAPTIONS, _tokenizer

    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    if words is not None:
        texts = [" ".join(t.split()[:words]) for t in texts]
    enc = _tokenizer()(texts, padding=True, return_tensors="np")
    pixels = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    return {"input_ids": enc["input_ids"].astype(np.int32), "attention_mask": enc["attention_mask"].astype(np.int32),
            "pixel_values": pixels}


def _model(backend: str, contender: str, ckpt: Path):
    """A callable ``f(inputs) -> numpy logits`` for one contender, and the model."""
    if backend == "pt":
        import torch

        if contender == "ours":
            import clip_pt
            model = clip_pt.CLIPModel.from_pretrained(ckpt)
        else:
            import transformers
            model = transformers.CLIPModel.from_pretrained(ckpt).eval()

        def call(x):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in x.items()}).logits_per_text.numpy()
        return call, model
    if backend == "tf":
        import tensorflow as tf

        if contender == "ours":
            import clip_tf
            model = clip_tf.TFCLIPModel.from_pretrained(ckpt)
            run = model
        else:
            import transformers
            model = transformers.TFCLIPModel.from_pretrained(ckpt, from_pt=True)
            run = tf.function(model, jit_compile=True) if contender == "transformers-xla" else model
        return (lambda x: run(**{k: tf.constant(v) for k, v in x.items()}).logits_per_text.numpy()), model
    import jax.numpy as jnp
    if contender == "ours":
        import clip_flax
        model = clip_flax.FlaxCLIPModel.from_pretrained(ckpt)
    else:
        import transformers
        model = transformers.FlaxCLIPModel.from_pretrained(ckpt, from_pt=True)
    return (lambda x: np.asarray(model(**{k: jnp.asarray(v) for k, v in x.items()}).logits_per_text)), model


def _child(backend: str, contender: str, ckpt: str) -> dict:
    """In a fresh interpreter: seconds of ``from_pretrained``, of the first call, of the first call at a new batch
    size and of the first call at a new text length (inputs prepared before the clock starts)."""
    inputs = {name: _inputs(*shape) for name, shape in SHAPES.items()}
    start = time.perf_counter()
    call, _ = _model(backend, contender, Path(ckpt))
    out = {"load": time.perf_counter() - start}
    for name in SHAPES:
        start = time.perf_counter()
        call(inputs[name])
        out[name] = time.perf_counter() - start
    out["text_lengths"] = [int(inputs[name]["input_ids"].shape[1]) for name in SHAPES]
    return out


def _fresh(backend: str, contender: str, ckpt: Path) -> dict:
    code = ("import json, sys; from bench.latency import _child; "
            f"print('LATENCY' + json.dumps(_child({backend!r}, {contender!r}, {str(ckpt)!r})))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    for line in done.stdout.splitlines():
        if line.startswith("LATENCY"):
            return json.loads(line[len("LATENCY"):])
    raise RuntimeError(f"latency child {backend}/{contender} failed:\n{done.stderr[-3000:]}")


def _steady(backend: str, ckpt: Path, repeats: int) -> dict:
    """Paired steady-state seconds per contender at the first shape (after warm-up; triclip's compile done)."""
    from bench.models import timeit

    x = _inputs(*SHAPES["first"])
    fns = {}
    for contender in CONTENDERS[backend]:
        call, model = _model(backend, contender, ckpt)
        for _ in range(3):  # past the call that starts triclip's background compile of this shape (TF: 2nd, Flax: 3rd)
            call(x)
        if hasattr(model, "_compiled") and hasattr(model._compiled, "wait"):
            model._compiled.wait()
        fns[contender] = (lambda c=call: c(x))
    return timeit(fns, repeats, min_seconds=3.0)


def _first_calls(backend: str, ckpt: Path, rounds: int) -> dict:
    """Per contender, the median over ``rounds`` fresh processes of each moment's seconds; the contenders' order is
    reversed every round, so a change in the machine's load falls on both sides alike."""
    runs = {c: [] for c in CONTENDERS[backend]}
    for r in range(rounds):
        order = CONTENDERS[backend] if r % 2 == 0 else CONTENDERS[backend][::-1]
        for contender in order:
            runs[contender].append(_fresh(backend, contender, ckpt))
    out = {}
    for contender, results in runs.items():
        out[contender] = {key: statistics.median(r[key] for r in results)
                          for key in results[0] if key != "text_lengths"}
        out[contender]["text_lengths"] = results[0]["text_lengths"]
    return out


def run(backends=("pt", "tf", "flax"), repeats: int = 3, rounds: int = 3) -> list[dict]:
    """Rows ``{backend, moment, against, ours_s, theirs_s, ratio}`` for every backend and moment."""
    from bench.models import _checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp))
        for backend in backends:
            first = _first_calls(backend, ckpt, rounds)
            for moment in ("load", *SHAPES):
                for against in CONTENDERS[backend][1:]:
                    ours, theirs = first["ours"][moment], first[against][moment]
                    rows.append({"backend": backend, "moment": moment, "against": against,
                                 "text_lengths": "/".join(map(str, first["ours"]["text_lengths"])),
                                 "ours_s": round(ours, 4), "theirs_s": round(theirs, 4),
                                 "ratio": round(ours / theirs, 3)})
            times = _steady(backend, ckpt, repeats)
            for against in CONTENDERS[backend][1:]:
                rows.append({"backend": backend, "moment": "steady", "against": against, "text_lengths": "",
                             "ours_s": round(times["ours"], 4), "theirs_s": round(times[against], 4),
                             "ratio": round(times.ratio(against, "ours"), 3)})
    return rows


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="pt,tf,flax")
    parser.add_argument("--repeats", type=int, default=3, help="steady-state repeats")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per contender (medians)")
    args = parser.parse_args(argv)
    before = os.getloadavg()[0]
    rows = run([b for b in args.backends.split(",") if b], args.repeats, args.rounds)
    print(f"load average {before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; {os.cpu_count()} CPUs")
    keys = list(rows[0])
    print("  ".join(keys))
    for row in rows:
        print("  ".join(str(row[k]) for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
