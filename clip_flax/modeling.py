"""CLIP in JAX/Flax: the modules only; configs, weights and checkpoints come from :mod:`clip_core`.

The public classes keep transformers 4.x's Flax API (``FlaxCLIPModel`` and friends): parameters live outside the
modules (``model.params``, a nested dict laid out exactly as transformers' ``flax_model.msgpack``), every call takes
``params=``, and ``dtype`` is the computation dtype. A call validates concrete inputs, then runs one jitted apply
cached per model (recompiled only for new shapes or flags), so a plain call is fast and ``jax.jit`` over a function
taking ``params`` works too.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from clip_core.modeling_utils import (PretrainedMixin, bicubic_resize_matrix, check_batch_sizes, check_text_inputs,
                                      check_vision_inputs)
from clip_core.outputs import (BaseModelOutput, BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput,
                               CLIPVisionModelOutput, ImageClassifierOutput, ModelOutput)
from clip_core.weights import from_flax_tree, param_table, to_flax_tree, tower_configs



def _unflatten_output(cls, keys, values):
    out = cls()
    for key, value in zip(keys, values):  # kept even when JAX passes placeholders such as None
        OrderedDict.__setitem__(out, key, value)
    return out


for _cls in (ModelOutput, BaseModelOutput, BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput,
             CLIPVisionModelOutput, ImageClassifierOutput):  # outputs are pytrees: a jitted function may return them
    jax.tree_util.register_pytree_node(_cls, lambda out: (tuple(out.values()), tuple(out.keys())),
                                       functools.partial(_unflatten_output, _cls))


def activation(name: str):
    """The activation function called ``name`` in the config."""
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    if name == "gelu":
        return functools.partial(jax.nn.gelu, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return functools.partial(jax.nn.gelu, approximate=True)
    if name == "relu":
        return jax.nn.relu
    if name in ("silu", "swish"):
        return jax.nn.silu
    raise ValueError(f"unknown activation {name!r}")


def attention_bias(attention_mask, seq_len: int, causal: bool, dtype):
    """Additive attention bias ``[b, 1, q, k]``: 0 where a query may look, the dtype's minimum elsewhere."""
    allowed = jnp.tril(jnp.ones((seq_len, seq_len), bool))[None, None] if causal else None
    if attention_mask is not None:
        padding = (attention_mask > 0)[:, None, None, :]
        allowed = padding if allowed is None else allowed & padding
    if allowed is None:
        return None
    return jnp.where(allowed, 0.0, jnp.finfo(dtype).min).astype(dtype)


def pool_text(last_hidden_state, input_ids, eos_token_id: int):
    """Each row's state at its first ``eos_token_id`` (legacy ``eos_token_id == 2``: at ``argmax(input_ids)``)."""
    index = jnp.argmax(input_ids if eos_token_id == 2 else input_ids == eos_token_id, axis=-1)
    return jnp.take_along_axis(last_hidden_state, index[:, None, None], axis=1)[:, 0]


def interpolate_pos_encoding(position_embedding, grid_h: int, grid_w: int):
    """Position table ``[1 + n, d]`` for a ``grid_h x grid_w`` patch grid: the class row kept, the grid resized
    bicubically (as ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``)."""
    side = int(round((position_embedding.shape[0] - 1) ** 0.5))
    if (grid_h, grid_w) == (side, side):
        return position_embedding
    grid = position_embedding[1:].reshape(side, side, -1)
    m_h, m_w = bicubic_resize_matrix(side, grid_h), bicubic_resize_matrix(side, grid_w)
    patches = jnp.einsum("hi,ijd,wj->hwd", m_h, grid, m_w).reshape(grid_h * grid_w, -1)
    return jnp.concatenate([position_embedding[:1], patches.astype(position_embedding.dtype)], axis=0)


def normalize(x):
    """``x`` divided by its L2 norm over the last axis."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def contrastive_loss(logits_per_text):
    """CLIP's loss: the mean of the text->image and image->text cross-entropies, the i-th pairs being matches."""
    def cross_entropy(logits):
        return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=-1)))
    return (cross_entropy(logits_per_text) + cross_entropy(logits_per_text.T)) / 2


