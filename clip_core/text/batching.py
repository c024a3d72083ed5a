"""A tokenizer call's inputs and outputs, as transformers 4.57's tokenizers shape them.

Argument checks (strings or lists of strings, token ids from lists, arrays or tensors), the padding / truncation
strategies and ``max_length`` resolution (``_get_padding_truncation_strategies``), truncation of a sequence or a pair
(``truncate_sequences``) and padding of the rows into lists or one int64 array.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger("clip_core.tokenizer")  # the public module's name: users' logging settings keep applying

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
LARGE_INTEGER = int(1e20)  # model_max_length above this means "no maximum" (as in transformers)


def resolve_strategies(
    padding: Any,
    truncation: Any,
    max_length: Any,
    verbose: bool,
    model_max_length: int,
    warn_once: Callable[[str, str], None],
) -> tuple[str, str, int | None]:
    """Resolve padding/truncation/max_length as transformers' ``_get_padding_truncation_strategies`` does.

    Called from the tokenizer's ``__call__`` (the ``stacklevel`` of its warning points at the caller of that).
    ``warn_once(key, message)`` logs a message once per tokenizer (``key``: transformers' ``deprecation_warnings`` key).
    """
    if max_length is not None and not is_int(max_length):
        raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
    if max_length is not None and max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    padding = getattr(padding, "value", padding)
    truncation = getattr(truncation, "value", truncation)
    if max_length is not None and padding is False and truncation is None:
        if verbose:
            warn_once(
                "Truncation-not-explicitly-activated",
                "Truncation was not explicitly activated but `max_length` is provided a specific value, please use "
                "`truncation=True` to explicitly truncate examples to max length. Defaulting to 'longest_first' "
                "truncation strategy.",
            )
        truncation = "longest_first"
    if padding is True and verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
        warnings.warn(
            "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
            "To pad to max length, use `padding='max_length'`.",
            stacklevel=3,
        )
    pad = _strategy(padding, "padding", "longest", "do_not_pad", PADDING_STRATEGIES)
    trunc = _strategy(truncation, "truncation", "longest_first", "do_not_truncate", TRUNCATION_STRATEGIES)
    if max_length is None:
        unbounded = model_max_length > LARGE_INTEGER
        if pad == "max_length":
            if unbounded:
                if verbose:
                    warn_once(
                        "Asking-to-pad-to-max_length",
                        "Asking to pad to max_length but no maximum length is provided and the model has no "
                        "predefined maximum length. Default to no padding.",
                    )
                pad = "do_not_pad"
            else:
                max_length = model_max_length
        if trunc != "do_not_truncate":
            if unbounded:
                if verbose:
                    warn_once(
                        "Asking-to-truncate-to-max_length",
                        "Asking to truncate to max_length but no maximum length is provided and the model has no "
                        "predefined maximum length. Default to no truncation.",
                    )
                trunc = "do_not_truncate"
            else:
                max_length = model_max_length
    return pad, trunc, (None if max_length is None else int(max_length))


def _strategy(value: Any, name: str, when_true: str, when_off: str, allowed: tuple[str, ...]) -> str:
    """A padding or truncation argument as a strategy name: True, False / None, or one of ``allowed``."""
    if value is True:
        return when_true
    if value is False or value is None:
        return when_off
    if isinstance(value, str) and value in allowed:
        return value
    raise ValueError(f"{name} must be True, False or one of {allowed}, got {value!r}")


def truncate_pair(
    ids: list[int], pair_ids: list[int] | None, remove: int, strategy: str, right: bool, stride: int = 0
) -> tuple[list[int], list[int] | None, list[int]]:
    """Remove ``remove`` ids with ``strategy`` (transformers' ``truncate_sequences``), from the right or the left.

    Returns (ids, pair_ids, overflowing): the removed ids plus ``stride`` ids of context before them (none for a
    pair truncated with "longest_first", as in transformers).
    """

    def cut(seq: list[int], n: int) -> list[int]:
        if n <= 0:
            return seq
        return seq[:-n] if right else seq[n:]

    def overflow(seq: list[int]) -> list[int]:
        window = min(len(seq), stride + remove)
        return seq[-window:] if right else seq[:window]

    if remove <= 0:
        return ids, pair_ids, []
    if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
        if len(ids) > remove:
            return cut(ids, remove), pair_ids, overflow(ids)
        logger.error(
            "We need to remove %d to truncate the input but the first sequence has a length %d.", remove, len(ids)
        )
        return ids, pair_ids, []
    if strategy == "longest_first":
        first_remove = min(abs(len(pair_ids) - len(ids)), remove)
        rest = remove - first_remove
        if len(ids) > len(pair_ids):
            from_ids, from_pair = first_remove + rest // 2, rest - rest // 2
        else:
            from_ids, from_pair = rest // 2, first_remove + rest - rest // 2
        return cut(ids, from_ids), cut(pair_ids, from_pair), []
    if strategy == "only_second" and pair_ids is not None:
        if len(pair_ids) > remove:
            return ids, cut(pair_ids, remove), overflow(pair_ids)
        logger.error(
            "We need to remove %d to truncate the input but the second sequence has a length %d.",
            remove,
            len(pair_ids),
        )
    return ids, pair_ids, []


def is_int(value: Any) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_side(name: str, side: Any) -> str:
    """``side`` if it is "right" or "left"; otherwise a ValueError naming the argument ``name``."""
    if side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
    return side


def as_batch(text: Any, name: str) -> tuple[bool, list[str]]:
    """(batched?, list of strings), raising TypeError that names the culprit."""
    if isinstance(text, str):
        return False, [text]
    if text is None:
        raise TypeError(f"{name} must be a string or a list of strings, got None")
    if isinstance(text, (list, tuple)):
        return True, check_texts(text, name)
    raise TypeError(f"{name} must be a string or a list of strings, got {type(text).__name__}")


def check_texts(texts: Sequence[Any], name: str) -> list[str]:
    """``texts`` as a list when every item is a string; else a TypeError naming ``name`` and the index."""
    for i, item in enumerate(texts):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] (index {i}) must be a string, got {type(item).__name__}")
    return list(texts)


def to_python(values: Any) -> Any:
    """numpy arrays and framework tensors -> (nested) Python lists; anything else unchanged."""
    if not hasattr(values, "tolist") and hasattr(values, "numpy"):  # TensorFlow eager tensors
        values = values.numpy()
    return values.tolist() if hasattr(values, "tolist") else values


def as_id_list(ids: Any) -> list[int]:
    """Token id(s) (an int, a list, an array or a tensor) as a flat list of ints; a TypeError names a bad one."""
    ids = to_python(ids)
    if isinstance(ids, (int, np.integer)):
        return [int(ids)]
    out = []
    for i, value in enumerate(ids):
        if not is_int(value):
            raise TypeError(f"token id at index {i} must be an int, got {type(value).__name__}")
        out.append(int(value))
    return out
