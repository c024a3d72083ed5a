"""FAISS indexes over ``triclip embed`` outputs, and search in them.

An index folder holds ``index.faiss`` (inner product on the normalised embeddings, i.e. cosine similarity),
``meta.parquet`` (the rows' ``id`` and ``path`` or ``text``, plus ``caption`` where present) and ``info.json`` (kind,
size, parameters, the model that made the embeddings and, for approximate indexes, the measured recall@10 against
exact search). Kinds: ``flat`` (exact), ``ivf`` (IVF-Flat, ``nlist`` clusters, ``nprobe`` searched), ``hnsw``
(HNSW-Flat, ``M`` links, ``efSearch``); ``auto`` is exact up to ``exact_below`` rows and IVF above.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from clip_core.tasks.embed import read_embeddings

KINDS = ("auto", "flat", "ivf", "hnsw")


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("triclip index needs FAISS: pip install faiss-cpu (or triclip[retrieval])") from err
    return faiss


def _make(kind: str, data: np.ndarray, nlist, nprobe, hnsw_m, ef_search, seed):
    faiss = _faiss()
    n, dim = data.shape
    params = {}
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = int(nlist or max(1, min(n // 39, round(4 * math.sqrt(n)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(data)
        index.nprobe = int(nprobe or min(nlist, 16))
        params = {"nlist": nlist, "nprobe": int(index.nprobe)}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
        params = {"M": int(hnsw_m), "efSearch": int(ef_search)}
    else:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    index.add(data)
    return index, params


def measured_recall(index, data: np.ndarray, k: int = 10, n_queries: int = 1000, seed: int = 0) -> float:
    """Recall@k of ``index`` against exact inner-product search, on ``n_queries`` rows of ``data`` as queries."""
    faiss = _faiss()
    rng = np.random.default_rng(seed)
    queries = data[rng.choice(len(data), size=min(n_queries, len(data)), replace=False)]
    k = min(k, len(data))
    exact = faiss.IndexFlatIP(data.shape[1])
    exact.add(data)
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))


def build_index(embed_dir, index_dir, kind: str = "auto", exact_below: int = 50_000, nlist: int | None = None,
                nprobe: int | None = None, hnsw_m: int = 32, ef_search: int = 64, seed: int = 0,
                overwrite: bool = False) -> dict:
    """Build a FAISS index of the embeddings in ``embed_dir`` into the folder ``index_dir`` (written to a
    temporary folder and renamed). Returns ``info`` (also written as ``info.json``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    index_dir = Path(index_dir)
    if index_dir.exists() and not overwrite:
        raise FileExistsError(f"{index_dir} exists; choose another path or pass --overwrite")
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    rows = read_embeddings(embed_dir)
    data = np.ascontiguousarray(rows.pop("embedding"), dtype=np.float32)
    manifest = rows.pop("manifest")
    if kind == "auto":
        kind = "flat" if len(data) <= exact_below else "ivf"
    index, params = _make(kind, data, nlist, nprobe, hnsw_m, ef_search, seed)
    info = {"format": 1, "kind": kind, "n": int(len(data)), "dim": int(data.shape[1]), "metric": "inner_product",
            **params, "model": manifest.get("model"), "backend": manifest.get("backend"),
            "corpus_kind": manifest.get("kind"), "embeddings": str(Path(embed_dir).resolve())}
    info["recall@10"] = 1.0 if kind == "flat" else round(measured_recall(index, data, 10, seed=seed), 4)
    tmp = index_dir.with_name(f".{index_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _faiss().write_index(index, str(tmp / "index.faiss"))
    pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in rows.items()}), tmp / "meta.parquet")
    (tmp / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if index_dir.exists():
        shutil.rmtree(index_dir)
    os.replace(tmp, index_dir)
    return info


class LoadedIndex:
    """An index folder in memory: ``index`` (FAISS), ``meta`` (column -> list), ``info``."""

    def __init__(self, index, meta: dict, info: dict):
        self.index, self.meta, self.info = index, meta, info

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[dict]]:
        """The ``k`` best rows per query (normalised query embeddings ``[q, dim]``): ``{"id", "path"|"text",
        ("caption"), "score"}`` best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.info["dim"]:
            raise ValueError(f"query embeddings have dim {queries.shape[1]}, the index holds dim {self.info['dim']}")
        if isinstance(k, bool) or int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        scores, found = self.index.search(queries, min(int(k), self.info["n"]))
        out = []
        for row_scores, row_ids in zip(scores, found):
            hits = []
            for score, i in zip(row_scores, row_ids):
                if i < 0:  # fewer than k results (IVF with few probed lists)
                    continue
                hit = {name: values[i] for name, values in self.meta.items()}
                hit["score"] = float(score)
                hits.append(hit)
            out.append(hits)
        return out


def load_index(index_dir) -> LoadedIndex:
    """Read an index folder written by :func:`build_index`."""
    import pyarrow.parquet as pq

    index_dir = Path(index_dir)
    if not (index_dir / "info.json").is_file() or not (index_dir / "index.faiss").is_file():
        raise FileNotFoundError(f"{index_dir} is not a triclip index (no info.json / index.faiss)")
    info = json.loads((index_dir / "info.json").read_text(encoding="utf-8"))
    index = _faiss().read_index(str(index_dir / "index.faiss"))
    if info["kind"] == "ivf":
        index.nprobe = int(info["nprobe"])
    elif info["kind"] == "hnsw":
        index.hnsw.efSearch = int(info["efSearch"])
    table = pq.read_table(index_dir / "meta.parquet")
    return LoadedIndex(index, {name: table.column(name).to_pylist() for name in table.column_names}, info)


def search_index(index_dir, queries: np.ndarray, k: int = 10) -> list[list[dict]]:
    """:func:`load_index` then :meth:`LoadedIndex.search`."""
    return load_index(index_dir).search(queries, k)
