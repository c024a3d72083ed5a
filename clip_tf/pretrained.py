"""The TensorFlow models' pretrained-model machinery: variables from the parameter table, dtypes, the canonical state
in and out of the variables (loading and saving come from :class:`clip_core.pretrained.PretrainedMixin`), and the
dispatch of calls: inputs bound, converted and checked eagerly, then run eagerly or through one XLA-compiled function
per method, flags and input specs, cached per model (``jit_compile``: compiled in a background thread once a shape
repeats, by default).

The base class also carries transformers' TF model API (Keras' and ``TFPreTrainedModel``'s methods: weights,
serving, datasets; the embedding methods come from :mod:`clip_tf.embedding_api`). The caches of compiled functions
that calls run through are in :mod:`clip_tf.compiled`.

The model math, the modules and the public model classes that subclass :class:`TFCLIPPreTrainedModel`, is in
:mod:`clip_tf.modeling`.
"""

from __future__ import annotations

import inspect
from typing import Mapping

import numpy as np
import tensorflow as tf

from clip_core.modeling_utils import (_is_integer_dtype, check_attention_mask, check_batch_sizes,
                                      check_pixel_values, check_text_inputs, check_vision_inputs,
                                      first_bad_mask_value)
from clip_core.outputs import ModelOutput
from clip_core.pretrained import PretrainedMixin
from clip_core.weights import from_framework_layout, tf_name, to_framework_layout, tower_configs
from clip_tf.compiled import _Compiled, _CompiledCache, _in_replica_context, _recording
from clip_tf.embedding_api import _EmbeddingsAPI

_TENSOR_ARGS = ("input_ids", "pixel_values", "attention_mask", "position_ids", "labels")
_INT_ARGS = ("input_ids", "attention_mask", "position_ids", "labels")
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_SIGNATURES: dict = {}
_JIT_MODES = (True, False, "auto")


# ---------------------------------------------------------------------------------------------- inputs
def _signature(method) -> inspect.Signature:
    function = getattr(method, "__func__", method)
    if function not in _SIGNATURES:
        _SIGNATURES[function] = inspect.signature(method)
    return _SIGNATURES[function]


def _dtype_of(value):
    """The dtype an input came with (before conversion), for the checks' messages."""
    return value.dtype if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)) else np.asarray(value).dtype


# ---------------------------------------------------------------------------------------------- outputs
def _to_tuple(out):
    """``return_dict=False``: tuples all the way down, as transformers returns them."""
    if isinstance(out, ModelOutput):
        return tuple(_to_tuple(value) for value in out.values())
    return out


