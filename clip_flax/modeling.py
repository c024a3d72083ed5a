"""CLIP in JAX/Flax: the modules and the public models. Configs, weights and checkpoints come from :mod:`clip_core`;
the parameters, dtypes, the state in and out of the parameter tree and the jitted apply from
:mod:`clip_flax.pretrained`.

The public classes keep transformers 4.x's Flax API (``FlaxCLIPModel`` and friends): parameters live outside the
modules (``model.params``, a nested dict laid out exactly as transformers' ``flax_model.msgpack``), every call takes
``params=``, and ``dtype`` is the computation dtype. A call validates concrete inputs, then runs one jitted apply
cached per model (recompiled only for new shapes or flags), so a plain call is fast and ``jax.jit`` over a function
taking ``params`` works too.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from clip_core.modeling_utils import (bicubic_resize_matrix, check_batch_sizes, check_class_labels, label_span,
                                      run_layers, trimmed_text_length)
from clip_core.outputs import (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput,
                               ImageClassifierOutput)
from clip_core.weights import param_table
from clip_flax.pretrained import FlaxCLIPPreTrainedModel, _traced


# ---------------------------------------------------------------------------------------------- functions
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


def pool_index(input_ids, eos_token_id: int):
    """Each row's pooled position: its first ``eos_token_id`` (legacy ``eos_token_id == 2``: ``argmax(input_ids)``)."""
    return jnp.argmax(input_ids if eos_token_id == 2 else input_ids == eos_token_id, axis=-1)


def pool_text(last_hidden_state, input_ids, eos_token_id: int):
    """Each row's state at its pooled position (:func:`pool_index`)."""
    return take_rows(last_hidden_state, pool_index(input_ids, eos_token_id))[:, 0]


def take_rows(x, index, axis: int = 1):
    """``x`` at position ``index[b]`` of ``axis`` in each batch row ``b``, that axis kept (of size 1); ``x`` may
    have a batch of 1 (an attention bias shared by the batch)."""
    return jnp.take_along_axis(x, index.reshape(-1, *(1,) * (x.ndim - 1)), axis=axis)


def trim_text(input_ids, attention_mask, position_ids, eos_token_id: int):
    """The (concrete) text inputs without the columns after the batch's last pooled position, which cannot change a
    pooled state: the causal mask keeps every token from attending to later ones. The kept length is rounded up to a
    power of two (at least 8, at most the given length), so the jitted apply sees few lengths. Unchanged when a
    row's pooled token sees no unmasked token (its attention would then spread over every position)."""
    length = trimmed_text_length(input_ids, attention_mask, eos_token_id)
    if length == input_ids.shape[1]:
        return input_ids, attention_mask, position_ids
    return tuple(None if x is None else x[:, :length] for x in (input_ids, attention_mask, position_ids))


def interpolate_pos_encoding(position_embedding, grid_h: int, grid_w: int):
    """Position table ``[1 + n, d]`` for a ``grid_h x grid_w`` patch grid: the class row kept, the grid resized
    bicubically (as ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``)."""
    side = int(round((position_embedding.shape[0] - 1) ** 0.5))
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
class _Dense(nn.Dense):
    """``nn.Dense`` with the same parameters; when the computation dtype is narrower than the weights', the CPU
    multiplies in the weights' dtype instead of rounding the weights to the computation dtype first. XLA:CPU has no
    bfloat16 matrix product: it converts both operands back to float32, so rounding the weights only costs a pass
    over every weight per call, and since each conversion depends on the parameters alone XLA hoists them all to
    the start of the call and holds the converted copies at once (145 MB of fresh memory for a ViT-B/32 text tower,
    335 MB for the vision tower, page-faulted on every call). Activations stay in the computation dtype; the
    product's result is rounded to it. Other platforms (native bfloat16 products) cast the weights as ``nn.Dense``."""

    @nn.compact
    def __call__(self, inputs):
        kernel = self.param("kernel", self.kernel_init, (inputs.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        dtype = jnp.dtype(self.dtype or kernel.dtype)

        def product(x, w, b, wide=False):  # wide: multiply in the weights' dtype, round the result
            x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=w.dtype if wide else dtype)
            out = jax.lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())), precision=self.precision)
            return (out if b is None else out + b).astype(dtype)

        if jnp.finfo(dtype).bits >= jnp.finfo(kernel.dtype).bits:
            return product(inputs, kernel, bias)
        return jax.lax.platform_dependent(inputs, kernel, bias, cpu=functools.partial(product, wide=True),
                                          default=product)


