"""transformers' embedding API on the TensorFlow models: ``get_input_embeddings`` (a Keras 2 layer over the model's
own variables, as transformers' TF towers are made of Keras layers), ``set_input_embeddings`` and
``resize_token_embeddings`` (the text tower's token table replaced wherever the model holds it, the compiled
functions dropped). A mixin of :class:`clip_tf.pretrained.TFCLIPPreTrainedModel`; PyTorch's model carries the same
methods in ``clip_pt/pretrained.py`` (transformers' Flax models have none).
"""

from __future__ import annotations

import inspect

import numpy as np
import tensorflow as tf


class _NoInputEmbeddings(NotImplementedError, AttributeError):
    """A model without one token table or patch embedding: the ``NotImplementedError`` transformers' PyTorch models
    raise, and the ``AttributeError`` its ``TFCLIPModel`` raises."""


_EMBEDDING_LAYERS: dict = {}


def _keras_embeddings(module):
    """A tower's embeddings module as a Keras 2 layer (``tf_keras``, what transformers' TF models are made of): its
    weights are the module's variables, calling it runs the module. The module itself without ``tf_keras``."""
    try:
        import tf_keras
    except ImportError:
        return module
    text = hasattr(module, "weight")
    if text not in _EMBEDDING_LAYERS:
        class Embeddings(tf_keras.layers.Layer):
            """A triclip tower's embeddings as a Keras 2 layer: the model's variables, the model's computation."""

            def __init__(self, module):
                super().__init__(name="embeddings", dtype=next(iter(module.params.values())).dtype.name)
                self.module, self.built = module, True  # tracked: the layer's weights are the module's

            if text:
                weight = property(lambda self: self.module.weight, doc="The token table (a model variable).")

                def call(self, input_ids=None, position_ids=None):
                    """Token plus position embeddings ``[batch, seq, hidden]``."""
                    return self.module(input_ids, position_ids)
            else:
                def call(self, pixel_values, interpolate_pos_encoding=False):
                    """Class token and patch embeddings plus positions (resized for another image size)."""
                    return self.module(pixel_values)

        Embeddings.__name__ = Embeddings.__qualname__ = "TFCLIPTextEmbeddings" if text else "TFCLIPVisionEmbeddings"
        _EMBEDDING_LAYERS[text] = Embeddings
    return _EMBEDDING_LAYERS[text](module)


class _EmbeddingsAPI:
    """The embedding methods of :class:`~clip_tf.pretrained.TFCLIPPreTrainedModel` (they use its ``params``,
    ``config``, tower configs, ``arch`` and compiled-function cache)."""

    def _embeddings(self):
        """The tower embeddings of a text or vision model; :class:`_NoInputEmbeddings` for the others."""
        if self.arch in ("text", "text_projection", "vision", "vision_projection"):
            return (self.vision_model if self.text_config is None else self.text_model).embeddings
        raise _NoInputEmbeddings(f"get_input_embeddings: {type(self).__name__} has two inputs (or none); use "
                                 "model.text_model.embeddings or model.vision_model.embeddings")

    def get_input_embeddings(self):
        """The tower's embeddings (text and vision models), as transformers' TF models return them: a Keras 2 layer
        (``tf_keras``, the module itself where it is not installed) holding the model's variables, with ``weight``
        the token table (text models); calling it embeds ``input_ids`` or ``pixel_values``. ``TFCLIPModel`` and
        ``TFCLIPForImageClassification`` have none (``NotImplementedError``, also an ``AttributeError``)."""
        module = self._embeddings()
        if self._compiled.embeddings is None:
            self._compiled.embeddings = _keras_embeddings(module)
        return self._compiled.embeddings

    def set_input_embeddings(self, value) -> None:
        """Replace the text tower's token table with ``value``, a ``[vocab_size, hidden_size]`` ``tf.Variable``
        (used as is when of the model's dtype), tensor or array, or a layer with such a ``weight``;
        ``config.vocab_size`` follows. Vision models: ``NotImplementedError`` (an ``AttributeError`` too, as in
        transformers: their patch embedding is a convolution)."""
        self._embeddings()  # the same errors
        if self.text_config is None:
            raise _NoInputEmbeddings(f"set_input_embeddings: {type(self).__name__} has no token table; its patch "
                                     "kernel is model.params['vision_model.embeddings.patch_embedding.weight']")
        name = "text_model.embeddings.token_embedding.weight"
        old = self.params[name]
        if not isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)) and hasattr(value, "weight"):
            value = value.weight
        shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
        if len(shape) != 2 or shape[0] in (0, None) or shape[1] != old.shape[1]:
            raise ValueError(f"set_input_embeddings needs a table of shape (vocab_size, {old.shape[1]}), got shape "
                             f"{shape}")
        if not (isinstance(value, tf.Variable) and value.dtype == old.dtype):
            value = tf.Variable(tf.cast(value, old.dtype), name=old.name.split(":")[0], trainable=old.trainable)
        self.text_config.vocab_size = int(shape[0])
        self._replace_variable(name, value)

    def resize_token_embeddings(self, new_num_tokens: int | None = None):
        """Resize the text tower's token table to ``new_num_tokens`` rows, as transformers' TF models do: the old
        rows kept, new rows drawn from a normal of std ``config.initializer_range`` truncated at two std
        (TensorFlow's global generator: ``tf.random.set_seed`` controls it), ``config.vocab_size`` follows; returns
        :meth:`get_input_embeddings`, or the table itself when the size is ``None`` or unchanged."""
        self._embeddings()
        if self.text_config is None:
            raise _NoInputEmbeddings(f"{type(self).__name__} has no token embeddings to resize")
        old = self.params["text_model.embeddings.token_embedding.weight"]
        if new_num_tokens is None or int(new_num_tokens) == old.shape[0]:
            return old
        size, (rows, dim) = int(new_num_tokens), old.shape
        if size <= 0:
            raise ValueError(f"new_num_tokens must be positive, got {new_num_tokens}")
        table = old[:size]
        if size > rows:
            new = tf.random.truncated_normal((size - rows, dim), stddev=self.text_config.initializer_range)
            table = tf.concat([table, tf.cast(new, old.dtype)], axis=0)
        self.set_input_embeddings(tf.Variable(table, name=old.name.split(":")[0], trainable=old.trainable))
        return self.get_input_embeddings()

    def _replace_variable(self, name: str, variable: tf.Variable) -> None:
        """``variable`` in place of parameter ``name`` wherever the model and its modules hold it; the parameter
        table follows the config, and the compiled functions (traced with the old variable) are dropped."""
        old = self.params[name]
        for params in [self.params] + [m.params for m in self.submodules if isinstance(getattr(m, "params", None),
                                                                                       dict)]:
            for key in [k for k, v in params.items() if v is old]:
                params[key] = variable
        self.table = self.param_table(self.config)
        self._compiled.clear()
        serving = inspect.getattr_static(type(self), "serving", None)  # its traces for this model hold the old one
        getattr(serving, "_descriptor_cache", {}).pop(self, None)
