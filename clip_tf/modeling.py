"""CLIP in TensorFlow: ``tf.Module`` and ``tf.Variable`` only (no Keras), compiled with XLA by default.

The models hold one ``tf.Variable`` per canonical parameter (:mod:`clip_core.weights`), in TensorFlow layouts (Dense
kernels ``[in, out]``, the patch convolution HWIO, ``logit_scale`` of shape ``(1,)``), created by iterating the
parameter table. Calling a model checks its inputs eagerly, then runs an XLA-compiled function cached per input shape
and flag combination (``model.jit_compile = False`` runs eagerly instead). Inside a caller's ``tf.function`` the model
traces into the caller's graph. The API is transformers 4.57's ``TFCLIPModel`` and friends. The variables, dtypes,
the state in and out of the variables and the dispatch of calls are in :mod:`clip_tf.pretrained`.
"""

from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from clip_core.modeling_utils import bicubic_resize_matrix, run_layers, trimmed_text_length
from clip_core.outputs import (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput,
                               ImageClassifierOutput)
from clip_tf.pretrained import TFCLIPPreTrainedModel, _TrainableModule


# ---------------------------------------------------------------------------------------------- functions
def activation(name: str):
    """The activation function called ``name`` in a config's ``hidden_act``."""
    if name == "quick_gelu":
        return lambda x: x * tf.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: tf.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: tf.nn.gelu(x, approximate=True)
    if name == "relu":
        return tf.nn.relu
    if name in ("silu", "swish"):
        return tf.nn.silu
    raise ValueError(f"unknown activation {name!r}")


def attention_bias(attention_mask, seq_len, causal: bool, dtype=tf.float32):
    """Additive attention bias ``[batch, 1, query, key]``: 0 where attending is allowed, the dtype's minimum elsewhere.

    Combines the causal mask (``causal=True``) with the padding mask (``attention_mask``, 1 = token, 0 = padding);
    ``None`` when there is neither.
    """
    allowed = None
    if causal:
        positions = tf.range(seq_len)
        allowed = (positions[:, None] >= positions[None, :])[None, None]
    if attention_mask is not None:
        # expand_dims, not [:, None, None, :]: LiteRT has no strided slice adding axes to a boolean tensor
        padding = tf.expand_dims(tf.expand_dims(tf.cast(attention_mask, tf.bool), 1), 1)
        allowed = padding if allowed is None else tf.logical_and(allowed, padding)
    if allowed is None:
        return None
    return tf.where(allowed, tf.zeros((), dtype), tf.constant(dtype.min, dtype))


def pool_index(input_ids, eos_token_id: int):
    """Each row's pooled position: its first ``eos_token_id`` (legacy ``eos_token_id == 2``: ``argmax(input_ids)``)."""
    if eos_token_id == 2:
        return tf.argmax(input_ids, axis=-1, output_type=tf.int32)
    return tf.argmax(tf.cast(tf.equal(input_ids, eos_token_id), tf.int32), axis=-1, output_type=tf.int32)


def pool_text(last_hidden_state, input_ids, eos_token_id: int):
    """Each row's state at its pooled position (:func:`pool_index`)."""
    return take_rows(last_hidden_state, pool_index(input_ids, eos_token_id))[:, 0]


def take_rows(x, index, axis: int = 1):
    """``x`` at position ``index[b]`` of ``axis`` in each batch row ``b``, that axis kept (of size 1); ``x`` may
    have a batch of 1 (an attention bias shared by the batch)."""
    if x.shape[0] == 1:
        x = tf.broadcast_to(x, tf.concat([tf.shape(index)[:1], tf.shape(x)[1:]], axis=0))
    return tf.gather(x, index[:, None], axis=axis, batch_dims=1)


def trim_text(input_ids, attention_mask, position_ids, eos_token_id: int):
    """The (eager) text inputs without the columns after the batch's last pooled position, which cannot change a
    pooled state: the causal mask keeps every token from attending to later ones. The kept length is rounded up to a
    power of two (at least 8, at most the given length), so the compiled functions see few lengths. Unchanged when
    a row's pooled token sees no unmasked token (its attention would then spread over every position)."""
    length = trimmed_text_length(input_ids, attention_mask, eos_token_id)
    if length == input_ids.shape[1]:
        return input_ids, attention_mask, position_ids
    return tuple(None if x is None else x[:, :length] for x in (input_ids, attention_mask, position_ids))


