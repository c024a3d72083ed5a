"""What the three backends' pretrained-model bases share: loading, saving and random init, framework-free.

A backend's base model class (``clip_pt.pretrained``, ``clip_tf.pretrained``, ``clip_flax.pretrained``) mixes in
:class:`PretrainedMixin`, sets ``arch`` (one of :data:`clip_core.weights.ARCHITECTURES`) and implements two hooks:

* ``_from_state(config, state, dtype=None)`` -- a model holding the canonical state's values;
* ``export_state()`` -- the model's values as a canonical state (numpy, PyTorch layouts).

Everything else (finding files, every format, validation, atomic writes) lives in :mod:`clip_core.checkpoints`.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from clip_core import checkpoints
from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.weights import init_state, param_table

#: The config class each architecture is built from.
CONFIG_CLASSES = {
    "clip": CLIPConfig, "image_classification": CLIPConfig,
    "text": CLIPTextConfig, "text_projection": CLIPTextConfig,
    "vision": CLIPVisionConfig, "vision_projection": CLIPVisionConfig,
}

_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` / random init for any backend, through the canonical state."""

    arch: str = "clip"

    @property
    def config_class(self):
        return CONFIG_CLASSES[self.arch]

    @classmethod
    def check_config(cls, config: Any):
        """``config`` as the config class this model is built from (ours, a dict of its arguments, or
        transformers' config object of the same ``model_type``: ``coerce``), checked for a model build (fields
        that must agree, parameters that fit in memory: ``check_buildable``); ``TypeError`` for another kind."""
        expected = CONFIG_CLASSES[cls.arch]
        try:
            config = expected.coerce(config)
        except TypeError as err:
            raise TypeError(f"{cls.__name__}: {err}") from None
        config.check_buildable(cls.arch)
        return config

    @classmethod
    def param_table(cls, config):
        return param_table(config, cls.arch)

    @classmethod
    def random_state(cls, config, seed: int = 0) -> dict[str, np.ndarray]:
        """A seeded random state following transformers' initialisation (identical in every backend)."""
        return init_state(config, cls.arch, seed)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, config=None, dtype=None,
                        **kwargs: Any):
        """Load a model from a directory, a weight file or a Hub repo id, whatever the weight format.

        ``model.safetensors`` (and sharded), ``pytorch_model.bin``, ``tf_model.h5``, ``flax_model.msgpack`` and
        OpenAI / open_clip state dicts are all accepted. The text-only and vision-only classes also load from a
        full CLIP checkpoint. ``dtype`` sets the parameter (and computation) dtype, e.g. ``"bfloat16"``.
        """
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if config is not None:
            config = cls.check_config(config)
        config, state = checkpoints.load_checkpoint(pretrained_model_name_or_path, arch=cls.arch, config=config,
                                                    **hub)
        return cls._from_state(config, state, dtype=dtype, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, format: str | Sequence[str] = "safetensors", *,
                        overwrite: bool = False, max_shard_size: int | str | None = None, **kwargs: Any) -> None:
        """Write ``config.json`` and the weights, named as transformers names them, atomically.

        ``format`` is ``"safetensors"`` (default), ``"pytorch"``, ``"tf"``, ``"flax"``, ``"all"`` or a list.
        """
        if "safe_serialization" in kwargs:  # transformers' spelling
            format = "safetensors" if kwargs.pop("safe_serialization") else "pytorch"
        if kwargs:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}")
        checkpoints.save_checkpoint(save_directory, self.config, self.export_state(), formats=format,
                                    arch=self.arch, overwrite=overwrite, max_shard_size=max_shard_size)

    # hooks every backend implements
    @classmethod
    def _from_state(cls, config, state, dtype=None, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def export_state(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = ["PretrainedMixin", "CONFIG_CLASSES"]
