"""Checkpoint loading: wall time and peak memory of ours vs transformers' ``from_pretrained``.

Each load runs in a fresh interpreter (so peak RSS belongs to that load alone), after the framework is imported; the
figure is the growth of peak RSS over the post-import baseline, median over repeats.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_SNIPPET = r"""
import json, resource, sys, time
import torch
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if sys.argv[1] == "ours":
    from clip_pt import CLIPModel
    model = CLIPModel.from_pretrained(sys.argv[2])
else:
    import transformers
    model = transformers.CLIPModel.from_pretrained(sys.argv[2])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1024}))
"""


def measure(ckpt: Path, who: str) -> dict:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _SNIPPET, who, str(ckpt)], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "PYTHONPATH": root})
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int = 3, preset: str = "ViT-B/32") -> list[dict]:
    """Median load time and peak-memory growth for ours and transformers, alternating, one process per load."""
    from bench.models import _checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _checkpoint(Path(tmp), preset)
        size_mb = (ckpt / "model.safetensors").stat().st_size / 2 ** 20
        results = {"ours": [], "transformers": []}
        for _ in range(repeats):
            for who in results:
                results[who].append(measure(ckpt, who))
    rows = []
    for who, runs in results.items():
        rows.append({"loader": who, "file_mb": size_mb,
                     "seconds": statistics.median(r["seconds"] for r in runs),
                     "peak_mb": statistics.median(r["peak_mb"] for r in runs)})
    return rows
