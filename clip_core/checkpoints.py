"""Read and write every checkpoint format <-> the canonical state (MINIMAL VERSION: safetensors only).

This file is being extended (pytorch_model.bin, tf_model.h5, flax_model.msgpack, sharded safetensors, OpenAI and
open_clip state dicts). The public functions and their signatures below are the contract the backends use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.hub import atomic_directory, resolve_file
from clip_core.weights import param_table, validate_state

WEIGHTS_NAMES = {
    "safetensors": "model.safetensors",
    "pytorch": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
FORMATS = tuple(WEIGHTS_NAMES)


def _config_for_arch(config: CLIPConfig | CLIPTextConfig | CLIPVisionConfig, arch: str):
    if arch in ("clip", "image_classification"):
        if not isinstance(config, CLIPConfig):
            raise TypeError(f"a {arch!r} model needs a CLIPConfig, the checkpoint has a {type(config).__name__}")
        return config
    tower = CLIPTextConfig if arch.startswith("text") else CLIPVisionConfig
    if isinstance(config, CLIPConfig):
        sub = config.text_config if tower is CLIPTextConfig else config.vision_config
        sub = tower.from_dict(sub.to_dict())
        sub.projection_dim = config.projection_dim
        return sub
    if not isinstance(config, tower):
        raise TypeError(f"a {arch!r} model needs a {tower.__name__}, the checkpoint has a {type(config).__name__}")
    return config


def load_checkpoint(path_or_repo: str | os.PathLike, *, arch: str = "clip", config=None, **hub_kwargs):
    """Return ``(config, state)`` for model ``arch`` from a directory, weight file or Hub repo id.

    ``config`` (if given) replaces the checkpoint's ``config.json``. The state is validated against the parameter
    table: every missing, unexpected or mis-shaped parameter is reported in one ``StateMismatchError``.
    """
    from clip_core.config import CONFIG_NAME
    from safetensors.numpy import load_file

    if config is None:
        data_config = CLIPConfig.from_json_file(resolve_file(path_or_repo, CONFIG_NAME, **hub_kwargs)) \
            if _is_clip_config(path_or_repo, hub_kwargs) else None
        if data_config is None:
            cls = CLIPTextConfig if arch.startswith("text") else CLIPVisionConfig
            data_config = cls.from_pretrained(path_or_repo, **hub_kwargs)
        config = data_config
    config = _config_for_arch(config, arch) if not (arch.startswith(("text", "vision")) and
                                                    not isinstance(config, CLIPConfig)) else config
    path = resolve_file(path_or_repo, WEIGHTS_NAMES["safetensors"], **hub_kwargs)
    state = load_file(path)
    table = param_table(config, arch)
    state = {k: v for k, v in state.items() if k in table}
    validate_state(state, table, where=str(path))
    return config, state


def _is_clip_config(path_or_repo, hub_kwargs) -> bool:
    import json

    from clip_core.config import CONFIG_NAME
    data = json.loads(Path(resolve_file(path_or_repo, CONFIG_NAME, **hub_kwargs)).read_text())
    return data.get("model_type") == "clip"


def save_checkpoint(directory: str | os.PathLike, config, state: dict[str, np.ndarray], *,
                    formats: str | Sequence[str] = "safetensors", arch: str = "clip", overwrite: bool = False,
                    max_shard_size=None) -> None:
    """Write ``config.json`` and the weights in each of ``formats`` into ``directory``, atomically."""
    from safetensors.numpy import save_file

    formats = FORMATS if formats == "all" else ([formats] if isinstance(formats, str) else list(formats))
    table = param_table(config, arch)
    validate_state(state, table)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        config.save_pretrained(tmp)
        for fmt in formats:
            if fmt != "safetensors":
                raise NotImplementedError(fmt)
            save_file({k: np.ascontiguousarray(state[k]) for k in table}, str(tmp / WEIGHTS_NAMES[fmt]),
                      metadata={"format": "pt"})
