"""CLIP configurations: the text tower, the vision tower, and the two-tower model.

The classes mirror transformers' ``CLIPTextConfig``, ``CLIPVisionConfig`` and ``CLIPConfig`` (and the parts of
``PretrainedConfig`` a CLIP user meets): the same argument names, the same defaults (OpenAI's ViT-B/32), the same
attributes (``num_labels`` / ``id2label``, ``problem_type``, ``return_dict``, ``sub_configs``, ``get_text_config``)
and the same ``config.json`` layout, so a file written by either library loads in the other. Keys this module does
not know are kept and written back unchanged; attributes set after construction are saved too.

Every field is checked when it is set (at construction or later), with a ``ValueError`` naming it. Checks that
couple fields (``hidden_size`` divisible by ``num_attention_heads``, ``image_size`` a multiple of ``patch_size``,
the model fitting in memory) run when a model is built (:meth:`check_buildable`), so fields can be edited one after
the other as in transformers.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from clip_core import config_checks as checks
from clip_core.hub import resolve_file, write_atomic
from clip_core.jsonio import read_json

CONFIG_NAME = "config.json"
ACTIVATIONS = checks.ACTIVATIONS

# Keys transformers writes for every config but that mean nothing to the model; kept out of our own output.
_NOISE = {"transformers_version", "_name_or_path", "name_or_path", "_commit_hash", "_attn_implementation_autoset",
          "attn_implementation", "_attn_implementation", "_attn_implementation_internal"}

#: transformers' ``PretrainedConfig`` attributes every config has, with its defaults (``id2label`` / ``label2id``
#: default to two labels, ``LABEL_0`` and ``LABEL_1``).
COMMON_DEFAULTS: dict[str, Any] = dict(
    return_dict=True, output_hidden_states=False, output_attentions=False, torchscript=False, dtype=None,
    pruned_heads={}, tie_word_embeddings=True, chunk_size_feed_forward=0, is_encoder_decoder=False, is_decoder=False,
    cross_attention_hidden_size=None, add_cross_attention=False, tie_encoder_decoder=False, architectures=None,
    finetuning_task=None, task_specific_params=None, problem_type=None, tokenizer_class=None, prefix=None,
    bos_token_id=None, pad_token_id=None, eos_token_id=None, sep_token_id=None, decoder_start_token_id=None,
    tf_legacy_loss=False, use_bfloat16=False,
)

# The generation arguments transformers' configs still carry (to_dict of a transformers object lists them all); they
# mean nothing to CLIP and are dropped when they hold these defaults (other values are kept, like any unknown key).
_GENERATION_DEFAULTS = dict(
    max_length=20, min_length=0, do_sample=False, early_stopping=False, num_beams=1, temperature=1.0, top_k=50,
    top_p=1.0, typical_p=1.0, repetition_penalty=1.0, length_penalty=1.0, no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0, bad_words_ids=None, num_return_sequences=1, output_scores=False,
    return_dict_in_generate=False, forced_bos_token_id=None, forced_eos_token_id=None, remove_invalid_values=False,
    exponential_decay_length_penalty=None, suppress_tokens=None, begin_suppress_tokens=None, num_beam_groups=1,
    diversity_penalty=0.0,
)


def _label_maps(num_labels: int) -> tuple[dict[int, str], dict[str, int]]:
    id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return id2label, {v: k for k, v in id2label.items()}


class _BaseConfig:
    """Common machinery: defaults, extra keys, per-field validation, dict and JSON round trips."""

    model_type = ""
    base_config_key = ""
    sub_configs: dict[str, type] = {}
    _defaults: dict[str, Any] = {}
    _rules: dict[str, Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("model_type", None)
        for key in _NOISE:
            kwargs.pop(key, None)
        for key, default in _GENERATION_DEFAULTS.items():  # at their defaults they say nothing (transformers
            if key in kwargs and kwargs[key] == default:     # does not save them either)
                del kwargs[key]
        if "torch_dtype" in kwargs:  # transformers' older spelling; "dtype" wins when both are given
            torch_dtype = kwargs.pop("torch_dtype")
            kwargs.setdefault("dtype", torch_dtype)
        id2label, label2id, num_labels = (kwargs.pop(k, None) for k in ("id2label", "label2id", "num_labels"))
        values = {**copy.deepcopy(COMMON_DEFAULTS), **{k: copy.deepcopy(v) for k, v in self._defaults.items()}}
        values.update(kwargs)  # unknown keys (architectures of other libraries, custom fields) are kept
        values["dtype"] = checks.dtype_name(values.get("dtype"))
        for key, value in values.items():
            if key.startswith("_"):
                raise ValueError(f"{type(self).__name__}: private key {key!r} cannot be set from a config")
            self._check(key, value)
            self.__dict__[key] = value
        # as transformers: without id2label, num_labels (default 2) makes both maps; with it, label2id is as given
        self._check("label2id", label2id)
        if id2label is None:
            self._check("num_labels", 2 if num_labels is None else num_labels)
            self.__dict__["id2label"], self.__dict__["label2id"] = _label_maps(2 if num_labels is None else num_labels)
        else:
            self._check("id2label", id2label)
            self.__dict__["id2label"] = {int(k): v for k, v in id2label.items()}
            self.__dict__["label2id"] = label2id
        self.__dict__["_name_or_path"] = ""

    # ------------------------------------------------------------------ attributes
    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
            return
        if name == "dtype":
            value = checks.dtype_name(value)
        self._check(name, value)
        if name == "id2label":
            value = {int(k): v for k, v in value.items()}
        self.__dict__[name] = value

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _check(self, name: str, value: Any) -> None:
        rule = self._rules.get(name) or checks.COMMON_RULES.get(name)
        if rule is not None:
            rule(f"{type(self).__name__}.{name}", value)

    @property
    def num_labels(self) -> int:
        """The number of labels of a classification head: ``len(id2label)`` (2 by default), as in transformers."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        self._check("num_labels", num_labels)
        if self.__dict__.get("id2label") is None or len(self.id2label) != num_labels:
            self.__dict__["id2label"], self.__dict__["label2id"] = _label_maps(num_labels)

    @property
    def use_return_dict(self) -> bool:
        """Whether models return output objects (``return_dict and not torchscript``), as in transformers."""
        return bool(self.return_dict) and not self.torchscript

    @property
    def name_or_path(self) -> str:
        """Where :meth:`from_pretrained` loaded this config from (``""`` otherwise)."""
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: Any) -> None:
        self._name_or_path = str(value)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None):
        """The config of the text input: ``text_config`` for :class:`CLIPConfig` (except for ``encoder=True``
        alone, as in transformers), the config itself for the tower configs."""
        return self

    def validate(self) -> None:
        """Check every field on its own (as setting it does); ``ValueError`` names the offending field."""
        for key, value in self.__dict__.items():
            if not key.startswith("_"):
                self._check(key, value)
        checks.check_label_maps(type(self).__name__, self.id2label, self.label2id)

    def check_buildable(self, arch: str | None = None, *, memory: bool = True) -> None:
        """Check what a model built from this config needs: every field, the checks that couple fields and, with
        ``memory``, that its float32 parameters fit in this machine's physical memory (see
        :func:`clip_core.config_checks.check_memory`). ``arch`` is one of :data:`clip_core.weights.ARCHITECTURES`."""
        self.validate()
        self._check_coupled()
        if memory:
            checks.check_memory(self, arch or self._default_arch)

    _default_arch = "clip"

    def _check_coupled(self) -> None:
        checks.check_heads(type(self).__name__, self.hidden_size, self.num_attention_heads)

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set every ``key: value`` of ``config_dict`` as an attribute (each checked as it is set)."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ dicts and files
    def to_dict(self) -> dict[str, Any]:
        """Every attribute as a JSON-serialisable dict in transformers' layout (``model_type`` included)."""
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        for key in self.sub_configs:
            out[key] = getattr(self, key).to_dict()
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    def to_diff_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the common attributes that hold transformers' defaults (what is saved)."""
        out = self.to_dict()
        default_maps = dict(zip(("id2label", "label2id"), _label_maps(2)))
        for key, default in {**COMMON_DEFAULTS, **default_maps}.items():
            if key in out and key not in self._defaults and out[key] == default:
                del out[key]
        for key in self.sub_configs:
            out[key] = getattr(self, key).to_diff_dict()
        return out

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """Build a config from a dict such as ``to_dict()`` returns; ``kwargs`` that name attributes override its
        values (others are ignored, or returned with ``return_unused_kwargs=True``, as in transformers)."""
        if not isinstance(config_dict, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(config_dict).__name__}")
        return_unused = kwargs.pop("return_unused_kwargs", False)
        config = cls(**config_dict)
        unused = {}
        for key, value in kwargs.items():
            if key in ("num_labels", "name_or_path") or key in config.__dict__:
                setattr(config, key, value)
            else:
                unused[key] = value
        return (config, unused) if return_unused else config

    @classmethod
    def coerce(cls, config: Any):
        """``config`` as this class: itself, a dict of arguments, or another library's config object of the same
        ``model_type`` that has ``to_dict()`` (transformers' ``CLIPConfig`` and its towers). ``TypeError``
        otherwise."""
        if isinstance(config, cls):
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if not isinstance(config, _BaseConfig) and callable(getattr(config, "to_dict", None)):
            data = config.to_dict()
            kind = data.get("model_type", getattr(config, "model_type", None)) if isinstance(data, dict) else None
            if kind == cls.model_type:
                return cls.from_dict(_foreign_dict(data))
            shown = f"a {type(config).__module__}.{type(config).__name__} with model_type {kind!r}"
        else:
            shown = f"a {type(config).__module__}.{type(config).__name__}"
        raise TypeError(f"expected a {cls.__name__} (model_type {cls.model_type!r}): triclip's, transformers', or "
                        f"a dict of its arguments; got {shown}")

    def to_json_string(self, use_diff: bool = True) -> str:
        """The config as JSON; ``use_diff`` leaves out common attributes at their defaults (as transformers)."""
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        """Write the config as JSON, atomically (a temporary sibling renamed into place)."""
        write_atomic(Path(json_file_path), self.to_json_string(use_diff).encode())

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike):
        """Read a ``config.json``; every problem is a ``ValueError`` (``FileNotFoundError``) naming the file and,
        for a bad value, the field (``NaN`` / ``Infinity`` are refused wherever they appear)."""
        path = Path(json_file)
        data = read_json(path, str(path), expect=dict)
        try:
            return cls._from_loaded(data, path)
        except (ValueError, TypeError) as err:
            if type(err) not in (ValueError, TypeError):  # a subclass with its own fields: as it is
                raise
            raise type(err)(f"{path}: {err}") from None

    @classmethod
    def _from_loaded(cls, data: Any, path: Path):
        if cls.base_config_key and data.get("model_type") == "clip":
            # A full CLIP config.json also describes each tower, as in transformers.
            return CLIPConfig._from_loaded(data, path).__dict__[cls.base_config_key]
        return cls.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``config.json`` into ``save_directory`` (created if needed)."""
        if kwargs.pop("push_to_hub", False):
            raise NotImplementedError("save_pretrained(push_to_hub=True) is not supported: save to a folder and "
                                      "upload it with huggingface_hub")
        if kwargs:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}")
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_pretrained expects a directory, got the file {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load from a directory holding ``config.json`` (or its ``subfolder``), a JSON file, or a Hub repo id.

        ``revision``, ``cache_dir``, ``token``, ``subfolder``, ``local_files_only`` and ``force_download`` are
        passed to the Hub; other ``kwargs`` that name attributes override the file's values (see :meth:`from_dict`).
        """
        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token", "subfolder", "local_files_only",
                                                 "force_download") if k in kwargs}
        path = Path(pretrained_model_name_or_path) if isinstance(pretrained_model_name_or_path,
                                                                 (str, os.PathLike)) else None
        if path is None or not path.is_file():
            path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, **hub_kwargs)
        config = cls.from_json_file(path)
        config.name_or_path = os.fspath(pretrained_model_name_or_path)
        if not kwargs:
            return config
        return cls.from_dict(config.to_dict(), **kwargs)

    # ------------------------------------------------------------------ niceties
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _foreign_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A transformers ``to_dict()`` cleaned for our classes: no bookkeeping keys, dtypes as names."""
    out = {}
    for key, value in data.items():
        if key in _NOISE:
            continue
        if key in ("text_config", "vision_config") and isinstance(value, dict):
            value = _foreign_dict(value)
        out[key] = checks.dtype_name(value) if key == "dtype" else value
    return out


class CLIPTextConfig(_BaseConfig):
    """Configuration of CLIP's text tower (defaults: OpenAI's ViT-B/32 text encoder).

    ``eos_token_id`` decides how the pooled output is taken: at the first ``eos_token_id`` of each row, or, for the
    legacy value 2 found in the original checkpoints' configs, at ``argmax(input_ids)``.
    """

    model_type = "clip_text_model"
    base_config_key = "text_config"
    _default_arch = "text"
    _defaults = dict(
        vocab_size=49408, hidden_size=512, intermediate_size=2048, projection_dim=512, num_hidden_layers=12,
        num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
        pad_token_id=1, bos_token_id=49406, eos_token_id=49407,
    )
    _rules = {**checks.TOWER_RULES, "vocab_size": checks.positive_int, "max_position_embeddings": checks.positive_int,
              "eos_token_id": checks.token_id}


class CLIPVisionConfig(_BaseConfig):
    """Configuration of CLIP's vision tower (defaults: OpenAI's ViT-B/32 image encoder)."""

    model_type = "clip_vision_model"
    base_config_key = "vision_config"
    _default_arch = "vision"
    _defaults = dict(
        hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12, num_attention_heads=12,
        num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
    )
    _rules = {**checks.TOWER_RULES, "num_channels": checks.positive_int, "image_size": checks.positive_int,
              "patch_size": checks.positive_int}

    def _check_coupled(self) -> None:
        super()._check_coupled()
        checks.check_patches(self.image_size, self.patch_size)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _sub_config(value: Any, cls: type, name: str):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return cls.from_dict(value)
    if isinstance(value, _BaseConfig) or not callable(getattr(value, "to_dict", None)):
        raise TypeError(f"CLIPConfig.{name} must be a dict or a {cls.__name__}, got {type(value).__name__}")
    return copy.deepcopy(cls.coerce(value))


class CLIPConfig(_BaseConfig):
    """Configuration of the two-tower CLIP model.

    Args:
        text_config: a :class:`CLIPTextConfig` or a dict of its arguments.
        vision_config: a :class:`CLIPVisionConfig` or a dict of its arguments.
        projection_dim: size of the shared embedding space.
        logit_scale_init_value: initial value of the (log) temperature.
    """

    model_type = "clip"
    sub_configs = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}
    _defaults = dict(projection_dim=512, logit_scale_init_value=2.6592, initializer_factor=1.0)
    _rules = {"projection_dim": checks.positive_int, "logit_scale_init_value": checks.logit_scale,
              "initializer_factor": checks.non_negative_real}

    def __init__(self, text_config: Any = None, vision_config: Any = None, **kwargs: Any) -> None:
        # Legacy keys from configs written before transformers 4.27: their values win, as in transformers.
        text_legacy = kwargs.pop("text_config_dict", None)
        vision_legacy = kwargs.pop("vision_config_dict", None)
        text = _sub_config(text_config, CLIPTextConfig, "text_config")
        vision = _sub_config(vision_config, CLIPVisionConfig, "vision_config")
        if text_legacy:
            text = CLIPTextConfig(**{**text.to_dict(), **text_legacy})
        if vision_legacy:
            vision = CLIPVisionConfig(**{**vision.to_dict(), **vision_legacy})
        super().__init__(**kwargs)
        self.__dict__["text_config"], self.__dict__["vision_config"] = text, vision

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.sub_configs:  # a dict or a config object, as at construction
            self.__dict__[name] = _sub_config(value, self.sub_configs[name], name)
            return
        super().__setattr__(name, value)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None):
        return self if (encoder and not decoder) else self.text_config

    def validate(self) -> None:
        super().validate()
        self.text_config.validate()
        self.vision_config.validate()

    def _check_coupled(self) -> None:
        self.text_config._check_coupled()
        self.vision_config._check_coupled()

    @classmethod
    def from_text_vision_configs(cls, text_config: CLIPTextConfig, vision_config: CLIPVisionConfig, **kwargs):
        """Build a :class:`CLIPConfig` from the two tower configs."""
        return cls(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), **kwargs)

    @classmethod
    def preset(cls, name: str) -> "CLIPConfig":
        """A named architecture: one of :data:`PRESETS` (``"ViT-B/32"``, ``"ViT-B/16"``, ``"ViT-L/14"``,
        ``"ViT-L/14-336"``, ``"tiny"``)."""
        try:
            spec = PRESETS[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
        return cls(**copy.deepcopy(spec))


_L14_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, projection_dim=768)
_L14_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   patch_size=14, projection_dim=768)

PRESETS: dict[str, dict[str, Any]] = {
    "ViT-B/32": dict(),
    "ViT-B/16": dict(vision_config=dict(patch_size=16)),
    "ViT-L/14": dict(projection_dim=768, text_config=_L14_TEXT, vision_config=_L14_VISION),
    "ViT-L/14-336": dict(projection_dim=768, text_config=_L14_TEXT, vision_config={**_L14_VISION, "image_size": 336}),
    # Small enough for tests and demos; the real vocabulary so that the real tokenizer feeds it.
    "tiny": dict(
        projection_dim=32,
        text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         projection_dim=32),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8, projection_dim=32),
    ),
}

__all__ = ["CLIPTextConfig", "CLIPVisionConfig", "CLIPConfig", "PRESETS", "CONFIG_NAME", "COMMON_DEFAULTS",
           "ACTIVATIONS"]
