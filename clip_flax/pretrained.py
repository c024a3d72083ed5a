"""The Flax models' pretrained-model machinery: parameters kept outside the modules (transformers' tree), dtypes,
the canonical state in and out of the tree (loading and saving come from :class:`clip_core.pretrained.PretrainedMixin`),
and the dispatch of calls: concrete inputs checked, then one jitted ``module.apply`` per (model class, config, dtype),
compiled once per input shapes and flags.

The model math, the modules and the public model classes that subclass :class:`FlaxCLIPPreTrainedModel`, is in
:mod:`clip_flax.modeling`.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from clip_core import buckets
from clip_core.modeling_utils import (check_attention_mask, check_position_ids, check_text_inputs,
                                      check_vision_inputs, first_bad_mask_value)
from clip_core.outputs import (BaseModelOutput, BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput,
                               CLIPVisionModelOutput, ImageClassifierOutput, ModelOutput)
from clip_core.pretrained import PretrainedMixin, logger as pretrained_logger
from clip_core.weights import flatten_tree, flax_path, from_flax_tree, to_flax_tree


# ---------------------------------------------------------------------------------------------- inputs
def _traced(x) -> bool:
    """Whether ``x`` is abstract (inside ``jax.jit`` and friends), so its values cannot be inspected."""
    return isinstance(x, jax.core.Tracer)


def _read(x, reduce):
    """``reduce`` of ``x``'s values (numpy, or a JAX array reduced where it lives), or ``None`` where they cannot be
    read (``x`` is None or abstract). A concrete array is read even while a caller's ``jax.jit`` traces the call
    (a function closing over device arrays): its reductions would otherwise be staged into the trace."""
    if x is None or _traced(x):
        return None
    with jax.ensure_compile_time_eval():
        return reduce(x if isinstance(x, jax.Array) else np.asarray(x))


def _span(values):
    """(smallest, largest) of an array's values as ints; ``None`` for an empty array."""
    return (int(values.min()), int(values.max())) if values.size else None


def _float_span(values):
    """(smallest, largest) of a float array as Python floats (NaN when it holds a NaN or an infinity); ``None`` when
    empty. Finiteness is tested on its own: XLA:CPU's min / max reductions may skip NaNs."""
    if not values.size:
        return None
    if not bool(jnp.isfinite(values).all()):
        return float("nan"), float("nan")
    return float(values.min()), float(values.max())


def _bad_mask_value(values):
    return first_bad_mask_value(np.asarray(values))


def _array(x):
    """``x`` with a ``dtype``: arrays and tracers pass, Python lists and scalars become numpy arrays."""
    return x if x is None or hasattr(x, "dtype") else np.asarray(x)


def _integer(x) -> bool:
    return jnp.issubdtype(x.dtype, jnp.integer)


# ---------------------------------------------------------------------------------------------- outputs
def _unflatten_output(cls, keys, values):
    """Rebuild an output from its pytree leaves."""
    out = cls()
    for key, value in zip(keys, values):  # kept even when JAX passes placeholders such as None
        OrderedDict.__setitem__(out, key, value)
    return out


for _cls in (ModelOutput, BaseModelOutput, BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput,
             CLIPVisionModelOutput, ImageClassifierOutput):  # outputs are pytrees: a jitted function may return them
    jax.tree_util.register_pytree_node(_cls, lambda out: (tuple(out.values()), tuple(out.keys())),
                                       functools.partial(_unflatten_output, _cls))


def _to_tuple(out):
    """``return_dict=False``: tuples all the way down, as transformers returns them."""
    if isinstance(out, ModelOutput):
        return tuple(_to_tuple(value) for value in out.values())
    return out


# ---------------------------------------------------------------------------------------------- compiled calls
class CLIPModule(nn.Module):
    """The Flax module of a public model: what its ``_build`` creates (towers and heads, named as in transformers,
    so its parameters are transformers' tree); its ``_forward`` (or another method) runs it via ``apply``."""

    config: Any
    build: Callable
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.build(self)


