"""What the three backends' pretrained-model bases share: loading, saving and random init, framework-free.

A backend's base model class (``clip_pt.pretrained``, ``clip_tf.pretrained``, ``clip_flax.pretrained``) mixes in
:class:`PretrainedMixin`, sets ``arch`` (one of :data:`clip_core.weights.ARCHITECTURES`) and implements two hooks:

* ``_from_state(config, state, dtype=None)`` -- a model holding the canonical state's values;
* ``export_state()`` -- the model's values as a canonical state (numpy, PyTorch layouts).

Everything else (finding files, every format, validation, atomic writes) lives in :mod:`clip_core.checkpoints`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, Sequence

import numpy as np

from clip_core import checkpoints
from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.hub import resolve_file
from clip_core.weights import LoadReport, ParamSpec, fit_state, flax_path, init_state, param_table, tf_name, \
    validate_state

#: Where ``from_pretrained`` reports what it initialised and dropped (transformers' texts, one logger for all).
logger = logging.getLogger(__name__)

#: The config class each architecture is built from.
CONFIG_CLASSES = {
    "clip": CLIPConfig, "image_classification": CLIPConfig,
    "text": CLIPTextConfig, "text_projection": CLIPTextConfig,
    "vision": CLIPVisionConfig, "vision_projection": CLIPVisionConfig,
}

_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")
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
    """The config of a checkpoint, read alone when it is a folder's or a Hub repo's config.json (else from a
    load: a weight file, an OpenAI state dict)."""
    config_file = None
    if isinstance(path, (str, os.PathLike)):
        config_file = os.path.join(path, checkpoints.CONFIG_NAME)
        if not os.path.isfile(config_file):
            config_file = None if os.path.exists(path) else \
                resolve_file(path, checkpoints.CONFIG_NAME, required=False, **hub)
    if config_file is not None:
        return checkpoints.config_for_arch(checkpoints.read_config_file(config_file), cls.arch)
    return checkpoints.load_for_model(path, arch=cls.arch, ignore_mismatched_sizes=True, **hub)[0]


def _refuse_meta_context(cls, kwargs: dict) -> None:
    """As transformers: PyTorch ``from_pretrained`` inside ``with torch.device("meta")`` (or with the default
    device set to meta) is a ``RuntimeError``, since the weights it loads would have nowhere to go."""
    torch = sys.modules.get("torch")
    if _framework(cls) != "pt" or kwargs.get("device_map") is not None or torch is None:
        return
    default = getattr(torch, "get_default_device", None)
    if default is not None and default().type == "meta":
        raise RuntimeError("You are using `from_pretrained` with a meta device context manager or "
                           "`torch.set_default_device('meta')`: the loaded weights cannot live there. For an empty "
                           f"model on the meta device, build it from its config inside the context: "
                           f"`{cls.__name__}(config)`")


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
    #: transformers' patterns (``re.search`` on the PyTorch names) of missing / unexpected tensors a load neither
    #: warns about nor reports; ``None``, as in transformers' CLIP classes (a subclass may set them)
    _keys_to_ignore_on_load_missing: list | None = None
    _keys_to_ignore_on_load_unexpected: list | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.config_class = CONFIG_CLASSES[cls.arch]  # a class attribute, as transformers' model classes have

    @classmethod
    def can_generate(cls) -> bool:
        """CLIP does not generate text (transformers' answer too)."""
        return False

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
        ``subfolder="x"`` loads the config and weights of ``x`` inside the folder or Hub repo.

        Weights that do not fit, as in transformers: missing parameters are newly initialised (transformers'
        initialisation, seeded: the same values in every backend) and unexpected tensors dropped, each with one
        warning naming them (logger ``clip_core.pretrained``, transformers' texts for the backend); mis-shaped
        tensors raise :class:`clip_core.weights.StateMismatchError` (a ``ValueError`` and a ``RuntimeError``)
        unless ``ignore_mismatched_sizes=True``, which initialises them anew with a warning naming each with both
        shapes. A checkpoint sharing no parameter with the model gives, as in transformers, a newly initialised
        model (every parameter reported missing, the file's tensors unexpected). ``strict=True`` raises
        :class:`~clip_core.weights.StateMismatchError` for any missing, unexpected or mis-shaped tensor (only the
        other CLIP parts a tower does not use are dropped, and a classifier head a CLIP checkpoint lacks is
        initialised). ``output_loading_info=True`` also returns what was done, keyed as transformers keys it for
        the backend: PyTorch ``{"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"}`` (sorted
        names), TensorFlow ``{"missing_keys", "unexpected_keys", "mismatched_keys"}`` (PyTorch names, or the
        ``clip/.../kernel:0`` names for a ``tf_model.h5``), Flax the same three with parameter paths (tuples).
        transformers' loading switches that change nothing here (``low_cpu_mem_usage``, ``use_safetensors``,
        ``trust_remote_code``, ``from_tf`` ...) are accepted and ignored.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes the path and keyword arguments only, got "
                            f"{len(model_args)} more positional argument(s)")
        _refuse_meta_context(cls, kwargs)
        hub = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        strict = bool(kwargs.pop("strict", False))
        ignore_mismatched_sizes = bool(kwargs.pop("ignore_mismatched_sizes", False))
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
            table = cls.param_table(config)
            if strict:
                validate_state(state, table, where="state_dict")
                report = LoadReport()
            else:
                state, report = fit_state({k: v for k, v in state.items() if not k.endswith("position_ids")},
                                          table, config, cls.arch, where="state_dict",
                                          ignore_mismatched_sizes=ignore_mismatched_sizes)
            report.source, report.buffers = "state_dict", [k for k in state_dict if k.endswith("position_ids")]
        else:
            if state_dict is not None:
                raise ValueError("pass either a path or state_dict=, not both")
            path, hub = checkpoints._in_subfolder(pretrained_model_name_or_path, hub)
            if overrides or _is_auto(dtype, kwargs) and config is None:
                if config is None:
                    config = _read_config(cls, path, hub)
                config = _override(config, overrides)
            config, state, report = checkpoints.load_for_model(
                path, arch=cls.arch, config=config, strict=strict,
                ignore_mismatched_sizes=ignore_mismatched_sizes, **hub)
            if isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
                config._name_or_path = str(pretrained_model_name_or_path)
        if _is_auto(dtype, kwargs) and getattr(config, "dtype", None):  # the dtype config.json records
            dtype = config.dtype
            kwargs.pop("torch_dtype", None)
        model = cls._from_state(config, state, dtype=dtype, **kwargs)
        report.missing = _not_ignored(report.missing, cls._keys_to_ignore_on_load_missing)
        report.unexpected = _not_ignored(report.unexpected, cls._keys_to_ignore_on_load_unexpected)
        info = _loading_info(cls, report, cls.param_table(config))
        _log_loading(cls, report, info, pretrained_model_name_or_path, config)
        if output_loading_info:
            return model, info
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, format: str | Sequence[str] = "safetensors", *,
                        overwrite: bool = False, max_shard_size: int | str | None = None, **kwargs: Any) -> None:
        """Write ``config.json`` and the weights, named as transformers names them, atomically.

        ``format`` is ``"safetensors"`` (default), ``"pytorch"``, ``"tf"``, ``"flax"``, ``"all"`` or a list. The
        weights keep the model's dtype (a bfloat16 or float16 model writes bfloat16 or float16 tensors; the TF and
        Flax files widen bfloat16 to float32) and ``config.json`` records it as ``dtype``, as transformers does.
        ``state_dict=`` writes that state (canonical names) instead of the model's, only the tensors it holds when
        it lacks some, as transformers does (names, shapes and dtypes are still checked); transformers' switches
        that change nothing here (``is_main_process``, ``push_to_hub=False``, ``save_function``...) are accepted.
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
        checkpoints.save_checkpoint(save_directory, config, state, formats=format, arch=self.arch,
                                    overwrite=overwrite, max_shard_size=max_shard_size,
                                    allow_missing=state_dict is not None)
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


# ---------------------------------------------------------------------------------------------- loading reports
def _framework(cls) -> str:
    """``"pt"``, ``"tf"`` or ``"flax"``: which of transformers' loaders a model class mirrors."""
    bases = {klass.__name__ for klass in cls.__mro__}
    return "tf" if "TFCLIPPreTrainedModel" in bases else "flax" if "FlaxCLIPPreTrainedModel" in bases else "pt"


