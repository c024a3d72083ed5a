"""Convert numpy batches to the tensor type a caller asked for.

A framework is imported only when its tensor type is requested, so ``clip_core`` stays framework-free.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

TENSOR_TYPES = (None, "np", "pt", "tf", "jax")


def check_return_tensors(return_tensors: Any) -> None:
    """Raise ``ValueError`` unless ``return_tensors`` is one of ``None``, "np", "pt", "tf", "jax"."""
    if return_tensors not in TENSOR_TYPES:
        raise ValueError(f"return_tensors must be one of {TENSOR_TYPES}, got {return_tensors!r}")


def to_tensor(array: Any, return_tensors: str | None) -> Any:
    """Return ``array`` as the requested tensor type ("np", "pt", "tf", "jax"; ``None`` leaves it as is)."""
    check_return_tensors(return_tensors)
    if return_tensors is None:
        return array
    array = np.asarray(array)
    if return_tensors == "np":
        return array
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array))
    if return_tensors == "tf":
        import tensorflow as tf

        return tf.convert_to_tensor(array)
    import jax.numpy as jnp

    return jnp.asarray(array)


class BatchEncoding(dict):
    """A ``dict`` of model inputs that also allows attribute access (``batch.input_ids``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def convert_to_tensors(self, return_tensors: str | None) -> "BatchEncoding":
        for key, value in self.items():
            self[key] = to_tensor(value, return_tensors)
        return self


def batch(data: Mapping[str, Any], return_tensors: str | None = None) -> BatchEncoding:
    """Build a :class:`BatchEncoding` from ``data``, converting every value to ``return_tensors``."""
    return BatchEncoding(data).convert_to_tensors(return_tensors)
