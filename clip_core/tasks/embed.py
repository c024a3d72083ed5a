"""``triclip embed``'s local engine: a corpus -> parquet shards of L2-normalised float32 embeddings.

Images are decoded and preprocessed by a thread pool several batches ahead of the model (PIL's decoder, the resize
kernel and numpy release the GIL), so preprocessing overlaps the model's work. Each finished shard is written to a
temporary and renamed; a killed job rerun on the same output folder keeps the finished shards and redoes the rest.
An image that cannot be read is skipped and reported (id, path, error) in ``errors.jsonl``; it never stops the run.

Output folder: ``manifest.json`` (what the job is), ``part-00000.parquet`` ... (columns ``id``, ``path`` or
``text``, ``caption`` where the source has one, ``embedding`` fixed-size list of float32), ``errors.jsonl`` and
``summary.json`` when the job is complete.
"""

from __future__ import annotations

import collections
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clip_core.tasks.corpus import Corpus, shard_name
from clip_core.tasks.features import (backend_name, fixed_shapes, image_features, l2_normalize, load_model,
                                     text_features)

MANIFEST, SUMMARY, ERRORS = "manifest.json", "summary.json", "errors.jsonl"


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_processor(model_path, kind: str):
    """The image processor (for ``kind="image"``) or the tokenizer (``"text"``) saved with the model.

    A model folder without ``preprocessor_config.json`` gets CLIP's preprocessing at the model's image size (read
    from ``config.json``, or from an export folder's ``export.json``).
    """
    from clip_core import exporting
    from clip_core.config import CLIPConfig
    from clip_core.image_processing import CLIPImageProcessor
    from clip_core.tokenizer import CLIPTokenizerFast

    path = Path(model_path)
    if kind == "text":
        return CLIPTokenizerFast.from_pretrained(path)
    if (path / "preprocessor_config.json").is_file() or not path.is_dir():
        return CLIPImageProcessor.from_pretrained(path)
    if (path / exporting.MANIFEST).is_file() and not (path / "config.json").is_file():
        config = CLIPConfig.from_dict(exporting.read_manifest(path)["config"])
    else:
        config = CLIPConfig.from_pretrained(path)
    size = config.vision_config.image_size
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _open_rgb(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


class Embedder:
    """One backend's model plus its preprocessing, split in two halves so they can run on different threads:
    :meth:`prepare` (files/texts -> model inputs, thread-safe) and :meth:`embed` (inputs -> normalised rows)."""

    def __init__(self, model_path, backend: str, kind: str, batch_size: int = 32, dtype=None, model=None,
                 loader=None):
        self.loader = loader or _open_rgb
        self.kind, self.backend, self.batch_size = kind, backend_name(backend), int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model if model is not None else load_model(model_path, self.backend, dtype=dtype)
        self.processor = load_processor(model_path, kind)
        self.dim = int(self.model.config.projection_dim)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)

    def prepare(self, ids, items):
        """``(inputs or None, kept positions, errors)`` for one batch; unreadable images become errors."""
        if self.kind == "text":
            padding = "max_length" if fixed_shapes(self.model) else "longest"  # fixed shapes: one compiled program
            enc = self.processor(list(items), padding=padding, truncation=True, max_length=self.max_length,
                                 return_tensors="np")
            return (enc["input_ids"], enc["attention_mask"]), list(range(len(items))), []
        pixels, kept, errors = [], [], []
        for pos, (i, path) in enumerate(zip(ids, items)):
            try:
                img = self.loader(path)
                pixels.append(self.processor(img, return_tensors="np")["pixel_values"][0])
                kept.append(pos)
            except Exception as err:  # any unreadable file is reported, never fatal
                errors.append({"id": i, "path": path, "error": f"{type(err).__name__}: {err}"})
        return (np.stack(pixels) if pixels else None), kept, errors

    def embed(self, inputs) -> np.ndarray:
        """Normalised float32 embeddings of prepared ``inputs``; TF/JAX batches are padded to ``batch_size``."""
        arrays = inputs if isinstance(inputs, tuple) else (inputs,)
        n = len(arrays[0])
        if fixed_shapes(self.model) and n < self.batch_size:
            arrays = tuple(np.concatenate([a, np.repeat(a[-1:], self.batch_size - n, axis=0)]) for a in arrays)
        if self.kind == "text":
            out = text_features(self.model, arrays[0], arrays[1])
        else:
            out = image_features(self.model, arrays[0])
        return l2_normalize(out[:n])