_NORMS = ("layer_norm1", "layer_norm2", "pre_layrnorm", "post_layernorm", "final_layer_norm")


def _guess_spec(name: str) -> ParamSpec:
    """The spec of a tensor the model has no parameter for, its kind from CLIP's naming (``None`` when unknown;
    the shape is not needed, so ``()``)."""
    parts = name.split(".")
    leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ""
    if owner in _NORMS:
        kind = {"weight": "norm_scale", "bias": "norm_bias"}.get(leaf)
    elif owner == "patch_embedding" and leaf == "weight":
        kind = "conv"
    elif owner.endswith("_embedding") and leaf == "weight":
        kind = "embedding"
    elif leaf == "class_embedding":
        kind = "vector"
    elif name == "logit_scale":
        kind = "scalar"
    else:
        kind = {"weight": "linear", "bias": "bias"}.get(leaf)
    return ParamSpec(name, (), kind)


def _layout(shape, kind, framework: str) -> tuple:
    """A canonical (PyTorch) shape in ``framework``'s layout for a parameter of ``kind``."""
    shape = tuple(int(d) for d in shape)
    if kind == "linear" and len(shape) == 2:
        return shape[::-1]
    if kind == "conv" and len(shape) == 4:
        return (shape[2], shape[3], shape[1], shape[0])
    if kind == "scalar" and framework == "tf":
        return (1,)
    return shape