class _CompiledApply:
    """The jitted ``module.apply`` of one (model class, config, dtype), shared by every model built alike: XLA
    compiles once per input shapes and flags, whichever instance calls. ``traces`` counts the traces.

    For the text-length buckets it also keeps which shapes are compiled (:meth:`ready_lengths`): a call whose
    bucket is not compiled yet runs padded to a longer compiled one, and a bucket seen a third time compiles in a
    background thread (:meth:`compile_later`; :meth:`wait` joins them)."""

    _cache: OrderedDict = OrderedDict()
    _max_entries = 32

    def __init__(self, cls, config, dtype, gradient_checkpointing: bool = False):
        self.module = CLIPModule(config, cls._build, dtype=dtype, gradient_checkpointing=gradient_checkpointing)
        self.traces = 0
        self.function = jax.jit(self._apply, static_argnames=("method", "flags"))
        self._ready: dict = {}  # shape key without the text length -> text lengths compiled
        self._seen: dict = {}  # (key, length) -> calls asking for it
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def ready_lengths(self, key) -> set:
        """The text lengths compiled for ``key`` (see :func:`_shape_key`)."""
        with self._lock:
            return set(self._ready.get(key, ()))

    def mark_ready(self, key, length) -> None:
        with self._lock:
            self._ready.setdefault(key, set()).add(length)

    def seen(self, key, length) -> int:
        """Count one more call asking for ``length`` under ``key``; the count so far."""
        with self._lock:
            count = self._seen[(key, length)] = self._seen.get((key, length), 0) + 1
            return count

    def compile_later(self, key, length, args, kwargs) -> None:
        """Compile (and run once) ``function(*args, **kwargs)`` in a background thread, one at a time; the length
        is marked ready when done (an error leaves it to the foreground calls, which then compile it)."""
        with self._lock:
            if any(t.is_alive() for t in self._threads):
                return
            self._threads = []

            def work():
                try:
                    jax.block_until_ready(self.function(*args, **kwargs))
                except Exception:  # noqa: BLE001 - a foreground call will compile it and report any error
                    return
                self.mark_ready(key, length)

            thread = threading.Thread(target=work, name="triclip-flax-compile")
            self._threads.append(thread)
        thread.start()

    def wait(self) -> None:
        """Wait for the background compiles to finish."""
        for thread in list(self._threads):
            thread.join()

    def _apply(self, params, inputs, dropout_rng, *, method, flags):
        self.traces += 1  # a Python side effect: runs only while tracing
        rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
        return self.module.apply({"params": params}, **inputs, **dict(flags), method=method, rngs=rngs)

    @classmethod
    def get(cls, model_cls, config, dtype, gradient_checkpointing: bool = False) -> "_CompiledApply":
        key = (model_cls, config.to_json_string(), dtype.name, gradient_checkpointing)
        if key not in cls._cache:
            cls._cache[key] = cls(model_cls, config, dtype, gradient_checkpointing)
            if len(cls._cache) > cls._max_entries:
                cls._cache.popitem(last=False)
        cls._cache.move_to_end(key)
        return cls._cache[key]


# ---------------------------------------------------------------------------------------------- shape buckets
def _concrete(inputs: dict, params) -> bool:
    """Whether a call runs outside a caller's trace: no abstract input, no abstract parameters."""
    if any(_traced(x) for x in inputs.values()):
        return False
    return params is None or not any(_traced(x) for x in jax.tree_util.tree_leaves(params)[:1])


_TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")


def _text_length(inputs: dict) -> int | None:
    """The text length of a call's inputs (every text input has it), or ``None`` without text."""
    return next((np.shape(inputs[name])[1] for name in _TEXT_INPUTS
                 if inputs.get(name) is not None and np.ndim(inputs[name]) == 2), None)


def _shape_key(method, flags, params, inputs: dict):
    """``(key, text length)`` of a call: ``key`` holds everything XLA compiles for except the text length (the
    method, the flags, the parameters' dtypes, every input's shape and dtype with the text length left out)."""
    shapes = []
    for name in sorted(inputs):
        value = inputs[name]
        if value is None:
            continue
        shape = tuple(np.shape(value))
        if name in _TEXT_INPUTS and len(shape) == 2:
            shape = (shape[0], None)
        shapes.append((name, shape, str(value.dtype)))
    dtypes = tuple(str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(params))
    return (method, flags, dtypes, tuple(shapes)), _text_length(inputs)