def embed_items(embedder: Embedder, ids, items, workers: int = 2, prefetch: int | None = None, on_batch=None):
    """Embed ``items`` in memory with the same overlapped pipeline: ``(kept positions, embeddings, errors)``."""
    size = embedder.batch_size
    prefetch = prefetch or 2 * max(1, workers)
    kept_all, embeds, errors_all = [], [], []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="triclip-prep") as pool:
        starts = iter(range(0, len(items), size))
        pending = collections.deque()

        def submit():  # queue the next batch's preprocessing, if any is left
            b = next(starts, None)
            if b is not None:
                pending.append((b, pool.submit(embedder.prepare, ids[b:b + size], items[b:b + size])))

        for _ in range(prefetch):
            submit()
        while pending:
            b, future = pending.popleft()
            submit()
            inputs, kept, errors = future.result()
            if inputs is not None:
                embeds.append(embedder.embed(inputs))
                kept_all.extend(b + k for k in kept)
            errors_all.extend(errors)
            if on_batch:
                on_batch(min(size, len(items) - b))
    out = np.concatenate(embeds) if embeds else np.zeros((0, embedder.dim), np.float32)
    return kept_all, out, errors_all


def _table(corpus: Corpus, start: int, kept: list[int], embeds: np.ndarray, dim: int):
    import pyarrow as pa

    rows = [start + k for k in kept]
    data = {"id": pa.array([corpus.ids[r] for r in rows], pa.string()),
            ("text" if corpus.kind == "text" else "path"): pa.array([corpus.items[r] for r in rows], pa.string())}
    for name, values in corpus.columns.items():
        data[name] = pa.array([values[r] for r in rows], pa.string())
    flat = pa.array(np.ascontiguousarray(embeds, dtype=np.float32).reshape(-1), pa.float32())
    data["embedding"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.table(data)


def _write_shard(out_dir: Path, index: int, table, errors: list[dict]) -> None:
    import pyarrow.parquet as pq

    error_file = out_dir / f"part-{index:05d}.errors.jsonl"
    if errors:  # written before the shard: a shard on disk always has its errors next to it
        tmp = error_file.with_name(f".{error_file.name}.tmp")
        tmp.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in errors), encoding="utf-8")
        os.replace(tmp, error_file)
    elif error_file.exists():
        error_file.unlink()
    final = out_dir / shard_name(index)
    tmp = final.with_name(f".{final.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, final)


def run_shards(embedder: Embedder, corpus: Corpus, shards, out_dir, workers: int = 2, prefetch: int | None = None,
               on_batch=None) -> int:
    """Embed and write ``shards`` (``(index, start, stop)`` triples) into ``out_dir``; preprocessing runs on
    ``workers`` threads up to ``prefetch`` batches ahead of the model. ``on_batch(n_items)`` reports progress.
    Returns the number of errors."""
    n_errors = 0
    for index, start, stop in shards:
        kept, embeds, errors = embed_items(embedder, corpus.ids[start:stop], corpus.items[start:stop], workers,
                                           prefetch, on_batch)
        _write_shard(Path(out_dir), index, _table(corpus, start, kept, embeds, embedder.dim), errors)
        n_errors += len(errors)
    return n_errors


def prepare_output(corpus: Corpus, out_dir, shard_size: int, model_path, backend: str, overwrite: bool = False):
    """Create or re-open ``out_dir`` for this job; returns the shards still to do. A folder holding a different job
    (another corpus, model or shard size) is refused unless ``overwrite``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"format": 1, "kind": corpus.kind, "source": corpus.source, "fingerprint": corpus.fingerprint(),
                "n_items": len(corpus), "shard_size": int(shard_size), "model": str(Path(model_path).resolve())
                if Path(model_path).exists() else str(model_path), "backend": backend_name(backend)}
    shards = corpus.shards(shard_size)
    old = out_dir / MANIFEST
    if old.exists():
        previous = json.loads(old.read_text(encoding="utf-8"))
        same = all(previous.get(k) == manifest[k] for k in ("kind", "fingerprint", "shard_size", "model"))
        if not same and not overwrite:
            raise ValueError(f"{out_dir} holds another embedding job (different input, model or shard size); "
                             "use a new folder or --overwrite")
        if not same:
            for p in out_dir.glob("part-*"):
                p.unlink()
            for name in (SUMMARY, ERRORS):
                (out_dir / name).unlink(missing_ok=True)
    elif any(out_dir.glob("part-*.parquet")):
        raise ValueError(f"{out_dir} holds parquet shards but no {MANIFEST}; use a new folder")
    for stale in out_dir.glob(".*.tmp"):  # a temporary left by a killed run
        stale.unlink()
    _write_json(old, manifest)
    return [s for s in shards if not (out_dir / shard_name(s[0])).exists()], shards


def finish_output(out_dir, shards, seconds: float) -> dict:
    """Gather the shards' errors into ``errors.jsonl`` and write ``summary.json``; returns the summary."""
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    lines, n_rows = [], 0
    for index, start, stop in shards:
        error_file = out_dir / f"part-{index:05d}.errors.jsonl"
        if error_file.exists():
            lines.extend(error_file.read_text(encoding="utf-8").splitlines(keepends=True))
        n_rows += pq.ParquetFile(out_dir / shard_name(index)).metadata.num_rows
    tmp = out_dir / f".{ERRORS}.tmp"
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, out_dir / ERRORS)
    summary = {"n_items": shards[-1][2] if shards else 0, "n_embedded": n_rows, "n_errors": len(lines),
               "n_shards": len(shards), "seconds": round(seconds, 3)}
    _write_json(out_dir / SUMMARY, summary)
    return summary