# ---------------------------------------------------------------------------------------------- internal modules
class CLIPAttention(nn.Module):
    """Multi-head self-attention; returns the output and the attention probabilities ``[b, heads, q, k]``."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states, bias, deterministic: bool = True):
        cfg = self.config
        batch, length, dim = hidden_states.shape
        heads = cfg.num_attention_heads
        head_dim = dim // heads
        dense = functools.partial(nn.Dense, dim, dtype=self.dtype)

        def split(x):
            return x.reshape(batch, length, heads, head_dim)

        q, k, v = (split(dense(name=f"{n}_proj")(hidden_states)) for n in "qkv")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * head_dim ** -0.5
        if bias is not None:
            scores = scores + bias
        probs = jax.nn.softmax(scores, axis=-1)
        dropped = nn.Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
        context = jnp.einsum("bhqk,bkhd->bqhd", dropped.astype(v.dtype), v).reshape(batch, length, dim)
        return dense(name="out_proj")(context), probs


class CLIPMLP(nn.Module):
    """The feed-forward block: ``fc2(act(fc1(x)))``."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states):
        cfg = self.config
        hidden_states = nn.Dense(cfg.intermediate_size, dtype=self.dtype, name="fc1")(hidden_states)
        hidden_states = activation(cfg.hidden_act)(hidden_states)
        return nn.Dense(cfg.hidden_size, dtype=self.dtype, name="fc2")(hidden_states)


class CLIPEncoderLayer(nn.Module):
    """A pre-LN transformer block; returns the new states and the attention probabilities."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states, bias, deterministic: bool = True):
        norm = functools.partial(nn.LayerNorm, epsilon=self.config.layer_norm_eps, dtype=self.dtype)
        attended, probs = CLIPAttention(self.config, self.dtype, name="self_attn")(
            norm(name="layer_norm1")(hidden_states), bias, deterministic)
        hidden_states = hidden_states + attended
        hidden_states = hidden_states + CLIPMLP(self.config, self.dtype, name="mlp")(
            norm(name="layer_norm2")(hidden_states))
        return hidden_states, probs


class CLIPEncoder(nn.Module):
    """The stack of encoder layers, shared by both towers; parameters under ``layers/<i>/`` as in transformers."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states, bias, deterministic: bool = True, output_attentions: bool = False,
                 output_hidden_states: bool = False):
        layers = self.scope.push("layers", reuse=True)  # transformers' tree: encoder/layers/0/...
        all_states, all_probs = (hidden_states,), ()
        for i in range(self.config.num_hidden_layers):
            layer = CLIPEncoderLayer(self.config, self.dtype, parent=layers.push(str(i), reuse=True))
            hidden_states, probs = layer(hidden_states, bias, deterministic)
            all_states, all_probs = all_states + (hidden_states,), all_probs + (probs,)
        return BaseModelOutput(last_hidden_state=hidden_states,
                               hidden_states=all_states if output_hidden_states else None,
                               attentions=all_probs if output_attentions else None)


class CLIPTextEmbeddings(nn.Module):
    """Token embeddings plus position embeddings."""

    config: Any

    @nn.compact
    def __call__(self, input_ids, position_ids):
        cfg = self.config
        tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="token_embedding")(input_ids)
        return tokens + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embedding")(position_ids)


