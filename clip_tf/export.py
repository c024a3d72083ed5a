"""Deployment artifacts from a TensorFlow model: a SavedModel (``OUT/savedmodel/``, signatures ``text_features``,
``image_features`` and ``serving_default``, the full forward) and LiteRT flatbuffers (``OUT/text.tflite``,
``OUT/vision.tflite``, ``OUT/model.tflite``), every one with a dynamic batch and text length.

``export(model, out_dir, to="savedmodel,litert", dtype=None)`` writes a complete export folder atomically (see
:mod:`clip_core.exporting`). Text inputs are int32 ``[batch, length]``, pixels float32 NCHW, outputs float32.
LiteRT ``float16`` stores float16 weights and computes in float32 (LiteRT's float16 weight format).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from clip_core import exporting

BACKEND = "tf"
_LITERT_FILES = {"text_features": "text.tflite", "image_features": "vision.tflite", "forward": "model.tflite"}
_SIGNATURES = {"text_features": "text_features", "image_features": "image_features", "forward": "serving_default"}


def export(model, out_dir: str | os.PathLike, to="all", dtype=None, overwrite: bool = False,
           source: str | None = None) -> dict:
    """Write the ``to`` artifacts (``savedmodel``, ``litert`` or ``all``) of a :class:`~clip_tf.TFCLIPModel` in
    ``dtype`` (default float32) to ``out_dir``, with ``export.json`` and ``reference.npz``; returns the manifest.

    The folder appears only when everything is written; an existing ``out_dir`` needs ``overwrite=True``.
    """
    return exporting.export_model(sys.modules[__name__], model, out_dir, to, dtype, overwrite, source)


def write_artifacts(model, folder: str | os.PathLike, formats, dtype: str) -> list[dict]:
    """Write this backend's ``formats`` into an existing ``folder``; returns their manifest records."""
    records = []
    for fmt in formats:
        if fmt == "savedmodel":
            records += _write_savedmodel(model, folder, dtype)
        elif fmt == "litert":
            records += _write_litert(model, folder, dtype)
    return records


def reference_outputs(model, cases) -> list[dict[str, np.ndarray]]:
    """The float32 model's features, full forward and ``logit_scale`` on each reference case (numpy)."""
    model = _cast(model, "float32")
    out, scale = [], _logit_scale(model)
    for case in cases:
        ids, mask, pixels = case["input_ids"], case["attention_mask"], case["pixel_values"]
        forward = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        result = {"text_features": model.get_text_features(ids, mask),
                  "image_features": model.get_image_features(pixels),
                  **{k: forward[k] for k in exporting.FORWARD_OUTPUTS}}
        out.append({**{k: tf.cast(v, tf.float32).numpy() for k, v in result.items()}, "logit_scale": scale})
    return out


def input_specs(names, config, same_batch: bool = False) -> dict[str, tf.TensorSpec]:
    """``tf.TensorSpec`` by input name with dynamic axes: ids and mask int32 ``[None, None]`` (batch, length),
    pixels float32 NCHW ``[None, C, H, W]``. ``same_batch`` is accepted for symmetry (TensorFlow's shapes carry no
    relation between axes)."""
    vision = getattr(config, "vision_config", config)
    specs = {"input_ids": tf.TensorSpec([None, None], tf.int32, name="input_ids"),
             "attention_mask": tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
             "position_ids": tf.TensorSpec([None, None], tf.int32, name="position_ids")}
    if hasattr(vision, "image_size"):
        specs["pixel_values"] = tf.TensorSpec([None, vision.num_channels, vision.image_size, vision.image_size],
                                              tf.float32, name="pixel_values")
    return {name: specs[name] for name in names}


