"""The PyTorch models' pretrained-model machinery: construction from a config, random init, dtypes, and the canonical
state in and out of the parameters (loading and saving come from :class:`clip_core.pretrained.PretrainedMixin`).

The model math, the modules and the public model classes that subclass :class:`CLIPPreTrainedModel`, is in
:mod:`clip_pt.modeling`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from clip_core.outputs import (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput,
                               ImageClassifierOutput)
from clip_core.pretrained import PretrainedMixin

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------- outputs
# The outputs are pytree nodes, so torch.export / torch.compile can return them (as transformers' outputs are).
for _cls in (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput, ImageClassifierOutput):
    torch.utils._pytree.register_pytree_node(
        _cls, lambda out: (list(out.values()), list(out.keys())),
        lambda values, keys, cls=_cls: cls(**dict(zip(keys, values))),
        serialized_type_name=f"{_cls.__module__}.{_cls.__name__}")


# ---------------------------------------------------------------------------------------------- the base class
class CLIPPreTrainedModel(PretrainedMixin, nn.Module):
    """Base of every CLIP model: construction from a config, loading and saving through the canonical state.

    ``Model(config, seed=None)`` builds the modules without allocating them (on the ``meta`` device) and fills them
    from :meth:`random_state` (transformers' initialisation, identical in every backend for one seed; ``seed=None``
    draws one from torch's global generator, so ``torch.manual_seed`` controls it). ``from_pretrained(path,
    dtype=...)`` reads any checkpoint format, ``save_pretrained(dir, format=...)`` writes any.
    """

    arch = "clip"

    def __init__(self, config, seed: int | None = None):
        super().__init__()
        source, self.config = config, self.check_config(config)
        with torch.device("meta"):
            self._build()
        self._config_switches(source)
        if torch.get_default_device().type == "meta":  # built under torch.device("meta"): shapes only, as in torch
            return
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        self._assign(self.random_state(self.config, seed))

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _config_switches(self, config) -> None:
        """What the config asks of a new model, as in transformers: ``config._attn_implementation`` (a name, or a
        dict per sub-config with ``""`` for the model itself) and each tower config's, and the legacy
        ``config.gradient_checkpointing = True`` (consumed: removed from the config)."""
        attention = getattr(config, "_attn_implementation", None)
        towers = {key: getattr(getattr(config, key, None), "_attn_implementation", None)
                  for key in ("text_config", "vision_config")}
        self._record_attention()  # the default, sdpa (read the config's choice first: this writes it)
        if isinstance(attention, dict):
            self.set_attn_implementation({k: v for k, v in attention.items() if v is not None})
        elif attention in self._ATTENTION:
            self.set_attn_implementation(attention)
        elif any(v in self._ATTENTION for v in towers.values()):
            self.set_attn_implementation({k: v for k, v in towers.items() if v in self._ATTENTION})
        if getattr(self.config, "gradient_checkpointing", False) is True:
            self.gradient_checkpointing_enable()
            try:
                delattr(self.config, "gradient_checkpointing")
            except AttributeError:
                pass

    # ------------------------------------------------------------------ canonical state <-> parameters
    @staticmethod
    def _dtype(dtype, state=None):
        """A ``torch.dtype`` from ``None`` (float32), a torch dtype, a name, or ``"auto"`` (the state's)."""
        if dtype is None:
            return torch.float32
        if dtype == "auto":
            names = {np.asarray(v).dtype.name for v in (state or {}).values()}
            return _DTYPES.get(names.pop() if len(names) == 1 else "float32", torch.float32)
        if isinstance(dtype, str) and dtype.replace("torch.", "") in _DTYPES:
            return _DTYPES[dtype.replace("torch.", "")]
        if dtype in (torch.float32, torch.float16, torch.bfloat16):
            return dtype
        raise ValueError(f"dtype must be float32, bfloat16 or float16 (a torch.dtype or its name), got {dtype!r}")

    @staticmethod
    def _tensor(array, dtype):
        """A torch tensor of ``dtype`` sharing ``array``'s memory when the dtypes agree."""
        array = np.asarray(array)
        if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 (from JAX): same bits as torch's
            tensor = torch.from_numpy(np.ascontiguousarray(array).view(np.uint16)).view(torch.bfloat16)
        elif not array.flags.writeable:
            tensor = torch.tensor(array)
        else:  # 0-d arrays stay 0-d (np.ascontiguousarray would make them 1-d)
            tensor = torch.from_numpy(array if array.flags.c_contiguous else np.ascontiguousarray(array))
        return tensor.to(dtype)

    def _assign(self, state, dtype=None) -> None:
        """Make ``state`` (a canonical numpy dict) the model's parameters, converted to ``dtype``."""
        dtype = self._dtype(dtype, state)
        self.load_state_dict({k: self._tensor(v, dtype) for k, v in state.items()}, strict=True, assign=True)

    @classmethod
    def _from_state(cls, config, state, dtype=None, torch_dtype=None, attn_implementation=None, device_map=None,
                    **kwargs):
        """A model (in eval mode) holding ``state``; ``torch_dtype`` is accepted as transformers' alias of ``dtype``,
        ``attn_implementation`` as in :meth:`set_attn_implementation`, ``device_map`` as one device (``"cpu"``,
        ``"cuda:0"``, a ``torch.device``, ``{"": device}``, or ``"auto"``: the first GPU if there is one)."""
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(kwargs)}")
        if torch_dtype is not None:
            if dtype is not None and dtype != torch_dtype:
                raise ValueError("pass either dtype or torch_dtype, not both")
            dtype = torch_dtype
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = cls.check_config(config)
        with torch.device("meta"):
            model._build()
        model._assign(state, dtype)
        model._record_attention()
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        if device_map is not None:
            model.to(_one_device(device_map))
        return model.eval()

    def export_state(self) -> dict[str, np.ndarray]:
        """The parameters as a canonical state: numpy, PyTorch layouts, on the CPU.

        float32 and float16 models export their own dtype (float32 arrays are views of the CPU parameters, not
        copies); bfloat16 models export float32 arrays, since numpy has no bfloat16.
        """
        out = {}
        for name, tensor in self.state_dict().items():
            tensor = tensor.detach().cpu()
            out[name] = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
        return out

    # ------------------------------------------------------------------ niceties
    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """The parameters' device."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ gradient checkpointing (transformers' API)
    supports_gradient_checkpointing = True

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute every encoder layer's activations in the backward pass instead of keeping them (less memory,
        one more forward per layer), while training (``model.train()``) with autograd on. The layers run under
        ``torch.utils.checkpoint.checkpoint`` with ``gradient_checkpointing_kwargs`` (default
        ``{"use_reentrant": False}``). The gradients are those of the plain model."""
        if gradient_checkpointing_kwargs is not None and not isinstance(gradient_checkpointing_kwargs, dict):
            raise TypeError("gradient_checkpointing_kwargs must be a dict of torch.utils.checkpoint arguments, got "
                            f"{type(gradient_checkpointing_kwargs).__name__}")
        kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        self._set_gradient_checkpointing(functools.partial(torch.utils.checkpoint.checkpoint, **kwargs))

    def gradient_checkpointing_disable(self) -> None:
        """Keep the activations again (the default)."""
        self._set_gradient_checkpointing(None)

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether gradient checkpointing is on."""
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def _set_gradient_checkpointing(self, function) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing, module._gradient_checkpointing_func = function is not None, function

    # ------------------------------------------------------------------ transformers' model API
    base_model_prefix = "clip"
    main_input_name = "input_ids"
    _ATTENTION = ("sdpa", "eager")

    def _flag(self, value, name: str) -> bool:
        """An output flag: the argument, else the config's value (transformers' rule)."""
        return bool(getattr(self.config, name, False) if value is None else value)

    def _return_dict(self, value) -> bool:
        """Whether to return an output object: the argument, else ``config.use_return_dict``."""
        return self.config.use_return_dict if value is None else bool(value)

    # what transformers' test mixins and integrations look up on the class
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _keep_in_fp32_modules = None

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """Whether :meth:`set_attn_implementation` may switch the attention (always, here)."""
        return True

    @classmethod
    def _from_config(cls, config, dtype=None, torch_dtype=None, attn_implementation=None, **kwargs):
        """transformers' ``Model._from_config(config, ...)``: a random model in ``dtype`` with the attention
        ``attn_implementation`` (or ``config._attn_implementation``)."""
        model = cls(config, **kwargs)
        dtype = torch_dtype if dtype is None else dtype
        if dtype is not None:
            model.to(model._dtype(dtype))
        attention = attn_implementation or getattr(config, "_attn_implementation", None)
        if isinstance(attention, str) and attention in cls._ATTENTION:
            model.set_attn_implementation(attention)
        return model

    def get_output_embeddings(self):
        """None: CLIP has no output embedding table (transformers' answer too)."""
        return None

    def set_attn_implementation(self, attn_implementation) -> None:
        """``"sdpa"`` (``torch.nn.functional.scaled_dot_product_attention``, the default) or ``"eager"`` (the
        explicit softmax formula), in every attention layer; a dict ``{"text_config": ..., "vision_config": ...}``
        sets the towers apart. Other implementations (``"flash_attention_2"``, ``"flex_attention"``) are a
        ``ValueError``: this model has the two."""
        labels = {}  # the labels of tower configs without a tower (the classifier's text config)
        if isinstance(attn_implementation, dict):
            composite = hasattr(self.config, "text_config") or hasattr(self.config, "vision_config")
            for key, value in attn_implementation.items():
                tower = {"text_config": "text_model", "vision_config": "vision_model", "": None}.get(key, key)
                if key == "" and composite:  # transformers: the model's own config only, not its towers'
                    self._own_attention = self._check_attention(value)
                    continue
                if tower is not None and not hasattr(self, tower) and hasattr(self.config, key):
                    labels[key] = self._check_attention(value)  # a tower config without its tower: its label
                    continue
                module = self if tower is None else getattr(self, tower, None)
                if module is None:
                    raise ValueError(f"attn_implementation: {type(self).__name__} has no {key}")
                _set_attention(module, self._check_attention(value))
        else:
            _set_attention(self, self._check_attention(attn_implementation))
            self._own_attention = attn_implementation
            labels = {key: attn_implementation for key in ("text_config", "vision_config")
                      if hasattr(self.config, key)}
        self._record_attention()
        for key, value in labels.items():
            getattr(self.config, key)._attn_implementation = value

    def _record_attention(self) -> None:
        """``config._attn_implementation`` (and each tower config's) says what the layers run, as in transformers;
        a model with tower configs labels its own config with what was last asked of the whole model (default
        ``"sdpa"``), as transformers does, whatever its towers run."""
        composite = hasattr(self.config, "text_config") or hasattr(self.config, "vision_config")
        self.config._attn_implementation = getattr(self, "_own_attention", "sdpa") if composite else \
            self._attention_of(self)
        for key, tower in (("text_config", "text_model"), ("vision_config", "vision_model")):
            if hasattr(self.config, key) and hasattr(self, tower):
                getattr(self.config, key)._attn_implementation = self._attention_of(getattr(self, tower))
            elif hasattr(self.config, key):  # a tower config without its tower (the classifier's text config)
                sub = getattr(self.config, key)
                if getattr(sub, "_attn_implementation", None) not in self._ATTENTION:
                    sub._attn_implementation = self.config._attn_implementation

    @classmethod
    def _check_attention(cls, name):
        if name not in cls._ATTENTION:
            raise ValueError(f'Specified `attn_implementation="{name}"` is not supported: choose "sdpa" (the '
                             'default) or "eager"')
        return name

    @staticmethod
    def _attention_of(module) -> str:
        names = {m.attn_implementation for m in module.modules() if hasattr(m, "attn_implementation")}
        return names.pop() if len(names) == 1 else "mixed"

    def get_input_embeddings(self) -> nn.Module:
        """The text tower's token embedding table (text models) or the vision tower's patch convolution (vision
        models), as transformers returns them; ``CLIPModel`` and ``CLIPForImageClassification`` have none
        (``NotImplementedError``, as in transformers)."""
        if hasattr(self, "text_model") and not hasattr(self, "vision_model"):
            return self.text_model.embeddings.token_embedding
        if hasattr(self, "vision_model") and not hasattr(self, "text_model") and self.arch != "image_classification":
            return self.vision_model.embeddings.patch_embedding
        raise NotImplementedError(f"get_input_embeddings: {type(self).__name__} has two inputs (or none); use "
                                  "model.text_model.embeddings.token_embedding or "
                                  "model.vision_model.embeddings.patch_embedding")

    def set_input_embeddings(self, value: nn.Module) -> None:
        """Replace what :meth:`get_input_embeddings` returns."""
        self.get_input_embeddings()  # the same errors
        if hasattr(self, "text_model"):
            if not isinstance(value, nn.Module):
                raise TypeError(f"set_input_embeddings needs an nn.Module, got {type(value).__name__}")
            self.text_model.embeddings.token_embedding = value
            if isinstance(value, nn.Embedding):
                self.config.vocab_size = value.num_embeddings
        else:
            self.vision_model.embeddings.patch_embedding = value

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Resize the text tower's token table to ``new_num_tokens`` rows (rounded up to ``pad_to_multiple_of``):
        the old rows kept, new rows drawn around the old rows' mean (``mean_resizing``, transformers' default) or
        from transformers' init (normal, std ``0.02 * initializer_factor``); ``config.vocab_size`` follows."""
        table = self.get_input_embeddings()
        if not isinstance(table, nn.Embedding):
            raise NotImplementedError(f"{type(self).__name__} has no token embeddings to resize")
        old, dim = table.weight.shape
        size = old if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of is not None and not isinstance(pad_to_multiple_of, int):
            raise ValueError(f"Asking to pad the embedding matrix to a multiple of `{pad_to_multiple_of}`, which is "
                             "not and integer. Please make sure to pass an integer")  # transformers' words
        if pad_to_multiple_of is not None:
            size = -(-size // int(pad_to_multiple_of)) * int(pad_to_multiple_of)
        if size <= 0:
            raise ValueError(f"new_num_tokens must be positive, got {new_num_tokens}")
        self.vocab_size = size  # as transformers records it on the model
        if size == old:
            return table
        weight = table.weight.detach()
        new = torch.empty(size, dim, dtype=weight.dtype, device=weight.device)
        keep = min(old, size)
        new[:keep] = weight[:keep]
        if size > old:
            if mean_resizing:
                rows = weight.float()
                mean = rows.mean(0)
                centred = rows - mean
                covariance = centred.T @ centred / old
                noise = torch.distributions.MultivariateNormal(
                    mean, covariance_matrix=1e-9 * covariance + 1e-12 * torch.eye(dim)).sample((size - old,))
                new[old:] = noise.to(weight.dtype)
            else:
                new[old:] = torch.randn(size - old, dim) * (0.02 * self.config.initializer_factor)
        embedding = nn.Embedding(size, dim, _weight=new)
        embedding.weight.requires_grad_(table.weight.requires_grad)
        self.set_input_embeddings(embedding)
        return embedding

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """The number of parameters (optionally only those requiring grad, or without the embedding tables)."""
        skip = {id(m.weight) for m in self.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
        return sum(p.numel() for p in self.parameters()
                   if id(p) not in skip and (p.requires_grad or not only_trainable))


def _set_attention(module: nn.Module, name: str) -> None:
    for m in module.modules():
        if hasattr(m, "attn_implementation"):
            m.attn_implementation = name


def _one_device(device_map) -> torch.device:
    """The one device a ``device_map`` names (transformers' multi-device maps are not supported: one model, one
    device)."""
    if isinstance(device_map, dict):
        devices = set(device_map.values())
        if len(devices) != 1:
            raise ValueError(f"device_map over several devices ({sorted(map(str, devices))}) is not supported: "
                             "the model lives on one device")
        device_map = devices.pop()
    if device_map == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device_map, int):
        return torch.device("cuda", device_map)
    try:
        return torch.device(device_map)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device_map must be a device (\"cpu\", \"cuda:0\", a torch.device), {{'': device}} or "
                         f"\"auto\"; got {device_map!r} ({err})") from None


__all__ = ["CLIPPreTrainedModel"]