class CLIPVisionEmbeddings(nn.Module):
    """Patch embeddings (a bias-free strided convolution on NCHW pixels), class token, position embeddings."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values, interpolate: bool = False):
        cfg = self.config
        dim, patch = cfg.hidden_size, cfg.patch_size
        patches = nn.Conv(dim, (patch, patch), strides=(patch, patch), padding="VALID", use_bias=False,
                          dtype=self.dtype, name="patch_embedding")(jnp.transpose(pixel_values, (0, 2, 3, 1)))
        batch, grid_h, grid_w, _ = patches.shape
        class_embedding = self.param("class_embedding", nn.initializers.zeros, (dim,))
        num_positions = cfg.num_patches + 1
        positions = nn.Embed(num_positions, dim, name="position_embedding")(jnp.arange(num_positions))
        if interpolate:
            positions = interpolate_pos_encoding(positions, grid_h, grid_w)
        class_tokens = jnp.broadcast_to(class_embedding, (batch, 1, dim))
        return jnp.concatenate([class_tokens, patches.reshape(batch, grid_h * grid_w, dim)], axis=1) + positions


class CLIPTextTransformer(nn.Module):
    """The text tower: embeddings, causal encoder, final layer norm, pooling at the end-of-text token."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, position_ids=None, deterministic: bool = True,
                 output_attentions: bool = False, output_hidden_states: bool = False):
        cfg = self.config
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = jnp.arange(seq_len)[None]
        hidden_states = CLIPTextEmbeddings(cfg, name="embeddings")(input_ids, position_ids)
        bias = attention_bias(attention_mask, seq_len, causal=True, dtype=jnp.float32)
        encoded = CLIPEncoder(cfg, self.dtype, name="encoder")(hidden_states, bias, deterministic, output_attentions,
                                                               output_hidden_states)
        last = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype,
                            name="final_layer_norm")(encoded.last_hidden_state)
        return BaseModelOutputWithPooling(last_hidden_state=last,
                                          pooler_output=pool_text(last, input_ids, cfg.eos_token_id),
                                          hidden_states=encoded.hidden_states, attentions=encoded.attentions)


class CLIPVisionTransformer(nn.Module):
    """The vision tower: embeddings, ``pre_layrnorm``, encoder, ``post_layernorm`` on the class token."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values, deterministic: bool = True, output_attentions: bool = False,
                 output_hidden_states: bool = False, interpolate_pos_encoding: bool = False):
        cfg = self.config
        norm = functools.partial(nn.LayerNorm, epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        hidden_states = CLIPVisionEmbeddings(cfg, self.dtype, name="embeddings")(pixel_values,
                                                                                interpolate_pos_encoding)
        hidden_states = norm(name="pre_layrnorm")(hidden_states)
        encoded = CLIPEncoder(cfg, self.dtype, name="encoder")(hidden_states, None, deterministic, output_attentions,
                                                               output_hidden_states)
        last = encoded.last_hidden_state
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=norm(name="post_layernorm")(last[:, 0]),
                                          hidden_states=encoded.hidden_states, attentions=encoded.attentions)


class CLIPModule(nn.Module):
    """The Flax module behind a public model: the towers and heads of its architecture, named as transformers names
    them (``text_model``, ``vision_model``, ``text_projection``, ``visual_projection``, ``logit_scale``,
    ``classifier``). The public class's ``_forward`` says how they combine."""

    config: Any
    arch: str
    dtype: Any = jnp.float32

    def setup(self):
        text, vision = tower_configs(self.config, self.arch)
        table = param_table(self.config, self.arch)  # sizes of the heads, as the checkpoints have them
        if text is not None:
            self.text_model = CLIPTextTransformer(text, self.dtype)
        if vision is not None:
            self.vision_model = CLIPVisionTransformer(vision, self.dtype)
        if "text_projection.weight" in table:
            self.text_projection = nn.Dense(table["text_projection.weight"].shape[0], use_bias=False, dtype=self.dtype)
        if "visual_projection.weight" in table:
            self.visual_projection = nn.Dense(table["visual_projection.weight"].shape[0], use_bias=False,
                                              dtype=self.dtype)
        if "logit_scale" in table:
            self.logit_scale = self.param("logit_scale", nn.initializers.zeros, ())
        if "classifier.weight" in table:
            self.classifier = nn.Dense(table["classifier.weight"].shape[0], dtype=self.dtype)

    def __call__(self, *args, **kwargs):
        raise TypeError("call the public model (or module.apply(..., method=Model._forward)), not CLIPModule")


