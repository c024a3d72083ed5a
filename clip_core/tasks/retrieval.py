"""Retrieval metrics (image -> text and text -> image), chunked so the full similarity matrix never exists.

``text_to_image[j]`` is the image of caption ``j``; an image may have several captions (COCO, Flickr30k). Scores are
dot products of the L2-normalised embeddings (cosine similarity).

Ranks (1 = best) and ties: a query's rank is 1 + the number of *wrong* candidates scoring strictly higher than its
best correct candidate; ties are therefore resolved in the query's favour, and for image -> text the other captions
of the same image never push a caption down. Text -> image: the correct candidate is the caption's image. Image ->
text: the image's best-scoring caption (so "found in the top k" means any of its captions is in the top k).

Memory: one pass over the captions in chunks of ``chunk_size`` rows; each chunk holds a ``[chunk, n_images]``
float32 block, so 100k x 100k pairs run in a few hundred MiB beside the embeddings themselves.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clip_core.tasks.features import l2_normalize

_CHUNK_BYTES = 128 << 20


def _check(image_embeds, text_embeds, text_to_image, ks):
    img = l2_normalize(np.asarray(image_embeds))
    txt = l2_normalize(np.asarray(text_embeds))
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_embeds and text_embeds must be [n, dim] with one dim; got {img.shape} and "
                         f"{txt.shape}")
    if len(img) == 0 or len(txt) == 0:
        raise ValueError("retrieval_metrics needs at least one image and one caption")
    t2i = np.asarray(text_to_image)
    if t2i.shape != (len(txt),) or not np.issubdtype(t2i.dtype, np.integer):
        raise ValueError(f"text_to_image must be {len(txt)} integers (one image index per caption), got shape "
                         f"{t2i.shape} of {t2i.dtype}")
    bad = np.flatnonzero((t2i < 0) | (t2i >= len(img)))
    if bad.size:
        raise ValueError(f"text_to_image[{bad[0]}] = {t2i[bad[0]]} is not an image index in [0, {len(img)})")
    counts = np.bincount(t2i, minlength=len(img))
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        raise ValueError(f"{missing.size} image(s) have no caption (first: image {missing[0]}); image -> text "
                         "retrieval needs at least one caption per image")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    return img, txt, t2i.astype(np.int64), ks


def retrieval_ranks(image_embeds, text_embeds, text_to_image, chunk_size: int | None = None):
    """``(text_to_image_ranks [n_texts], image_to_text_ranks [n_images])``, 1-based, ties as the module says."""
    img, txt, t2i, _ = _check(image_embeds, text_embeds, text_to_image, (1,))
    return _ranks(img, txt, t2i, chunk_size)


def _ranks(img, txt, t2i, chunk_size):
    n_img, n_txt = len(img), len(txt)
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_BYTES // (4 * n_img))
    # each image's best caption score, from row-wise products (independent of the chunking)
    own_all = np.concatenate([np.einsum("td,td->t", txt[s:s + chunk_size], img[t2i[s:s + chunk_size]])
                              for s in range(0, n_txt, chunk_size)])
    best = np.full(n_img, -np.inf, dtype=np.float32)
    np.maximum.at(best, t2i, own_all)
    t2i_rank = np.empty(n_txt, dtype=np.int64)
    above = np.zeros(n_img, dtype=np.int64)
    for start in range(0, n_txt, chunk_size):
        stop = min(start + chunk_size, n_txt)
        sims = txt[start:stop] @ img.T  # [chunk, n_img]
        rows, cols = np.arange(stop - start), t2i[start:stop]
        own = sims[rows, cols]
        t2i_rank[start:stop] = 1 + (sims > own[:, None]).sum(axis=1)
        sims[rows, cols] = -np.inf  # an image's own captions never count against it
        above += (sims > best[None, :]).sum(axis=0)
    return t2i_rank, 1 + above


def _summary(prefix: str, ranks: np.ndarray, ks: Sequence[int]) -> dict:
    out = {f"{prefix}_R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out[f"{prefix}_mrr"] = float(np.mean(1.0 / ranks))
    out[f"{prefix}_mean_rank"] = float(np.mean(ranks))
    out[f"{prefix}_median_rank"] = float(np.median(ranks))
    return out


def retrieval_metrics(image_embeds, text_embeds, text_to_image, ks: Sequence[int] = (1, 5, 10),
                      chunk_size: int | None = None) -> dict:
    """Recall@k, MRR, mean and median rank for text -> image and image -> text retrieval.

    Returns ``{"text_to_image_R@k", "image_to_text_R@k" (fractions in [0, 1]), "text_to_image_mrr",
    "image_to_text_mrr", "*_mean_rank", "*_median_rank", "n_images", "n_texts"}``. ``chunk_size`` (captions per
    block; default: as many as fit in 128 MiB) changes memory use, never the numbers.
    """
    img, txt, t2i, ks = _check(image_embeds, text_embeds, text_to_image, ks)
    t_rank, i_rank = _ranks(img, txt, t2i, chunk_size)
    out = {**_summary("text_to_image", t_rank, ks), **_summary("image_to_text", i_rank, ks)}
    out.update(n_images=len(img), n_texts=len(txt))
    return out