def interpolate_pos_encoding(position_embedding, grid_h: int, grid_w: int):
    """Position table for a ``grid_h x grid_w`` patch grid: the class row kept, the patch grid resized bicubically."""
    num_positions, dim = position_embedding.shape[0] - 1, position_embedding.shape[1]
    side = int(round(num_positions ** 0.5))
    grid = tf.reshape(tf.cast(position_embedding[1:], tf.float32), (side, side, dim))
    m_h = tf.constant(bicubic_resize_matrix(side, grid_h))
    m_w = tf.constant(bicubic_resize_matrix(side, grid_w))
    grid = tf.einsum("hi,ijd,wj->hwd", m_h, grid, m_w)
    grid = tf.cast(tf.reshape(grid, (grid_h * grid_w, dim)), position_embedding.dtype)
    return tf.concat([position_embedding[:1], grid], axis=0)


def normalize(x):
    """L2-normalise over the last axis (computed in float32)."""
    x32 = tf.cast(x, tf.float32)
    return tf.cast(x32 / tf.norm(x32, axis=-1, keepdims=True), x.dtype)


def contrastive_loss(logits_per_text):
    """CLIP's loss: the mean of the text->image and image->text cross-entropies with labels ``arange(n)``."""
    logits = tf.cast(logits_per_text, tf.float32)
    labels = tf.range(tf.shape(logits)[0])
    text_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    image_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits))
    return (tf.reduce_mean(text_loss) + tf.reduce_mean(image_loss)) / 2.0


# TensorFlow has no Dense / LayerNorm without Keras: these two read a module's variables by their canonical names.
def _dense(x, params, name):
    weight = params[f"{name}.weight"]
    if x.shape.rank == 2:
        y = tf.matmul(x, weight)
    else:  # one 2-D matmul over the flattened leading axes: eager TensorFlow's batched matmul is slower
        y = tf.reshape(tf.matmul(tf.reshape(x, (-1, x.shape[-1])), weight),
                       tf.concat([tf.shape(x)[:-1], tf.shape(weight)[-1:]], axis=0))
    return y + params[f"{name}.bias"] if f"{name}.bias" in params else y


def _layer_norm(x, params, name, eps):
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
    y = (x32 - mean) * tf.math.rsqrt(variance + eps)
    y = y * tf.cast(params[f"{name}.weight"], tf.float32) + tf.cast(params[f"{name}.bias"], tf.float32)
    return tf.cast(y, x.dtype)


def _scope(params: Mapping[str, tf.Variable], prefix: str) -> dict[str, tf.Variable]:
    """The variables below ``prefix``, keyed by their names relative to it."""
    start = len(prefix) + 1
    return {name[start:]: var for name, var in params.items() if name.startswith(prefix + ".")}


# ---------------------------------------------------------------------------------------------- internal modules
class CLIPAttention(_TrainableModule):
    """Multi-head self-attention, scaled by ``head_dim ** -0.5``; softmax in float32."""

    def __init__(self, config, params, prefix):
        super().__init__(name="self_attn")
        self.params = _scope(params, prefix)
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.dropout = config.attention_dropout

    def __call__(self, hidden_states, bias=None, output_attentions=False, training=False, queries=None):
        """Every token attends to every token; with ``queries`` (``[batch, q, d]``) only those attend."""
        batch = tf.shape(hidden_states)[0]

        def heads(x, name):  # [batch, heads, tokens, head_dim]
            return tf.transpose(tf.reshape(_dense(x, self.params, name), (batch, -1, self.num_heads, self.head_dim)),
                                (0, 2, 1, 3))

        query = heads(hidden_states if queries is None else queries, "q_proj")
        key, value = heads(hidden_states, "k_proj"), heads(hidden_states, "v_proj")
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32) * self.head_dim ** -0.5
        if bias is not None:
            scores = scores + bias
        probs = tf.nn.softmax(scores, axis=-1)
        dropped = tf.nn.dropout(probs, self.dropout) if training and self.dropout > 0 else probs
        out = tf.transpose(tf.matmul(tf.cast(dropped, value.dtype), value), (0, 2, 1, 3))
        out = tf.reshape(out, (batch, -1, self.num_heads * self.head_dim))
        return _dense(out, self.params, "out_proj"), (probs if output_attentions else None)