class CLIPAttention(nn.Module):
    """Multi-head self-attention with q/k/v/out projections; returns the output and the probabilities."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states, bias=None, deterministic: bool = True, queries=None):
        """Every token attends to every token; with ``queries`` (``[batch, q, d]``) only those attend."""
        cfg = self.config
        b, n, d = hidden_states.shape
        heads = cfg.num_attention_heads
        head_dim = d // heads

        def project(x, name):
            return _Dense(d, dtype=self.dtype, name=name)(x).reshape(b, -1, heads, head_dim)

        q = project(hidden_states if queries is None else queries, "q_proj")
        k, v = project(hidden_states, "k_proj"), project(hidden_states, "v_proj")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * head_dim ** -0.5
        if bias is not None:
            scores = scores + bias
        probs = jax.nn.softmax(scores, axis=-1)
        dropped = nn.Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
        out = jnp.einsum("bhqk,bkhd->bqhd", dropped.astype(v.dtype), v).reshape(b, -1, d)
        return _Dense(d, dtype=self.dtype, name="out_proj")(out), probs


class CLIPMLP(nn.Module):
    """The feed-forward block: fc1, activation, fc2."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states):
        cfg = self.config
        hidden_states = activation(cfg.hidden_act)(_Dense(cfg.intermediate_size, dtype=self.dtype,
                                                           name="fc1")(hidden_states))
        return _Dense(cfg.hidden_size, dtype=self.dtype, name="fc2")(hidden_states)


class CLIPEncoderLayer(nn.Module):
    """A pre-LN transformer block: ``h += attn(ln1(h)); h += mlp(ln2(h))``."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, hidden_states, bias=None, deterministic: bool = True, rows=None):
        """With ``rows`` (one position per batch row) only those rows' outputs are computed: ``[batch, 1, d]``."""
        norm = functools.partial(nn.LayerNorm, epsilon=self.config.layer_norm_eps, dtype=self.dtype)
        normed, queries = norm(name="layer_norm1")(hidden_states), None
        if rows is not None:  # the wanted rows still attend to every token
            hidden_states, queries = take_rows(hidden_states, rows), take_rows(normed, rows)
            bias = None if bias is None else take_rows(bias, rows, axis=2)
        attn, probs = CLIPAttention(self.config, self.dtype, name="self_attn")(normed, bias, deterministic, queries)
        hidden_states = hidden_states + attn
        hidden_states = hidden_states + CLIPMLP(self.config, self.dtype, name="mlp")(
            norm(name="layer_norm2")(hidden_states))
        return hidden_states, probs


# the layer recomputed in the backward pass (gradient checkpointing); ``deterministic`` (argument 3) is static
_RematEncoderLayer = nn.remat(CLIPEncoderLayer, static_argnums=(3,))


def _recomputed(fn):
    """``fn(params, hidden_states, *rest)`` keeping only its inputs for the gradient and recomputing the rest in
    the backward pass: ``jax.checkpoint`` done by hand. XLA:CPU drops ``jax.checkpoint``'s optimisation barriers
    before its common-subexpression pass, which then merges the recomputation back into the forward pass (the
    activations stay alive: no memory saved). Here the recomputed input is tied to the incoming cotangent, by a term
    that is always zero but not known to be, so the recomputation can neither be merged nor hoisted."""
    @jax.custom_vjp
    def run(params, hidden_states, *rest):
        return fn(params, hidden_states, *rest)

    def forward(params, hidden_states, *rest):
        return fn(params, hidden_states, *rest), (params, hidden_states, rest)

    def backward(saved, cotangent):
        params, hidden_states, rest = saved
        first = jax.tree_util.tree_leaves(cotangent)[0].ravel()[0]
        zero = jnp.where(jnp.isfinite(first), first, 0) * 0
        _, pullback = jax.vjp(fn, params, hidden_states + zero.astype(hidden_states.dtype), *rest)
        return pullback(cotangent)

    run.defvjp(forward, backward)
    return run


