"""``triclip embed --engine ray``: the local engine's job spread over a Ray cluster with Ray Data.

The driver plans the shards exactly as the local engine does (same manifest, same shard files, same resume rule),
turns the shards still to do into a Ray Dataset of one row per shard, and maps it through a pool of model actors
(``map_batches`` with a callable class): each actor loads the model once, embeds whole shards with the local
engine's pipeline (preprocessing threads ahead of the model) and writes them into the output folder. So the files are
those of the local engine, byte for byte in content.

Every node must see the input files and the output folder at the same paths (a shared filesystem), as with
clip-retrieval. ``address=None`` starts a local Ray instance (or joins the one ``RAY_ADDRESS`` names);
``address="auto"`` or ``"ray://host:10001"`` joins a running cluster.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from clip_core.tasks.corpus import Corpus
from clip_core.tasks.embed import Embedder, _progress, finish_output, prepare_output, run_shards
from clip_core.tasks.features import backend_name
from clip_core.tasks.onnx_model import exported_folder


class _ShardActor:
    """A model actor: loads the model once, then embeds and writes every shard row it is given."""

    def __init__(self, model_path, backend, kind, batch_size, dtype, out_dir, workers):
        self.embedder = Embedder(model_path, backend, kind, batch_size, dtype=dtype)
        self.out_dir, self.workers = out_dir, workers

    def __call__(self, batch):
        done = {"index": [], "n_items": [], "n_errors": []}
        for index, payload in zip(batch["index"], batch["payload"]):
            data = json.loads(str(payload))
            corpus = Corpus(data["kind"], tuple(data["ids"]), tuple(data["items"]), data["source"],
                            {k: list(v) for k, v in data["columns"].items()})
            n_errors = run_shards(self.embedder, corpus, [(int(index), 0, len(corpus))], self.out_dir, self.workers)
            done["index"].append(int(index))
            done["n_items"].append(len(corpus))
            done["n_errors"].append(n_errors)
        return done


def _rows(corpus: Corpus, todo) -> list[dict]:
    rows = []
    for index, start, stop in todo:
        payload = {"kind": corpus.kind, "source": corpus.source, "ids": corpus.ids[start:stop],
                   "items": corpus.items[start:stop],
                   "columns": {k: list(v[start:stop]) for k, v in corpus.columns.items()}}
        rows.append({"index": index, "payload": json.dumps(payload)})
    return rows


def embed_corpus_ray(corpus: Corpus, out_dir, model_path, backend: str = "pt", batch_size: int = 32,
                     shard_size: int = 4096, address: str | None = None, num_actors: int | None = None,
                     cpus_per_actor: float = 1, workers: int = 2, dtype=None, overwrite: bool = False,
                     init_kwargs: dict | None = None) -> dict:
    """Embed ``corpus`` on a Ray cluster into ``out_dir`` (same files as :func:`~clip_core.tasks.embed_corpus`).

    ``num_actors`` model actors (default: as many as the cluster's CPUs allow at ``cpus_per_actor`` each) each use
    ``workers`` preprocessing threads. Ray is initialised here if it is not already (and shut down again after);
    ``init_kwargs`` go to ``ray.init``. Returns the summary.
    """
    import ray

    begin = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    todo, shards = prepare_output(corpus, out_dir, shard_size, model_path, backend, overwrite)
    if todo:
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
        try:
            context = ray.data.DataContext.get_current()
            if os.environ.get("TRICLIP_NO_PROGRESS") == "1":
                context.enable_progress_bars = False
            if num_actors is None:
                num_actors = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
            num_actors = max(1, min(int(num_actors), len(todo)))
            model_path = str(Path(model_path).resolve()) if Path(model_path).exists() else str(model_path)
            if backend_name(backend) == "onnx":  # exported once here; the actors load the export (no torch)
                model_path, dtype = str(exported_folder(model_path, dtype)), None
            dataset = ray.data.from_items(_rows(corpus, todo), override_num_blocks=len(todo))
            results = dataset.map_batches(
                _ShardActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=num_actors),
                num_cpus=cpus_per_actor,
                fn_constructor_kwargs=dict(model_path=model_path, backend=backend, kind=corpus.kind,
                                           batch_size=batch_size, dtype=dtype, out_dir=str(out_dir),
                                           workers=workers))
            remaining = sum(stop - start for _, start, stop in todo)
            with _progress(len(corpus), len(corpus) - remaining, corpus.kind) as bar:
                for row in results.iter_rows():
                    bar.update(int(row["n_items"]))
        finally:
            if started:
                ray.shutdown()
    return finish_output(out_dir, shards, time.perf_counter() - begin)
