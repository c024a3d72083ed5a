"""Convert numpy batches to the tensor type a caller asked for, and the dict that tokenizers and processors return.

A framework is imported only when its tensor type is requested, so ``clip_core`` stays framework-free.
:class:`BatchEncoding` behaves as transformers' ``BatchEncoding`` / ``BatchFeature``: a ``dict`` with attribute
access, ``convert_to_tensors``, ``.to(device or dtype)``, ``.data`` and pickling.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

TENSOR_TYPES = (None, "np", "pt", "tf", "jax")


class TooLargeError(ValueError):
    """A caller-requested size (padding length, crop size, image size) would need more memory than allowed."""


def estimate_bytes(needed: int, limit: int, what: str) -> None:
    """Raise :class:`TooLargeError` when ``needed`` bytes exceed ``limit``, saying how much ``what`` would take."""
    if needed > limit:
        raise TooLargeError(f"{what} would need {_human(needed)} of memory (limit {_human(limit)}); "
                            "ask for a smaller size")


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def check_return_tensors(return_tensors: Any) -> None:
    """Raise ``ValueError`` unless ``return_tensors`` is one of ``None``, "np", "pt", "tf", "jax"."""
    if getattr(return_tensors, "value", return_tensors) not in TENSOR_TYPES:
        raise ValueError(f"return_tensors must be one of {TENSOR_TYPES}, got {return_tensors!r}")


def _as_array(value: Any, key: str = "") -> np.ndarray:
    """``value`` as one numpy array; a ValueError (transformers' words) when the rows have different lengths."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        lengths = {len(v) for v in value}
        if len(lengths) > 1:
            raise ValueError(
                f"Unable to create tensor: the sequences{f' of {key!r}' if key else ''} have different lengths "
                f"({min(lengths)} to {max(lengths)}); you should probably activate truncation and/or padding "
                "with 'padding=True' 'truncation=True' to have batched tensors with the same length.")
    try:
        return np.asarray(value)
    except ValueError as err:
        raise ValueError(f"Unable to create tensor{f' from {key!r}' if key else ''}: {err}") from None


def to_tensor(array: Any, return_tensors: str | None, key: str = "") -> Any:
    """Return ``array`` as the requested tensor type ("np", "pt", "tf", "jax"; ``None`` leaves it as is).

    Python lists of ints become what transformers makes of them (int64 for "np" / "pt", int32 for "tf" and
    "jax"); numpy arrays keep their dtype.
    """
    return_tensors = getattr(return_tensors, "value", return_tensors)
    check_return_tensors(return_tensors)
    if return_tensors is None:
        return array
    from_python = not isinstance(array, np.ndarray) and not hasattr(array, "__array__")
    array = _as_array(array, key)
    if return_tensors == "np":
        return array
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))
    if return_tensors == "tf":
        import tensorflow as tf

        if from_python and array.dtype == np.int64:  # tf.constant of Python ints, as transformers calls it
            array = array.astype(np.int32)
        return tf.convert_to_tensor(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


def _is_tensor_of(value: Any, module: str) -> bool:
    return type(value).__module__.split(".", 1)[0] == module


class BatchEncoding(dict):
    """A ``dict`` of model inputs with attribute access (``batch.input_ids``), as transformers' ``BatchEncoding`` /
    ``BatchFeature``: ``convert_to_tensors``, ``.to(device or dtype)``, ``.data``, pickling."""

    def __init__(self, data: Mapping[str, Any] | None = None, tensor_type: str | None = None,
                 prepend_batch_axis: bool = False, **kwargs: Any) -> None:
        super().__init__(data or {})
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis=prepend_batch_axis)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"data": dict(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.update(state.get("data", {}))

    def __reduce__(self):
        return (type(self), (dict(self),))

    @property
    def data(self) -> dict[str, Any]:
        """The entries as a plain ``dict`` (the same objects)."""
        return dict(self)

    @property
    def is_fast(self) -> bool:
        """False: triclip's encodings carry no Rust ``Encoding`` objects."""
        return False

    def convert_to_tensors(self, tensor_type: str | None = None, prepend_batch_axis: bool = False
                           ) -> "BatchEncoding":
        """Convert every entry to ``tensor_type`` in place ("np", "pt", "tf", "jax"); returns ``self``."""
        if tensor_type is None:
            return self
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            self[key] = to_tensor(value, tensor_type, key)
        return self

    def to(self, *args: Any, **kwargs: Any) -> "BatchEncoding":
        """Move PyTorch tensors to a device (``.to("cpu")``) or cast the floating ones to a dtype
        (``.to(torch.float16)``; integer ids stay as they are), as transformers' ``BatchFeature.to``."""
        import torch

        target = args[0] if args else kwargs.get("device", kwargs.get("dtype"))
        is_dtype = isinstance(target, torch.dtype)
        if not is_dtype and not isinstance(target, (str, int, torch.device)):
            raise TypeError(f"to() takes a device or a torch dtype, got {type(target).__name__}")
        for key, value in self.items():
            if not isinstance(value, torch.Tensor):
                continue
            if is_dtype:
                if torch.is_floating_point(value):
                    self[key] = value.to(target)
            else:
                self[key] = value.to(target)
        return self


BatchFeature = BatchEncoding


def batch(data: Mapping[str, Any], return_tensors: str | None = None) -> BatchEncoding:
    """Build a :class:`BatchEncoding` from ``data``, converting every value to ``return_tensors``."""
    return BatchEncoding(data).convert_to_tensors(return_tensors)