def _tf_key(spec: ParamSpec) -> str:
    """transformers' TF name of a weight in a ``tf_model.h5`` (below the model's own name)."""
    return "clip/" + (tf_name(spec) if spec.kind is not None else spec.name.replace(".", "/") + ":0")


def _flax_key(spec: ParamSpec, from_torch: bool) -> tuple:
    """transformers' Flax path of a tensor the model has no parameter for: from a Flax file its path; from a
    PyTorch file the path transformers' PyTorch-to-Flax renaming gives a name the model lacks (``weight`` ->
    ``kernel``, ``gamma`` / ``beta`` -> ``weight`` / ``bias``)."""
    if not from_torch and spec.kind is not None:
        return flax_path(spec)
    parts = spec.name.split(".")
    if from_torch:
        parts[-1] = {"weight": "kernel", "gamma": "weight", "beta": "bias"}.get(parts[-1], parts[-1])
    return tuple(parts)


def _not_ignored(names: list, patterns) -> list:
    """``names`` less those matching one of transformers' ``_keys_to_ignore_on_load_*`` ``patterns``."""
    if not patterns:
        return names
    return [name for name in names if not any(re.search(pattern, name) for pattern in patterns)]


def _loading_info(cls, report: LoadReport, table) -> dict:
    """``output_loading_info``'s dict as transformers builds it for the backend ``cls`` mirrors."""
    framework = _framework(cls)
    if framework == "pt":
        return {"missing_keys": sorted(report.missing), "unexpected_keys": sorted(report.unexpected),
                "mismatched_keys": [name for name, _, _ in report.mismatched], "error_msgs": []}
    spec = {name: table[name] for name in report.missing}
    spec.update({name: table[name] for name, _, _ in report.mismatched})
    unexpected = [_guess_spec(name) for name in report.unexpected]
    if framework == "tf":
        if report.source.startswith("tf"):  # transformers' h5 loader: its weight names, TF layouts
            # (a missing ".../embeddings:0" is reported as ".../weight:0", as transformers' retry renames it)
            missing = [_tf_key(spec[n]) for n in report.missing]
            missing = [k[:-len("embeddings:0")] + "weight:0" if k.endswith("embeddings:0") else k for k in missing]
            mismatched = [(_tf_key(spec[n]), _layout(found, spec[n].kind, "tf"), _layout(want, spec[n].kind, "tf"))
                          for n, found, want in report.mismatched]
            return {"missing_keys": missing, "unexpected_keys": [_tf_key(u) for u in unexpected],
                    "mismatched_keys": mismatched}
        # transformers' PyTorch-to-TF loader: PyTorch names, the checkpoint's shape and the TF variable's
        mismatched = [(n, tuple(found), _layout(want, spec[n].kind, "tf")) for n, found, want in report.mismatched]
        return {"missing_keys": list(report.missing), "unexpected_keys": list(report.unexpected),
                "mismatched_keys": mismatched}
    from_torch = not report.source.startswith("flax")
    mismatched = [(flax_path(spec[n]), _layout(found, spec[n].kind, "flax"), _layout(want, spec[n].kind, "flax"))
                  for n, found, want in report.mismatched]
    return {"missing_keys": {flax_path(spec[n]) for n in report.missing},
            "unexpected_keys": {_flax_key(u, from_torch) for u in unexpected} |
            {tuple(name.split(".")) for name in report.buffers},  # transformers' Flax keeps no buffers
            "mismatched_keys": mismatched}


