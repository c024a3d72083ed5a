"""Deployment artifacts from a PyTorch model: ``torch.export`` programs with a dynamic batch and text length, and
ONNX graphs made from them (``OUT/text.onnx``, ``OUT/vision.onnx``, ``OUT/model.onnx``).

``export(model, out_dir, to="onnx", dtype=None)`` writes a complete export folder atomically (see
:mod:`clip_core.exporting`); :func:`trace` gives one function as a ``torch.export`` program, and
:func:`input_specs` the ``Dim`` of every tensor argument of any model class, for ``torch.export.export`` itself.
The public names mirror ``clip_tf.export`` and ``clip_flax.export``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clip_core import exporting

BACKEND = "pt"
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ONNX_FILES = {"text_features": "text.onnx", "image_features": "vision.onnx", "forward": "model.onnx"}
_INLINE_LIMIT = 1_800_000_000  # bytes of weights an ONNX file holds inline; above it they go to a .data file


def export(model, out_dir: str | os.PathLike, to="onnx", dtype=None, overwrite: bool = False,
           source: str | None = None) -> dict:
    """Write the ``to`` artifacts of a :class:`~clip_pt.CLIPModel` (PyTorch writes ``onnx``) in ``dtype``
    (default float32) to ``out_dir``, with ``export.json`` and ``reference.npz``; returns the manifest.

    The folder appears only when everything is written; an existing ``out_dir`` needs ``overwrite=True``.
    """
    return exporting.export_model(sys.modules[__name__], model, out_dir, to, dtype, overwrite, source)


def write_artifacts(model, folder: str | os.PathLike, formats, dtype: str, functions=None) -> list[dict]:
    """Write this backend's ``formats`` into an existing ``folder``; returns their manifest records. ``functions``
    (default all of :data:`clip_core.exporting.FUNCTIONS`) limits the ONNX graphs written."""
    records = []
    for fmt in formats:
        if fmt == "onnx":
            records += _write_onnx(model, folder, dtype, functions)
    return records


def reference_outputs(model, cases) -> list[dict[str, np.ndarray]]:
    """The float32 model's features, full forward and ``logit_scale`` on each reference case (numpy)."""
    model = _float32(model)
    out, scale = [], _logit_scale(model)
    with torch.no_grad():
        for case in cases:
            ids, mask = (torch.from_numpy(case[k]) for k in ("input_ids", "attention_mask"))
            pixels = torch.from_numpy(case["pixel_values"])
            forward = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
            result = {"text_features": model.get_text_features(ids, mask),
                      "image_features": model.get_image_features(pixels),
                      **{k: forward[k] for k in exporting.FORWARD_OUTPUTS}}
            out.append({**{k: v.float().numpy() for k, v in result.items()}, "logit_scale": scale})
    return out


def input_specs(names, config, same_batch: bool = False) -> dict:
    """``torch.export`` ``Dim`` specs (``dynamic_shapes``) for tensor arguments by name: ids, mask and positions
    ``{0: batch, 1: length}`` (length up to ``max_position_embeddings``), pixels ``{0: image_batch}`` (``batch``
    when there is no text, or with ``same_batch``), labels ``{0: batch}``; anything else static. Works for every
    model class: ``torch.export.export(model, (), kwargs=inputs, dynamic_shapes=input_specs(inputs, config))``."""
    text = getattr(config, "text_config", config)
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=1, max=getattr(text, "max_position_embeddings", 77))
    text_names = ("input_ids", "attention_mask", "position_ids")
    has_text = any(name in names for name in text_names)
    image_batch = torch.export.Dim("image_batch", min=1) if has_text and not same_batch else batch
    specs = {}
    for name in names:
        if name in text_names:
            specs[name] = {0: batch, 1: length}
        elif name == "pixel_values":
            specs[name] = {0: image_batch}
        elif name == "labels":
            specs[name] = {0: batch}
        else:
            specs[name] = None
    return specs


def feature_functions(model, dtype: str = "float32") -> dict[str, nn.Module]:
    """The exported functions of a CLIPModel in ``dtype``, as modules of keyword tensors returning float32:
    ``text_features(input_ids, attention_mask)``, ``image_features(pixel_values)``, ``forward(input_ids,
    attention_mask, pixel_values) -> (logits_per_image, logits_per_text, text_embeds, image_embeds)``."""
    _check_model(model)
    model = _cast(model, exporting.check_dtype(dtype))
    return {function: _Function(model, function).eval() for function in exporting.FUNCTIONS}


