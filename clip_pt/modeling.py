"""CLIP in PyTorch: the two towers, the contrastive head and the image classifier.

Submodule and parameter names are transformers' own, so ``model.state_dict()`` is keyed by the canonical names of
:mod:`clip_core.weights` and loading or exporting a state is a dtype-preserving ``numpy <-> torch`` view. Everything
that is not tensor math comes from elsewhere: configs, checkpoint formats, input checks and initialisation from
:mod:`clip_core`, construction, dtypes and the state in and out of the parameters from :mod:`clip_pt.pretrained`.
Attention runs through ``torch.nn.functional.scaled_dot_product_attention``; the explicit softmax formula is used
only when ``output_attentions=True`` asks for the probabilities.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clip_core.modeling_utils import (bicubic_resize_matrix, check_attention_mask, check_batch_sizes,
                                      check_class_labels, check_position_ids, check_text_inputs, check_vision_inputs,
                                      label_span, run_layers)
from clip_core.outputs import (BaseModelOutputWithPooling, CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput,
                               ImageClassifierOutput)
from clip_pt.pretrained import CLIPPreTrainedModel


# ---------------------------------------------------------------------------------------------- functions
def activation(name: str):
    """The activation function called ``name`` in a CLIP config."""
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: F.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ValueError(f"unknown activation {name!r}")


def attention_bias(attention_mask, seq_len: int, causal: bool, dtype, device=None):
    """Additive attention bias ``[batch, 1, query, key]``: 0 where attending is allowed, the dtype's minimum where
    the causal mask or the padding mask (``attention_mask == 0``) forbids it; ``None`` when there is neither."""
    if attention_mask is None and not causal:
        return None
    device = attention_mask.device if attention_mask is not None else device
    allowed = torch.ones(1, 1, seq_len, seq_len, dtype=torch.bool, device=device)
    if causal:
        allowed = torch.tril(allowed)
    if attention_mask is not None:
        allowed = allowed & (attention_mask[:, None, None, :] != 0)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def pool_index(input_ids, eos_token_id: int):
    """Each row's pooled position: its first ``eos_token_id`` (or ``argmax(input_ids)`` for the legacy id 2)."""
    ids = input_ids.to(torch.int32)
    return ids.argmax(dim=-1) if eos_token_id == 2 else (ids == eos_token_id).to(torch.int32).argmax(dim=-1)


def pool_text(last_hidden_state, input_ids, eos_token_id: int):
    """Each row's state at its pooled position (:func:`pool_index`)."""
    return take_rows(last_hidden_state, pool_index(input_ids, eos_token_id))[:, 0]


def take_rows(x, index, dim: int = 1):
    """``x`` at position ``index[b]`` of axis ``dim`` in each batch row ``b``, that axis kept (of size 1); ``x`` may
    have a batch of 1 (an attention bias shared by the batch). A ``gather`` over explicitly expanded shapes, so
    ``torch.export`` keeps the batch and length symbolic (``take_along_dim``'s broadcasting specialised both)."""
    x = x.expand(index.shape[0], *x.shape[1:])
    shape = (*x.shape[:dim], 1, *x.shape[dim + 1:])
    return torch.gather(x, dim, index.reshape(-1, *(1,) * (x.dim() - 1)).expand(shape))


def trim_text(input_ids, attention_mask, position_ids, eos_token_id: int):
    """The text inputs without the columns after the batch's last pooled position, which cannot change a pooled
    state: the causal mask keeps every token from attending to later ones. Unchanged when a row's pooled token sees
    no unmasked token (its attention would then spread over every position, the cut ones too)."""
    index = pool_index(input_ids, eos_token_id)
    length = int(index.max()) + 1
    if length == input_ids.shape[1]:
        return input_ids, attention_mask, position_ids
    if attention_mask is not None:
        seen = (attention_mask[:, :length] != 0) & (torch.arange(length, device=index.device) <= index[:, None])
        if not bool(seen.any(dim=1).all()):
            return input_ids, attention_mask, position_ids
    return tuple(None if x is None else x[:, :length] for x in (input_ids, attention_mask, position_ids))