_RETRAIN = ("You should probably TRAIN this model on a down-stream task to be able to use it for predictions and "
            "inference.")


def _log_loading(cls, report: LoadReport, info: dict, where, config) -> None:
    """One log record per kind of change, with transformers' first sentence for the backend (what people grep)."""
    framework, name = _framework(cls), cls.__name__
    missing, unexpected, mismatched = info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]
    rows = report.mismatched if framework == "pt" else mismatched  # PyTorch's info holds names only
    shapes = "\n".join(f"- {key}: found shape {found} in the checkpoint and {want} in the model instantiated"
                        for key, found, want in rows)
    why = (f"\n- expected when the checkpoint belongs to another class or task (a CLIP checkpoint loaded into one "
           f"tower, or into {name} with a new head);\n- not expected when it was saved from a {name} itself.")
    h5 = framework == "tf" and report.source.startswith("tf")
    torch_into_tf = framework == "tf" and not h5
    if unexpected:
        level = logging.WARNING
        if framework == "pt" and name not in (getattr(config, "architectures", None) or ()):
            level = logging.INFO  # transformers: a warning only when the checkpoint was saved from this class
        if torch_into_tf:
            head = f"Some weights of the PyTorch model were not used when initializing the TF 2.0 model {name}"
        else:
            head = f"Some {'layers' if h5 else 'weights'} of the model checkpoint at {where} were not used when " \
                   f"initializing {name}"
        logger.log(level, "%s: %s%s", head, unexpected, why)
    elif framework != "pt":
        logger.log(logging.WARNING if framework == "tf" else logging.INFO, "%s",
                   f"All PyTorch model weights were used when initializing {name}." if torch_into_tf else
                   f"All model checkpoint {'layers' if h5 else 'weights'} were used when initializing {name}.")
    if missing:
        if torch_into_tf:
            head = f"Some weights or buffers of the TF 2.0 model {name} were not initialized from the PyTorch model"
        else:
            head = f"Some {'layers' if h5 else 'weights'} of {name} were not initialized from the model checkpoint " \
                   f"at {where}"
        logger.warning("%s and are newly initialized: %s\n%s", head, missing, _RETRAIN)
    elif not mismatched and framework != "pt":
        source = "the PyTorch model" if torch_into_tf else f"the model checkpoint at {where}"
        logger.log(logging.WARNING if framework == "tf" else logging.INFO, "%s",
                   f"All the {'layers' if h5 else 'weights'} of {name} were initialized from {source}.\nIf your "
                   f"task is like the checkpoint's, {name} can be used for predictions without further training.")
    if mismatched:
        logger.warning("Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized because the shapes did not match:\n%s\n%s", name, where, shapes, _RETRAIN)


__all__ = ["PretrainedMixin", "CONFIG_CLASSES"]
