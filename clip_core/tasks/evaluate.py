"""The evaluations behind ``triclip eval``: zero-shot accuracy on an image folder, retrieval on image-caption rows.

Both load the model on any backend, embed with the overlapped pipeline of :mod:`clip_core.tasks.embed`, and return
plain dicts of numbers (equal across backends within the embedding tolerance).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clip_core.tasks.corpus import IMAGE_EXTENSIONS
from clip_core.tasks.embed import Embedder, embed_items
from clip_core.tasks.features import backend_name, load_model
from clip_core.tasks.retrieval import retrieval_metrics


def image_folder(root) -> tuple[list[str], list[str], list[int]]:
    """``(class_names, image_paths, labels)`` of an ImageFolder layout: one sub-folder per class (its name, with
    ``_`` read as a space, is the class name), images inside it (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected ROOT/<class name>/<image files>)")
    names, paths, labels = [], [], []
    for label, folder in enumerate(classes):
        names.append(folder.name.replace("_", " "))
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root} holds no image files")
    return names, paths, labels


def labelled_images(data):
    """``(class_names, image refs, labels, loader)`` from an image folder (:func:`image_folder`) or from a file of
    (image, caption) rows read by :func:`clip_core.tasks.datasets.read_pairs`, where each caption is a class name
    (the classes are the distinct captions, sorted)."""
    if Path(data).is_dir() and not any(Path(data).glob("*.tar")):
        names, paths, labels = image_folder(data)
        return names, paths, labels, None
    from clip_core.tasks.datasets import load_image, read_pairs

    pairs = read_pairs(data)
    names = sorted({p.caption for p in pairs})
    position = {name: i for i, name in enumerate(names)}
    return names, [p.image for p in pairs], [position[p.caption] for p in pairs], load_image


def read_templates(path) -> list[str]:
    """Prompt templates from a text file, one per line, each with one ``{}`` (``#`` lines are comments)."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _workers():
    return min(4, os.cpu_count() or 1)


def evaluate_zeroshot(model_path, data, backend: str = "pt", templates=("a photo of a {}.",), batch_size: int = 32,
                      dtype=None, model=None) -> dict:
    """Top-1 / top-5 accuracy and per-class top-1 accuracy of zero-shot classification of an image folder (one
    sub-folder per class) or of (image, class name) rows; see :func:`labelled_images`."""
    from clip_core.tasks.zeroshot import ZeroShotClassifier

    names, paths, labels, loader = labelled_images(data)
    model = model if model is not None else load_model(model_path, backend, dtype=dtype)
    images = Embedder(model_path, backend, "image", batch_size, model=model, loader=loader)
    tokenizer = Embedder(model_path, backend, "text", batch_size, model=model).processor
    classifier = ZeroShotClassifier(model, tokenizer, names, templates)
    kept, embeds, errors = embed_items(images, paths, paths, _workers())
    truth = np.asarray(labels)[kept]
    order = np.argsort(-classifier.logits_from_embeddings(embeds), axis=1, kind="stable")
    top5 = min(5, len(names))
    hit1 = order[:, 0] == truth
    hit5 = (order[:, :top5] == truth[:, None]).any(axis=1)
    per_class = {name: float(hit1[truth == c].mean()) if (truth == c).any() else None for c, name in enumerate(names)}
    return {"task": "zeroshot", "top1": float(hit1.mean()), f"top{top5}": float(hit5.mean()),
            "mean_per_class_top1": float(np.mean([v for v in per_class.values() if v is not None])),
            "per_class_top1": per_class, "n_images": int(len(kept)), "n_classes": len(names),
            "n_templates": len(classifier.templates), "errors": errors, "backend": backend_name(backend)}


def evaluate_retrieval(model_path, data, backend: str = "pt", ks=(1, 5, 10), batch_size: int = 32, dtype=None,
                       model=None) -> dict:
    """Text -> image and image -> text retrieval metrics on image-caption rows (CSV / JSONL / parquet /
    webdataset shards, read by :func:`clip_core.tasks.datasets.read_pairs`); several captions per image allowed."""
    from clip_core.tasks.datasets import load_image, read_pairs

    pairs = read_pairs(data)
    images, index = [], {}
    for pair in pairs:
        index.setdefault(pair.image, len(images))
        if index[pair.image] == len(images):
            images.append(pair.image)
    model = model if model is not None else load_model(model_path, backend, dtype=dtype)
    image_embedder = Embedder(model_path, backend, "image", batch_size, model=model, loader=load_image)
    kept, image_embeds, errors = embed_items(image_embedder, images, images, _workers())
    if errors:
        raise OSError(f"{len(errors)} image(s) of {data} cannot be read, first: {errors[0]['path']}: "
                      f"{errors[0]['error']}")
    captions = [p.caption for p in pairs]
    text_embedder = Embedder(model_path, backend, "text", batch_size, model=model)
    _, text_embeds, _ = embed_items(text_embedder, captions, captions, 1)
    metrics = retrieval_metrics(image_embeds, text_embeds, [index[p.image] for p in pairs], ks)
    return {"task": "retrieval", **metrics, "backend": backend_name(backend)}