def _bucket(inputs: dict, text_config, length: int | None = None):
    """``inputs`` padded to their bucket, and the plan to slice the outputs back (``(rows, length, image_rows)``),
    or ``(inputs, None)`` when nothing is padded. Text length is padded only where that is exact
    (:func:`clip_core.buckets.text_padding_is_exact`), to ``length`` when given (a longer compiled bucket), the
    batch only where no output mixes rows (no ``labels``; the caller leaves ``return_loss`` calls alone)."""
    ids, pixels = inputs.get("input_ids"), inputs.get("pixel_values")
    padded = dict(inputs)
    rows = length_cut = image_rows = None
    if ids is not None:
        mask, positions = inputs.get("attention_mask"), inputs.get("position_ids")
        batch, width = ids.shape
        bucket = length or buckets.text_bucket(width, text_config.max_position_embeddings)
        if bucket != width and buckets.text_padding_is_exact(mask):
            ids, mask, positions = buckets.pad_text(ids, mask, positions, bucket, text_config.eos_token_id)
            length_cut = width
        target = buckets.batch_bucket(batch)
        if target != batch:
            rows = batch
            ids, mask = buckets.pad_rows(ids, target), buckets.pad_rows(mask, target)
            if positions is not None and np.shape(positions)[0] == batch:
                positions = buckets.pad_rows(positions, target)
        if rows is not None or length_cut is not None:
            padded.update(input_ids=jnp.asarray(ids), attention_mask=None if mask is None else jnp.asarray(mask),
                          position_ids=None if positions is None else jnp.asarray(positions))
    if pixels is not None and "labels" not in inputs:
        batch = pixels.shape[0]
        if buckets.batch_bucket(batch) != batch:
            image_rows = batch
            padded["pixel_values"] = jnp.asarray(buckets.pad_rows(pixels, buckets.batch_bucket(batch)))
    if rows is None and length_cut is None and image_rows is None:
        return inputs, None
    if ids is not None and rows is None:
        rows = ids.shape[0]
    if pixels is not None and image_rows is None:
        image_rows = pixels.shape[0]
    return padded, (rows, length_cut, image_rows)


def _cut(x, rows=None, length=None, attention=False, columns=None):
    """``x`` (an array, a tuple of them or None) sliced back: ``rows`` along axis 0, ``length`` along the token axis
    (axis 1; axes 2 and 3 of attention maps), ``columns`` along axis 1 (the other side of a logits matrix)."""
    if x is None:
        return None
    if isinstance(x, tuple):
        return tuple(_cut(v, rows, length, attention, columns) for v in x)
    index = [slice(None)] * x.ndim
    if rows is not None and x.ndim:
        index[0] = slice(0, rows)
    if length is not None:
        for axis in ((2, 3) if attention else (1,)):
            index[axis] = slice(0, length)
    if columns is not None:
        index[1] = slice(0, columns)
    return x[tuple(index)] if any(i != slice(None) for i in index) else x


def _unbucket_tower(out, rows, length):
    """One tower's output (or a plain feature array) sliced back; ``length`` only for text."""
    if not isinstance(out, ModelOutput):
        return _cut(out, rows)
    values = []
    for key, value in out.items():
        if key == "loss":
            values.append(value)
        elif key in ("last_hidden_state", "hidden_states"):
            values.append(_cut(value, rows, length))
        elif key == "attentions":
            values.append(_cut(value, rows, length, attention=True))
        else:
            values.append(_cut(value, rows))
    return _unflatten_output(type(out), tuple(out.keys()), values)


def _unbucket(out, rows, length, image_rows):
    """An output of padded inputs sliced back to the caller's batch and text length."""
    if not isinstance(out, CLIPOutput):
        return _unbucket_tower(out, rows if rows is not None else image_rows, length)
    sliced = {
        "loss": out.get("loss"),
        "logits_per_image": _cut(out.get("logits_per_image"), image_rows, columns=rows),
        "logits_per_text": _cut(out.get("logits_per_text"), rows, columns=image_rows),
        "text_embeds": _cut(out.get("text_embeds"), rows), "image_embeds": _cut(out.get("image_embeds"), image_rows),
        "text_model_output": _unbucket_tower(out.get("text_model_output"), rows, length),
        "vision_model_output": _unbucket_tower(out.get("vision_model_output"), image_rows, None)}
    keys = tuple(out.keys())
    return _unflatten_output(CLIPOutput, keys, [sliced[key] for key in keys])