# ---------------------------------------------------------------------------------------------- public models
def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _value_range(x):
    """``(min, max)`` of a concrete array (numpy or JAX), ``None`` while tracing."""
    if _is_traced(x):
        return None
    xp = jnp if isinstance(x, jax.Array) else np
    return int(xp.min(x)), int(xp.max(x))


def _to_tuple(output):
    return tuple(_to_tuple(v) if isinstance(v, ModelOutput) else v for v in output.to_tuple())


class FlaxCLIPPreTrainedModel(PretrainedMixin):
    """Base class: ``config``, ``module``, ``params`` (a nested dict kept outside the module), ``dtype`` (the
    computation dtype), loading and saving in every format, and the cached jitted apply behind every call."""

    arch = "clip"

    def __init__(self, config, input_shape=None, seed: int = 0, dtype=jnp.float32, _do_init: bool = True,
                 param_dtype=jnp.float32):
        """A model whose parameters are the seeded random init of ``clip_core`` (identical in every backend).

        ``input_shape`` is accepted for compatibility and ignored (shapes come from the config). With
        ``_do_init=False`` no parameters are made: pass ``params=`` to every call or set ``model.params``.
        """
        self.config = self.check_config(config)
        self.dtype = jnp.dtype(dtype)
        self.module = CLIPModule(self.config, self.arch, dtype=self.dtype)
        self._params = None
        self._num_traces = 0  # how many times the jitted apply was traced (tests check it stays put)
        self._jit_apply = jax.jit(self._apply, static_argnames=("method", "flags"))
        if _do_init:
            self.params = self._tree(self.random_state(self.config, seed), param_dtype)

    # ------------------------------------------------------------------ parameters
    @property
    def params(self):
        """The parameters: transformers' Flax tree (``text_model/encoder/layers/0/self_attn/q_proj/kernel`` ...)."""
        if self._params is None:
            raise ValueError("this model was made with _do_init=False: pass params= or set model.params")
        return self._params

    @params.setter
    def params(self, params):
        self._params = params

    def _tree(self, state, param_dtype=jnp.float32):
        tree = to_flax_tree(state, self.param_table(self.config))
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=param_dtype), tree)

    @classmethod
    def _from_state(cls, config, state, dtype=None, param_dtype=jnp.float32, _do_init: bool = True, **kwargs):
        """A model holding ``state``; ``dtype`` is the computation dtype, ``param_dtype`` the parameters' dtype.
        With ``_do_init=False`` returns ``(model, params)`` as transformers does."""
        for key in ("from_pt", "from_tf", "from_flax"):  # transformers' spellings; every format loads anyway
            kwargs.pop(key, None)
        if kwargs:
            raise TypeError(f"from_pretrained got unexpected arguments {sorted(kwargs)}")
        model = cls(config, dtype=jnp.float32 if dtype is None else dtype, _do_init=False)
        params = model._tree(state, param_dtype)
        if not _do_init:
            return model, params
        model.params = params
        return model

    def export_state(self, params=None) -> dict[str, np.ndarray]:
        """The parameters (``params`` or ``self.params``) as a canonical state: numpy, PyTorch names and layouts."""
        tree = jax.device_get(self.params if params is None else params)
        return from_flax_tree(tree, self.param_table(self.config))

    def save_pretrained(self, save_directory, format="safetensors", *, params=None, **kwargs) -> None:
        """Write ``config.json`` and the weights (see :meth:`PretrainedMixin.save_pretrained`); ``params=`` saves
        those parameters instead of ``self.params``, as in transformers."""
        if params is None:
            return super().save_pretrained(save_directory, format=format, **kwargs)
        own, self._params = self._params, params
        try:
            super().save_pretrained(save_directory, format=format, **kwargs)
        finally:
            self._params = own

    def _cast(self, params, dtype):
        return jax.tree_util.tree_map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            self.params if params is None else params)

    def to_bf16(self, params=None):
        """``params`` (default ``self.params``) cast to bfloat16 (returns a new tree)."""
        return self._cast(params, jnp.bfloat16)

    def to_fp16(self, params=None):
        """``params`` (default ``self.params``) cast to float16 (returns a new tree)."""
        return self._cast(params, jnp.float16)

    def to_fp32(self, params=None):
        """``params`` (default ``self.params``) cast to float32 (returns a new tree)."""
        return self._cast(params, jnp.float32)

    # ------------------------------------------------------------------ inputs and the jitted apply
    def _flag(self, value, name: str) -> bool:
        default = {"return_dict": True}.get(name, False)
        return bool(getattr(self.config, name, default) if value is None else value)

    def _text_inputs(self, config, input_ids, attention_mask, position_ids) -> dict:
        input_ids = input_ids if _is_traced(input_ids) or isinstance(input_ids, jax.Array) else np.asarray(input_ids)
        check_text_inputs(config, np.shape(input_ids), _value_range(input_ids))
        if attention_mask is not None and np.shape(attention_mask) != np.shape(input_ids):
            raise ValueError(f"attention_mask must have the shape of input_ids {np.shape(input_ids)}, "
                             f"found {np.shape(attention_mask)}")
        if position_ids is not None:
            if np.ndim(position_ids) != 2 or np.shape(position_ids)[1] != np.shape(input_ids)[1] or \
                    np.shape(position_ids)[0] not in (1, np.shape(input_ids)[0]):
                raise ValueError(f"position_ids must have shape (batch or 1, {np.shape(input_ids)[1]}), "
                                 f"found {np.shape(position_ids)}")
            span = _value_range(position_ids)
            if span is not None and (span[0] < 0 or span[1] >= config.max_position_embeddings):
                raise ValueError(f"position_ids must lie in [0, {config.max_position_embeddings}), "
                                 f"found values in [{span[0]}, {span[1]}]")
        as_ids = functools.partial(jnp.asarray, dtype=jnp.int32)
        return dict(input_ids=as_ids(input_ids),
                    attention_mask=None if attention_mask is None else as_ids(attention_mask),
                    position_ids=None if position_ids is None else as_ids(position_ids))

    def _vision_inputs(self, config, pixel_values, interpolate_pos_encoding) -> dict:
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        finite = None
        if not _is_traced(pixel_values):
            xp = jnp if isinstance(pixel_values, jax.Array) else np
            pixel_values = pixel_values if xp is jnp else np.asarray(pixel_values)
            finite = bool(xp.isfinite(pixel_values).all())
        check_vision_inputs(config, np.shape(pixel_values), bool(interpolate_pos_encoding), finite)
        return dict(pixel_values=jnp.asarray(pixel_values, dtype=jnp.float32))

    def _apply(self, params, inputs, dropout_rng, *, method, flags):
        self._num_traces += 1  # runs only while tracing
        rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
        return self.module.apply({"params": params}, **inputs, **dict(flags), method=method, rngs=rngs)

    def _run(self, method, inputs: dict, params, dropout_rng, train: bool, return_dict: bool = True, **flags):
        """Apply ``method`` (a ``_forward``-like function of the module) through the cached jitted apply."""
        flags = tuple(sorted({"deterministic": not train, **{k: bool(v) for k, v in flags.items()}}.items()))
        output = self._jit_apply(self.params if params is None else params, inputs, dropout_rng,
                                 method=method, flags=flags)
        return output if return_dict or not isinstance(output, ModelOutput) else _to_tuple(output)


