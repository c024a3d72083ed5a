"""Features from a model of any backend, as numpy: the one place tasks touch a framework.

A model is recognised by its class's package: ``clip_pt`` / ``clip_tf`` / ``clip_flax``, or transformers' ``CLIPModel``
/ ``TFCLIPModel`` / ``FlaxCLIPModel``, or :class:`~clip_core.tasks.onnx_model.OnnxCLIPModel` (ONNX Runtime). Inputs go
in as numpy and are converted with :func:`clip_core.tensors.to_tensor`; outputs come back as float32 numpy. PyTorch
runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from clip_core.tensors import to_tensor

BACKENDS = {"pt": "pt", "torch": "pt", "tf": "tf", "tensorflow": "tf", "flax": "jax", "jax": "jax",
            "onnx": "onnx", "onnxruntime": "onnx"}
_MODEL_CLASSES = {"pt": ("clip_pt", "CLIPModel"), "tf": ("clip_tf", "TFCLIPModel"), "jax": ("clip_flax", "FlaxCLIPModel")}


def backend_name(backend: str) -> str:
    """``"pt"``, ``"tf"``, ``"jax"`` or ``"onnx"`` from any accepted spelling (pt, torch, tf, tensorflow, flax, jax,
    onnx, onnxruntime)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}")
    return BACKENDS[backend]


def backend_of(model: Any) -> str:
    """The tensor type a model takes: ``"pt"``, ``"tf"``, ``"jax"`` or ``"onnx"`` (numpy)."""
    cls = type(model)
    root, name = cls.__module__.split(".")[0], cls.__name__
    if root == "clip_pt":
        return "pt"
    if root == "clip_tf":
        return "tf"
    if root == "clip_flax":
        return "jax"
    if root == "clip_core" and name == "OnnxCLIPModel":
        return "onnx"
    if root == "transformers":
        return "tf" if name.startswith("TF") else "jax" if name.startswith("Flax") else "pt"
    raise TypeError(f"not a CLIP model of a known backend: {cls.__module__}.{name} (expected a clip_pt, clip_tf, "
                    "clip_flax, transformers or ONNX Runtime CLIP model)")


def fixed_shapes(model) -> bool:
    """Whether each new input shape costs ``model`` a compile (TF and JAX): callers then pad to one shape."""
    return backend_of(model) in ("tf", "jax")


def load_model(path, backend: str = "pt", dtype=None):
    """``CLIPModel`` / ``TFCLIPModel`` / ``FlaxCLIPModel`` / ``OnnxCLIPModel`` ``.from_pretrained(path)`` for
    ``backend`` (eval mode)."""
    import importlib

    if backend_name(backend) == "onnx":
        from clip_core.tasks.onnx_model import OnnxCLIPModel

        return OnnxCLIPModel.from_pretrained(path, dtype=dtype)
    module, name = _MODEL_CLASSES[backend_name(backend)]
    model = getattr(importlib.import_module(module), name).from_pretrained(path, dtype=dtype)
    return model.eval() if hasattr(model, "eval") and backend_name(backend) == "pt" else model


def _no_grad(kind: str):
    if kind == "pt":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def _inputs(model, kind: str, arrays: dict) -> dict:
    out = {}
    for key, value in arrays.items():
        if value is None:
            continue
        tensor = to_tensor(np.asarray(value), "np" if kind == "onnx" else kind)
        if kind == "pt" and key == "pixel_values":
            tensor = tensor.to(device=model.device, dtype=model.dtype)
        elif kind == "pt":
            tensor = tensor.to(model.device)
        out[key] = tensor
    return out


def _ids(input_ids, kind: str) -> np.ndarray:
    """Token ids in the integer type ``kind`` takes: int64 for PyTorch and ONNX graphs, int32 for TF and JAX."""
    return np.asarray(input_ids, np.int64 if kind in ("pt", "onnx") else np.int32)


def to_numpy(value: Any) -> np.ndarray:
    """A float32 numpy array from a torch / tf / jax tensor or an output with ``.numpy()``."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().float().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf
        value = value.numpy()
    return np.asarray(value, dtype=np.float32)


def text_features(model, input_ids, attention_mask=None) -> np.ndarray:
    """``model.get_text_features`` on numpy ``input_ids`` (and mask): projected, unnormalised, ``[n, dim]``."""
    kind = backend_of(model)
    with _no_grad(kind):
        out = model.get_text_features(**_inputs(model, kind, {"input_ids": _ids(input_ids, kind),
                                                              "attention_mask": attention_mask}))
    return to_numpy(out)


def image_features(model, pixel_values) -> np.ndarray:
    """``model.get_image_features`` on numpy NCHW ``pixel_values``: projected, unnormalised, ``[n, dim]``."""
    kind = backend_of(model)
    with _no_grad(kind):
        out = model.get_image_features(**_inputs(model, kind, {"pixel_values": np.asarray(pixel_values,
                                                                                            dtype=np.float32)}))
    return to_numpy(out)


def forward(model, **arrays):
    """The model's full call on numpy inputs (for the outputs features do not carry, e.g. patch states)."""
    kind = backend_of(model)
    if "input_ids" in arrays:
        arrays["input_ids"] = _ids(arrays["input_ids"], kind)
    with _no_grad(kind):
        return model(**_inputs(model, kind, arrays))


def logit_scale(model) -> float:
    """``exp(logit_scale)``'s argument as loaded (inference leaves it unclamped)."""
    value = getattr(model, "logit_scale", None)
    if value is None:
        params = getattr(model, "params", None)
        if params is not None and "logit_scale" in params:
            value = params["logit_scale"]
        elif hasattr(model, "clip"):  # transformers' TF wrapper
            value = model.clip.logit_scale
    if value is None:
        raise TypeError(f"cannot find logit_scale on {type(model).__name__}")
    return float(to_numpy(value).reshape(-1)[0])


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x / ||x||`` along ``axis`` in float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, np.float32(1e-12))