class CLIPEncoder(nn.Module):
    """A stack of encoder layers; serves both towers. Parameters under ``layers/<i>/``, as in transformers.
    With ``gradient_checkpointing`` each layer keeps only its input for the gradient and is recomputed in the
    backward pass (:func:`_recomputed`; ``nn.remat`` with dropout in training, whose random draws it replays)."""

    config: Any
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    @nn.compact
    def __call__(self, hidden_states, bias=None, output_attentions=False, output_hidden_states=False,
                 deterministic: bool = True, rows=None):
        """Return ``(last_hidden_state, hidden_states or None, attentions or None)``; with ``rows`` the last layer
        computes only those rows (one per batch row), so ``last_hidden_state`` is ``[batch, 1, d]``."""
        layers = self.scope.push("layers", reuse=True)  # a ModuleList's place in the tree: encoder/layers/0/...

        def layer_call(i, h, r):
            scope = layers.push(str(i), reuse=True)
            if not self.gradient_checkpointing:
                return CLIPEncoderLayer(self.config, self.dtype, parent=scope)(h, bias, deterministic, r)
            if self.is_initializing() or not deterministic and self.config.attention_dropout > 0:
                return _RematEncoderLayer(self.config, self.dtype, parent=scope)(h, bias, deterministic, r)
            params = CLIPEncoderLayer(self.config, self.dtype, parent=scope).variables["params"]

            def pure(p, h, bias, r):
                return CLIPEncoderLayer(self.config, self.dtype).apply({"params": p}, h, bias, deterministic, r)
            return _recomputed(pure)(params, h, bias, r)
        return run_layers(self.config.num_hidden_layers, layer_call, hidden_states, output_hidden_states,
                          output_attentions, rows)


class CLIPTextEmbeddings(nn.Module):
    """Token embeddings plus learned position embeddings."""

    config: Any

    @nn.compact
    def __call__(self, input_ids, position_ids=None):
        cfg = self.config
        if position_ids is None:
            position_ids = jnp.arange(input_ids.shape[1])[None]
        return (nn.Embed(cfg.vocab_size, cfg.hidden_size, name="token_embedding")(input_ids)
                + nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embedding")(position_ids))


def _patch_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                feature_group_count=1, precision=None):
    """``lax.conv_general_dilated`` for the patch convolution (NHWC, HWIO, kernel = stride, VALID, undilated) as one
    matrix product over the flattened patches: on XLA:CPU about twice as fast as its convolution, and closer to a
    float64 reference."""
    batch, height, width, channels = lhs.shape
    kh, kw, _, features = rhs.shape
    gh, gw = height // kh, width // kw  # VALID: a partial patch at the edge is dropped
    patches = lhs[:, :gh * kh, :gw * kw].reshape(batch, gh, kh, gw, kw, channels).transpose(0, 1, 3, 2, 4, 5)
    return jnp.dot(patches.reshape(batch, gh, gw, kh * kw * channels), rhs.reshape(kh * kw * channels, features),
                   precision=precision)


class CLIPVisionEmbeddings(nn.Module):
    """Bias-free patch convolution, a class token in front, learned position embeddings."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values):
        cfg = self.config
        d, p = cfg.hidden_size, cfg.patch_size
        grid = cfg.image_size // p
        class_embedding = self.param("class_embedding", nn.initializers.zeros, (d,))
        patches = nn.Conv(d, (p, p), strides=(p, p), padding="VALID", use_bias=False, dtype=self.dtype,
                          conv_general_dilated=_patch_conv,
                          name="patch_embedding")(jnp.transpose(pixel_values, (0, 2, 3, 1)))  # [b, gh, gw, d]
        b, grid_h, grid_w, _ = patches.shape
        patches = patches.reshape(b, grid_h * grid_w, d)
        cls = jnp.broadcast_to(class_embedding, (b, 1, d))
        positions = nn.Embed(grid ** 2 + 1, d, name="position_embedding").embedding
        if (grid_h, grid_w) != (grid, grid):
            positions = interpolate_pos_encoding(positions, grid_h, grid_w)
        return jnp.concatenate([cls, patches], axis=1) + positions


class CLIPTextTransformer(nn.Module):
    """The text tower: embeddings, causal encoder, final layer norm, pooled at the end-of-text token."""

    config: Any
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, position_ids=None, output_attentions=False,
                 output_hidden_states=False, deterministic: bool = True, pooled_only: bool = False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the pooled
        rows alone."""
        cfg = self.config
        hidden_states = CLIPTextEmbeddings(cfg, name="embeddings")(input_ids, position_ids)
        bias = attention_bias(attention_mask, input_ids.shape[1], True, jnp.float32)
        index = pool_index(input_ids, cfg.eos_token_id)
        last, states, attentions = CLIPEncoder(cfg, self.dtype, self.gradient_checkpointing, name="encoder")(
            hidden_states, bias, output_attentions, output_hidden_states, deterministic, index if pooled_only else None)
        last = nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name="final_layer_norm")(last)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=last[:, 0])
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=take_rows(last, index)[:, 0],
                                          hidden_states=states, attentions=attentions)