class CLIPMLP(_TrainableModule):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, config, params, prefix):
        super().__init__(name="mlp")
        self.params = _scope(params, prefix)
        self.act = activation(config.hidden_act)

    def __call__(self, hidden_states):
        return _dense(self.act(_dense(hidden_states, self.params, "fc1")), self.params, "fc2")


class CLIPEncoderLayer(_TrainableModule):
    """A pre-LN transformer block: ``h += attn(ln1(h)); h += mlp(ln2(h))``."""

    def __init__(self, config, params, prefix):
        super().__init__(name="layer")
        self.params = _scope(params, prefix)
        self.eps = config.layer_norm_eps
        self.self_attn = CLIPAttention(config, params, f"{prefix}.self_attn")
        self.mlp = CLIPMLP(config, params, f"{prefix}.mlp")

    def __call__(self, hidden_states, bias=None, output_attentions=False, training=False, rows=None):
        """With ``rows`` (one position per batch row) only those rows' outputs are computed: ``[batch, 1, d]``."""
        normed, queries = _layer_norm(hidden_states, self.params, "layer_norm1", self.eps), None
        if rows is not None:  # the wanted rows still attend to every token
            hidden_states, queries = take_rows(hidden_states, rows), take_rows(normed, rows)
            bias = None if bias is None else take_rows(bias, rows, axis=2)
        attn, probs = self.self_attn(normed, bias, output_attentions, training, queries)
        hidden_states = hidden_states + attn
        hidden_states = hidden_states + self.mlp(_layer_norm(hidden_states, self.params, "layer_norm2", self.eps))
        return hidden_states, probs


class CLIPEncoder(_TrainableModule):
    """The stack of blocks; collects every layer's input/output states and attention maps on request."""

    def __init__(self, config, params, prefix):
        super().__init__(name="encoder")
        self.layers = [CLIPEncoderLayer(config, params, f"{prefix}.layers.{i}")
                       for i in range(config.num_hidden_layers)]
        self.gradient_checkpointing = False  # set by TFCLIPPreTrainedModel.gradient_checkpointing_enable

    def __call__(self, hidden_states, bias=None, output_attentions=False, output_hidden_states=False,
                 training=False, rows=None):
        """Return ``(last_hidden_state, hidden_states or None, attentions or None)``; with ``rows`` the last layer
        computes only those rows (one per batch row), so ``last_hidden_state`` is ``[batch, 1, d]``."""
        def layer_call(i, h, r):
            if self.gradient_checkpointing:
                return _recomputed(self.layers[i], h, bias, output_attentions, training, r)
            return self.layers[i](h, bias, output_attentions, training, r)
        return run_layers(len(self.layers), layer_call, hidden_states, output_hidden_states, output_attentions, rows)


def _recomputed(layer, hidden_states, bias, output_attentions, training, rows):
    """``layer(...)`` under ``tf.recompute_grad``: its activations are recomputed for the gradient instead of kept
    (the bias and the rows are constants of the gradient; dropout, off in CLIP, would draw new masks)."""
    def run(h):
        out, probs = layer(h, bias, output_attentions, training, rows)
        return (out, probs) if output_attentions else out

    out = tf.recompute_grad(run)(hidden_states)
    return tuple(out) if output_attentions else (out, None)