def trace(model, function: str, dtype: str = "float32") -> torch.export.ExportedProgram:
    """``function`` (see :func:`feature_functions`) as a ``torch.export`` program with a dynamic batch, image batch
    and text length."""
    module = feature_functions(model, dtype)[_check_function(function)]
    inputs = _example_inputs(model.config, function)
    with torch.no_grad():
        return torch.export.export(module, (), kwargs=inputs, dynamic_shapes=input_specs(inputs, model.config))


# ---------------------------------------------------------------------------------------------- formats
def _write_onnx(model, folder: str | os.PathLike, dtype: str = "float32", functions=None) -> list[dict]:
    """``text.onnx``, ``vision.onnx`` and ``model.onnx`` (opset 18, through ``torch.export``; or those of
    ``functions``) in ``folder``, int64 ids and mask ``[batch, length]``, float32 NCHW pixels ``[image_batch, ...]``,
    float32 outputs."""
    modules = feature_functions(model, dtype)
    specs = exporting.function_specs(model.config, "int64")
    weights = sum(p.numel() * p.element_size() for p in modules["forward"].parameters())
    records = []
    for function in functions or _ONNX_FILES:
        filename = _ONNX_FILES[_check_function(function)]
        inputs = _example_inputs(model.config, function)
        with (torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(),
              _quiet("torch.onnx")):
            warnings.simplefilter("ignore")  # the exporter's progress and renaming notes are not ours to show
            torch.onnx.export(modules[function], (), str(Path(folder) / filename), kwargs=inputs, dynamo=True,
                              input_names=list(inputs), output_names=[o["name"] for o in specs[function]["outputs"]],
                              dynamic_shapes=input_specs(inputs, model.config),
                              external_data=weights > _INLINE_LIMIT, opset_version=18, verbose=False)
        records.append(exporting.artifact_record("onnx", filename, function, specs[function], dtype, model.config,
                                                 runtime="onnxruntime", opset=18,
                                                 external_data=weights > _INLINE_LIMIT))
    return records


class _Function(nn.Module):
    """One exported function of a CLIPModel (see :func:`feature_functions`)."""

    def __init__(self, model, function: str):
        super().__init__()
        self.model, self.function = model, function

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None):
        if self.function == "text_features":
            return self.model.get_text_features(input_ids, attention_mask).float()
        if self.function == "image_features":
            return self.model.get_image_features(pixel_values).float()
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return tuple(out[k].float() for k in exporting.FORWARD_OUTPUTS)


def _example_inputs(config, function: str) -> dict[str, torch.Tensor]:
    """Inputs to trace ``function`` with: a batch of 2 (images: 3, so the two batches stay distinct), 8 tokens."""
    text, vision = config.text_config, config.vision_config
    length = min(8, text.max_position_embeddings)
    ids = torch.full((2, length), text.bos_token_id % text.vocab_size, dtype=torch.int64)
    ids[:, -1] = text.eos_token_id % text.vocab_size
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
           "pixel_values": torch.zeros(3, vision.num_channels, vision.image_size, vision.image_size)}
    specs = exporting.function_specs(config, "int64", [function])[function]
    return {i["name"]: out[i["name"]] for i in specs["inputs"]}


# ---------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet(name: str):
    """Logger ``name`` at ERROR for the block (the exporter logs a warning per torchvision op it cannot register)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_model(model) -> None:
    from clip_pt import CLIPModel

    if not isinstance(model, CLIPModel):
        raise TypeError(f"export needs a clip_pt.CLIPModel (both towers), got {type(model).__name__}")


def _check_function(function: str) -> str:
    if function not in exporting.FUNCTIONS:
        raise ValueError(f"unknown function {function!r}: choose from {', '.join(exporting.FUNCTIONS)}")
    return function


def _cast(model, dtype: str):
    """``model`` in eval mode in ``dtype`` (a copy when the dtype changes)."""
    target = _TORCH_DTYPES[dtype]
    if model.dtype != target:
        model = copy.deepcopy(model).to(target)
    return model.eval()


def _float32(model):
    return _cast(model, "float32")


def _logit_scale(model) -> float:
    return float(model.logit_scale.detach().float())


__all__ = ["export", "write_artifacts", "reference_outputs", "input_specs", "feature_functions", "trace"]
