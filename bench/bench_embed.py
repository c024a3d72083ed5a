"""End-to-end ``triclip embed`` of JPEG files against the model alone and against a clip-retrieval-style loop.

Run as ``python -m bench.bench_embed [--count N] [--batch B] [--repeats R] [--backend pt|tf|flax|onnx] [--ray]``. One
process, ViT-B/32 shapes (random weights), photo-sized JPEG files written to a temporary folder. Measured,
alternately, medians over repeats:

- ``model-only``: triclip's ``get_image_features`` of ``--backend`` on pre-decoded, preprocessed tensors (the
  ceiling of that backend);
- ``triclip-embed``: :func:`clip_core.tasks.embed_corpus` on ``--backend`` from the files to parquet shards
  (decode, preprocess, model, write);
- ``clip-retrieval-style``: transformers' ``CLIPModel`` fed by a ``torch.utils.data.DataLoader`` whose dataset opens
  each file with PIL and runs transformers' ``CLIPImageProcessor`` (``num_workers`` = CPUs), features normalised and
  collected, as clip-retrieval's inference loop does (always PyTorch: clip-retrieval's own framework);
- with ``--ray``: the Ray engine on this machine (one model actor holding every CPU), against the local engine, both
  including model loading.

Ratios: embed / model-only (target >= 0.9), embed / clip-retrieval-style (>= 1.5), ray / local (>= 0.8).

``--retrieval N [--dim D]`` instead measures :func:`clip_core.tasks.retrieval_metrics` over N images x N captions in a
fresh subprocess: its peak resident memory (target: within 2 GiB at N = 100k) and its time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _write_jpegs(folder: Path, count: int) -> list[Path]:
    from bench.bench_image import photos

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(photos(count)):
        path = folder / f"{i:05d}.jpg"
        image.save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def _model_folder(folder: Path, seed: int = 0, backend: str = "pt"):
    """ViT-B/32 shapes, random weights: triclip's model, saved (safetensors + preprocessing) for loaders; the
    model of ``backend`` loaded from that folder."""
    from clip_core import CLIPConfig, CLIPImageProcessor
    from clip_core.tasks.features import load_model
    from clip_pt import CLIPModel

    model = CLIPModel(CLIPConfig(), seed=seed).eval()
    model.save_pretrained(folder, overwrite=True)
    CLIPImageProcessor().save_pretrained(folder)
    # onnx: exported once into the cache ($TRICLIP_CACHE, set to the bench's temporary folder)
    return model if backend == "pt" else load_model(folder, backend)


def _clip_retrieval_style(folder: Path, paths, batch: int, workers: int):
    """transformers + a torch DataLoader, as clip-retrieval's inference runs (files decoded in worker processes)."""
    import torch
    import transformers
    from PIL import Image

    processor = transformers.CLIPImageProcessor.from_pretrained(folder)

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as image:
                return processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"][0]

    model = transformers.CLIPModel.from_pretrained(folder).eval()

    def run():
        loader = torch.utils.data.DataLoader(Files(), batch_size=batch, num_workers=workers, shuffle=False)
        out = []
        with torch.no_grad():
            for pixels in loader:
                features = model.get_image_features(pixel_values=pixels)
                out.append((features / features.norm(dim=-1, keepdim=True)).cpu().numpy())
        return np.concatenate(out)

    return run


