"""Framework-free task logic: zero-shot classification, retrieval metrics, similarity maps and embedding jobs.

Everything here works with a model of any backend (``clip_pt``, ``clip_tf``, ``clip_flax``, and transformers' own
classes): it calls the model's ``get_text_features`` / ``get_image_features`` and works on numpy arrays.
Public names are loaded on first use, so importing this package imports no framework.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Pair": "datasets", "read_pairs": "datasets", "load_image": "datasets", "epoch_batches": "datasets",
    "make_batch": "datasets", "make_shapes_dataset": "synthetic",
    "TrainingConfig": "training", "learning_rate": "training", "decays": "training", "frozen": "training",
    "ZeroShotClassifier": "zeroshot", "ZeroShotImageClassification": "zeroshot", "OPENAI_TEMPLATES": "zeroshot",
    "retrieval_metrics": "retrieval",
    "patch_similarity": "similarity_map", "render_heatmap": "similarity_map",
    "text_features": "features", "image_features": "features", "load_model": "features", "backend_of": "features",
    "image_source": "corpus", "text_source": "corpus",
    "embed_corpus": "embed", "read_embeddings": "embed",
    "embed_corpus_ray": "ray_engine",
    "build_index": "index", "load_index": "index", "search_index": "index",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"clip_core.tasks.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clip_core.tasks' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
