"""OpenAI's and open_clip's CLIP checkpoints: the names this module always offered, now kept in
:mod:`clip_core.formats.openai` (conversion, hyper-parameters) and :mod:`clip_core.formats.pytorch` (TorchScript
and ``torch.save`` zips read without executing anything)."""

from __future__ import annotations

from clip_core.formats.openai import (OPENAI_MARKERS, convert_openai_state, infer_hparams,  # noqa: F401
                                      looks_like_openai, openai_config, read_openai, unwrap_state_dict)
from clip_core.formats.pytorch import ScriptObject, is_torchscript, read_torch_zip  # noqa: F401

__all__ = ["read_openai", "openai_config", "infer_hparams", "convert_openai_state", "looks_like_openai",
           "unwrap_state_dict", "read_torch_zip", "is_torchscript", "OPENAI_MARKERS"]