def run(count: int = 64, batch: int = 16, repeats: int = 2, ray: bool = False, workers: int | None = None,
        ray_only: bool = False, backend: str = "pt"):
    """Rows of images/second per candidate and the ratios; see the module docstring (``ray_only``: only the Ray
    and local engines; ``backend``: triclip's, for the model-only, embed and engine rows)."""
    import torch

    from clip_core import CLIPImageProcessor
    from clip_core.tasks.corpus import image_source
    from clip_core.tasks.embed import embed_corpus, read_embeddings
    from clip_core.tasks.features import image_features, l2_normalize

    os.environ["TRICLIP_NO_PROGRESS"] = "1"
    workers = workers or os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="triclip-bench-embed-"))
    cache, os.environ["TRICLIP_CACHE"] = os.environ.get("TRICLIP_CACHE"), str(tmp / "cache")
    try:
        paths = _write_jpegs(tmp / "images", count)
        model = _model_folder(tmp / "model", backend=backend)
        from PIL import Image

        processor = CLIPImageProcessor()
        pixels = processor([Image.open(p).convert("RGB") for p in paths], return_tensors="np")["pixel_values"]
        corpus = image_source(tmp / "images")
        outputs = {}

        def model_only():
            outputs["model-only"] = l2_normalize(np.concatenate([image_features(model, pixels[i:i + batch])
                                                                 for i in range(0, count, batch)]))

        def triclip_embed():
            out = tmp / "embed"
            shutil.rmtree(out, ignore_errors=True)
            embed_corpus(corpus, out, tmp / "model", backend=backend, batch_size=batch, shard_size=count,
                         workers=workers, model=model)
            outputs["triclip-embed"] = read_embeddings(out)["embedding"]

        candidates = {} if ray_only else {"model-only": model_only, "triclip-embed": triclip_embed}
        if not ray_only:
            try:
                loop = _clip_retrieval_style(tmp / "model", paths, batch, workers)
                candidates["clip-retrieval-style"] = lambda: outputs.__setitem__("clip-retrieval-style", loop())
            except ImportError:  # no transformers: that comparison is left out
                pass
        if ray:
            import ray as ray_module

            from clip_core.tasks.ray_engine import embed_corpus_ray

            ray_module.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)

            def local_with_load():
                out = tmp / "local"
                shutil.rmtree(out, ignore_errors=True)
                embed_corpus(corpus, out, tmp / "model", backend=backend, batch_size=batch,
                             shard_size=max(1, count // 2), workers=workers)

            def ray_engine():
                out = tmp / "ray"
                shutil.rmtree(out, ignore_errors=True)
                embed_corpus_ray(corpus, out, tmp / "model", backend=backend, batch_size=batch,
                                 shard_size=max(1, count // 2),
                                 num_actors=1, cpus_per_actor=os.cpu_count(), workers=workers)
                outputs["ray"] = read_embeddings(out)["embedding"]

            candidates.update({"local-engine+load": local_with_load, "ray-engine+load": ray_engine})
        for fn in candidates.values():  # warm-up
            fn()
        times = {name: [] for name in candidates}
        for _ in range(repeats):
            for name, fn in candidates.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        rows = [{"name": name, "images": count, "batch": batch, "median_s": statistics.median(t),
                 "images_per_s": count / statistics.median(t)} for name, t in times.items()]
        rate = {r["name"]: r["images_per_s"] for r in rows}
        ratios = {"embed / model-only": rate["triclip-embed"] / rate["model-only"]} if not ray_only else {}
        if "clip-retrieval-style" in rate:
            ratios["embed / clip-retrieval-style"] = rate["triclip-embed"] / rate["clip-retrieval-style"]
        if ray:
            ratios["ray / local (one machine)"] = rate["ray-engine+load"] / rate["local-engine+load"]
        reference = outputs.get("model-only", outputs.get("ray"))
        diffs = {name: float(np.abs(out - reference).max()) for name, out in outputs.items()}
        rows.append({"name": "ratios", "backend": backend, **ratios, "max_abs_diff_vs_model_only": diffs,
                     "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "workers": workers})
        return rows
    finally:
        if ray:
            import ray as ray_module

            ray_module.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        if cache is None:
            os.environ.pop("TRICLIP_CACHE")
        else:
            os.environ["TRICLIP_CACHE"] = cache


_RETRIEVAL = """
import resource, sys, time
import numpy as np
from clip_core.tasks import retrieval_metrics
n, dim = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
img = rng.standard_normal((n, dim), dtype=np.float32)
txt = img + 2 * rng.standard_normal((n, dim), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
m = retrieval_metrics(img, txt, np.arange(n))
print(json.dumps({"n": n, "dim": dim, "seconds": time.perf_counter() - start,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
                  "rss_before_gib": base / 2 ** 20, "text_to_image_R@10": m["text_to_image_R@10"]}))
"""


def retrieval_memory(n: int = 100_000, dim: int = 512) -> dict:
    """Peak resident memory (GiB, the whole process: Python, numpy and the inputs included) and seconds of
    ``retrieval_metrics`` on ``n`` x ``n`` random pairs, in a fresh subprocess."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", "import json\n" + _RETRIEVAL, str(n), str(dim)], check=True,
                         capture_output=True, text=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="JPEG files (default 64)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="preprocessing threads / DataLoader workers")
    parser.add_argument("--backend", choices=("pt", "tf", "flax", "onnx"), default="pt",
                        help="triclip's backend (the clip-retrieval-style loop is PyTorch in every case)")
    parser.add_argument("--ray", action="store_true", help="also time the Ray engine on this machine")
    parser.add_argument("--ray-only", action="store_true", help="time only the Ray and local engines")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--retrieval", type=int, default=None, metavar="N",
                        help="measure retrieval_metrics' memory on N x N pairs instead")
    parser.add_argument("--dim", type=int, default=512, help="embedding size for --retrieval (default 512)")
    args = parser.parse_args(argv)
    if args.retrieval:
        print(json.dumps(retrieval_memory(args.retrieval, args.dim)))
        return
    rows = run(args.count, args.batch, args.repeats, args.ray or args.ray_only, args.workers, args.ray_only,
               args.backend)
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
