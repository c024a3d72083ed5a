"""Deployment artifacts from a Flax model: serialized ``jax.export`` programs (StableHLO with the weights inside),
``OUT/text.stablehlo``, ``OUT/vision.stablehlo`` and ``OUT/model.stablehlo`` (the full forward), with a symbolic
batch and a symbolic text length (``1 <= length <= max_position_embeddings``).

``export(model, out_dir, to="stablehlo", dtype=None)`` writes a complete export folder atomically (see
:mod:`clip_core.exporting`). Load one with ``jax.export.deserialize(open(path, "rb").read()).call(...)``: int32 ids
and mask ``[batch, length]``, float32 NCHW pixels, float32 outputs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export

from clip_core import exporting

BACKEND = "flax"
_STABLEHLO_FILES = {"text_features": "text.stablehlo", "image_features": "vision.stablehlo",
                    "forward": "model.stablehlo"}


def export(model, out_dir: str | os.PathLike, to="stablehlo", dtype=None, overwrite: bool = False,
           source: str | None = None) -> dict:
    """Write the ``to`` artifacts (Flax writes ``stablehlo``) of a :class:`~clip_flax.FlaxCLIPModel` in ``dtype``
    (default float32) to ``out_dir``, with ``export.json`` and ``reference.npz``; returns the manifest.

    The folder appears only when everything is written; an existing ``out_dir`` needs ``overwrite=True``.
    """
    return exporting.export_model(sys.modules[__name__], model, out_dir, to, dtype, overwrite, source)


def write_artifacts(model, folder: str | os.PathLike, formats, dtype: str) -> list[dict]:
    """Write this backend's ``formats`` into an existing ``folder``; returns their manifest records."""
    records = []
    for fmt in formats:
        if fmt == "stablehlo":
            records += _write_stablehlo(model, folder, dtype)
    return records


def reference_outputs(model, cases) -> list[dict[str, np.ndarray]]:
    """The float32 model's features, full forward and ``logit_scale`` on each reference case (numpy)."""
    from clip_flax import FlaxCLIPModel

    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), model.params)
    scale = float(np.asarray(params["logit_scale"]))
    model = FlaxCLIPModel(model.config, dtype=jnp.float32, _do_init=False) if model.dtype != jnp.float32 else model
    out = []
    for case in cases:
        ids, mask, pixels = case["input_ids"], case["attention_mask"], case["pixel_values"]
        forward = model(ids, pixels, attention_mask=mask, params=params)
        result = {"text_features": model.get_text_features(ids, mask, params=params),
                  "image_features": model.get_image_features(pixels, params=params),
                  **{k: forward[k] for k in exporting.FORWARD_OUTPUTS}}
        out.append({**{k: np.asarray(v, np.float32) for k, v in result.items()}, "logit_scale": scale})
    return out


def input_specs(names, config, same_batch: bool = False) -> dict[str, jax.ShapeDtypeStruct]:
    """``jax.ShapeDtypeStruct`` by input name with symbolic axes: ids and mask int32 ``(batch, length)`` with
    ``length <= max_position_embeddings``, pixels float32 NCHW ``(image_batch, C, H, W)`` (``batch`` with
    ``same_batch``)."""
    text, vision = config.text_config, config.vision_config
    uses_text = any(name in names for name in ("input_ids", "attention_mask", "position_ids"))
    scope = jax_export.SymbolicScope([f"length <= {text.max_position_embeddings}"] if uses_text else [])
    batch, length, image_batch = jax_export.symbolic_shape("batch, length, image_batch", scope=scope)
    ids = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    pixels = jax.ShapeDtypeStruct((batch if same_batch else image_batch, vision.num_channels, vision.image_size,
                                   vision.image_size), jnp.float32)
    specs = {"input_ids": ids, "attention_mask": ids, "position_ids": ids, "pixel_values": pixels}
    return {name: specs[name] for name in names}


def feature_functions(model, dtype: str = "float32") -> dict:
    """The exported functions as plain JAX functions of arrays, closing over the parameters (in ``dtype``, the
    computation dtype too), returning float32: ``text_features(input_ids, attention_mask)``,
    ``image_features(pixel_values)``, ``forward(input_ids, attention_mask, pixel_values) -> (logits_per_image,
    logits_per_text, text_embeds, image_embeds)``."""
    from clip_flax import FlaxCLIPModel

    _check_model(model)
    dtype = exporting.check_dtype(dtype)
    compute = FlaxCLIPModel(model.config, dtype=jnp.dtype(dtype), _do_init=False)
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.dtype(dtype)), model.params)
    apply = compute.module.apply

    def text_features(input_ids, attention_mask):
        out = apply({"params": params}, input_ids, attention_mask, None, True, method=FlaxCLIPModel._text_features)
        return out.astype(jnp.float32)

    def image_features(pixel_values):
        out = apply({"params": params}, pixel_values, True, method=FlaxCLIPModel._image_features)
        return out.astype(jnp.float32)

    def forward(input_ids, attention_mask, pixel_values):
        out = apply({"params": params}, input_ids, pixel_values, attention_mask, None, False, False, False, True,
                    method=FlaxCLIPModel._forward)
        return tuple(out[k].astype(jnp.float32) for k in exporting.FORWARD_OUTPUTS)

    return {"text_features": text_features, "image_features": image_features, "forward": forward}


def trace(model, function: str, dtype: str = "float32") -> jax_export.Exported:
    """``function`` (see :func:`feature_functions`) as a :class:`jax.export.Exported` (platform ``cpu``) over
    symbolic batch, image batch and length, the parameters inside as constants."""
    fn = feature_functions(model, dtype)[_check_function(function)]
    names = [i["name"] for i in exporting.function_specs(model.config, "int32", [function])[function]["inputs"]]
    return jax_export.export(jax.jit(fn))(*input_specs(names, model.config).values())


# ---------------------------------------------------------------------------------------------- formats
def _write_stablehlo(model, folder: str | os.PathLike, dtype: str = "float32") -> list[dict]:
    """``text.stablehlo``, ``vision.stablehlo`` and ``model.stablehlo`` in ``folder``: serialized
    :func:`trace` artifacts."""
    specs = exporting.function_specs(model.config, "int32")
    records = []
    for function, filename in _STABLEHLO_FILES.items():
        exported = trace(model, function, dtype)
        (Path(folder) / filename).write_bytes(exported.serialize())
        records.append(exporting.artifact_record("stablehlo", filename, function, specs[function], dtype,
                                                 model.config, runtime="jax.export",
                                                 platforms=list(exported.platforms)))
    return records


# ---------------------------------------------------------------------------------------------- helpers
def _check_model(model) -> None:
    from clip_flax import FlaxCLIPModel

    if not isinstance(model, FlaxCLIPModel):
        raise TypeError(f"export needs a clip_flax.FlaxCLIPModel (both towers), got {type(model).__name__}")


def _check_function(function: str) -> str:
    if function not in exporting.FUNCTIONS:
        raise ValueError(f"unknown function {function!r}: choose from {', '.join(exporting.FUNCTIONS)}")
    return function


__all__ = ["export", "write_artifacts", "reference_outputs", "input_specs", "feature_functions", "trace"]
