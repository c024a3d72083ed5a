"""What the three backends' model math shares besides tensor operations: input checks, the bicubic resize matrix,
the trimmed text length and the encoder loop.

The pretrained-model machinery (:class:`PretrainedMixin`, :data:`CONFIG_CLASSES`) lives in :mod:`clip_core.pretrained`
and is re-exported here.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from clip_core.config import CLIPTextConfig, CLIPVisionConfig
from clip_core.pretrained import CONFIG_CLASSES, PretrainedMixin  # noqa: F401  (re-exported)


# ---------------------------------------------------------------------------------------------- input checks
def check_text_inputs(config: CLIPTextConfig, shape: Sequence[int], id_range: tuple[int, int] | None = None,
                      name: str = "input_ids", dtype: Any = None) -> None:
    """Check ``input_ids``' shape (and, when known, its dtype and its smallest and largest id) against the config.

    ``dtype`` is anything with a numpy-compatible name (a numpy, torch, tf or jax dtype); it must be an integer type.
    """
    if dtype is not None and not _is_integer_dtype(dtype):
        raise TypeError(f"{name} must hold integer token ids, found dtype {_dtype_name(dtype)}")
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (batch, sequence_length), found shape {tuple(shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}): give at least one token in at least one row")
    if shape[1] > config.max_position_embeddings:
        raise ValueError(f"{name} has sequence length {shape[1]} but the model has only "
                         f"{config.max_position_embeddings} positions (max_position_embeddings)")
    if id_range is not None:
        low, high = id_range
        if low < 0 or high >= config.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"{name} holds the id {bad}, outside the vocabulary [0, {config.vocab_size})")


def check_vision_inputs(config: CLIPVisionConfig, shape: Sequence[int], interpolate_pos_encoding: bool = False,
                        finite: bool | None = None, name: str = "pixel_values", dtype: Any = None,
                        span: tuple[float, float] | None = None) -> None:
    """Check ``pixel_values``' NCHW shape (and, when known, its dtype, that it is finite and that its values fit in
    float32: ``span`` is its (smallest, largest) value) against the vision config.

    Pixels must be floating point: uint8 / bool / integer / complex arrays are raw images, not model inputs, and
    are refused with a pointer to the image processor (every backend refuses them alike).
    """
    if check_pixel_values(dtype, span, name) is False:
        finite = False
    if len(shape) != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), found shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(shape)}): give at least one image")
    if shape[1] != config.num_channels:
        raise ValueError(f"{name} has {shape[1]} channels, expected {config.num_channels} "
                         f"(pixel_values are NCHW; found shape {tuple(shape)})")
    height, width = shape[2], shape[3]
    if interpolate_pos_encoding:
        if height < config.patch_size or width < config.patch_size:
            raise ValueError(f"{name} of size {height}x{width} is smaller than one patch ({config.patch_size})")
        check_attention_size(config, shape, name)
    elif (height, width) != (config.image_size, config.image_size):
        raise ValueError(f"{name} has size {height}x{width}, but the model expects {config.image_size}x"
                         f"{config.image_size}; pass interpolate_pos_encoding=True to use other sizes")
    if finite is False:
        raise ValueError(f"{name} contains NaN or infinite values")


def check_attention_size(config: CLIPVisionConfig, shape: Sequence[int], name: str = "pixel_values") -> None:
    """Refuse (``ValueError``, before any work) an image so large that one layer's attention scores, ``batch x
    heads x tokens^2`` float32 values (what eager attention holds and a fused kernel computes in quadratic time),
    exceed this machine's physical memory: ``interpolate_pos_encoding`` on a huge image would otherwise run for
    many minutes or exhaust memory. The message says how much it would take."""
    from clip_core.config_checks import _size, physical_memory_bytes

    limit = physical_memory_bytes()
    tokens = (int(shape[2]) // config.patch_size) * (int(shape[3]) // config.patch_size) + 1
    need = int(shape[0]) * config.num_attention_heads * tokens * tokens * 4
    if limit is not None and need > limit:
        raise ValueError(f"{name} of size {shape[2]}x{shape[3]} makes {tokens:,} tokens per image: one layer's "
                         f"attention scores for a batch of {shape[0]} would take {_size(need)}, more than this "
                         f"machine's {_size(limit)} of physical memory; resize the images (CLIPImageProcessor) "
                         "or pass smaller batches")


def check_pixel_values(dtype: Any = None, span: tuple[float, float] | None = None,
                       name: str = "pixel_values") -> bool | None:
    """The dtype and value rules of ``pixel_values`` (see :func:`check_vision_inputs`): ``TypeError`` for a
    non-float dtype, ``ValueError`` for a value beyond float32's range. Returns False when ``span`` (the smallest
    and largest value) shows a NaN or an infinity (the caller's shape checks come first), else None."""
    if dtype is not None and not _is_float_dtype(dtype):
        raise TypeError(f"{name} must be a floating-point array of normalised pixels, found dtype "
                        f"{_dtype_name(dtype)}; turn raw images into pixel_values with the image processor "
                        "(clip_core.image_processing.CLIPImageProcessor, or CLIPProcessor(images=...))")
    if span is None:
        return None
    low, high = float(span[0]), float(span[1])
    if not (np.isfinite(low) and np.isfinite(high)):
        return False
    if max(abs(low), abs(high)) > _FLOAT32_MAX:
        raise ValueError(f"{name} holds the value {low if abs(low) > abs(high) else high:g}, beyond float32's "
                         f"range (+-{_FLOAT32_MAX:.4g}): it would become infinite in the model")
    return None


def _dtype_name(dtype: Any) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    return name.replace("torch.", "").replace("<dtype: '", "").replace("'>", "")


def _is_integer_dtype(dtype: Any) -> bool:
    return _dtype_name(dtype).startswith(("int", "uint"))


def _is_float_dtype(dtype: Any) -> bool:
    return _dtype_name(dtype) in ("float16", "bfloat16", "float32", "float64", "half", "float", "double")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_attention_mask(shape: Sequence[int], ids_shape: Sequence[int], dtype: Any = None,
                         bad_value: float | None = None, name: str = "attention_mask") -> None:
    """The one rule for ``attention_mask`` in every backend: the shape of ``input_ids``, a boolean, integer or
    floating dtype, and only the values 0 (padding) and 1 (a token). ``bad_value`` is the first value that is
    neither (see :func:`first_bad_mask_value`), when the values are known. 0.5, 2, -1 or NaN are refused: the
    backends' arithmetic would each read them differently."""
    if tuple(shape) != tuple(ids_shape):
        raise ValueError(f"{name} has shape {tuple(shape)}, expected the shape of input_ids {tuple(ids_shape)}")
    allowed = dtype is None or _is_integer_dtype(dtype) or _is_float_dtype(dtype) or _dtype_name(dtype) == "bool"
    if not allowed:
        raise TypeError(f"{name} must hold 0 and 1 (bool, integer or float), found dtype {_dtype_name(dtype)}")
    if bad_value is not None:
        raise ValueError(f"{name} must hold only 0 (padding) and 1 (token), found {float(bad_value):g}")


def first_bad_mask_value(values) -> float | None:
    """The first value of a (numpy-convertible) mask that is neither 0 nor 1 (NaN included), else ``None``."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return None
    bad = values[(values != 0) & (values != 1)]
    return float(bad.flat[0]) if bad.size else None


def check_position_ids(config: CLIPTextConfig, shape: Sequence[int], ids_shape: Sequence[int], dtype: Any = None,
                       span: tuple[int, int] | None = None, name: str = "position_ids") -> None:
    """The one rule for ``position_ids``: integers, shape ``(batch or 1, sequence_length)`` matching ``input_ids``
    (a 1-D row is refused: write ``position_ids[None]``), every value in ``[0, max_position_embeddings)``."""
    if dtype is not None and not _is_integer_dtype(dtype):
        raise TypeError(f"{name} must hold integer positions, found dtype {_dtype_name(dtype)}")
    batch, length = tuple(ids_shape)
    if len(shape) != 2 or shape[1] != length or shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape ({batch} or 1, {length}) matching input_ids, found shape "
                         f"{tuple(shape)}" + ("; for one row shared by the batch pass position_ids[None]"
                                              if len(shape) == 1 else ""))
    if span is not None:
        low, high = span
        if low < 0 or high >= config.max_position_embeddings:
            raise ValueError(f"{name} must lie in [0, {config.max_position_embeddings}), "
                             f"found {low if low < 0 else high}")


def check_class_labels(num_labels: int, shape: Sequence[int], batch: int, dtype: Any = None,
                       span: tuple[int, int] | None = None, name: str = "labels") -> None:
    """The one rule for single-label classification ``labels``: integer class indices, one per image, each in
    ``[0, num_labels)`` or -100 (ignored); ``span`` is the (smallest, largest) label other than -100."""
    if dtype is not None and not _is_integer_dtype(dtype):
        raise ValueError(f"{name} must hold integer class indices, got dtype {_dtype_name(dtype)}")
    if tuple(shape) != (batch,):
        raise ValueError(f"{name} must hold one integer class index per image, shape ({batch},); found shape "
                         f"{tuple(shape)}")
    if span is not None:
        low, high = span
        if low < 0 or high >= num_labels:
            raise ValueError(f"{name} must lie in [0, {num_labels}) (or be -100), found values in [{low}, {high}]")


def label_span(values) -> tuple[int, int] | None:
    """(smallest, largest) of integer labels other than -100 (numpy-convertible), ``None`` when there are none."""
    values = np.asarray(values).reshape(-1)
    values = values[values != -100]
    return (int(values.min()), int(values.max())) if values.size else None


def check_batch_sizes(input_ids_shape, pixel_values_shape, return_loss: bool) -> None:
    if return_loss and input_ids_shape[0] != pixel_values_shape[0]:
        raise ValueError(f"return_loss=True needs as many texts as images, got {input_ids_shape[0]} texts and "
                         f"{pixel_values_shape[0]} images")


def pools_at_argmax(config: CLIPTextConfig) -> bool:
    """Whether the text tower pools at ``argmax(input_ids)`` (legacy ``eos_token_id == 2``), not the first eos."""
    return config.eos_token_id == 2


__all__ = ["PretrainedMixin", "CONFIG_CLASSES", "check_text_inputs", "check_vision_inputs", "check_batch_sizes",
           "check_pixel_values", "check_attention_size", "check_attention_mask", "first_bad_mask_value", "check_position_ids", "check_class_labels", "label_span",
           "bicubic_resize_matrix",
           "pools_at_argmax"]


def bicubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The ``[out_size, in_size]`` matrix of PyTorch's bicubic resize (``align_corners=False``, A = -0.75).

    ``interpolate_pos_encoding`` resizes the position grid as ``M_h @ grid @ M_w.T`` in every backend, so the three
    agree with transformers' ``torch.nn.functional.interpolate(mode="bicubic")`` to float32 rounding, and the
    matrices are constants that any compiler (XLA, TorchScript) folds in.
    """
    a = -0.75

    def cubic(x):
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0

    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = (i + 0.5) * scale - 0.5
        base = int(np.floor(src))
        t = src - base
        for offset in (-1, 0, 1, 2):
            j = min(max(base + offset, 0), in_size - 1)
            matrix[i, j] += cubic(offset - t)
    return matrix.astype(np.float32)


def trimmed_text_length(input_ids: np.ndarray, attention_mask: np.ndarray | None, eos_token_id: int) -> int:
    """How many leading columns of (concrete) text inputs can change a pooled text state.

    Under the causal mask no token attends to a later one, so the columns after the batch's last pooled position
    (first ``eos_token_id``, or ``argmax`` for the legacy id 2) cannot change any pooled state. The length is rounded
    up to a power of two (at least 8, at most the given length) so compiled functions see few lengths. It is the
    full length when a row's pooled token sees no unmasked token (its attention would spread over every column).
    """
    ids = np.asarray(input_ids)
    index = (ids if eos_token_id == 2 else ids == eos_token_id).argmax(axis=-1)
    given = ids.shape[1]
    length = min(given, max(8, 1 << int(index.max()).bit_length()))
    if length < given and attention_mask is not None:
        seen = (np.asarray(attention_mask)[:, :length] != 0) & (np.arange(length) <= index[:, None])
        if not seen.any(axis=1).all():
            return given
    return length


def run_layers(num_layers: int, layer_call, hidden_states, output_hidden_states: bool, output_attentions: bool,
               rows=None):
    """An encoder's loop, in any framework: ``layer_call(i, hidden_states, rows)`` returns layer ``i``'s
    ``(hidden_states, attention probabilities)``; ``rows`` (one position per batch row) goes to the last layer only.

    Returns ``(last_hidden_state, hidden_states or None, attentions or None)``: the embeddings and every layer's
    output, and every layer's attention maps, as tuples when asked for.
    """
    states = [hidden_states] if output_hidden_states else None
    attentions = [] if output_attentions else None
    for i in range(num_layers):
        hidden_states, probs = layer_call(i, hidden_states, rows if i == num_layers - 1 else None)
        if states is not None:
            states.append(hidden_states)
        if attentions is not None:
            attentions.append(probs)
    return (hidden_states, None if states is None else tuple(states),
            None if attentions is None else tuple(attentions))