class CLIPTextEmbeddings(_TrainableModule):
    """Token embeddings plus position embeddings (``position_ids`` default to ``0..seq_len-1``)."""

    def __init__(self, config, params, prefix):
        super().__init__(name="embeddings")
        self.params = _scope(params, prefix)

    @property
    def weight(self) -> tf.Variable:
        """The token table ``[vocab_size, hidden_size]`` (transformers' ``TFCLIPTextEmbeddings.weight``)."""
        return self.params["token_embedding.weight"]

    def __call__(self, input_ids, position_ids=None):
        tokens = tf.gather(self.params["token_embedding.weight"], input_ids)
        table = self.params["position_embedding.weight"]
        if position_ids is None:
            positions = table[None, :tf.shape(input_ids)[1]]
        else:
            positions = tf.gather(table, position_ids)
        return tokens + positions


class CLIPVisionEmbeddings(_TrainableModule):
    """Bias-free patch convolution, class token prepended, position embeddings (resized for other grid sizes)."""

    def __init__(self, config, params, prefix):
        super().__init__(name="embeddings")
        self.params = _scope(params, prefix)
        self.patch_size = config.patch_size
        self.grid = config.image_size // config.patch_size

    def __call__(self, pixel_values):
        kernel = self.params["patch_embedding.weight"]
        height, width = pixel_values.shape[2], pixel_values.shape[3]
        grid_h = self.grid if height is None else height // self.patch_size
        grid_w = self.grid if width is None else width // self.patch_size
        # NCHW -> NHWC: TensorFlow's CPU convolution is channels-last; VALID floors like PyTorch
        pixels = tf.transpose(tf.cast(pixel_values, kernel.dtype), (0, 2, 3, 1))
        patches = tf.nn.conv2d(pixels, kernel, strides=self.patch_size, padding="VALID")
        batch, dim = tf.shape(patches)[0], kernel.shape[-1]
        patches = tf.reshape(patches, (batch, grid_h * grid_w, dim))
        class_token = tf.broadcast_to(self.params["class_embedding"], (batch, 1, dim))
        positions = self.params["position_embedding.weight"]
        if (grid_h, grid_w) != (self.grid, self.grid):
            positions = interpolate_pos_encoding(positions, grid_h, grid_w)
        return tf.concat([class_token, patches], axis=1) + positions[None]


class CLIPTextTransformer(_TrainableModule):
    """Text tower: embeddings, causal encoder, ``final_layer_norm``, pooled at the end-of-text token."""

    def __init__(self, config, params, prefix="text_model"):
        super().__init__(name="text_model")
        self.config = config
        self.params = _scope(params, prefix)
        self.embeddings = CLIPTextEmbeddings(config, params, f"{prefix}.embeddings")
        self.encoder = CLIPEncoder(config, params, f"{prefix}.encoder")

    def __call__(self, input_ids, attention_mask=None, position_ids=None, output_attentions=False,
                 output_hidden_states=False, training=False, pooled_only=False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the pooled
        rows alone."""
        hidden_states = self.embeddings(input_ids, position_ids)
        bias = attention_bias(attention_mask, tf.shape(input_ids)[1], causal=True)
        index = pool_index(input_ids, self.config.eos_token_id)
        last, states, attentions = self.encoder(hidden_states, bias, output_attentions, output_hidden_states,
                                                training, index if pooled_only else None)
        last = _layer_norm(last, self.params, "final_layer_norm", self.config.layer_norm_eps)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=last[:, 0])
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=take_rows(last, index)[:, 0],
                                          hidden_states=states, attentions=attentions)


class CLIPVisionTransformer(_TrainableModule):
    """Vision tower: patch embeddings, ``pre_layrnorm``, encoder, ``post_layernorm`` on the class token."""

    def __init__(self, config, params, prefix="vision_model"):
        super().__init__(name="vision_model")
        self.config = config
        self.params = _scope(params, prefix)
        self.embeddings = CLIPVisionEmbeddings(config, params, f"{prefix}.embeddings")
        self.encoder = CLIPEncoder(config, params, f"{prefix}.encoder")

    def __call__(self, pixel_values, output_attentions=False, output_hidden_states=False, training=False,
                 pooled_only=False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the class
        token alone."""
        eps = self.config.layer_norm_eps
        hidden_states = _layer_norm(self.embeddings(pixel_values), self.params, "pre_layrnorm", eps)
        rows = tf.zeros(tf.shape(hidden_states)[:1], tf.int32) if pooled_only else None
        last, states, attentions = self.encoder(hidden_states, None, output_attentions, output_hidden_states,
                                                training, rows)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=_layer_norm(last[:, 0], self.params, "post_layernorm", eps))
        return BaseModelOutputWithPooling(last_hidden_state=last,
                                          pooler_output=_layer_norm(last[:, 0], self.params, "post_layernorm", eps),
                                          hidden_states=states, attentions=attentions)