def interpolate_pos_encoding(position_embedding, grid_h: int, grid_w: int):
    """Position table ``[1 + g*g, d]`` -> ``[1 + grid_h*grid_w, d]``: the class row kept, the patch grid resized
    bicubically (PyTorch's ``align_corners=False``) as ``M_h @ grid @ M_w.T``."""
    side = math.isqrt(position_embedding.shape[0] - 1)
    grid = position_embedding[1:].float().reshape(side, side, -1)
    m_h = torch.from_numpy(bicubic_resize_matrix(side, grid_h)).to(grid.device)
    m_w = torch.from_numpy(bicubic_resize_matrix(side, grid_w)).to(grid.device)
    grid = torch.einsum("hi,ijd,wj->hwd", m_h, grid, m_w).reshape(grid_h * grid_w, -1)
    return torch.cat([position_embedding[:1], grid.to(position_embedding.dtype)], dim=0)


def normalize(x):
    """``x`` divided by its L2 norm over the last axis."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True)


def contrastive_loss(logits_per_text):
    """CLIP's symmetric loss: the mean of the text->image and image->text cross-entropies, labels ``arange(n)``."""
    labels = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_text.t(), labels)) / 2


def _concrete() -> bool:
    """Whether tensor values can be inspected (not while tracing or compiling)."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


_ONEDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
_ONEDNN_DTYPES = (torch.float32,) + ((torch.bfloat16,) if _ONEDNN_LINEAR and hasattr(
    torch.ops.mkldnn, "_is_mkldnn_bf16_supported") and torch.ops.mkldnn._is_mkldnn_bf16_supported() else ())


def _linear(x, layer):
    """``layer(x)`` for an ``nn.Linear``. Inference on the CPU (no autograd, no hooks, not compiling) calls oneDNN's
    matrix multiply with the bias fused: PyTorch's own kernel for bfloat16 (and in compiled graphs), which on AVX-512
    CPUs is 1.1-1.7x faster in float32 than the BLAS call ``nn.Linear`` makes (the same float32 arithmetic, summed
    in another order) and a few percent faster in bfloat16 (identical results, no separate bias copy)."""
    weight = layer.weight
    if (_ONEDNN_LINEAR and x.dtype in _ONEDNN_DTYPES and weight.dtype == x.dtype and x.device.type == "cpu"
            and weight.device.type == "cpu" and type(layer) is nn.Linear and not torch.is_grad_enabled()
            and not (layer._forward_hooks or layer._forward_pre_hooks or nn.modules.module._global_forward_hooks
                     or nn.modules.module._global_forward_pre_hooks) and _concrete()):
        return torch.ops.mkldnn._linear_pointwise(x, weight, layer.bias, "none", [], "")
    return layer(x)


def _as_tensor(value, name: str, device=None):
    """An input as a torch tensor: tensors pass, numpy arrays and (nested) Python lists are converted (as
    transformers' users pass them to the TensorFlow and Flax models); anything else is a ``TypeError``."""
    if value is None or isinstance(value, torch.Tensor):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a torch.Tensor, a numpy array or a nested list of numbers, got "
                        f"{type(value).__name__} ({err})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{name} must be a torch.Tensor, a numpy array or a nested list of numbers, got "
                        f"{type(value).__name__} of dtype {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if device is None else tensor.to(device)


def _model_device(module):
    return next(module.parameters()).device


def _no_autograd() -> bool:
    """Whether fresh intermediate tensors may be updated in place (no autograd recording, not compiling)."""
    return not torch.is_grad_enabled() and _concrete()


def _residual(new, old):
    """``old + new``; in place into the fresh ``new`` when nothing records gradients (the same numbers, one
    ``[tokens, d]`` buffer fewer per call)."""
    return new.add_(old) if _no_autograd() else old + new


# ---------------------------------------------------------------------------------------------- internal modules
def _embedding(num: int, dim: int) -> nn.Embedding:
    """An embedding table left uninitialised (the models build on the ``meta`` device, then assign a state):
    ``nn.Embedding``'s own normal init on ``meta`` would import ``torch._dynamo``, seconds on a first load."""
    return nn.Embedding(num, dim, _weight=torch.empty(num, dim))


class CLIPAttention(nn.Module):
    """Multi-head self-attention with q/k/v/out projections."""

    def __init__(self, config):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = d // self.num_heads
        self.dropout = config.attention_dropout
        self.attn_implementation = "sdpa"  # or "eager": CLIPPreTrainedModel.set_attn_implementation
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, hidden_states, bias=None, output_attentions=False, queries=None):
        """Every token attends to every token; with ``queries`` (``[batch, q, d]``) only those attend."""
        b, n, d = hidden_states.shape

        def heads(x):
            return x.view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)

        q = heads(_linear(hidden_states if queries is None else queries, self.q_proj))
        k, v = heads(_linear(hidden_states, self.k_proj)), heads(_linear(hidden_states, self.v_proj))
        scale = self.head_dim ** -0.5
        dropout = self.dropout if self.training else 0.0
        probs = None
        if output_attentions or self.attn_implementation == "eager":
            scores = torch.matmul(q, k.transpose(-1, -2)) * scale
            if bias is not None:
                scores = scores + bias
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
            out = torch.matmul(F.dropout(probs, dropout, self.training), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=scale)
        return _linear(out.transpose(1, 2).reshape(b, -1, d), self.out_proj), probs


