"""Shape buckets for compiled calls, framework-free: a call padded to its bucket reuses the function compiled for
the bucket, so a notebook or a server sees one compile per bucket instead of one per caption length or batch size.

Padding is exact for what the caller gets back (results are sliced back to the caller's shapes):

- **Text length.** Padded columns get ``attention_mask = 0``, an id that is never the pooled one and position 0.
  Under the causal mask no real token attends to a later column, and the padding mask hides them anyway, so every
  real position's states and the pooled state are unchanged (up to float32 summation order). The one exception is a
  row whose first token is masked: a token that sees no unmasked token spreads its attention over *every* column,
  padded ones included, so such calls keep their exact length (:func:`text_padding_is_exact`).
- **Batch.** Padded rows repeat the last row and are sliced off; rows never interact in the towers. Calls whose
  result mixes rows (the contrastive ``loss``, classification ``labels``) are not batch-padded.
"""

from __future__ import annotations

import numpy as np

#: text lengths a call is padded up to (then the model's ``max_position_embeddings``)
TEXT_BUCKETS = (8, 16, 32, 64)


def text_bucket(length: int, max_length: int) -> int:
    """The bucket of a text length: the smallest of :data:`TEXT_BUCKETS` holding it, else ``max_length``; never
    less than ``length`` (a length above ``max_length`` is the checks' business and stays as it is)."""
    for bucket in TEXT_BUCKETS:
        if length <= bucket:
            return max(length, min(bucket, max_length))
    return max(length, max_length)


def batch_bucket(batch: int) -> int:
    """The bucket of a batch size: the next power of two up to 64, then the next multiple of 64 (at most 1/64
    more rows beyond 64, where a power of two could nearly double the work)."""
    if batch <= 1:
        return batch
    if batch <= 64:
        return 1 << (batch - 1).bit_length()
    return -(-batch // 64) * 64


def text_padding_is_exact(attention_mask) -> bool:
    """Whether padding text columns leaves every real position's result unchanged: no mask, or every row's first
    token unmasked (then every token sees at least one unmasked token at or before it)."""
    if attention_mask is None:
        return True
    mask = np.asarray(attention_mask)
    return mask.shape[1] == 0 or bool((mask[:, 0] != 0).all())


def pad_id(eos_token_id: int) -> int:
    """An id for padded columns that is never the pooled one: pooling takes the first ``eos_token_id`` (or, for the
    legacy id 2, the first largest id, which a padded 0 never is since it comes after the real columns)."""
    return 1 if eos_token_id == 0 else 0


def pad_text(input_ids, attention_mask, position_ids, length: int, eos_token_id: int):
    """numpy text inputs padded to ``length`` columns (a mask of ones for the real columns when none was given)."""
    ids = np.asarray(input_ids)
    extra = length - ids.shape[1]
    if extra <= 0:
        return input_ids, attention_mask, position_ids
    mask = np.ones(ids.shape, np.int32) if attention_mask is None else np.asarray(attention_mask)
    widths = ((0, 0), (0, extra))
    out = (np.pad(ids, widths, constant_values=pad_id(eos_token_id)), np.pad(mask, widths, constant_values=0))
    positions = None if position_ids is None else np.pad(np.asarray(position_ids), widths, constant_values=0)
    return out + (positions,)


def pad_rows(x, batch: int):
    """``x`` (numpy) with its last row repeated up to ``batch`` rows (``None`` stays ``None``)."""
    if x is None:
        return None
    x = np.asarray(x)
    extra = batch - x.shape[0]
    if extra <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)], axis=0)


__all__ = ["TEXT_BUCKETS", "text_bucket", "batch_bucket", "text_padding_is_exact", "pad_id", "pad_text", "pad_rows"]