# ---------------------------------------------------------------------------------------------- public models
class TFCLIPTextModel(TFCLIPPreTrainedModel):
    """The text tower alone (``CLIPTextConfig``): ``last_hidden_state`` and the pooled end-of-text state."""

    arch = "text"
    serving_inputs = {"input_ids": tf.int32, "attention_mask": tf.int32}

    def _build(self):
        self.text_model = CLIPTextTransformer(self.config, self.params)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        """Encode ``input_ids`` ``[batch, seq]``; returns :class:`BaseModelOutputWithPooling`."""
        return self.text_model(input_ids, attention_mask, position_ids, bool(output_attentions),
                               bool(output_hidden_states), training)


class TFCLIPTextModelWithProjection(TFCLIPPreTrainedModel):
    """The text tower and ``text_projection``: ``text_embeds`` (unnormalised) and the tower's states."""

    arch = "text_projection"
    serving_inputs = {"input_ids": tf.int32, "attention_mask": tf.int32}

    def _build(self):
        self.text_model = CLIPTextTransformer(self.config, self.params)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
             output_hidden_states=None, return_dict=None, training=False):
        """Encode ``input_ids``; returns :class:`CLIPTextModelOutput`."""
        out = self.text_model(input_ids, attention_mask, position_ids, bool(output_attentions),
                              bool(output_hidden_states), training)
        return CLIPTextModelOutput(text_embeds=_dense(out.pooler_output, self.params, "text_projection"),
                                   last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                                   attentions=out.attentions)


class TFCLIPVisionModel(TFCLIPPreTrainedModel):
    """The vision tower alone (``CLIPVisionConfig``): ``last_hidden_state`` and the post-layernormed class token."""

    arch = "vision"
    main_input_name = "pixel_values"
    serving_inputs = {"pixel_values": tf.float32}

    def _build(self):
        self.vision_model = CLIPVisionTransformer(self.config, self.params)

    def call(self, pixel_values=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False, interpolate_pos_encoding=False):
        """Encode NCHW ``pixel_values``; returns :class:`BaseModelOutputWithPooling`."""
        return self.vision_model(pixel_values, bool(output_attentions), bool(output_hidden_states), training)