class CLIPMLP(nn.Module):
    """The feed-forward block: fc1, activation, fc2."""

    def __init__(self, config):
        super().__init__()
        self.act = activation(config.hidden_act)
        self.quick_gelu = config.hidden_act == "quick_gelu"
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states):
        hidden_states = _linear(hidden_states, self.fc1)
        if self.quick_gelu and _no_autograd():  # in place: the same numbers, two [tokens, 4d] buffers fewer
            hidden_states = hidden_states.mul_((hidden_states * 1.702).sigmoid_())
        else:
            hidden_states = self.act(hidden_states)
        return _linear(hidden_states, self.fc2)


class CLIPEncoderLayer(nn.Module):
    """A pre-LN transformer block: ``h += attn(ln1(h)); h += mlp(ln2(h))``."""

    def __init__(self, config):
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, bias=None, output_attentions=False, rows=None):
        """With ``rows`` (one position per batch row) only those rows' outputs are computed: ``[batch, 1, d]``."""
        normed, queries = self.layer_norm1(hidden_states), None
        if rows is not None:  # the wanted rows still attend to every token
            hidden_states, queries = take_rows(hidden_states, rows), take_rows(normed, rows)
            bias = None if bias is None else take_rows(bias, rows, dim=2)
        attn, probs = self.self_attn(normed, bias, output_attentions, queries)
        hidden_states = _residual(attn, hidden_states)
        return _residual(self.mlp(self.layer_norm2(hidden_states)), hidden_states), probs


class CLIPEncoder(nn.Module):
    """A stack of encoder layers; serves both towers."""

    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False  # set by CLIPPreTrainedModel.gradient_checkpointing_enable
        self._gradient_checkpointing_func = None

    def forward(self, hidden_states, bias=None, output_attentions=False, output_hidden_states=False, rows=None):
        """Return ``(last_hidden_state, hidden_states or None, attentions or None)``; with ``rows`` the last layer
        computes only those rows (one per batch row), so ``last_hidden_state`` is ``[batch, 1, d]``."""
        checkpoint = self._gradient_checkpointing_func if (
            self.gradient_checkpointing and self.training and torch.is_grad_enabled()) else None

        def layer_call(i, h, r):  # checkpointed: the layer's activations are recomputed in the backward pass
            if checkpoint is not None:
                return checkpoint(self.layers[i], h, bias, output_attentions, r)
            return self.layers[i](h, bias, output_attentions, r)
        return run_layers(len(self.layers), layer_call, hidden_states, output_hidden_states, output_attentions, rows)


class CLIPTextEmbeddings(nn.Module):
    """Token embeddings plus learned position embeddings."""

    def __init__(self, config):
        super().__init__()
        self.token_embedding = _embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = _embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids, position_ids=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]
        return self.token_embedding(input_ids) + self.position_embedding(position_ids)


class CLIPVisionEmbeddings(nn.Module):
    """Bias-free patch convolution, a class token in front, learned position embeddings."""

    def __init__(self, config):
        super().__init__()
        d, p = config.hidden_size, config.patch_size
        self.grid = config.image_size // p
        self.class_embedding = nn.Parameter(torch.empty(d))
        self.patch_embedding = nn.Conv2d(config.num_channels, d, kernel_size=p, stride=p, bias=False)
        self.position_embedding = _embedding(self.grid ** 2 + 1, d)

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))  # [b, d, gh, gw]
        grid_h, grid_w = patches.shape[2:]
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        positions = self.position_embedding.weight
        if (grid_h, grid_w) != (self.grid, self.grid):
            positions = interpolate_pos_encoding(positions, grid_h, grid_w)
        return torch.cat([cls, patches], dim=1) + positions