def feature_functions(model, dtype: str = "float32") -> dict[str, tf.types.experimental.GenericFunction]:
    """The exported functions of a TFCLIPModel in ``dtype``, as ``tf.function``\\ s over :func:`input_specs`
    returning dicts of float32 tensors: ``text_features(input_ids, attention_mask)``,
    ``image_features(pixel_values)``, ``forward(input_ids, attention_mask, pixel_values)`` (``logits_per_image``,
    ``logits_per_text``, ``text_embeds``, ``image_embeds``)."""
    _check_model(model)
    model = _cast(model, exporting.check_dtype(dtype))
    as_float = lambda x: tf.cast(x, tf.float32)  # noqa: E731

    def text_features(input_ids, attention_mask):
        return {"text_features": as_float(model._text_features(input_ids, attention_mask))}

    def image_features(pixel_values):
        return {"image_features": as_float(model._image_features(pixel_values))}

    def forward(input_ids, attention_mask, pixel_values):
        out = model.call(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return {k: as_float(out[k]) for k in exporting.FORWARD_OUTPUTS}

    functions = {"text_features": text_features, "image_features": image_features, "forward": forward}
    specs = exporting.function_specs(model.config, "int32")
    out = {}
    for name, fn in functions.items():
        signature = list(input_specs([i["name"] for i in specs[name]["inputs"]], model.config).values())
        out[name] = tf.function(fn, input_signature=signature, autograph=False)
        out[name].model = model  # the variables' owner travels with the function
    return out


def trace(model, function: str, dtype: str = "float32"):
    """``function`` (see :func:`feature_functions`) as a concrete function over dynamic batch and length."""
    return feature_functions(model, dtype)[_check_function(function)].get_concrete_function()


# ---------------------------------------------------------------------------------------------- formats
def _holder(model, dtype: str) -> tf.Module:
    """A ``tf.Module`` holding the model's variables and the three functions (what ``tf.saved_model.save`` and the
    LiteRT converter track)."""
    functions = feature_functions(model, dtype)
    holder = tf.Module(name="clip_export")
    holder.params = functions["forward"].model.params
    for name, function in functions.items():
        setattr(holder, name, function)
    return holder


def _write_savedmodel(model, folder: str | os.PathLike, dtype: str = "float32") -> list[dict]:
    """``savedmodel/`` in ``folder``: signatures ``text_features``, ``image_features`` and ``serving_default``
    (the full forward: ``logits_per_image``, ``logits_per_text``, ``text_embeds``, ``image_embeds``)."""
    holder = _holder(model, dtype)
    signatures = {name: getattr(holder, function).get_concrete_function() for function, name in _SIGNATURES.items()}
    tf.saved_model.save(holder, str(Path(folder) / "savedmodel"), signatures=signatures)
    specs = exporting.function_specs(model.config, "int32")
    return [exporting.artifact_record("savedmodel", "savedmodel", function, specs[function], dtype, model.config,
                                      runtime="tensorflow", signature=name)
            for function, name in _SIGNATURES.items()]


def _write_litert(model, folder: str | os.PathLike, dtype: str = "float32") -> list[dict]:
    """``text.tflite``, ``vision.tflite`` and ``model.tflite`` in ``folder`` (builtin LiteRT ops only, no TF
    select ops), each with one ``serving_default`` signature; ``float16`` stores float16 weights."""
    holder = _holder(model, "float32")
    specs = exporting.function_specs(model.config, "int32")
    records = []
    for function, filename in _LITERT_FILES.items():
        concrete = getattr(holder, function).get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if dtype == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        (Path(folder) / filename).write_bytes(converter.convert())
        records.append(exporting.artifact_record(
            "litert", filename, function, specs[function], dtype, model.config, runtime="litert",
            signature="serving_default",
            note="float16 weights, float32 computation" if dtype == "float16" else None))
    return records


# ---------------------------------------------------------------------------------------------- helpers
def _check_model(model) -> None:
    from clip_tf import TFCLIPModel

    if not isinstance(model, TFCLIPModel):
        raise TypeError(f"export needs a clip_tf.TFCLIPModel (both towers), got {type(model).__name__}")


def _check_function(function: str) -> str:
    if function not in exporting.FUNCTIONS:
        raise ValueError(f"unknown function {function!r}: choose from {', '.join(exporting.FUNCTIONS)}")
    return function


def _cast(model, dtype: str):
    """``model`` in ``dtype`` (a new model holding the same values when the dtype changes)."""
    if model.dtype.name == dtype:
        return model
    return type(model)._from_state(model.config, model.export_state(), dtype=dtype)


def _logit_scale(model) -> float:
    return float(tf.reshape(tf.cast(model.params["logit_scale"], tf.float32), ()))


__all__ = ["export", "write_artifacts", "reference_outputs", "input_specs", "feature_functions", "trace"]