def _progress(total: int, initial: int, kind: str):
    from tqdm.auto import tqdm

    disable = os.environ.get("TRICLIP_NO_PROGRESS") == "1"
    return tqdm(total=total, initial=initial, unit=" images" if kind == "image" else " texts", disable=disable,
                dynamic_ncols=True)


def embed_corpus(corpus: Corpus, out_dir, model_path, backend: str = "pt", batch_size: int = 32,
                 shard_size: int = 4096, workers: int | None = None, dtype=None, overwrite: bool = False,
                 model=None) -> dict:
    """Embed ``corpus`` with the model at ``model_path`` on ``backend`` into parquet shards under ``out_dir``.

    Resumable: finished shards are kept and only the rest are computed. Returns the summary (items, embedded rows,
    errors, shards, seconds). ``model`` may pass an already loaded model of ``backend`` (loaded from
    ``model_path``).
    """
    begin = time.perf_counter()
    todo, shards = prepare_output(corpus, out_dir, shard_size, model_path, backend, overwrite)
    if todo:
        embedder = Embedder(model_path, backend, corpus.kind, batch_size, dtype=dtype, model=model)
        workers = workers or min(4, os.cpu_count() or 1)
        remaining = sum(stop - start for _, start, stop in todo)
        with _progress(len(corpus), len(corpus) - remaining, corpus.kind) as bar:
            run_shards(embedder, corpus, todo, out_dir, workers, on_batch=bar.update)
    return finish_output(out_dir, shards, time.perf_counter() - begin)


def read_embeddings(out_dir) -> dict:
    """Every shard of an ``embed`` output, in order: ``{"id": [...], "path"|"text": [...], ("caption": [...]),
    "embedding": float32 [n, dim], "manifest": {...}}``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        raise FileNotFoundError(f"{out_dir} is not a triclip embed output (no {MANIFEST})")
    manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    files = sorted(out_dir.glob("part-*.parquet"))
    if not files:
        raise ValueError(f"{out_dir} holds no shards yet; run triclip embed first")
    table = pa.concat_tables([pq.read_table(f) for f in files])
    out = {name: table.column(name).to_pylist() for name in table.column_names if name != "embedding"}
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    out["embedding"] = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    out["manifest"] = manifest
    return out