class CLIPTextTransformer(nn.Module):
    """The text tower: embeddings, causal encoder, final layer norm, pooled at the end-of-text token."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, position_ids=None, output_attentions=False,
                output_hidden_states=False, pooled_only=False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the pooled
        rows alone and, when the ids can be read, the columns after the last pooled token are cut
        (:func:`trim_text`)."""
        if input_ids is None:
            raise ValueError("input_ids is required: you have to specify input_ids")
        device = _model_device(self)
        input_ids, attention_mask, position_ids = (_as_tensor(x, name, device) for x, name in (
            (input_ids, "input_ids"), (attention_mask, "attention_mask"), (position_ids, "position_ids")))
        concrete = _concrete() and input_ids.numel() > 0
        check_text_inputs(self.config, tuple(input_ids.shape),
                          tuple(int(v) for v in torch.aminmax(input_ids)) if concrete
                          and input_ids.dtype != torch.bool else None, dtype=input_ids.dtype)
        if input_ids.dtype not in (torch.int32, torch.int64):  # uint8, int16...: any integer ids index the table
            input_ids = input_ids.long()
        if attention_mask is not None:
            bad = None
            if concrete and attention_mask.dtype != torch.bool and not attention_mask.dtype.is_complex:
                wrong = attention_mask[(attention_mask != 0) & (attention_mask != 1)]
                bad = float(wrong[0]) if wrong.numel() else None
            check_attention_mask(tuple(attention_mask.shape), tuple(input_ids.shape), attention_mask.dtype, bad)
        if position_ids is not None:
            floating = position_ids.dtype.is_floating_point or position_ids.dtype == torch.bool
            span = tuple(int(v) for v in torch.aminmax(position_ids)) if concrete and not floating \
                and position_ids.numel() > 0 else None
            check_position_ids(self.config, tuple(position_ids.shape), tuple(input_ids.shape), position_ids.dtype,
                               span)
        if pooled_only and concrete:
            input_ids, attention_mask, position_ids = trim_text(input_ids, attention_mask, position_ids,
                                                                self.config.eos_token_id)
        hidden_states = self.embeddings(input_ids, position_ids)
        bias = attention_bias(attention_mask, input_ids.shape[1], True, hidden_states.dtype, hidden_states.device)
        index = pool_index(input_ids, self.config.eos_token_id)
        last, states, attentions = self.encoder(hidden_states, bias, output_attentions, output_hidden_states,
                                                index if pooled_only else None)
        last = self.final_layer_norm(last)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=last[:, 0])
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=take_rows(last, index)[:, 0],
                                          hidden_states=states, attentions=attentions)


