"""CLIP configurations: the text tower, the vision tower, and the two-tower model.

The classes mirror transformers' ``CLIPTextConfig``, ``CLIPVisionConfig`` and ``CLIPConfig``: the same argument names,
the same defaults (OpenAI's ViT-B/32) and the same ``config.json`` layout, so a file written by either library loads
in the other. Keys this module does not know are kept and written back unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from clip_core.hub import resolve_file, write_atomic

CONFIG_NAME = "config.json"
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")

# Keys transformers writes for every config but that mean nothing to the model; kept out of our own output.
_NOISE = {"transformers_version", "_name_or_path", "_commit_hash", "_attn_implementation_autoset"}


class _BaseConfig:
    """Common machinery: defaults, extra keys, validation, dict and JSON round trips."""

    model_type = ""
    _defaults: dict[str, Any] = {}
    _positive: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("model_type", None)
        for key, default in self._defaults.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        # Unknown keys (architectures, dtype, id2label, ...) are kept so a round trip loses nothing.
        self._extra = {k: v for k, v in kwargs.items() if k not in _NOISE}
        self.validate()

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("_extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending field when the configuration cannot describe a model."""
        for key in self._positive:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{type(self).__name__}.{key} must be a positive integer, got {value!r}")
        if getattr(self, "hidden_size", 1) % getattr(self, "num_attention_heads", 1):
            raise ValueError(
                f"{type(self).__name__}: hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})")
        act = getattr(self, "hidden_act", None)
        if act is not None and act not in ACTIVATIONS:
            raise ValueError(f"{type(self).__name__}.hidden_act must be one of {ACTIVATIONS}, got {act!r}")
        eps = getattr(self, "layer_norm_eps", 1.0)
        if not isinstance(eps, (int, float)) or not eps > 0:
            raise ValueError(f"{type(self).__name__}.layer_norm_eps must be a positive number, got {eps!r}")

    # ------------------------------------------------------------------ dicts and files
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in transformers' layout (``model_type`` included)."""
        out = copy.deepcopy(self._extra)
        out.update({key: copy.deepcopy(getattr(self, key)) for key in self._defaults})
        out["model_type"] = self.model_type
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """Build a config from a dict such as ``to_dict()`` returns; ``kwargs`` override its values."""
        if not isinstance(config_dict, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(config_dict).__name__}")
        return cls(**{**config_dict, **kwargs})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically (a temporary sibling renamed into place)."""
        write_atomic(Path(json_file_path), self.to_json_string().encode())

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike):
        path = Path(json_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        return cls._from_loaded(data, path)

    @classmethod
    def _from_loaded(cls, data: Any, path: Path):
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, found {type(data).__name__}")
        return cls.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``config.json`` into ``save_directory`` (created if needed)."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_pretrained expects a directory, got the file {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """Load from a directory holding ``config.json``, a path to a JSON file, or a Hub repo id."""
        path = Path(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "token") if k in kwargs}
        if not path.is_file():
            path = resolve_file(pretrained_model_name_or_path, CONFIG_NAME, **hub_kwargs)
        config = cls.from_json_file(path)
        return cls.from_dict(config.to_dict(), **kwargs) if kwargs else config

    # ------------------------------------------------------------------ niceties
    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


class CLIPTextConfig(_BaseConfig):
    """Configuration of CLIP's text tower (defaults: OpenAI's ViT-B/32 text encoder).

    ``eos_token_id`` decides how the pooled output is taken: at the first ``eos_token_id`` of each row, or, for the
    legacy value 2 found in the original checkpoints' configs, at ``argmax(input_ids)``.
    """

    model_type = "clip_text_model"
    _defaults = dict(
        vocab_size=49408, hidden_size=512, intermediate_size=2048, projection_dim=512, num_hidden_layers=12,
        num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
        pad_token_id=1, bos_token_id=49406, eos_token_id=49407,
    )
    _positive = ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                 "num_attention_heads", "max_position_embeddings")

    @classmethod
    def _from_loaded(cls, data, path):
        # A full CLIP config.json also describes the text tower, as in transformers.
        if isinstance(data, dict) and data.get("model_type") == "clip":
            return CLIPConfig._from_loaded(data, path).text_config
        return super()._from_loaded(data, path)


class CLIPVisionConfig(_BaseConfig):
    """Configuration of CLIP's vision tower (defaults: OpenAI's ViT-B/32 image encoder)."""

    model_type = "clip_vision_model"
    _defaults = dict(
        hidden_size=768, intermediate_size=3072, projection_dim=512, num_hidden_layers=12, num_attention_heads=12,
        num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
    )
    _positive = ("hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
                 "num_channels", "image_size", "patch_size")

    def validate(self) -> None:
        super().validate()
        if self.image_size % self.patch_size:
            raise ValueError(f"CLIPVisionConfig: image_size ({self.image_size}) must be a multiple of "
                             f"patch_size ({self.patch_size})")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def _from_loaded(cls, data, path):
        if isinstance(data, dict) and data.get("model_type") == "clip":
            return CLIPConfig._from_loaded(data, path).vision_config
        return super()._from_loaded(data, path)


def _sub_config(value: Any, cls: type, name: str):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return cls.from_dict(value)
    raise TypeError(f"CLIPConfig.{name} must be a dict or a {cls.__name__}, got {type(value).__name__}")


class CLIPConfig(_BaseConfig):
    """Configuration of the two-tower CLIP model.

    Args:
        text_config: a :class:`CLIPTextConfig` or a dict of its arguments.
        vision_config: a :class:`CLIPVisionConfig` or a dict of its arguments.
        projection_dim: size of the shared embedding space.
        logit_scale_init_value: initial value of the (log) temperature.
    """

    model_type = "clip"
    _defaults = dict(projection_dim=512, logit_scale_init_value=2.6592, initializer_factor=1.0)
    _positive = ("projection_dim",)

    def __init__(self, text_config: Any = None, vision_config: Any = None, **kwargs: Any) -> None:
        # Legacy keys from configs written before transformers 4.27: their values win, as in transformers.
        text_legacy = kwargs.pop("text_config_dict", None)
        vision_legacy = kwargs.pop("vision_config_dict", None)
        self.text_config = _sub_config(text_config, CLIPTextConfig, "text_config")
        self.vision_config = _sub_config(vision_config, CLIPVisionConfig, "vision_config")
        if text_legacy:
            self.text_config = CLIPTextConfig(**{**self.text_config.to_dict(), **text_legacy})
        if vision_legacy:
            self.vision_config = CLIPVisionConfig(**{**self.vision_config.to_dict(), **vision_legacy})
        super().__init__(**kwargs)

    @classmethod
    def from_text_vision_configs(cls, text_config: CLIPTextConfig, vision_config: CLIPVisionConfig, **kwargs):
        """Build a :class:`CLIPConfig` from the two tower configs."""
        return cls(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["text_config"] = self.text_config.to_dict()
        out["vision_config"] = self.vision_config.to_dict()
        return dict(sorted(out.items()))

    @classmethod
    def preset(cls, name: str) -> "CLIPConfig":
        """A named architecture: one of :data:`PRESETS` (``"ViT-B/32"``, ``"ViT-B/16"``, ``"ViT-L/14"``,
        ``"ViT-L/14-336"``, ``"tiny"``)."""
        try:
            spec = PRESETS[name]
        except KeyError:
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

__all__ = ["CLIPTextConfig", "CLIPVisionConfig", "CLIPConfig", "PRESETS", "CONFIG_NAME"]