class CLIPVisionTransformer(nn.Module):
    """The vision tower: patch embeddings, pre-LN, encoder; the class token, post-LN, is the pooled output."""

    config: Any
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    @nn.compact
    def __call__(self, pixel_values, output_attentions=False, output_hidden_states=False,
                 deterministic: bool = True, pooled_only: bool = False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the class
        token alone."""
        cfg = self.config
        norm = functools.partial(nn.LayerNorm, epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        hidden_states = CLIPVisionEmbeddings(cfg, self.dtype, name="embeddings")(pixel_values)
        hidden_states = norm(name="pre_layrnorm")(hidden_states)
        rows = jnp.zeros(hidden_states.shape[:1], jnp.int32) if pooled_only else None
        last, states, attentions = CLIPEncoder(cfg, self.dtype, self.gradient_checkpointing, name="encoder")(
            hidden_states, None, output_attentions, output_hidden_states, deterministic, rows)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=norm(name="post_layernorm")(last[:, 0]))
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=norm(name="post_layernorm")(last[:, 0]),
                                          hidden_states=states, attentions=attentions)


# ---------------------------------------------------------------------------------------------- public models
class FlaxCLIPTextModel(FlaxCLIPPreTrainedModel):
    """The text tower alone; ``pooler_output`` is the state at the end-of-text token."""

    arch = "text"

    @staticmethod
    def _build(module):
        module.text_model = CLIPTextTransformer(module.config, module.dtype, module.gradient_checkpointing)

    def __call__(self, input_ids, attention_mask=None, position_ids=None, params=None, dropout_rng=None,
                 train: bool = False, output_attentions=None, output_hidden_states=None, return_dict=None):
        """Encode ``input_ids`` ``[batch, seq]``; returns :class:`BaseModelOutputWithPooling` (or a tuple)."""
        return self._run(self._forward, self._text_inputs(self.config, input_ids, attention_mask, position_ids),
                         params, dropout_rng, train, return_dict,
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"))

    @staticmethod
    def _forward(module, input_ids, attention_mask, position_ids, output_attentions, output_hidden_states,
                 deterministic):
        return module.text_model(input_ids, attention_mask, position_ids, output_attentions, output_hidden_states,
                                 deterministic)


class FlaxCLIPTextModelWithProjection(FlaxCLIPPreTrainedModel):
    """The text tower and its projection; ``text_embeds`` are projected, not normalised."""

    arch = "text_projection"

    @staticmethod
    def _build(module):
        module.text_model = CLIPTextTransformer(module.config, module.dtype, module.gradient_checkpointing)
        module.text_projection = _Dense(module.config.projection_dim, use_bias=False, dtype=module.dtype)

    __call__ = FlaxCLIPTextModel.__call__

    @staticmethod
    def _forward(module, input_ids, attention_mask, position_ids, output_attentions, output_hidden_states,
                 deterministic):
        text = module.text_model(input_ids, attention_mask, position_ids, output_attentions, output_hidden_states,
                                 deterministic)
        return CLIPTextModelOutput(text_embeds=module.text_projection(text.pooler_output),
                                   last_hidden_state=text.last_hidden_state, hidden_states=text.hidden_states,
                                   attentions=text.attentions)


class FlaxCLIPVisionModel(FlaxCLIPPreTrainedModel):
    """The vision tower alone; ``pooler_output`` is the post-layer-normed class token."""

    arch = "vision"
    main_input_name = "pixel_values"

    @staticmethod
    def _build(module):
        module.vision_model = CLIPVisionTransformer(module.config, module.dtype, module.gradient_checkpointing)

    def __call__(self, pixel_values, params=None, dropout_rng=None, train: bool = False, output_attentions=None,
                 output_hidden_states=None, return_dict=None, interpolate_pos_encoding: bool = False):
        """Encode NCHW ``pixel_values``; returns :class:`BaseModelOutputWithPooling` (or a tuple)."""
        return self._run(self._forward, self._vision_inputs(self.config, pixel_values, interpolate_pos_encoding),
                         params, dropout_rng, train, return_dict,
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"))

    @staticmethod
    def _forward(module, pixel_values, output_attentions, output_hidden_states, deterministic):
        return module.vision_model(pixel_values, output_attentions, output_hidden_states, deterministic)


class FlaxCLIPVisionModelWithProjection(FlaxCLIPPreTrainedModel):
    """The vision tower and its projection; ``image_embeds`` are projected, not normalised."""

    arch = "vision_projection"
    main_input_name = "pixel_values"

    @staticmethod
    def _build(module):
        module.vision_model = CLIPVisionTransformer(module.config, module.dtype, module.gradient_checkpointing)
        module.visual_projection = _Dense(module.config.projection_dim, use_bias=False, dtype=module.dtype)

    __call__ = FlaxCLIPVisionModel.__call__

    @staticmethod
    def _forward(module, pixel_values, output_attentions, output_hidden_states, deterministic):
        vision = module.vision_model(pixel_values, output_attentions, output_hidden_states, deterministic)
        return CLIPVisionModelOutput(image_embeds=module.visual_projection(vision.pooler_output),
                                     last_hidden_state=vision.last_hidden_state, hidden_states=vision.hidden_states,
                                     attentions=vision.attentions)


class FlaxCLIPModel(FlaxCLIPPreTrainedModel):
    """The contrastive model: two towers, two projections and a learned temperature."""

    arch = "clip"

    @staticmethod
    def _build(module):
        text, vision = module.config.text_config, module.config.vision_config
        module.text_model = CLIPTextTransformer(text, module.dtype, module.gradient_checkpointing)
        module.vision_model = CLIPVisionTransformer(vision, module.dtype, module.gradient_checkpointing)
        module.visual_projection = _Dense(module.config.projection_dim, use_bias=False, dtype=module.dtype)
        module.text_projection = _Dense(module.config.projection_dim, use_bias=False, dtype=module.dtype)
        module.logit_scale = module.param("logit_scale", nn.initializers.zeros, ())

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None, params=None, dropout_rng=None,
                          train: bool = False):
        """Projected, unnormalised text features ``[batch, projection_dim]``."""
        config = self.config.text_config
        inputs = self._text_inputs(config, input_ids, attention_mask, position_ids)
        if not any(_traced(x) for x in (input_ids, attention_mask, position_ids)):  # values known: cut what can't count
            cut = trim_text(inputs["input_ids"], inputs["attention_mask"], inputs["position_ids"], config.eos_token_id)
            inputs = dict(zip(("input_ids", "attention_mask", "position_ids"), cut))
        return self._run(self._text_features, inputs, params, dropout_rng, train)

    def get_image_features(self, pixel_values, params=None, dropout_rng=None, train: bool = False,
                           interpolate_pos_encoding: bool = False):
        """Projected, unnormalised image features ``[batch, projection_dim]``."""
        return self._run(self._image_features,
                         self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding),
                         params, dropout_rng, train)

    @staticmethod
    def _text_features(module, input_ids, attention_mask, position_ids, deterministic):
        pooled = module.text_model(input_ids, attention_mask, position_ids, deterministic=deterministic,
                                   pooled_only=True).pooler_output
        return module.text_projection(pooled)

    @staticmethod
    def _image_features(module, pixel_values, deterministic):
        pooled = module.vision_model(pixel_values, deterministic=deterministic, pooled_only=True).pooler_output
        return module.visual_projection(pooled)

    def __call__(self, input_ids, pixel_values, attention_mask=None, position_ids=None, params=None,
                 dropout_rng=None, train: bool = False, output_attentions=None, output_hidden_states=None,
                 return_dict=None, return_loss=None, interpolate_pos_encoding: bool = False):
        """Similarity logits between every text and every image; returns :class:`CLIPOutput` (or a tuple)."""
        inputs = {**self._text_inputs(self.config.text_config, input_ids, attention_mask, position_ids),
                  **self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding)}
        check_batch_sizes(np.shape(input_ids), np.shape(pixel_values), bool(return_loss))
        return self._run(self._forward, inputs, params, dropout_rng, train, return_dict,
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"),
                         return_loss=bool(return_loss))

    @staticmethod
    def _forward(module, input_ids, pixel_values, attention_mask, position_ids, return_loss, output_attentions,
                 output_hidden_states, deterministic):
        vision = module.vision_model(pixel_values, output_attentions, output_hidden_states, deterministic)
        text = module.text_model(input_ids, attention_mask, position_ids, output_attentions, output_hidden_states,
                                 deterministic)
        image_embeds = normalize(module.visual_projection(vision.pooler_output).astype(jnp.float32))
        text_embeds = normalize(module.text_projection(text.pooler_output).astype(jnp.float32))
        logits_per_text = jnp.exp(module.logit_scale.astype(jnp.float32)) * text_embeds @ image_embeds.T
        return CLIPOutput(loss=contrastive_loss(logits_per_text) if return_loss else None,
                          logits_per_image=logits_per_text.T, logits_per_text=logits_per_text,
                          text_embeds=text_embeds.astype(module.dtype),  # the model's dtype, as transformers
                          image_embeds=image_embeds.astype(module.dtype),
                          text_model_output=text, vision_model_output=vision)


class FlaxCLIPForImageClassification(FlaxCLIPPreTrainedModel):
    """The vision tower with a linear classifier on the mean of the patch tokens' final states.

    The number of classes is ``len(config.id2label)`` or ``config.num_labels`` (default 2), as in transformers.
    """

    arch = "image_classification"
    main_input_name = "pixel_values"

    @staticmethod
    def _build(module):
        num_labels = param_table(module.config, "image_classification")["classifier.weight"].shape[0]
        module.vision_model = CLIPVisionTransformer(module.config.vision_config, module.dtype, module.gradient_checkpointing)
        module.classifier = _Dense(num_labels, dtype=module.dtype)

    def __call__(self, pixel_values, labels=None, params=None, dropout_rng=None, train: bool = False,
                 output_attentions=None, output_hidden_states=None, return_dict=None,
                 interpolate_pos_encoding: bool = False):
        """Class logits ``[batch, num_labels]``; with integer ``labels`` also the cross-entropy loss
        (label -100 is ignored). Returns :class:`ImageClassifierOutput` (or a tuple)."""
        inputs = self._vision_inputs(self.config.vision_config, pixel_values, interpolate_pos_encoding)
        if labels is not None:
            labels = labels if hasattr(labels, "dtype") else np.asarray(labels)
            integer = jnp.issubdtype(labels.dtype, jnp.integer)
            check_class_labels(param_table(self.config, self.arch)["classifier.bias"].shape[0], np.shape(labels),
                               np.shape(pixel_values)[0], labels.dtype,
                               label_span(labels) if integer and not _traced(labels) else None)
            inputs["labels"] = jnp.asarray(labels, dtype=jnp.int32)
        return self._run(self._forward, inputs, params, dropout_rng, train, return_dict,
                         output_attentions=self._flag(output_attentions, "output_attentions"),
                         output_hidden_states=self._flag(output_hidden_states, "output_hidden_states"))

    @staticmethod
    def _forward(module, pixel_values, output_attentions, output_hidden_states, deterministic, labels=None):
        vision = module.vision_model(pixel_values, output_attentions, output_hidden_states, deterministic)
        logits = module.classifier(jnp.mean(vision.last_hidden_state[:, 1:], axis=1))
        loss = None
        if labels is not None:
            valid = labels != -100
            log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
            picked = jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[:, None], axis=-1)[:, 0]
            loss = -jnp.sum(jnp.where(valid, picked, 0.0)) / jnp.sum(valid)
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=vision.hidden_states,
                                     attentions=vision.attentions)


# ---------------------------------------------------------------------------------------------- transformers' modules
class _ModelModule(nn.Module):
    """A public model's Flax module under transformers' name (``FlaxCLIPTextModule``...; ``model.module`` and the
    model class's ``module_class``): the model's towers and heads (its ``_build``, so ``model.params`` is its tree),
    called with the arguments of transformers' module (pixels NHWC, ``deterministic``, the output flags,
    ``return_dict``) and running the model's ``_forward``. The models' own calls run the same two through a cached
    jitted apply."""

    config: Any
    dtype: Any = jnp.float32
    gradient_checkpointing: bool = False

    model_class = None  # the public model class whose ``_build`` and ``_forward`` this module runs

    def setup(self):
        self.model_class._build(self)

    def _output(self, out, return_dict):
        """``out``, or its tuples (all the way down) when ``return_dict`` is false (``None``: the config's)."""
        return out if (getattr(self.config, "return_dict", True) if return_dict is None else return_dict) \
            else out.to_tuple()


def _nchw(pixel_values):
    """NHWC pixels (what transformers' modules take) as the NCHW ones the towers take."""
    return jnp.transpose(pixel_values, (0, 3, 1, 2))


class FlaxCLIPTextModule(_ModelModule):
    """transformers' module of :class:`FlaxCLIPTextModel`."""

    model_class = FlaxCLIPTextModel

    def __call__(self, input_ids, attention_mask=None, position_ids=None, deterministic: bool = True,
                 output_attentions: bool = False, output_hidden_states: bool = False, return_dict: bool = True):
        return self._output(self.model_class._forward(self, input_ids, attention_mask, position_ids,
                                                      bool(output_attentions), bool(output_hidden_states),
                                                      deterministic), return_dict)


class FlaxCLIPTextModelWithProjectionModule(FlaxCLIPTextModule):
    """transformers' module of :class:`FlaxCLIPTextModelWithProjection`."""

    model_class = FlaxCLIPTextModelWithProjection


class FlaxCLIPVisionModule(_ModelModule):
    """transformers' module of :class:`FlaxCLIPVisionModel` (``pixel_values`` NHWC, as transformers' takes them)."""

    model_class = FlaxCLIPVisionModel

    def __call__(self, pixel_values, deterministic: bool = True, output_attentions: bool = False,
                 output_hidden_states: bool = False, return_dict: bool = True):
        return self._output(self.model_class._forward(self, _nchw(pixel_values), bool(output_attentions),
                                                      bool(output_hidden_states), deterministic), return_dict)


class FlaxCLIPVisionModelWithProjectionModule(FlaxCLIPVisionModule):
    """The module of :class:`FlaxCLIPVisionModelWithProjection` (``pixel_values`` NHWC)."""

    model_class = FlaxCLIPVisionModelWithProjection


class FlaxCLIPModule(_ModelModule):
    """transformers' module of :class:`FlaxCLIPModel` (``pixel_values`` NHWC, as transformers' takes them)."""

    model_class = FlaxCLIPModel

    def __call__(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None,
                 deterministic: bool = True, output_attentions=None, output_hidden_states=None, return_dict=None):
        return self._output(self.model_class._forward(
            self, input_ids, _nchw(pixel_values), attention_mask, position_ids, False, bool(output_attentions),
            bool(output_hidden_states), deterministic), return_dict)


class FlaxCLIPForImageClassificationModule(_ModelModule):
    """The module of :class:`FlaxCLIPForImageClassification` (``pixel_values`` NHWC; integer ``labels`` give the
    loss)."""

    model_class = FlaxCLIPForImageClassification

    def __call__(self, pixel_values, labels=None, deterministic: bool = True, output_attentions: bool = False,
                 output_hidden_states: bool = False, return_dict: bool = True):
        return self._output(self.model_class._forward(self, _nchw(pixel_values), bool(output_attentions),
                                                      bool(output_hidden_states), deterministic, labels), return_dict)


for _module in (FlaxCLIPTextModule, FlaxCLIPTextModelWithProjectionModule, FlaxCLIPVisionModule,
                FlaxCLIPVisionModelWithProjectionModule, FlaxCLIPModule, FlaxCLIPForImageClassificationModule):
    _module.model_class.module_class = _module  # transformers' class attribute: the model's module class


__all__ = ["FlaxCLIPPreTrainedModel", "FlaxCLIPTextModel", "FlaxCLIPTextModelWithProjection", "FlaxCLIPVisionModel",
           "FlaxCLIPVisionModelWithProjection", "FlaxCLIPModel", "FlaxCLIPForImageClassification",
           "FlaxCLIPTextModule", "FlaxCLIPTextModelWithProjectionModule", "FlaxCLIPVisionModule",
           "FlaxCLIPVisionModelWithProjectionModule", "FlaxCLIPModule", "FlaxCLIPForImageClassificationModule"]
