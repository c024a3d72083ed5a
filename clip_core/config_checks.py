"""The rules a CLIP config's fields follow, and the checks run when a model is built.

Each rule is ``rule(name, value)`` and raises ``ValueError`` naming the field (``CLIPTextConfig.layer_norm_eps``),
what it must be and what it got. :mod:`clip_core.config` applies the rule of a field whenever the field is set.
Checks that involve several fields, and the memory check, run from ``config.check_buildable()`` when a model is
built, so that fields can be edited one after the other.
"""

from __future__ import annotations

import copy
import math
import os
from numbers import Integral, Real
from typing import Any

ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def _fail(name: str, wanted: str, value: Any) -> None:
    raise ValueError(f"{name} must be {wanted}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


# ---------------------------------------------------------------------------------------------- single fields
def positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        _fail(name, "a positive integer", value)


def non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        _fail(name, "a non-negative integer", value)


def token_id(name: str, value: Any) -> None:
    """A token id the model uses: a non-negative integer."""
    if not _is_int(value) or value < 0:
        _fail(name, "a token id (a non-negative integer)", value)


def optional_token_id(name: str, value: Any) -> None:
    if value is not None:
        if not _is_int(value) or value < 0:
            _fail(name, "a token id (a non-negative integer) or null", value)


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(name, "true or false", value)


def probability(name: str, value: Any) -> None:
    if not _is_real(value) or not 0 <= value <= 1:
        _fail(name, "a probability between 0 and 1", value)


def non_negative_real(name: str, value: Any) -> None:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        _fail(name, "a finite number >= 0", value)


def layer_norm_eps(name: str, value: Any) -> None:
    """A finite epsilon in (0, 1] that float32 does not round to zero (below 1e-45 it is 0 in float32)."""
    if not _is_real(value) or not math.isfinite(value) or not 0 < value <= 1:
        _fail(name, "a finite number in (0, 1] (the usual values are 1e-5 and 1e-6)", value)
    if value < 1.4e-45:
        _fail(name, "at least 1.4e-45 (smaller values are 0 in float32 and would divide by zero)", value)


def logit_scale(name: str, value: Any) -> None:
    """The log temperature: finite, and small enough that ``exp`` of it is finite in float32 (below 88.7)."""
    if not _is_real(value) or not math.isfinite(value) or value > 88.0:
        _fail(name, "a finite number of at most 88 (exp of it scales the logits; 2.6592 is CLIP's ln(1/0.07))",
              value)


def hidden_act(name: str, value: Any) -> None:
    if not isinstance(value, str) or value not in ACTIVATIONS:
        _fail(name, f"one of {ACTIVATIONS}", value)


def optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        _fail(name, "a string or null", value)


def optional_dict(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        _fail(name, "a dict (a JSON object) or null", value)


def a_dict(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        _fail(name, "a dict (a JSON object)", value)


def str_list(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
        _fail(name, "a list of class names or null", value)


def problem_type(name: str, value: Any) -> None:
    if value is not None and value not in PROBLEM_TYPES:
        _fail(name, f"one of {PROBLEM_TYPES} or null", value)


def num_labels(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        _fail(name, "a non-negative integer", value)


def id2label(name: str, value: Any) -> None:
    """A dict from class index (an int, or its decimal string as JSON writes it) to the class name."""
    if not isinstance(value, dict):
        _fail(name, "a dict from class index to class name", value)
    for key, label in value.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            index = None
        if isinstance(key, bool) or index is None or index < 0 or (isinstance(key, str) and str(index) != key):
            raise ValueError(f"{name} must map class indices (0, 1, ...) to class names; found the key {key!r}")
        if not isinstance(label, str):
            raise ValueError(f"{name} must map class indices to class names (strings); found {key!r}: {label!r}")


def label2id(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, dict) or not all(
            isinstance(k, str) and _is_int(v) and v >= 0 for k, v in value.items())):
        _fail(name, "a dict from class name to class index, or null", value)


def dtype_field(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        _fail(name, "a dtype name such as 'float32' or null", value)


def check_label_maps(owner: str, id2label_map: dict, label2id_map: dict) -> None:
    """Every field alone was checked; ``label2id`` may be stale (transformers keeps it as given), so only types."""
    id2label(f"{owner}.id2label", id2label_map)
    label2id(f"{owner}.label2id", label2id_map)


def dtype_name(value: Any) -> Any:
    """A dtype (torch, numpy, TF, JAX or its name) as its name, ``"float32"``; ``None`` and other values unchanged."""
    if value is None or isinstance(value, str):
        return value.replace("torch.", "") if isinstance(value, str) else value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    text = str(value)
    if text.startswith("torch."):
        return text[len("torch."):]
    try:
        import numpy as np

        return np.dtype(value).name
    except TypeError:
        return value


#: Rules of transformers' ``PretrainedConfig`` attributes, shared by every config.
COMMON_RULES = {
    **{key: boolean for key in ("return_dict", "output_hidden_states", "output_attentions", "torchscript",
                                "tie_word_embeddings", "is_encoder_decoder", "is_decoder", "add_cross_attention",
                                "tie_encoder_decoder", "tf_legacy_loss", "use_bfloat16")},
    **{key: optional_token_id for key in ("bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id",
                                          "decoder_start_token_id")},
    **{key: optional_str for key in ("finetuning_task", "tokenizer_class", "prefix")},
    "chunk_size_feed_forward": non_negative_int, "cross_attention_hidden_size": lambda n, v: v is None or
    positive_int(n, v), "pruned_heads": a_dict, "task_specific_params": optional_dict, "architectures": str_list,
    "problem_type": problem_type, "num_labels": num_labels, "id2label": id2label, "label2id": label2id,
    "dtype": dtype_field,
}

#: Rules of the fields both towers have.
TOWER_RULES = {
    **{key: positive_int for key in ("hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                                     "num_attention_heads")},
    "hidden_act": hidden_act, "layer_norm_eps": layer_norm_eps, "attention_dropout": probability,
    "initializer_range": non_negative_real, "initializer_factor": non_negative_real,
}


# ---------------------------------------------------------------------------------------------- coupled fields
def check_heads(owner: str, hidden_size: int, num_attention_heads: int) -> None:
    if hidden_size % num_attention_heads:
        raise ValueError(f"{owner}: hidden_size ({hidden_size}) must be divisible by num_attention_heads "
                         f"({num_attention_heads})")


def check_patches(image_size: int, patch_size: int) -> None:
    if image_size % patch_size:
        raise ValueError(f"CLIPVisionConfig: image_size ({image_size}) must be a multiple of patch_size "
                         f"({patch_size})")


# ---------------------------------------------------------------------------------------------- memory
def estimated_parameter_bytes(config, arch: str = "clip", bytes_per_value: int = 4) -> int:
    """Bytes the parameters of model ``arch`` built from ``config`` take (float32 by default), from the shapes of
    :func:`clip_core.weights.param_table`. Exact; cheap even for absurd sizes (no array is made, and the table is
    built for one and two layers per tower, then scaled by the layer counts)."""
    from clip_core.weights import param_table

    towers = [c for c in (getattr(config, "text_config", None), getattr(config, "vision_config", None)) if c]
    towers = towers or [config]

    def count(layers: list[int]) -> int:
        probe = copy.deepcopy(config)
        probe_towers = [getattr(probe, k) for k in ("text_config", "vision_config") if hasattr(probe, k)] or [probe]
        for tower, n in zip(probe_towers, layers):
            tower.__dict__["num_hidden_layers"] = n
        return sum(math.prod(spec.shape) for spec in param_table(probe, arch).values())

    base = count([1] * len(towers))
    total = base
    for i, tower in enumerate(towers):
        per_layer = count([2 if j == i else 1 for j in range(len(towers))]) - base
        total += per_layer * (tower.num_hidden_layers - 1)
    return total * bytes_per_value


def physical_memory_bytes() -> int | None:
    """This machine's physical memory (``os.sysconf``), or ``None`` where the platform does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"


def check_memory(config, arch: str) -> None:
    """Refuse (``ValueError``) a model whose float32 parameters alone exceed this machine's physical memory."""
    limit = physical_memory_bytes()
    if limit is None:
        return
    need = estimated_parameter_bytes(config, arch)
    if need > limit:
        raise ValueError(
            f"a {arch!r} model with this {type(config).__name__} would need {_size(need)} for its float32 "
            f"parameters ({need // 4:,} values), more than this machine's {_size(limit)} of physical memory; "
            "check hidden_size, intermediate_size, num_hidden_layers, vocab_size, image_size / patch_size")


__all__ = ["ACTIVATIONS", "PROBLEM_TYPES", "COMMON_RULES", "TOWER_RULES", "estimated_parameter_bytes",
           "physical_memory_bytes", "check_memory", "check_heads", "check_patches", "dtype_name"]