class TFCLIPVisionModelWithProjection(TFCLIPPreTrainedModel):
    """The vision tower and ``visual_projection``: ``image_embeds`` (unnormalised) and the tower's states."""

    arch = "vision_projection"
    main_input_name = "pixel_values"
    serving_inputs = {"pixel_values": tf.float32}

    def _build(self):
        self.vision_model = CLIPVisionTransformer(self.config, self.params)

    def call(self, pixel_values=None, output_attentions=None, output_hidden_states=None, return_dict=None,
             training=False, interpolate_pos_encoding=False):
        """Encode NCHW ``pixel_values``; returns :class:`CLIPVisionModelOutput`."""
        out = self.vision_model(pixel_values, bool(output_attentions), bool(output_hidden_states), training)
        return CLIPVisionModelOutput(image_embeds=_dense(out.pooler_output, self.params, "visual_projection"),
                                     last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


class TFCLIPModel(TFCLIPPreTrainedModel):
    """CLIP: two towers, two projections, and cosine-similarity logits scaled by ``exp(logit_scale)``."""

    arch = "clip"
    serving_inputs = {"input_ids": tf.int32, "attention_mask": tf.int32, "pixel_values": tf.float32}

    def _build(self):
        self.text_model = CLIPTextTransformer(self.config.text_config, self.params)
        self.vision_model = CLIPVisionTransformer(self.config.vision_config, self.params)

    def get_text_features(self, *args, **kwargs):
        """Projected, unnormalised text features ``[batch, projection_dim]`` (arguments as :meth:`call`'s text
        arguments: ``input_ids, attention_mask, position_ids, ...``)."""
        return self._dispatch(self._text_features, args, kwargs, trim=trim_text)

    def get_image_features(self, *args, **kwargs):
        """Projected, unnormalised image features ``[batch, projection_dim]`` (arguments: ``pixel_values, ...,
        interpolate_pos_encoding``)."""
        return self._dispatch(self._image_features, args, kwargs)

    def _text_features(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
                       output_hidden_states=None, return_dict=None, training=False):
        out = self.text_model(input_ids, attention_mask, position_ids, training=training, pooled_only=True)
        return _dense(out.pooler_output, self.params, "text_projection")

    def _image_features(self, pixel_values=None, output_attentions=None, output_hidden_states=None,
                        return_dict=None, training=False, interpolate_pos_encoding=False):
        out = self.vision_model(pixel_values, training=training, pooled_only=True)
        return _dense(out.pooler_output, self.params, "visual_projection")

    def call(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, return_loss=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False,
             interpolate_pos_encoding=False):
        """Encode texts and images; returns :class:`CLIPOutput` (``loss`` of shape (1,) when ``return_loss``)."""
        vision_outputs = self.vision_model(pixel_values, bool(output_attentions), bool(output_hidden_states),
                                           training)
        text_outputs = self.text_model(input_ids, attention_mask, position_ids, bool(output_attentions),
                                       bool(output_hidden_states), training)
        image_embeds = normalize(_dense(vision_outputs.pooler_output, self.params, "visual_projection"))
        text_embeds = normalize(_dense(text_outputs.pooler_output, self.params, "text_projection"))
        logits_per_text = tf.matmul(text_embeds, image_embeds, transpose_b=True) * tf.exp(self.params["logit_scale"])
        logits_per_image = tf.transpose(logits_per_text)
        loss = tf.reshape(contrastive_loss(logits_per_text), (1,)) if return_loss else None
        return CLIPOutput(loss=loss, logits_per_image=logits_per_image, logits_per_text=logits_per_text,
                          text_embeds=text_embeds, image_embeds=image_embeds, text_model_output=text_outputs,
                          vision_model_output=vision_outputs)

    def serving_output(self, output):
        """``output`` unchanged, as transformers' ``TFCLIPModel.serving_output`` returns it (its nested tower outputs
        keep their tuples)."""
        return output


class TFCLIPForImageClassification(TFCLIPPreTrainedModel):
    """The vision tower with a linear classifier on the mean of the patch tokens' final states."""

    arch = "image_classification"
    main_input_name = "pixel_values"
    serving_inputs = {"pixel_values": tf.float32}

    def _build(self):
        self.vision_model = CLIPVisionTransformer(self.config.vision_config, self.params)

    def call(self, pixel_values=None, labels=None, output_attentions=None, output_hidden_states=None,
             return_dict=None, training=False, interpolate_pos_encoding=False):
        """Class logits ``[batch, num_labels]``; with integer ``labels`` also the cross-entropy ``loss`` of shape
        (1,) (label -100 is ignored)."""
        out = self.vision_model(pixel_values, bool(output_attentions), bool(output_hidden_states), training)
        logits = _dense(tf.reduce_mean(out.last_hidden_state[:, 1:], axis=1), self.params, "classifier")
        loss = None
        if labels is not None:  # cross-entropy over the labels that are not -100
            labels = tf.reshape(labels, (-1,))
            keep = tf.cast(tf.not_equal(labels, -100), tf.float32)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(labels, 0), tf.cast(logits, tf.float32))
            loss = tf.reshape(tf.reduce_sum(losses * keep) / tf.reduce_sum(keep), (1,))
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                     attentions=out.attentions)


__all__ = [
    "TFCLIPPreTrainedModel", "TFCLIPTextModel", "TFCLIPTextModelWithProjection", "TFCLIPVisionModel",
    "TFCLIPVisionModelWithProjection", "TFCLIPModel", "TFCLIPForImageClassification",
]