class _TrainableModule(tf.Module):
    """A ``tf.Module`` with Keras' ``trainable`` switch: ``module.trainable = False`` takes its variables out of
    ``trainable_variables`` (its own and every enclosing module's), as freezing a Keras layer does; the variables
    themselves are unchanged (``tf.Variable.trainable`` is fixed at creation)."""

    _trainable = True

    @property
    def trainable(self) -> bool:
        """Whether this module's variables train (unless a module inside it is frozen)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"trainable must be True or False, got {value!r}")
        self._trainable = value

    @property
    def trainable_variables(self):
        """The variables that train: none when this module is frozen, else all but those of frozen submodules."""
        if not self._trainable:
            return ()
        frozen = {id(v) for m in self.submodules if isinstance(m, _TrainableModule) and not m._trainable
                  for v in m.variables}
        return tuple(v for v in self.variables if v.trainable and id(v) not in frozen)

    @property
    def non_trainable_variables(self):
        """The variables that do not train."""
        keep = {id(v) for v in self.trainable_variables}
        return tuple(v for v in self.variables if id(v) not in keep)


# ---------------------------------------------------------------------------------------------- the base class
class TFCLIPPreTrainedModel(PretrainedMixin, _EmbeddingsAPI, _TrainableModule):
    """Base of the TensorFlow CLIP models: variables from the parameter table, loading, saving and dispatch.

    ``TFCLIPModel(config, seed=None, dtype=None)`` builds a model with random weights following transformers'
    initialisation (identical in every backend for one seed; ``seed=None`` draws one from TensorFlow's global
    generator, so ``tf.random.set_seed`` controls it). ``from_pretrained(path, dtype=...)`` loads any
    checkpoint format, ``save_pretrained(dir, format=...)`` writes any. :attr:`jit_compile` says how calls run
    (default ``"auto"``: eagerly, then XLA-compiled in the background for shapes that repeat).
    """

    arch = "clip"
    #: the tensor inputs of the serving signature, with their dtypes
    serving_inputs: dict[str, tf.DType] = {}

    def __init__(self, config, seed: int | None = None, dtype=None, *,
                 _state: Mapping[str, np.ndarray] | None = None):
        tf.Module.__init__(self)
        self.config = self.check_config(config)
        self.text_config, self.vision_config = tower_configs(self.config, self.arch)
        if _state is None:
            if seed is None:  # drawn from TensorFlow's global generator, so tf.random.set_seed controls it
                seed = int(tf.random.uniform((), 0, 2 ** 31 - 1, dtype=tf.int64))
            _state = self.random_state(self.config, seed)
        dtype = self._dtype(dtype, _state)
        self.table = self.param_table(self.config)
        self.params = {
            name: tf.Variable(tf.cast(to_framework_layout(np.asarray(_state[name]), spec.kind, "tf"), dtype),
                              name=tf_name(spec)[:-2])
            for name, spec in self.table.items()}
        self._compiled = _CompiledCache()
        self.jit_compile = "auto"
        self._build()
        self._warm_up()

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def input_signature(self) -> dict[str, tf.TensorSpec]:
        """The tensor inputs of :meth:`call` as ``tf.TensorSpec`` by name, as transformers' TF models give them: ids
        and mask ``int32`` ``(None, None)``, ``pixel_values`` ``float32`` ``(None, channels, image_size,
        image_size)``."""
        vision = self.vision_config
        return {name: tf.TensorSpec((None, vision.num_channels, vision.image_size, vision.image_size)
                                    if name == "pixel_values" else (None, None), dtype, name=name)
                for name, dtype in self.serving_inputs.items()}

    @property
    def dummy_inputs(self) -> dict[str, tf.Tensor]:
        """A smallest valid input for every tensor in :attr:`input_signature`, as transformers makes it: ones, a
        batch of one, unknown sizes 2 (two tokens; id 1, or 0 for a vocabulary of one)."""
        out = {}
        for name, spec in self.input_signature.items():
            shape = [1] + [2 if d is None else d for d in spec.shape[1:]]
            out[name] = tf.ones(shape, spec.dtype)
            if name == "input_ids" and self.text_config.vocab_size < 2:
                out[name] = tf.zeros(shape, spec.dtype)
        return out

    def _warm_up(self) -> None:
        """One small eager call at construction, as transformers' TF models build themselves on dummy inputs: the
        process's one-time kernel set-up then lands here, not in the user's first call. Skipped where a call would
        not be eager (inside a ``tf.function`` or a distribution strategy's scope); a failure is left to the real
        call to report."""
        if not self.serving_inputs or not tf.executing_eagerly() or tf.distribute.has_strategy():
            return
        graphs = self._jit_compile == "auto" and self.polymorphic_graphs
        mode, self._jit_compile, self._compiled.tracing = self._jit_compile, "auto" if graphs else False, graphs
        try:
            self(**self.dummy_inputs)
        except Exception:  # noqa: BLE001 - only a warm-up
            pass
        finally:
            self._jit_compile, self._compiled.tracing = mode, False
            self._compiled.seen.clear()  # the dummy call counts for no shape

    # ------------------------------------------------------------------ canonical state <-> variables
    @staticmethod
    def _dtype(dtype, state=None) -> tf.DType:
        """A ``tf.DType`` from ``None`` (float32), a dtype or its name, or ``"auto"`` (the state's)."""
        if dtype is None:
            return tf.float32
        if isinstance(dtype, str) and dtype == "auto":
            kinds = {np.asarray(v).dtype.name for v in (state or {}).values()}
            dtype = kinds.pop() if len(kinds) == 1 else "float32"
        try:
            name = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else tf.as_dtype(dtype).name
        except TypeError:
            name = None
        if name in ("float32", "float16", "bfloat16"):
            return tf.as_dtype(name)
        raise ValueError(f"dtype must be float32, bfloat16 or float16 (a dtype or its name), got {dtype!r}")

    @classmethod
    def _from_state(cls, config, state, dtype=None, **kwargs):
        """A model holding ``state`` (numpy, canonical names and layouts) in ``dtype``."""
        if kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected arguments {sorted(kwargs)}")
        return cls(config, dtype=dtype, _state=state)

    def export_state(self) -> dict[str, np.ndarray]:
        """The variables as a canonical state: numpy, PyTorch layouts.

        float32 and float16 models export their own dtype; bfloat16 models export float32 arrays.
        """
        out = {}
        for name, spec in self.table.items():
            variable = self.params[name]
            value = tf.cast(variable, tf.float32) if variable.dtype == tf.bfloat16 else variable
            out[name] = from_framework_layout(value.numpy(), spec.kind, "tf")
        return out

    # ------------------------------------------------------------------ niceties
    @property
    def dtype(self) -> tf.DType:
        """The variables' dtype."""
        return next(iter(self.params.values())).dtype

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """The number of parameters (optionally only trainable ones, or without the embedding tables)."""
        trainable = {id(v) for v in self.trainable_variables}
        return sum(int(np.prod(v.shape)) for name, v in self.params.items()
                   if (id(v) in trainable or not only_trainable)
                   and not (exclude_embeddings and self.table[name].kind == "embedding"))

    # ------------------------------------------------------------------ transformers' / Keras' model API
    main_input_name = "input_ids"
    base_model_prefix = "clip"
    _SAVE_KWARGS = ("saved_model", "version", "signatures")

    def get_config(self) -> dict:
        """The config as a dict (Keras' ``get_config``, as transformers' TF models return it)."""
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config, **kwargs):
        """A new random model from a config or the dict :meth:`get_config` returns (Keras' ``from_config``, as
        transformers' TF models have it)."""
        return cls(config, **kwargs)

    def get_output_embeddings(self) -> None:
        """``None``: CLIP has no language-model head (transformers' answer, as for :meth:`get_lm_head` and
        :meth:`get_bias`)."""
        return None

    def get_lm_head(self) -> None:
        """``None``: no language-model head."""
        return None

    def get_bias(self) -> None:
        """``None``: no language-model head bias."""
        return None

    def build_in_name_scope(self) -> None:
        """Nothing to do: the variables exist from construction (transformers' TF models build here)."""

    def _get_word_embedding_weight(self, embedding_layer):
        """transformers' helper (its tests call it): a tensor as is, else the layer's ``weight`` (or ``decoder``),
        else ``None``."""
        if isinstance(embedding_layer, (tf.Tensor, tf.Variable)):
            return embedding_layer
        for attribute in ("weight", "decoder"):
            if getattr(embedding_layer, attribute, None) is not None:
                return getattr(embedding_layer, attribute)
        return None

    def get_weights(self) -> list[np.ndarray]:
        """Every variable's value as numpy, in :attr:`params` order (Keras' ``get_weights``; the order is
        triclip's, so it pairs with :meth:`set_weights` of a triclip model, not with a Keras model's list)."""
        return [v.numpy() for v in self.params.values()]

    def set_weights(self, weights) -> None:
        """Assign a list of arrays, in the order :meth:`get_weights` gives (Keras' ``set_weights``)."""
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"set_weights: {type(self).__name__} has {len(self.params)} weights, got "
                             f"{len(weights)}")
        for (name, variable), value in zip(self.params.items(), weights):
            if tuple(np.shape(value)) != tuple(variable.shape):
                raise ValueError(f"set_weights: {name} has shape {tuple(variable.shape)}, got {np.shape(value)}")
        for variable, value in zip(self.params.values(), weights):
            variable.assign(tf.cast(value, variable.dtype))

    def summary(self, print_fn=print) -> None:
        """A Keras-style table: each tower and head with its parameter count, then the totals."""
        groups: dict[str, int] = {}
        for name, variable in self.params.items():
            key = name.split(".")[0]
            groups[key] = groups.get(key, 0) + int(np.prod(variable.shape))
        lines = [f'Model: "{type(self).__name__}"', "-" * 50, f"{'Layer':<32}{'Param #':>18}", "=" * 50]
        lines += [f"{key:<32}{count:>18,}" for key, count in groups.items()]
        total, trainable = self.num_parameters(), self.num_parameters(only_trainable=True)
        lines += ["=" * 50, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "-" * 50]
        for line in lines:
            print_fn(line)

    def _after_save(self, save_directory, saved_model: bool = False, version: int = 1, signatures=None) -> None:
        """``save_pretrained(..., saved_model=True)``: also a SavedModel in ``saved_model/<version>`` with the
        serving signature (transformers' layout), written to a temporary folder and renamed."""
        if not saved_model:
            return
        import os
        import shutil
        import tempfile
        target = os.path.join(save_directory, "saved_model", str(version))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(target))
        try:
            tf.saved_model.save(self, tmp, signatures=signatures if signatures is not None else self.serving)
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp)

    def prepare_tf_dataset(self, dataset, batch_size: int = 8, shuffle: bool = True, tokenizer=None,
                           collate_fn=None, collate_fn_args=None, drop_remainder=None, prefetch: bool = True):
        """A ``tf.data.Dataset`` from a Hugging Face ``datasets.Dataset``, as transformers' method makes it: the
        columns the model's ``call`` takes (``input_ids``, ``pixel_values``, ``attention_mask``...), batched."""
        if not hasattr(dataset, "to_tf_dataset"):
            raise TypeError(f"prepare_tf_dataset needs a datasets.Dataset, got {type(dataset).__name__}")
        if tokenizer is not None and collate_fn is None:
            def collate_fn(features, pad=tokenizer.pad):
                return dict(pad(features, return_tensors="np"))
        parameters = _signature(self.call).parameters
        columns = [name for name in dataset.column_names if name in parameters and name not in ("labels",)]
        if not columns:
            raise ValueError(f"the dataset has none of the model's inputs ({', '.join(_TENSOR_ARGS)}); its columns "
                             f"are {dataset.column_names}")
        labels = [name for name in ("labels", "label") if name in dataset.column_names]
        return dataset.to_tf_dataset(columns=columns, label_cols=labels or None, batch_size=batch_size,
                                     shuffle=shuffle, collate_fn=collate_fn, collate_fn_args=collate_fn_args,
                                     drop_remainder=bool(drop_remainder) if drop_remainder is not None else shuffle,
                                     prefetch=prefetch)

    # ------------------------------------------------------------------ training
    def gradient_checkpointing_enable(self) -> None:
        """Recompute every encoder layer's activations for the gradient instead of keeping them
        (``tf.recompute_grad``; less memory, one more forward per layer). The gradients are the plain model's."""
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        """Keep the activations again (the default)."""
        self._set_gradient_checkpointing(False)

    @property
    def is_gradient_checkpointing(self) -> bool:
        """Whether gradient checkpointing is on."""
        return any(getattr(m, "gradient_checkpointing", False) for m in self.submodules)

    def _set_gradient_checkpointing(self, enable: bool) -> None:
        for module in self.submodules:
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enable
        self._compiled.clear()  # traced with the other setting

    def compile(self, optimizer="adamw", loss=None, **kwargs) -> None:
        """Keras 3 ``compile``: ``fit`` / ``evaluate`` then train on the model's own contrastive loss (no ``loss``
        may be given), through :class:`clip_tf.training.KerasCLIPModel` (``TFCLIPModel`` only)."""
        if self.arch != "clip":
            raise TypeError(f"compile()/fit() train a TFCLIPModel on its contrastive loss; {type(self).__name__} "
                            "has none here: wrap it in your own keras.Model")
        from clip_tf.training import KerasCLIPModel
        if self._compiled.keras is None:
            self._compiled.keras = KerasCLIPModel(self)
        self._compiled.keras.compile(optimizer=optimizer, loss=loss, **kwargs)

    def _compiled_keras(self):
        if self._compiled.keras is None:
            raise ValueError(f"call {type(self).__name__}.compile(optimizer=...) before fit() or evaluate()")
        return self._compiled.keras

    def fit(self, *args, **kwargs):
        """Keras 3 ``fit`` on the model's contrastive loss (after :meth:`compile`); returns Keras' History."""
        return self._compiled_keras().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """Keras 3 ``evaluate``: the mean contrastive loss (after :meth:`compile`)."""
        return self._compiled_keras().evaluate(*args, **kwargs)

    # -------------------------------------------------------------------------------- dispatch
    def _dispatch(self, method, args, kwargs, trim=None):
        """Bind the arguments, check and convert the inputs, then run ``method`` compiled (cached) or directly.
        ``trim``: ``method`` needs only the pooled text states, so eager text inputs are cut by this function
        (:func:`clip_tf.modeling.trim_text`)."""
        if len(args) == 1 and isinstance(args[0], Mapping):  # model({"input_ids": ..., ...}) as in Keras
            kwargs, args = {**args[0], **kwargs}, ()
        signature = _signature(method)
        arguments = signature.bind(*args, **kwargs).arguments
        given = {name: arguments.pop(name) for name in _TENSOR_ARGS if arguments.get(name) is not None}
        self._resolve_flags(arguments, signature.parameters)
        ids_dtype = _dtype_of(given["input_ids"]) if "input_ids" in given else None
        tensors = {name: self._convert(name, value) for name, value in given.items()}
        eager = tf.executing_eagerly()
        self._check_inputs(tensors, arguments, eager, signature.parameters, ids_dtype)
        return_dict = arguments.pop("return_dict", None)
        if trim is not None and eager:
            cut = trim(tensors["input_ids"], tensors.get("attention_mask"), tensors.get("position_ids"),
                       self.text_config.eos_token_id)
            names = ("input_ids", "attention_mask", "position_ids")
            tensors.update((name, value) for name, value in zip(names, cut) if value is not None)
        mode, compiled = self._jit_compile, None
        if eager and mode and not _in_replica_context() and not (mode == "auto" and _recording()):
            key = (method.__name__, tuple(sorted(arguments.items())),
                   tuple((name, tuple(t.shape), t.dtype.name) for name, t in tensors.items()))
            if mode == "auto":
                compiled = self._compiled.auto(key, method, arguments, tensors, self.xla_after)
                if compiled is None and self.polymorphic_graphs:
                    compiled = self._compiled.graph(key[:2], method, arguments, tensors)
            else:
                compiled = self._compiled.functions.get(key)
                if compiled is None:
                    compiled = self._compiled.functions[key] = _Compiled(method, arguments)
        out = method(**tensors, **arguments) if compiled is None else compiled(tensors)
        return _to_tuple(out) if return_dict is False else out

    @property
    def jit_compile(self):
        """How eager calls run: ``"auto"`` (the default: a new input shape costs no compile: it runs the
        shape-polymorphic graph traced at construction (:attr:`polymorphic_graphs`; other methods and flags
        eagerly); a shape called :attr:`xla_after` times compiles with XLA in a background thread, and its calls
        run the compiled function once it is ready), ``True`` (XLA always, compiled at the first call of every shape and
        flag combination) or ``False`` (eagerly always). Under a recording ``tf.GradientTape`` ``"auto"`` stays
        eager; inside a ``tf.function`` or ``strategy.run`` the model traces or runs as the caller does."""
        return self._jit_compile

    @jit_compile.setter
    def jit_compile(self, value) -> None:
        if not any(value is mode or (isinstance(value, str) and value == mode) for mode in _JIT_MODES):
            raise ValueError(f"jit_compile must be True, False or 'auto', got {value!r}")
        self._jit_compile = value

    #: under ``jit_compile="auto"``: the call of one shape (and flags) that starts its background XLA compile
    xla_after = 2

    #: under ``jit_compile="auto"``: the construction traces ``__call__`` (default flags, the serving inputs'
    #: dtypes) into one shape-polymorphic graph, which then runs every call of a shape not XLA-compiled yet
    #: (faster than eager execution); other methods and flags run eagerly until XLA-compiled
    polymorphic_graphs = True

    def _resolve_flags(self, arguments, parameters) -> None:
        """The flags as Python values: output flags and ``return_dict`` not given (or ``None``) take the config's
        value (transformers' rule); numpy / eager TensorFlow booleans (``np.array(True)``) become ``bool``."""
        for name, value in arguments.items():
            if isinstance(value, (np.ndarray, np.generic)) or isinstance(value, tf.Tensor) and hasattr(value, "numpy"):
                value = np.asarray(value)
                if value.size != 1:
                    raise ValueError(f"{name} must be one boolean, got an array of shape {value.shape}")
                arguments[name] = value.item()
        for name in ("output_attentions", "output_hidden_states"):
            if name in parameters and arguments.get(name) is None:
                arguments[name] = bool(getattr(self.config, name, False))
        if "return_dict" in parameters and arguments.get("return_dict") is None:
            arguments["return_dict"] = self.config.use_return_dict

    def _convert(self, name, value):
        self._check_raw(name, value)
        if isinstance(value, (tf.Tensor, tf.Variable)):
            if name == "labels" and not value.dtype.is_integer:
                raise ValueError(f"labels must hold integer class indices, got dtype {value.dtype.name}")
            if name in _INT_ARGS:
                return value if value.dtype == tf.int32 else tf.cast(value, tf.int32)
            return value if value.dtype == self.dtype else tf.cast(value, self.dtype)
        value = np.asarray(value)
        if name == "labels" and not (np.issubdtype(value.dtype, np.integer) or value.dtype == object):
            raise ValueError(f"labels must hold integer class indices, got dtype {value.dtype}")
        if name in _INT_ARGS:
            if np.issubdtype(value.dtype, np.integer) and value.size and \
                    (value.min() < np.iinfo(np.int32).min or value.max() > np.iinfo(np.int32).max):
                raise ValueError(f"{name} holds values outside the int32 range")
            return tf.constant(value.astype(np.int32, copy=False))
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            raise ValueError(f"{name} must be numeric, got dtype {value.dtype}")
        return tf.constant(value, dtype=self.dtype)

    @staticmethod
    def _check_raw(name, value):
        """The rules of :mod:`clip_core.modeling_utils` that need the input as given, before the cast to int32 or
        the model's dtype would hide it: non-float pixels, pixels beyond float32, mask values other than 0/1,
        non-integer positions (values only when they are concrete)."""
        if name not in ("pixel_values", "attention_mask", "position_ids"):
            return
        symbolic = isinstance(value, (tf.Tensor, tf.Variable)) and not hasattr(value, "numpy")
        if isinstance(value, (tf.Tensor, tf.Variable)):
            dtype = value.dtype.name
            values = None if symbolic or not value.shape.num_elements() else value.numpy()
        else:
            values = np.asarray(value)
            dtype, values = values.dtype, (values if values.size else None)
        if name == "pixel_values":
            floating = values is not None and np.issubdtype(values.dtype, np.floating) or \
                values is not None and values.dtype.name == "bfloat16"
            check_pixel_values(dtype, (float(values.min()), float(values.max())) if floating else None)
        elif name == "attention_mask":
            check_attention_mask((), (), dtype, None if values is None or values.dtype.kind == "c"
                                 else first_bad_mask_value(values))
        elif not _is_integer_dtype(dtype):
            raise TypeError(f"position_ids must hold integer positions, found dtype {dtype}")

    def _check_inputs(self, tensors, arguments, eager, parameters, ids_dtype=None):
        """Shapes always (as far as they are known); id ranges and finite pixels when the values are concrete
        (eager), not while a caller's ``tf.function`` traces."""
        ids, pixels = tensors.get("input_ids"), tensors.get("pixel_values")
        if "input_ids" in parameters:
            self._check_text(ids, tensors.get("attention_mask"), tensors.get("position_ids"), eager, ids_dtype)
        if "pixel_values" in parameters:
            self._check_vision(pixels, bool(arguments.get("interpolate_pos_encoding")), eager)
        if ids is not None and pixels is not None and None not in (ids.shape[0], pixels.shape[0]):
            check_batch_sizes(ids.shape, pixels.shape, bool(arguments.get("return_loss")))
        labels = tensors.get("labels")
        if labels is not None and eager:
            num_labels = self.params["classifier.bias"].shape[0]
            values = labels.numpy()
            values = values[values != -100]  # ignored, as in PyTorch's cross-entropy
            if values.size and (values.min() < 0 or values.max() >= num_labels):
                raise ValueError(f"labels must lie in [0, {num_labels}) (or be -100), found values in "
                                 f"[{values.min()}, {values.max()}]")

    def _check_text(self, ids, attention_mask, position_ids, eager, dtype=None):
        if ids is None:
            raise ValueError("input_ids is required: you have to specify input_ids")
        if ids.shape.rank is None:
            raise ValueError("input_ids must have a known rank: (batch, sequence_length)")
        shape = [1 if d is None else d for d in ids.shape]  # unknown sizes (a caller's dynamic signature) pass
        check_text_inputs(self.text_config, shape, dtype=dtype)  # dtype and shape before looking at values
        if eager and ids.shape.num_elements():
            values = ids.numpy()
            check_text_inputs(self.text_config, shape, (int(values.min()), int(values.max())))
        for name, other in (("attention_mask", attention_mask), ("position_ids", position_ids)):
            if other is not None and (other.shape.rank != 2 or None not in (other.shape[1], ids.shape[1])
                                      and other.shape[1] != ids.shape[1]):
                raise ValueError(f"{name} must have shape (batch, sequence_length) matching input_ids "
                                 f"{tuple(ids.shape)}, found shape {tuple(other.shape)}")
        if eager and position_ids is not None and position_ids.shape.num_elements():
            low, high = int(tf.reduce_min(position_ids)), int(tf.reduce_max(position_ids))
            if low < 0 or high >= self.text_config.max_position_embeddings:
                raise ValueError(f"position_ids must lie in [0, {self.text_config.max_position_embeddings}), "
                                 f"found {low if low < 0 else high}")

    def _check_vision(self, pixels, interpolate, eager):
        if pixels is None:
            raise ValueError("pixel_values is required: you have to specify pixel_values")
        if pixels.shape.rank is None:
            raise ValueError("pixel_values must have a known rank: (batch, channels, height, width)")
        config = self.vision_config
        shape = list(pixels.shape)
        if len(shape) == 4:  # unknown sizes (a caller's dynamic signature) stand for the expected ones
            if interpolate and None in shape[2:]:
                raise ValueError("interpolate_pos_encoding=True needs pixel_values of a known height and width")
            fill = (1, config.num_channels, config.image_size, config.image_size)
            shape = [f if d is None else d for d, f in zip(shape, fill)]
        finite = None
        if eager and pixels.shape.num_elements():
            values = pixels.numpy()
            finite = bool(np.isfinite(values.min()) and np.isfinite(values.max()))
        check_vision_inputs(config, shape, interpolate, finite)

    def __call__(self, *args, **kwargs):
        """Run :meth:`call` (see there) with checked inputs, eagerly or XLA-compiled as :attr:`jit_compile` says."""
        return self._dispatch(self.call, args, kwargs)

    def serving_output(self, output):
        """``output`` as transformers' TF models prepare it for a SavedModel: ``hidden_states`` / ``attentions``
        dropped unless the config asks for them, tuples stacked into one tensor where their shapes allow (a new
        output; anything but a model output is returned as is)."""
        if not isinstance(output, ModelOutput):
            return output
        output = type(output)(**output)
        for key in list(output):
            flag = next((f"output_{k}" for k in ("hidden_states", "attentions") if key.endswith(k)), None)
            if flag is not None and not getattr(self.config, flag, False):
                output[key] = None
            elif isinstance(output[key], (tuple, list)):
                try:
                    output[key] = tf.convert_to_tensor(output[key])
                except (ValueError, tf.errors.InvalidArgumentError):
                    pass  # layers of different shapes stay a tuple
        return output

    def serving(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The SavedModel serving function: the model's top-level output tensors for a dict of inputs."""
        out = self.call(**inputs)
        return {key: value for key, value in out.items() if isinstance(value, tf.Tensor)}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.serving_inputs:  # a default signature for tf.saved_model.save(model, path), as in transformers
            signature = {name: tf.TensorSpec((None,) * (4 if name == "pixel_values" else 2), dtype, name=name)
                         for name, dtype in cls.serving_inputs.items()}
            cls.serving = tf.function(TFCLIPPreTrainedModel.serving, input_signature=[signature], autograph=False)


__all__ = ["TFCLIPPreTrainedModel"]
