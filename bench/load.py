"""Checkpoint loading: wall time and peak memory of ours vs transformers' ``from_pretrained``, per backend.

Each load runs in a fresh interpreter, so peak RSS belongs to that load alone. The framework and the loading
library (triclip's backend, or transformers) are imported and the garbage collector run before the clock starts:
the figures are the load itself (``load_s``) and the growth of peak RSS over that baseline (``peak_mb``, the peak
reset after the imports where Linux allows it; pages of a memory-mapped file count once touched). For PyTorch the first ``get_image_features`` call follows (``first_s``,
``peak_first_mb``), since a memory-mapped load defers reading the weights to their first use. Medians over repeats,
contenders alternating.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_SNIPPET = r"""
import gc, json, os, resource, sys, time
backend, who, path = sys.argv[1:4]
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np
if backend == "pt":
    import torch
    if who == "ours":
        from clip_pt import CLIPModel as Model
    else:
        from transformers import CLIPModel as Model
    load = lambda: Model.from_pretrained(path)
    pixels = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32))
    def first(model):
        with torch.inference_mode():
            model.get_image_features(pixel_values=pixels)
elif backend == "tf":
    import tensorflow as tf
    if who == "ours":
        from clip_tf import TFCLIPModel as Model
        load = lambda: Model.from_pretrained(path)
    else:
        from transformers import TFCLIPModel as Model
        load = lambda: Model.from_pretrained(path, from_pt=True)
    first = None
else:
    import jax
    if who == "ours":
        from clip_flax import FlaxCLIPModel as Model
        load = lambda: Model.from_pretrained(path)
    else:
        from transformers import FlaxCLIPModel as Model
        load = lambda: Model.from_pretrained(path, from_pt=True)
    first = None
def status(key):  # kB figures of /proc/self/status, in MiB
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key + ":")) / 1024
gc.collect()
try:  # reset the peak (VmHWM) to the current RSS, so the import's own peak does not hide the load's
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    peak, base = (lambda: status("VmHWM")), status("VmRSS")
except OSError:
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = peak()
start = time.perf_counter()
model = load()
result = {"load_s": time.perf_counter() - start, "peak_mb": peak() - base}
if first is not None:
    start = time.perf_counter()
    first(model)
    result.update(first_s=time.perf_counter() - start, peak_first_mb=peak() - base)
print(json.dumps(result))
"""


def measure(ckpt: Path, backend: str, who: str) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", _SNIPPET, backend, who, str(ckpt)], capture_output=True,
                         text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"loading with {who} ({backend}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int = 3, preset: str = "ViT-B/32", backends=("pt", "tf", "flax")) -> list[dict]:
    """Median load time and peak-memory growth for ours and transformers, alternating, one process per load."""
    from bench.models import _checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp), preset)
        size_mb = (ckpt / "model.safetensors").stat().st_size / 2 ** 20
        for backend in backends:
            results = {"ours": [], "transformers": []}
            for _ in range(repeats):
                for who in results:
                    results[who].append(measure(ckpt, backend, who))
            for who, runs in results.items():
                row = {"backend": backend, "loader": who, "file_mb": size_mb}
                for key in runs[0]:
                    row[key] = statistics.median(r[key] for r in runs)
                rows.append(row)
    return rows
