"""OpenAI's and open_clip's CLIP checkpoints -> a :class:`CLIPConfig` and the canonical state.

OpenAI's ``clip/model.py`` names its parameters ``visual.conv1.weight``, ``visual.transformer.resblocks.N.attn.
in_proj_weight``, ``token_embedding.weight``, ``ln_final.*``, ``text_projection`` ... and open_clip keeps those names
for its OpenAI-style models. Converting to transformers' names takes three rules beyond renaming: the fused
``in_proj`` of each attention block splits into ``q``/``k``/``v``; ``text_projection`` and ``visual.proj`` (stored
``[in, out]``) are transposed; the hyper-parameters come from the shapes, as OpenAI's ``build_model`` does (attention
heads ``width // 64``; pass ``hparams`` when a model used other head counts).

The files themselves (TorchScript archives, ``torch.save`` state dicts, open_clip ``.safetensors``) are read by the
family readers (:mod:`clip_core.formats.pytorch`, :mod:`clip_core.formats.safetensors`); this module only converts.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from clip_core.config import CLIPConfig
from clip_core.formats._common import UnsupportedCheckpointError, unwrap_state_dict
from clip_core.formats.registry import read_state_file
from clip_core.formats.sharding import read_hparams_json
from clip_core.weights import StateMismatchError, param_table, validate_state

#: Keys whose presence marks an OpenAI / open_clip state dict (after a ``module.`` prefix is removed).
OPENAI_MARKERS = ("visual.conv1.weight", "token_embedding.weight", "positional_embedding", "ln_final.weight",
                  "visual.class_embedding")

# Entries of OpenAI / open_clip state dicts that hold no parameter of the model.
_IGNORED = re.compile(r"^(input_resolution|context_length|vocab_size|(visual\.)?transformer\.resblocks\.\d+\.attn_mask"
                      r"|attn_mask)$")

_BLOCK_RENAMES = {
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
_TOP_RENAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def looks_like_openai(keys) -> bool:
    """Whether a state dict's keys are OpenAI's / open_clip's (rather than transformers')."""
    keys = set(keys)
    return any(marker in keys for marker in OPENAI_MARKERS) or \
        any(k.startswith(("transformer.resblocks.", "visual.transformer.resblocks.")) for k in keys)


# ---------------------------------------------------------------------------------------------- hyper-parameters
def _count_blocks(state, prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}transformer\.resblocks\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _shape(state, name):
    if name not in state:
        raise StateMismatchError([name], [], [], "the OpenAI state dict")
    return tuple(np.shape(state[name]))


def infer_hparams(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """OpenAI's ``CLIP(...)`` constructor arguments read from a state dict's shapes, as ``build_model`` does.

    Returns ``embed_dim``, ``image_resolution``, ``vision_layers``, ``vision_width``, ``vision_patch_size``,
    ``vision_heads`` (``vision_width // 64``), ``context_length``, ``vocab_size``, ``transformer_width``,
    ``transformer_heads`` (``transformer_width // 64``), ``transformer_layers``, and the MLP widths
    ``vision_mlp_width`` / ``transformer_mlp_width``.
    """
    if any(k.startswith("visual.layer1.") or k.startswith("visual.attnpool.") for k in state):
        raise UnsupportedCheckpointError(
            "this is an OpenAI ModifiedResNet checkpoint (RN50, RN101, ...): only ViT image towers can be converted "
            "(transformers' CLIP has no ResNet tower)")
    vision_width, _, patch, _ = _shape(state, "visual.conv1.weight")
    positions = _shape(state, "visual.positional_embedding")[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise StateMismatchError([], [], [("visual.positional_embedding", (grid * grid + 1, vision_width),
                                           _shape(state, "visual.positional_embedding"))], "the OpenAI state dict")
    width = _shape(state, "ln_final.weight")[0]
    vision_layers, text_layers = _count_blocks(state, "visual."), _count_blocks(state, "")
    hp = dict(
        embed_dim=_shape(state, "text_projection")[1],
        image_resolution=patch * grid, vision_layers=vision_layers, vision_width=vision_width,
        vision_patch_size=patch, vision_heads=vision_width // 64,
        context_length=_shape(state, "positional_embedding")[0],
        vocab_size=_shape(state, "token_embedding.weight")[0],
        transformer_width=width, transformer_heads=width // 64, transformer_layers=text_layers,
        vision_mlp_width=_shape(state, "visual.transformer.resblocks.0.mlp.c_fc.weight")[0] if vision_layers else
        4 * vision_width,
        transformer_mlp_width=_shape(state, "transformer.resblocks.0.mlp.c_fc.weight")[0] if text_layers else 4 * width,
    )
    return hp


def _hparams_overrides(hparams: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Normalise OpenAI-style or open_clip-style hyper-parameters to OpenAI's names (+ the activation, if known)."""
    if not hparams:
        return {}, None
    hparams = dict(hparams)
    if "model_cfg" in hparams:  # open_clip_config.json
        hparams = dict(hparams["model_cfg"])
    if "vision_cfg" in hparams or "text_cfg" in hparams:  # open_clip model config
        vision, text = dict(hparams.get("vision_cfg", {})), dict(hparams.get("text_cfg", {}))
        out = {"embed_dim": hparams.get("embed_dim")}
        if "width" in vision:
            head_width = vision.get("head_width", 64)
            if not isinstance(head_width, int) or isinstance(head_width, bool) or head_width < 1 or \
                    not isinstance(vision["width"], int) or vision["width"] % head_width:
                raise ValueError(f"the hyper-parameters' vision_cfg.head_width ({head_width!r}) must be a positive "
                                 f"integer dividing vision_cfg.width ({vision['width']!r})")
            out["vision_width"] = vision["width"]
            out["vision_heads"] = vision["width"] // head_width
        out.update(vision_layers=vision.get("layers"), vision_patch_size=vision.get("patch_size"),
                   image_resolution=vision.get("image_size"))
        out.update(transformer_width=text.get("width"), transformer_heads=text.get("heads", 8),
                   transformer_layers=text.get("layers"), context_length=text.get("context_length"),
                   vocab_size=text.get("vocab_size"))
        act = "quick_gelu" if hparams.get("quick_gelu", False) else "gelu"
        return {k: v for k, v in out.items() if v is not None}, act
    act = hparams.pop("hidden_act", None)
    return hparams, act


def _check_heads(hp: Mapping[str, Any], given: Mapping[str, Any], where: str = "") -> None:
    """Refuse head counts of 0 inferred by ``width // 64`` (a tower narrower than 64), saying how to give them; warn
    which rule gave the others (no shape records a head count)."""
    assumed = []
    for key, width, tower in (("transformer_heads", "transformer_width", "text"),
                              ("vision_heads", "vision_width", "vision")):
        if key not in given and hp[key] >= 1:
            assumed.append(f"{key}={hp[key]} ({tower} width {hp[width]} // 64)")
        if key not in given and hp[key] < 1:
            raise ValueError(
                f"cannot infer the {tower} tower's attention heads: OpenAI checkpoints do not record head counts, and "
                f"OpenAI's rule {width} // 64 gives {hp[key]} for its width {hp[width]}. Give them as "
                'hyper-parameters: `triclip convert SRC DST --hparams heads.json` with heads.json holding '
                '{"transformer_heads": N, "vision_heads": M} (each dividing its tower\'s width), or '
                "hparams={...} in Python (convert_checkpoint, read_openai)")
    if assumed:
        warnings.warn(f"{where or 'the OpenAI state dict'}: OpenAI checkpoints do not record attention head counts and "
                      f"no shape decides them; assumed {' and '.join(assumed)} by OpenAI's rule. If the model was "
                      'trained with other head counts its outputs will be wrong: pass them as hyper-parameters '
                      '(`triclip convert SRC DST --hparams heads.json` with {"transformer_heads": N, "vision_heads": '
                      "M}, or hparams={...} in Python), or put an open_clip_config.json next to the file",
                      OpenAIHeadsWarning, stacklevel=3)


class OpenAIHeadsWarning(UserWarning):
    """The head counts of an OpenAI checkpoint were inferred by OpenAI's rule ``width // 64``."""


def openai_config(state: Mapping[str, np.ndarray], hparams: Mapping[str, Any] | None = None,
                  hidden_act: str | None = None, where: str = "") -> CLIPConfig:
    """The :class:`CLIPConfig` of an OpenAI / open_clip state dict.

    Sizes come from the shapes. ``hparams`` -- OpenAI's ``CLIP(...)`` arguments (as in ``openai_hparams.json``,
    ``transformer_heads`` / ``vision_heads``) or an ``open_clip_config.json`` -- supplies what shapes cannot tell
    (the head counts, and for open_clip the activation); every size it also states must agree with the shapes.
    The activation defaults to OpenAI's ``quick_gelu`` (open_clip models without ``-quickgelu`` use ``"gelu"``).
    The text tower pools at ``argmax(input_ids)`` like OpenAI's: the config uses the legacy ``eos_token_id = 2``
    (as do the OpenAI configs on the Hub).
    """
    hp = infer_hparams(state)
    overrides, act = _hparams_overrides(hparams)
    for key, value in overrides.items():
        if key in ("transformer_heads", "vision_heads"):
            hp[key] = int(value)
        elif key in hp and int(value) != hp[key]:
            raise ValueError(f"the hyper-parameters say {key}={value} but the weights' shapes give {hp[key]}")
    _check_heads(hp, overrides, where)
    act = hidden_act or act or "quick_gelu"
    text = dict(vocab_size=hp["vocab_size"], hidden_size=hp["transformer_width"],
                intermediate_size=hp["transformer_mlp_width"], num_hidden_layers=hp["transformer_layers"],
                num_attention_heads=hp["transformer_heads"], max_position_embeddings=hp["context_length"],
                projection_dim=hp["embed_dim"], hidden_act=act, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    vision = dict(hidden_size=hp["vision_width"], intermediate_size=hp["vision_mlp_width"],
                  num_hidden_layers=hp["vision_layers"], num_attention_heads=hp["vision_heads"],
                  image_size=hp["image_resolution"], patch_size=hp["vision_patch_size"],
                  projection_dim=hp["embed_dim"], hidden_act=act)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=hp["embed_dim"],
                      architectures=["CLIPModel"])


# ---------------------------------------------------------------------------------------------- names
def convert_openai_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename an OpenAI / open_clip state dict to the canonical names and layouts.

    ``in_proj_weight`` / ``in_proj_bias`` split into ``q``, ``k``, ``v`` (in that order); ``text_projection`` and
    ``visual.proj`` are transposed to ``[out, in]``. Entries that are not parameters (``attn_mask``,
    ``input_resolution``, ...) are dropped; anything else unknown raises :class:`StateMismatchError`.
    """
    out: dict[str, np.ndarray] = {}
    unexpected = []
    for key, value in state.items():
        if _IGNORED.match(key):
            continue
        value = np.asarray(value)
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = np.ascontiguousarray(value.T)
        elif (match := _BLOCK.match(key)) is not None:
            tower = "vision_model" if match.group(1) else "text_model"
            layer = f"{tower}.encoder.layers.{match.group(2)}"
            rest = match.group(3)
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias") and value.shape[0] % 3 == 0:
                leaf = rest.rsplit("_", 1)[1]
                for proj, part in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0)):
                    out[f"{layer}.self_attn.{proj}.{leaf}"] = np.ascontiguousarray(part)
            elif rest in _BLOCK_RENAMES:
                out[f"{layer}.{_BLOCK_RENAMES[rest]}"] = value
            else:
                unexpected.append(key)
        else:
            unexpected.append(key)
    if unexpected:
        raise StateMismatchError([], unexpected, [], "the OpenAI / open_clip state dict (names it cannot convert)")
    return out


def read_openai(path: str | os.PathLike, *, hparams: Mapping[str, Any] | str | os.PathLike | None = None,
                hidden_act: str | None = None) -> tuple[CLIPConfig, dict[str, np.ndarray]]:
    """Read an OpenAI or open_clip checkpoint file and return ``(CLIPConfig, canonical state)``.

    ``path``: a TorchScript archive (OpenAI's releases, read without executing anything), a ``torch.save`` state
    dict (``.pt`` / ``.bin``, possibly ``{"state_dict": ...}`` with ``module.`` prefixes), or an open_clip
    ``.safetensors``. ``hparams``: a dict or the path of a JSON file (OpenAI's ``CLIP(...)`` arguments or an
    ``open_clip_config.json``); without it, an ``open_clip_config.json`` next to the file is used when present, and
    otherwise everything is inferred from the shapes (heads ``width // 64``). The state is validated against the
    table of the returned config.
    """

    path = Path(path)
    raw = unwrap_state_dict(read_state_file(path))
    if not looks_like_openai(raw):
        raise UnsupportedCheckpointError(f"{path} does not hold an OpenAI / open_clip CLIP state dict")
    if isinstance(hparams, (str, os.PathLike)):
        hparams = read_hparams_json(hparams, "hyper-parameters")
    elif hparams is None and (path.parent / "open_clip_config.json").is_file():
        hparams = read_hparams_json(path.parent / "open_clip_config.json", "open_clip hyper-parameters")
    config = openai_config(raw, hparams, hidden_act, str(path))
    state = convert_openai_state(raw)
    validate_state(state, param_table(config, "clip"), where=str(path))
    return config, state



__all__ = ["read_openai", "openai_config", "infer_hparams", "convert_openai_state", "looks_like_openai",
           "unwrap_state_dict", "OPENAI_MARKERS"]
