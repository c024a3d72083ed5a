"""triclip's framework-neutral core: configs, tokenizers, image processing, the parameter table and checkpoints.

Nothing here imports PyTorch, TensorFlow or JAX (a framework is imported only when a caller asks for its tensors).
Public names are loaded on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CLIPConfig": "config", "CLIPTextConfig": "config", "CLIPVisionConfig": "config", "PRESETS": "config",
    "CLIPTokenizer": "tokenizer", "CLIPTokenizerFast": "tokenizer",
    "CLIPImageProcessor": "image_processing", "CLIPFeatureExtractor": "image_processing",
    "CLIPProcessor": "processor",
    "param_table": "weights", "init_state": "weights", "validate_state": "weights", "StateMismatchError": "weights",
    "load_checkpoint": "checkpoints", "save_checkpoint": "checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"clip_core.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clip_core' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
