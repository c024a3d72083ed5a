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
#: transformers' from_pretrained switches that change nothing here
_IGNORED_KWARGS = ("low_cpu_mem_usage", "use_safetensors", "trust_remote_code", "from_tf", "from_flax", "from_pt",
                   "_fast_init", "mirror", "proxies", "resume_download", "use_auth_token", "offload_state_dict",
                   "_from_auto", "_from_pipeline", "weights_only", "key_mapping")
#: config attributes every config has (overrides passed to from_pretrained)
_CONFIG_KEYS = ("output_attentions", "output_hidden_states", "return_dict", "problem_type", "num_labels", "id2label",
                "label2id", "torchscript")


def _config_keys(cls) -> set:
    return set(CONFIG_CLASSES[cls.arch]().to_dict()) - {"dtype", "transformers_version", "model_type",
                                                        "architectures"}


def _override(config, overrides: dict):
    """A copy of ``config`` with ``overrides`` set as attributes (a sub-config given as a dict is merged)."""
    if not overrides:
        return config
    config = type(config).from_dict(config.to_dict())
    for key, value in overrides.items():
        if key in ("text_config", "vision_config") and isinstance(value, dict):
            value = {**getattr(config, key).to_dict(), **value}
        setattr(config, key, value)
    return config


def _is_auto(dtype, kwargs) -> bool:
    return dtype == "auto" or kwargs.get("torch_dtype") == "auto"


def _read_config(cls, path, hub: dict):
    """The config of a checkpoint, read alone when it is a folder's config.json (else from a full load)."""
    config_file = os.path.join(path, checkpoints.CONFIG_NAME) if isinstance(path, (str, os.PathLike)) else None
    if config_file is not None and os.path.isfile(config_file):
        return checkpoints.config_for_arch(checkpoints.read_config_file(config_file), cls.arch)
    return checkpoints.load_checkpoint(path, arch=cls.arch, **hub)[0]


def _to_numpy(value) -> np.ndarray:
    """A tensor of any framework (or an array) as numpy; torch bfloat16 through float32."""
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


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
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, config=None,
                        dtype=None, state_dict=None, output_loading_info: bool = False, **kwargs: Any):
        """Load a model from a directory, a weight file or a Hub repo id, whatever the weight format.

        ``model.safetensors`` (and sharded), ``pytorch_model.bin``, ``tf_model.h5``, ``flax_model.msgpack`` and
        OpenAI / open_clip state dicts are all accepted. The text-only and vision-only classes also load from a
        full CLIP checkpoint. ``dtype`` sets the parameter (and computation) dtype, e.g. ``"bfloat16"``;
        ``"auto"`` keeps the checkpoint's.

        As in transformers: keyword arguments naming config attributes override the checkpoint's config
        (``projection_dim=``, ``num_labels=``, ``id2label=``, ``text_config=``...); ``from_pretrained(None,
        config=..., state_dict=...)`` builds from a state dict (numpy or the backend's tensors, canonical names);
        ``output_loading_info=True`` also returns ``{"missing_keys", "unexpected_keys", "mismatched_keys",
        "error_msgs"}`` (always empty: a checkpoint that does not fit the config raises
        :class:`clip_core.weights.StateMismatchError`, naming every missing, unexpected and mis-shaped tensor).
        transformers' loading switches that change nothing here (``low_cpu_mem_usage``, ``use_safetensors``,
        ``trust_remote_code``, ``from_tf`` ...) are accepted and ignored.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes the path and keyword arguments only, got "
                            f"{len(model_args)} more positional argument(s)")
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        for key in _IGNORED_KWARGS:
            kwargs.pop(key, None)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KEYS or k in _config_keys(cls)}
        if config is not None:
            config = cls.check_config(config)
        if pretrained_model_name_or_path is None:
            if config is None or state_dict is None:
                raise ValueError(f"{cls.__name__}.from_pretrained(None, ...) needs both config= and state_dict=")
            config = _override(config, overrides)
            state = {k: _to_numpy(v) for k, v in dict(state_dict).items()}
            from clip_core.weights import validate_state
            validate_state(state, cls.param_table(config), where="state_dict")
        else:
            if state_dict is not None:
                raise ValueError("pass either a path or state_dict=, not both")
            if overrides or _is_auto(dtype, kwargs) and config is None:
                if config is None:
                    config = _read_config(cls, pretrained_model_name_or_path, hub)
                config = _override(config, overrides)
            config, state = checkpoints.load_checkpoint(pretrained_model_name_or_path, arch=cls.arch,
                                                        config=config, **hub)
            if isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
                config._name_or_path = str(pretrained_model_name_or_path)
        if _is_auto(dtype, kwargs) and getattr(config, "dtype", None):  # the dtype config.json records
            dtype = config.dtype
            kwargs.pop("torch_dtype", None)
        model = cls._from_state(config, state, dtype=dtype, **kwargs)
        if output_loading_info:
            return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, format: str | Sequence[str] = "safetensors", *,
                        overwrite: bool = False, max_shard_size: int | str | None = None, **kwargs: Any) -> None:
        """Write ``config.json`` and the weights, named as transformers names them, atomically.

        ``format`` is ``"safetensors"`` (default), ``"pytorch"``, ``"tf"``, ``"flax"``, ``"all"`` or a list. The
        weights keep the model's dtype (a bfloat16 or float16 model writes bfloat16 or float16 tensors; the TF and
        Flax files widen bfloat16 to float32) and ``config.json`` records it as ``dtype``, as transformers does.
        ``state_dict=`` writes that state (canonical names) instead of the model's; transformers' switches that
        change nothing here (``is_main_process``, ``push_to_hub=False``, ``save_function``...) are accepted.
        """
        if "safe_serialization" in kwargs:  # transformers' spelling
            format = "safetensors" if kwargs.pop("safe_serialization") else "pytorch"
        state_dict = kwargs.pop("state_dict", None)
        if kwargs.pop("push_to_hub", False):
            raise NotImplementedError("push_to_hub: save here, then upload the folder with huggingface_hub")
        if not kwargs.pop("is_main_process", True):
            return
        for key in ("save_function", "variant", "token", "save_peft_format", "signatures", "serving",
                    "saved_model", "version"):
            if key in kwargs and key not in self._SAVE_KWARGS:
                kwargs.pop(key)
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k in self._SAVE_KWARGS}
        if kwargs:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}")
        state = self.export_state() if state_dict is None else {k: _to_numpy(v) for k, v in state_dict.items()}
        dtype = self._dtype_name()
        if dtype in ("bfloat16", "float16"):
            state = checkpoints.cast_state(state, dtype)
        config = type(self.config).from_dict(self.config.to_dict())
        config.dtype = dtype
        checkpoints.save_checkpoint(save_directory, config, state, formats=format,
                                    arch=self.arch, overwrite=overwrite, max_shard_size=max_shard_size)
        self._after_save(save_directory, **extra)

    #: save_pretrained keyword arguments a backend handles itself (in :meth:`_after_save`)
    _SAVE_KWARGS: tuple = ()

    def _after_save(self, save_directory, **kwargs) -> None:
        """A backend's extra files after a save (TensorFlow: ``saved_model=True``)."""

    def _dtype_name(self) -> str:
        """The parameters' dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``)."""
        name = getattr(self.dtype, "name", None) or str(self.dtype)
        return name.replace("torch.", "")

    # hooks every backend implements
    @classmethod
    def _from_state(cls, config, state, dtype=None, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def export_state(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = ["PretrainedMixin", "CONFIG_CLASSES"]