class FlaxCLIPTextModel(FlaxCLIPPreTrainedModel):
    """The text tower: ``last_hidden_state`` and ``pooler_output`` (the end-of-text token's state)."""

    arch = "text"

    def __call__(self, input_ids, attention_mask=None, position_ids=None, params=None, dropout_rng=None,
                 train: bool = False, output_attentions=None, output_hidden_states=None, return_dict=None):
        """Encode token ids ``[batch, seq]`` (any length up to ``max_position_embeddings``)."""
        return self._run(type(self)._forward, self._text_inputs(self.config, input_ids, attention_mask, position_ids),
                         params, dropout_rng, train, self._flag(return_dict, "return_dict"),
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"))

    @staticmethod
    def _forward(module, input_ids, attention_mask, position_ids, deterministic, output_attentions,
                 output_hidden_states):
        return module.text_model(input_ids, attention_mask, position_ids, deterministic, output_attentions,
                                 output_hidden_states)


class FlaxCLIPTextModelWithProjection(FlaxCLIPTextModel):
    """The text tower and its projection: ``text_embeds`` (projected, not normalised)."""

    arch = "text_projection"

    @staticmethod
    def _forward(module, input_ids, attention_mask, position_ids, deterministic, output_attentions,
                 output_hidden_states):
        out = module.text_model(input_ids, attention_mask, position_ids, deterministic, output_attentions,
                                output_hidden_states)
        return CLIPTextModelOutput(text_embeds=module.text_projection(out.pooler_output),
                                   last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                                   attentions=out.attentions)


class FlaxCLIPVisionModel(FlaxCLIPPreTrainedModel):
    """The vision tower: ``last_hidden_state`` and ``pooler_output`` (the class token after ``post_layernorm``)."""

    arch = "vision"

    def __call__(self, pixel_values, params=None, dropout_rng=None, train: bool = False, output_attentions=None,
                 output_hidden_states=None, return_dict=None, interpolate_pos_encoding: bool = False):
        """Encode images ``[batch, channels, height, width]`` (NCHW, as in transformers)."""
        return self._run(type(self)._forward, self._vision_inputs(self.config, pixel_values, interpolate_pos_encoding),
                         params, dropout_rng, train, self._flag(return_dict, "return_dict"),
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"),
                         interpolate_pos_encoding=interpolate_pos_encoding)

    @staticmethod
    def _forward(module, pixel_values, deterministic, output_attentions, output_hidden_states,
                 interpolate_pos_encoding):
        return module.vision_model(pixel_values, deterministic, output_attentions, output_hidden_states,
                                   interpolate_pos_encoding)


class FlaxCLIPVisionModelWithProjection(FlaxCLIPVisionModel):
    """The vision tower and its projection: ``image_embeds`` (projected, not normalised)."""

    arch = "vision_projection"

    @staticmethod
    def _forward(module, pixel_values, deterministic, output_attentions, output_hidden_states,
                 interpolate_pos_encoding):
        out = module.vision_model(pixel_values, deterministic, output_attentions, output_hidden_states,
                                  interpolate_pos_encoding)
        return CLIPVisionModelOutput(image_embeds=module.visual_projection(out.pooler_output),
                                     last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


class FlaxCLIPModel(FlaxCLIPPreTrainedModel):
    """CLIP: both towers, their projections into a shared space, and the scaled cosine-similarity logits."""

    arch = "clip"

    def __call__(self, input_ids, pixel_values, attention_mask=None, position_ids=None, params=None,
                 dropout_rng=None, train: bool = False, output_attentions=None, output_hidden_states=None,
                 return_dict=None, return_loss=None, interpolate_pos_encoding: bool = False):
        """Similarity logits of every text with every image, the normalised embeddings and both towers' outputs;
        ``return_loss=True`` adds the contrastive loss (text ``i`` matches image ``i``)."""
        inputs = {**self._text_inputs(self.config.text_config, input_ids, attention_mask, position_ids),
                  **self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding)}
        check_batch_sizes(np.shape(input_ids), np.shape(pixel_values), bool(return_loss))
        return self._run(type(self)._forward, inputs, params, dropout_rng, train, self._flag(return_dict, "return_dict"),
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"),
                         return_loss=bool(return_loss), interpolate_pos_encoding=interpolate_pos_encoding)

    @staticmethod
    def _forward(module, input_ids, attention_mask, position_ids, pixel_values, deterministic, output_attentions,
                 output_hidden_states, return_loss, interpolate_pos_encoding):
        text_outputs = module.text_model(input_ids, attention_mask, position_ids, deterministic, output_attentions,
                                         output_hidden_states)
        vision_outputs = module.vision_model(pixel_values, deterministic, output_attentions, output_hidden_states,
                                             interpolate_pos_encoding)
        text_embeds = normalize(module.text_projection(text_outputs.pooler_output).astype(jnp.float32))
        image_embeds = normalize(module.visual_projection(vision_outputs.pooler_output).astype(jnp.float32))
        logits_per_text = jnp.exp(module.logit_scale.astype(jnp.float32)) * text_embeds @ image_embeds.T
        return CLIPOutput(loss=contrastive_loss(logits_per_text) if return_loss else None,
                          logits_per_image=logits_per_text.T, logits_per_text=logits_per_text,
                          text_embeds=text_embeds, image_embeds=image_embeds,
                          text_model_output=text_outputs, vision_model_output=vision_outputs)

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None, params=None, dropout_rng=None,
                          train: bool = False):
        """The projected, unnormalised text features ``[batch, projection_dim]``."""
        return self._run(type(self)._text_features,
                         self._text_inputs(self.config.text_config, input_ids, attention_mask, position_ids),
                         params, dropout_rng, train)

    def get_image_features(self, pixel_values, params=None, dropout_rng=None, train: bool = False,
                           interpolate_pos_encoding: bool = False):
        """The projected, unnormalised image features ``[batch, projection_dim]``."""
        return self._run(type(self)._image_features,
                         self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding),
                         params, dropout_rng, train, interpolate_pos_encoding=interpolate_pos_encoding)

    @staticmethod
    def _text_features(module, input_ids, attention_mask, position_ids, deterministic):
        pooled = module.text_model(input_ids, attention_mask, position_ids, deterministic).pooler_output
        return module.text_projection(pooled)

    @staticmethod
    def _image_features(module, pixel_values, deterministic, interpolate_pos_encoding):
        pooled = module.vision_model(pixel_values, deterministic,
                                     interpolate_pos_encoding=interpolate_pos_encoding).pooler_output
        return module.visual_projection(pooled)