class CLIPVisionTransformer(nn.Module):
    """The vision tower: patch embeddings, pre-LN, encoder; the class token, post-LN, is the pooled output."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values, output_attentions=False, output_hidden_states=False,
                interpolate_pos_encoding=False, pooled_only=False):
        """With ``pooled_only`` only ``pooler_output`` is computed (and returned): the last layer runs on the class
        token alone."""
        if pixel_values is None:
            raise ValueError("pixel_values is required: you have to specify pixel_values")
        pixel_values = _as_tensor(pixel_values, "pixel_values", _model_device(self))
        floating = pixel_values.dtype.is_floating_point
        span = tuple(float(v) for v in torch.aminmax(pixel_values)) if floating and _concrete() \
            and pixel_values.numel() > 0 else None
        check_vision_inputs(self.config, tuple(pixel_values.shape), interpolate_pos_encoding, dtype=pixel_values.dtype,
                            span=span)
        hidden_states = self.pre_layrnorm(self.embeddings(pixel_values))
        rows = torch.zeros(hidden_states.shape[0], dtype=torch.long, device=hidden_states.device) \
            if pooled_only else None
        last, states, attentions = self.encoder(hidden_states, None, output_attentions, output_hidden_states, rows)
        if pooled_only:
            return BaseModelOutputWithPooling(pooler_output=self.post_layernorm(last[:, 0]))
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=self.post_layernorm(last[:, 0]),
                                          hidden_states=states, attentions=attentions)


# ---------------------------------------------------------------------------------------------- public models
class CLIPTextModel(CLIPPreTrainedModel):
    """The text tower alone; ``pooler_output`` is the state at the end-of-text token."""

    arch = "text"

    def _build(self):
        self.text_model = CLIPTextTransformer(self.config)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        """Encode ``input_ids`` ``[batch, seq]``; returns :class:`BaseModelOutputWithPooling` (or a tuple)."""
        out = self.text_model(input_ids, attention_mask, position_ids,
                              self._flag(output_attentions, "output_attentions"),
                              self._flag(output_hidden_states, "output_hidden_states"))
        return out if self._return_dict(return_dict) else out.to_tuple()


class CLIPTextModelWithProjection(CLIPPreTrainedModel):
    """The text tower and its projection; ``text_embeds`` are projected, not normalised."""

    arch = "text_projection"

    def _build(self):
        self.text_model = CLIPTextTransformer(self.config)
        self.text_projection = nn.Linear(self.config.hidden_size, self.config.projection_dim, bias=False)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        """Encode and project ``input_ids``; returns :class:`CLIPTextModelOutput` (or a tuple)."""
        text = self.text_model(input_ids, attention_mask, position_ids,
                               self._flag(output_attentions, "output_attentions"),
                               self._flag(output_hidden_states, "output_hidden_states"))
        out = CLIPTextModelOutput(text_embeds=_linear(text.pooler_output, self.text_projection),
                                  last_hidden_state=text.last_hidden_state, hidden_states=text.hidden_states,
                                  attentions=text.attentions)
        return out if self._return_dict(return_dict) else out.to_tuple()


class CLIPVisionModel(CLIPPreTrainedModel):
    """The vision tower alone; ``pooler_output`` is the post-layer-normed class token."""

    arch = "vision"
    main_input_name = "pixel_values"

    def _build(self):
        self.vision_model = CLIPVisionTransformer(self.config)

    def forward(self, pixel_values=None, output_attentions=None, output_hidden_states=None,
                interpolate_pos_encoding=False, return_dict=None):
        """Encode NCHW ``pixel_values``; returns :class:`BaseModelOutputWithPooling` (or a tuple)."""
        out = self.vision_model(pixel_values, self._flag(output_attentions, "output_attentions"),
                                self._flag(output_hidden_states, "output_hidden_states"), interpolate_pos_encoding)
        return out if self._return_dict(return_dict) else out.to_tuple()


class CLIPVisionModelWithProjection(CLIPPreTrainedModel):
    """The vision tower and its projection; ``image_embeds`` are projected, not normalised."""

    arch = "vision_projection"
    main_input_name = "pixel_values"

    def _build(self):
        self.vision_model = CLIPVisionTransformer(self.config)
        self.visual_projection = nn.Linear(self.config.hidden_size, self.config.projection_dim, bias=False)

    def forward(self, pixel_values=None, output_attentions=None, output_hidden_states=None,
                interpolate_pos_encoding=False, return_dict=None):
        """Encode and project NCHW ``pixel_values``; returns :class:`CLIPVisionModelOutput` (or a tuple)."""
        vision = self.vision_model(pixel_values, self._flag(output_attentions, "output_attentions"),
                                   self._flag(output_hidden_states, "output_hidden_states"), interpolate_pos_encoding)
        out = CLIPVisionModelOutput(image_embeds=_linear(vision.pooler_output, self.visual_projection),
                                    last_hidden_state=vision.last_hidden_state, hidden_states=vision.hidden_states,
                                    attentions=vision.attentions)
        return out if self._return_dict(return_dict) else out.to_tuple()


class CLIPModel(CLIPPreTrainedModel):
    """The contrastive model: two towers, two projections and a learned temperature."""

    arch = "clip"

    def _build(self):
        text, vision = self.config.text_config, self.config.vision_config
        self.text_model = CLIPTextTransformer(text)
        self.vision_model = CLIPVisionTransformer(vision)
        self.visual_projection = nn.Linear(vision.hidden_size, self.config.projection_dim, bias=False)
        self.text_projection = nn.Linear(text.hidden_size, self.config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.empty(()))

    def get_text_features(self, input_ids=None, attention_mask=None, position_ids=None):
        """Projected, unnormalised text features ``[batch, projection_dim]``."""
        pooled = self.text_model(input_ids, attention_mask, position_ids, pooled_only=True).pooler_output
        return _linear(pooled, self.text_projection)

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding=False):
        """Projected, unnormalised image features ``[batch, projection_dim]``."""
        pooled = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding,
                                   pooled_only=True).pooler_output
        return _linear(pooled, self.visual_projection)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, return_loss=None,
                output_attentions=None, output_hidden_states=None, interpolate_pos_encoding=False,
                return_dict=None):
        """Similarity logits between every text and every image; returns :class:`CLIPOutput` (or a tuple)."""
        if input_ids is not None and pixel_values is not None:
            check_batch_sizes(tuple(np.shape(input_ids)), tuple(np.shape(pixel_values)), bool(return_loss))
        vision = self.vision_model(pixel_values, self._flag(output_attentions, "output_attentions"),
                                   self._flag(output_hidden_states, "output_hidden_states"), interpolate_pos_encoding)
        text = self.text_model(input_ids, attention_mask, position_ids,
                               self._flag(output_attentions, "output_attentions"),
                               self._flag(output_hidden_states, "output_hidden_states"))
        image_embeds = normalize(_linear(vision.pooler_output, self.visual_projection))
        text_embeds = normalize(_linear(text.pooler_output, self.text_projection))
        logits_per_text = self.logit_scale.exp() * text_embeds @ image_embeds.t()
        out = CLIPOutput(loss=contrastive_loss(logits_per_text) if return_loss else None,
                         logits_per_image=logits_per_text.t(), logits_per_text=logits_per_text,
                         text_embeds=text_embeds, image_embeds=image_embeds,
                         text_model_output=text, vision_model_output=vision)
        if self._return_dict(return_dict):
            return out
        return tuple(v.to_tuple() if isinstance(v, BaseModelOutputWithPooling) else v for v in out.to_tuple())


class CLIPForImageClassification(CLIPPreTrainedModel):
    """The vision tower with a linear classifier on the mean of the patch tokens' final states.

    The number of classes is ``len(config.id2label)`` or ``config.num_labels`` (default 2), as in transformers.
    """

    arch = "image_classification"
    main_input_name = "pixel_values"

    def _build(self):
        num_labels, hidden = self.param_table(self.config)["classifier.weight"].shape
        self.num_labels = num_labels
        self.vision_model = CLIPVisionTransformer(self.config.vision_config)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, pixel_values=None, labels=None, output_attentions=None, output_hidden_states=None,
                interpolate_pos_encoding=False, return_dict=None):
        """Class logits ``[batch, num_labels]``; with integer ``labels`` also the cross-entropy loss
        (label -100 is ignored). Returns :class:`ImageClassifierOutput` (or a tuple)."""
        vision = self.vision_model(pixel_values, self._flag(output_attentions, "output_attentions"),
                                   self._flag(output_hidden_states, "output_hidden_states"), interpolate_pos_encoding)
        logits = _linear(vision.last_hidden_state[:, 1:].mean(dim=1), self.classifier)
        loss = None
        if labels is not None:
            loss = self._loss(logits, _as_tensor(labels, "labels", logits.device))
        out = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=vision.hidden_states,
                                    attentions=vision.attentions)
        return out if self._return_dict(return_dict) else out.to_tuple()

    def _loss(self, logits, labels):
        """transformers' rule: ``config.problem_type``, else regression for one label, single-label classification
        for integer labels, multi-label classification for float labels."""
        problem = self.config.problem_type
        if problem is None:  # decided once and kept in the config, as transformers does
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
            self.config.problem_type = problem
        if problem == "single_label_classification":
            concrete = _concrete() and labels.numel() > 0 and not labels.dtype.is_floating_point \
                and labels.dtype != torch.bool
            check_class_labels(self.num_labels, tuple(labels.shape), logits.shape[0], labels.dtype,
                               label_span(labels.cpu().numpy()) if concrete else None)
            return F.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1).long())
        if problem == "regression":
            if self.num_labels == 1:
                return F.mse_loss(logits.float().squeeze(), labels.float().squeeze())
            return F.mse_loss(logits.float(), labels.float())
        if problem == "multi_label_classification":
            if tuple(labels.shape) != tuple(logits.shape):
                raise ValueError(f"labels for multi-label classification must have the logits' shape "
                                 f"{tuple(logits.shape)} (one 0/1 target per class), found {tuple(labels.shape)}")
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        raise ValueError(f"config.problem_type must be 'regression', 'single_label_classification' or "
                         f"'multi_label_classification', got {problem!r}")


__all__ = ["CLIPPreTrainedModel", "CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModel",
           "CLIPVisionModelWithProjection", "CLIPModel", "CLIPForImageClassification"]