def _kept_dtype(x):
    """The dtype a loaded weight keeps when none is asked for: float16 / bfloat16 as in the file, else float32."""
    name = np.asarray(x).dtype.name if not hasattr(x, "dtype") else jnp.dtype(x.dtype).name
    return jnp.dtype(name) if name in ("float16", "bfloat16") else jnp.float32


def _warn_half(cls, params) -> None:
    """transformers' warning when a checkpoint's weights load in half precision."""
    from flax.traverse_util import flatten_dict
    for half in ("float16", "bfloat16"):
        names = [k for k, v in flatten_dict(params).items() if jnp.result_type(v).name == half]
        if names:
            pretrained_logger.warning(
                f"Some of the weights of {cls.__name__} were initialized in {half} precision from the model "
                f"checkpoint:\n{names}\nYou should probably UPCAST the model weights to float32 if this was not "
                "intended. See `to_fp32` for further information on how to do this.")


# ---------------------------------------------------------------------------------------------- the base class
class FlaxCLIPPreTrainedModel(PretrainedMixin):
    """Base of the Flax CLIP models: ``config``, ``module``, ``params`` (kept outside the module, transformers'
    tree), ``dtype`` (the computation dtype), loading and saving in every format, and one cached jitted apply.

    ``Model(config, seed=0, dtype=jnp.float32)`` holds the seeded random init of :meth:`random_state` (transformers'
    initialisation, identical in every backend for one seed). ``from_pretrained(path, dtype=...)`` reads any
    checkpoint format, ``save_pretrained(dir, format=...)`` writes any.
    """

    arch = "clip"
    #: the model's Flax module class under transformers' name (``FlaxCLIPTextModule``...; set in
    #: :mod:`clip_flax.modeling`): ``model.module`` is one, applied as transformers' is (``model.module.apply(
    #: {"params": model.params}, input_ids, attention_mask, position_ids)``, pixels NHWC)
    module_class: type = None

    def __init__(self, config, input_shape=None, seed: int = 0, dtype=jnp.float32, _do_init: bool = True,
                 param_dtype=jnp.float32):
        """``input_shape`` is accepted for compatibility and ignored (shapes come from the config). With
        ``_do_init=False`` no parameters are made: pass ``params=`` to each call or set ``model.params``."""
        self.config = self.check_config(config)
        self.dtype = jnp.dtype(dtype)
        self._compiled = _CompiledApply.get(type(self), self.config, self.dtype)
        self.module = self.module_class(self.config, dtype=self.dtype)
        self.key = jax.random.PRNGKey(seed)
        self.input_shape = self._input_shape(self.config) if input_shape is None else input_shape
        self._params, self._is_initialized = None, bool(_do_init)
        if _do_init:
            self._params = self._tree(self.random_state(self.config, seed), param_dtype)

    @staticmethod
    def _build(module) -> None:  # pragma: no cover - abstract
        """Create the towers and heads on ``module`` (in ``setup``: the compiled apply's :class:`CLIPModule`, or
        ``model.module``, the class's :attr:`module_class`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ gradient checkpointing
    def enable_gradient_checkpointing(self) -> None:
        """Recompute every encoder layer's activations for the gradient instead of keeping them (``nn.remat`` of
        the layer, as transformers' Flax models do): this model gets another module (and its own compiled apply);
        parameters and gradients are unchanged."""
        self._set_gradient_checkpointing(True)

    def disable_gradient_checkpointing(self) -> None:
        """Keep the activations again (the default)."""
        self._set_gradient_checkpointing(False)

    gradient_checkpointing_enable = enable_gradient_checkpointing  # the PyTorch / TensorFlow spelling
    gradient_checkpointing_disable = disable_gradient_checkpointing

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether gradient checkpointing is on."""
        return self.module.gradient_checkpointing

    def _set_gradient_checkpointing(self, enable: bool) -> None:
        self._compiled = _CompiledApply.get(type(self), self.config, self.dtype, enable)
        self.module = self.module_class(self.config, dtype=self.dtype, gradient_checkpointing=enable)

    # ------------------------------------------------------------------ canonical state <-> parameters
    @property
    def params(self):
        """The parameters: a nested dict, transformers' tree (``text_model/encoder/layers/0/self_attn/...``)."""
        if self._params is None:
            raise ValueError("this model was made with _do_init=False: pass params= to each call (the model holds "
                             "no parameters)")
        return self._params

    @params.setter
    def params(self, params):
        if not self._is_initialized:  # transformers' rule: such a model never holds parameters
            raise ValueError("`params` cannot be set on a model made with _do_init=False: keep the parameters "
                             "outside and pass params= to each call")
        self._params = params

    @property
    def params_shape_tree(self) -> dict:
        """The parameter tree's shapes and dtypes as ``jax.ShapeDtypeStruct`` leaves (transformers' attribute;
        made from the config, nothing is allocated)."""
        table = self.param_table(self.config)
        shapes = {name: np.broadcast_to(np.zeros((), np.float32), spec.shape) for name, spec in table.items()}
        return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32),
                                      to_flax_tree(shapes, table))

    @staticmethod
    def _input_shape(config) -> tuple:
        """transformers' default ``input_shape`` for the class's config: text ``(1, 1)``, vision ``(1, H, W, 3)``,
        both a pair of them."""
        text = (1, 1)
        vision = getattr(config, "vision_config", config)
        vision = (1, vision.image_size, vision.image_size, 3) if hasattr(vision, "image_size") else None
        if hasattr(config, "text_config") and hasattr(config, "vision_config"):
            return text, vision
        return vision if vision is not None else text

    def _tree(self, state, param_dtype=jnp.float32):
        """The parameter tree of a canonical state, as JAX arrays of ``param_dtype`` in buffers of XLA's own
        (``copy=True``): in a long-lived process, jitted calls streamed the weights 2-4% slower from the buffers
        ``jnp.asarray`` made of the loaded numpy arrays (measured; transformers' parameters stream at full speed)."""
        tree = to_flax_tree(state, self.param_table(self.config))
        return jax.tree_util.tree_map(
            lambda x: jnp.array(x, dtype=_kept_dtype(x) if param_dtype is None else param_dtype, copy=True), tree)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, dtype=None, **kwargs):
        """As :meth:`PretrainedMixin.from_pretrained`; ``dtype="auto"`` keeps the checkpoint's dtype for the
        parameters and the computation (the one ``config.json`` records, else the weights')."""
        if isinstance(dtype, str) and dtype == "auto":
            kwargs.setdefault("param_dtype", "auto")
        if kwargs.get("_do_init", True):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, dtype=dtype, **kwargs)
        wants_info = kwargs.pop("output_loading_info", False)
        (model, params), info = super().from_pretrained(pretrained_model_name_or_path, *model_args, dtype=dtype,
                                                        output_loading_info=True, **kwargs)
        params = model._without_missing(params, info["missing_keys"], pretrained_model_name_or_path)
        return ((model, params), info) if wants_info else (model, params)

    @staticmethod
    def _without_missing(params, missing, where):
        """transformers' ``_do_init=False`` rule: the weights the checkpoint lacks stay out of ``params`` (with its
        warning); :meth:`init_weights` with ``params=`` fills them."""
        if not missing:
            return params
        from flax.traverse_util import flatten_dict, unflatten_dict
        pretrained_logger.warning(
            f"The checkpoint {where} is missing required keys: {set(missing)}. Make sure to call model.init_weights "
            "to initialize the missing weights.")
        missing = set(missing)
        return unflatten_dict({k: v for k, v in flatten_dict(params).items() if k not in missing})

    @classmethod
    def _from_state(cls, config, state, dtype=None, param_dtype=None, _do_init: bool = True, **kwargs):
        """A model holding ``state``: ``dtype`` is the computation dtype, ``param_dtype`` the parameters' (by
        default each weight's dtype in the file, float16 and bfloat16 kept, as transformers' Flax loader does, with
        its warning; others float32; bfloat16 when ``config.json`` records it, since the readers widen it). With
        ``_do_init=False`` returns ``(model, params)``, as transformers does."""
        for key in ("from_pt", "from_tf", "from_flax"):  # transformers' spellings: every format loads anyway
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(kwargs)}")
        if isinstance(dtype, str) and dtype == "auto":
            kinds = {np.asarray(v).dtype.name for v in state.values()}
            dtype = kinds.pop() if len(kinds) == 1 else "float32"
        if isinstance(param_dtype, str) and param_dtype == "auto":
            param_dtype = jnp.float32 if dtype is None else dtype
        as_in_file = param_dtype is None
        if as_in_file and str(getattr(config, "dtype", None)).replace("torch.", "") == "bfloat16":
            param_dtype = jnp.bfloat16  # the file held bfloat16 (the readers widen it to float32; config.json says)
        model = cls(config, dtype=jnp.float32 if dtype is None else dtype, _do_init=False)
        params = model._tree(state, param_dtype)
        if as_in_file:
            _warn_half(cls, params)
        if not _do_init:
            return model, params
        model._params, model._is_initialized = params, True
        return model

    def export_state(self, params=None, *, allow_missing: bool = False) -> dict[str, np.ndarray]:
        """``params`` (default ``self.params``) as a canonical state: numpy, PyTorch names and layouts.

        Every leaf must be an array (``TypeError`` naming its path otherwise) at a path of the model's tree, with
        its parameter's shape and a float dtype (:class:`~clip_core.weights.StateMismatchError` otherwise). With
        ``allow_missing``, a tree lacking some parameters gives a state lacking them (a tree holding none of them
        is still refused)."""
        tree = jax.device_get(self.params if params is None else params)
        if not isinstance(tree, Mapping):
            raise TypeError(f"params must be a nested dict of arrays (the model's tree), got a {type(tree).__name__}")
        present = set()
        for path, leaf in flatten_tree(tree):
            if not isinstance(leaf, (np.ndarray, np.generic)):
                raise TypeError(f"params leaf {'/'.join(path)} is a {type(leaf).__name__}, not an array")
            present.add(path)
        table = self.param_table(self.config)
        if allow_missing:
            table = {name: spec for name, spec in table.items() if flax_path(spec) in present} or table
        return from_flax_tree(tree, table, where="the params to save")

    def save_pretrained(self, save_directory, format="safetensors", *, params=None, **kwargs) -> None:
        """Write ``config.json`` and the weights in ``format`` (see :class:`PretrainedMixin`).

        ``params=`` saves that tree instead of ``self.params``, as transformers does: a tree lacking some weights
        is written without them (``from_pretrained`` initialises them, with ``_do_init=False`` leaves them out); a
        leaf that is not an array, is mis-shaped, has a non-float dtype or a path the model lacks is refused
        (:meth:`export_state`), nothing written. ``safe_serialization=False`` writes ``flax_model.msgpack`` and
        ``True`` ``model.safetensors``, as in transformers' Flax classes."""
        if "safe_serialization" in kwargs:  # transformers' Flax spelling: msgpack or safetensors
            format = "safetensors" if kwargs.pop("safe_serialization") else "flax"
        if params is None:
            return super().save_pretrained(save_directory, format=format, **kwargs)
        if "state_dict" in kwargs:
            raise TypeError("save_pretrained takes params= or state_dict=, not both")
        kwargs["state_dict"] = self.export_state(params, allow_missing=True)
        own = self._params
        self._params = params  # the dtype recorded is that of the tree saved (a _do_init=False model has none)
        try:
            super().save_pretrained(save_directory, format=format, **kwargs)
        finally:
            self._params = own

    def _cast(self, params, dtype, mask=None):
        """transformers' rule: every floating leaf of ``params`` (default ``self.params``) where ``mask`` (a tree
        of the same structure holding booleans; default all) is True, cast to ``dtype``; a new tree."""
        params = self.params if params is None else params
        leaves, treedef = jax.tree_util.tree_flatten(params)
        if mask is None:
            keep = [True] * len(leaves)
        else:
            keep = jax.tree_util.tree_leaves(mask)
            if len(keep) != len(leaves):
                raise ValueError(f"mask must have the structure of params ({len(leaves)} leaves), it has "
                                 f"{len(keep)} leaves")
        cast = [jnp.asarray(x, dtype) if bool(k) and jnp.issubdtype(jnp.result_type(x), jnp.floating) else x
                for x, k in zip(leaves, keep)]
        return jax.tree_util.tree_unflatten(treedef, cast)

    def to_bf16(self, params=None, mask=None):
        """``params`` (default ``self.params``) cast to bfloat16 where ``mask`` says so, as a new tree
        (transformers' ``to_bf16(params, mask=None)``)."""
        return self._cast(params, jnp.bfloat16, mask)

    def to_fp16(self, params=None, mask=None):
        """``params`` (default ``self.params``) cast to float16 where ``mask`` says so, as a new tree."""
        return self._cast(params, jnp.float16, mask)

    def to_fp32(self, params=None, mask=None):
        """``params`` (default ``self.params``) cast to float32 where ``mask`` says so, as a new tree."""
        return self._cast(params, jnp.float32, mask)

    # ------------------------------------------------------------------ transformers' Flax model API
    main_input_name = "input_ids"
    base_model_prefix = "clip"

    def init_weights(self, rng, input_shape=None, params=None):
        """A fresh parameter tree (transformers' initialisation, seeded from the PRNG key ``rng``;
        ``input_shape`` is ignored: shapes come from the config). With ``params``, the leaves it lacks (such as
        those a ``_do_init=False`` :meth:`from_pretrained` left out) are filled from the fresh tree."""
        seed = int(jax.random.randint(rng, (), 0, 2 ** 31 - 1))
        fresh = self._tree(self.random_state(self.config, seed))
        if params is None:
            return fresh
        from flax.traverse_util import flatten_dict, unflatten_dict
        merged = flatten_dict(fresh)
        merged.update(flatten_dict(params))
        return unflatten_dict(merged)

    @property
    def required_params(self) -> set:
        """The parameter tree's leaves as key tuples (``("text_model", "final_layer_norm", "scale")``...)."""
        from flax.traverse_util import flatten_dict
        table = self.param_table(self.config)
        shapes = {name: np.broadcast_to(np.zeros((), np.float32), spec.shape) for name, spec in table.items()}
        return set(flatten_dict(to_flax_tree(shapes, table)))

    def num_parameters(self, params=None, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """The number of parameters (all trainable here; ``exclude_embeddings`` leaves out the embedding
        tables)."""
        from flax.traverse_util import flatten_dict
        return sum(int(np.prod(np.shape(v))) for k, v in flatten_dict(self.params if params is None else params)
                   .items() if not (exclude_embeddings and k[-1] == "embedding"))

    def _dtype_name(self) -> str:
        """The parameters' dtype (what :meth:`save_pretrained` writes and records): the floating leaves' common
        dtype, float32 when they differ."""
        kinds = {jnp.result_type(x).name for x in jax.tree_util.tree_leaves(self.params)}
        return kinds.pop() if len(kinds) == 1 else "float32"

    # ------------------------------------------------------------------ inputs and the jitted apply
    def _flag(self, value, name: str) -> bool:
        """An output flag: the argument, else the config's value (transformers' rule), else False."""
        return bool(getattr(self.config, name, False) if value is None else value)

    @staticmethod
    def _text_inputs(config, input_ids, attention_mask=None, position_ids=None) -> dict:
        """Checked text inputs as int32 arrays (value checks only when the values are concrete)."""
        if input_ids is None:
            raise ValueError("input_ids is required: you have to specify input_ids")
        input_ids, attention_mask, position_ids = (_array(x) for x in (input_ids, attention_mask, position_ids))
        check_text_inputs(config, np.shape(input_ids), _read(input_ids, _span) if _integer(input_ids) else None,
                          dtype=input_ids.dtype)
        if attention_mask is not None:
            check_attention_mask(np.shape(attention_mask), np.shape(input_ids), attention_mask.dtype,
                                 _read(attention_mask, _bad_mask_value))
        if position_ids is not None:
            check_position_ids(config, np.shape(position_ids), np.shape(input_ids), position_ids.dtype,
                               _read(position_ids, _span) if _integer(position_ids) else None)
        as_int = functools.partial(jnp.asarray, dtype=jnp.int32)
        return dict(input_ids=as_int(input_ids),
                    attention_mask=None if attention_mask is None else as_int(attention_mask),
                    position_ids=None if position_ids is None else as_int(position_ids))

    @staticmethod
    def _vision_inputs(config, pixel_values, interpolate_pos_encoding=False) -> dict:
        """Checked NCHW pixels as a float32 array (finiteness checked only when the values are concrete)."""
        if pixel_values is None:
            raise ValueError("pixel_values is required: you have to specify pixel_values")
        pixel_values = _array(pixel_values)
        floating = jnp.issubdtype(pixel_values.dtype, jnp.floating)
        check_vision_inputs(config, np.shape(pixel_values), bool(interpolate_pos_encoding), dtype=pixel_values.dtype,
                            span=_read(pixel_values, _float_span) if floating else None)
        return dict(pixel_values=jnp.asarray(pixel_values, dtype=jnp.float32))

    #: pad concrete inputs of calls made outside ``jax.jit`` to their shape bucket (:mod:`clip_core.buckets`), so
    #: that a new caption length or batch size reuses the bucket's compiled function; outputs are sliced back
    bucketing = True

    def _bucket_ready(self, inputs, padded, plan, key, length, text_config):
        """A text-length bucket not compiled yet runs padded to the shortest longer one that is (the longest,
        ``max_position_embeddings``, when none is: compiled now, it holds every later length), so a new caption
        length costs no compile; the bucket's own compile starts in the background the :attr:`compile_after`-th time
        it is asked for. Returns ``(padded, plan, inputs to compile in the background or None)``."""
        compiled = self._compiled
        ready = compiled.ready_lengths(key)
        if length in ready:
            return padded, plan, None
        longer = [n for n in ready if n is not None and n > length]
        target = min(longer) if longer else text_config.max_position_embeddings
        later = padded if compiled.seen(key, length) >= self.compile_after else None
        padded, plan = _bucket(inputs, text_config, length=target)
        return padded, plan, later

    #: the call of a text-length bucket that starts its own compile in the background (before it, the call runs
    #: padded to a longer compiled bucket). The third, not the second: a background compile takes both cores of a
    #: small machine for seconds, so the call right after it runs up to twice as slow; a bucket asked for twice in
    #: a row (a caption length met again) is not yet one that recurs often enough to pay for that
    compile_after = 3

    def _run(self, method, inputs: dict, params=None, dropout_rng=None, train: bool = False, return_dict=None,
             **flags):
        """Run ``method(module, **inputs, deterministic=not train, **flags)`` through the cached jitted apply:
        compiled once per input shapes (padded to their bucket when :attr:`bucketing` and the values are concrete)
        and flags, then reused (inside a user's ``jax.jit`` it is simply inlined)."""
        plan, later, bucketed = None, None, False
        params = self.params if params is None else params
        flags = tuple(sorted({"deterministic": not train, **flags}.items()))
        if self.bucketing and not train and not dict(flags).get("return_loss") and _concrete(inputs, params):
            bucketed, text_config = True, getattr(self.config, "text_config", self.config)
            padded, plan = _bucket(inputs, text_config)
            key, length = _shape_key(method, flags, params, padded)
            exact = buckets.text_padding_is_exact(inputs.get("attention_mask"))
            if length is not None and length < text_config.max_position_embeddings and exact:
                padded, plan, later = self._bucket_ready(inputs, padded, plan, key, length, text_config)
            inputs = padded
        out = self._compiled.function(params, inputs, dropout_rng, method=method, flags=flags)
        if bucketed:
            self._compiled.mark_ready(key, _text_length(inputs))  # padding changed the text length only
            if later is not None:
                self._compiled.compile_later(key, length, (params, later, dropout_rng),
                                             {"method": method, "flags": flags})
        if plan is not None:
            out = _unbucket(out, *plan)
        return _to_tuple(out) if return_dict is False or (
            return_dict is None and getattr(self.config, "return_dict", True) is False) else out


__all__ = ["FlaxCLIPPreTrainedModel"]