class FlaxCLIPForImageClassification(FlaxCLIPPreTrainedModel):
    """The vision tower with a linear classifier on the mean of the patch tokens; cross-entropy loss with
    ``labels``."""

    arch = "image_classification"

    def __call__(self, pixel_values, labels=None, params=None, dropout_rng=None, train: bool = False,
                 output_attentions=None, output_hidden_states=None, return_dict=None,
                 interpolate_pos_encoding: bool = False):
        """Class logits ``[batch, num_labels]`` for images ``[batch, channels, height, width]``."""
        inputs = self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding)
        if labels is not None:
            if np.shape(labels) != np.shape(pixel_values)[:1]:
                raise ValueError(f"labels must have shape ({np.shape(pixel_values)[0]},), found {np.shape(labels)}")
            inputs["labels"] = jnp.asarray(labels, dtype=jnp.int32)
        return self._run(type(self)._forward, inputs, params, dropout_rng, train, self._flag(return_dict, "return_dict"),
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"),
                         interpolate_pos_encoding=interpolate_pos_encoding)

    @staticmethod
    def _forward(module, pixel_values, deterministic, output_attentions, output_hidden_states,
                 interpolate_pos_encoding, labels=None):
        out = module.vision_model(pixel_values, deterministic, output_attentions, output_hidden_states,
                                  interpolate_pos_encoding)
        logits = module.classifier(jnp.mean(out.last_hidden_state[:, 1:], axis=1))
        loss = None
        if labels is not None:
            log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
            loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


__all__ = [
    "FlaxCLIPPreTrainedModel", "FlaxCLIPTextModel", "FlaxCLIPTextModelWithProjection", "FlaxCLIPVisionModel",
    "FlaxCLIPVisionModelWithProjection", "FlaxCLIPModel", "FlaxCLIPForImageClassification",
    "activation", "attention_bias", "pool_text", "interpolate_pos_encoding", "normalize", "contrastive_loss",
]
