"""Gradient checkpointing in the three backends: the same gradients as without it, and really recomputing.

PyTorch: ``gradient_checkpointing_enable()`` / ``_disable()`` (torch.utils.checkpoint, non-reentrant by default);
TensorFlow: the same names (``tf.recompute_grad`` around each encoder layer); Flax: ``enable_gradient_checkpointing()``
(``nn.remat`` of the layer, as transformers' Flax models did). Each is checked against the plain model's gradients
(every parameter), and against transformers' PyTorch autograd on the same weights for PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest

from clip_core.config import CLIPConfig

CONFIG = CLIPConfig(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0], [48, 9, 10, 11, 49]], dtype=np.int64)
MASK = (IDS != 0).astype(np.int64)
PIXELS = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
LAYERS = 4  # encoder layers in the two towers together


def _close(ours: dict, ref: dict, what: str, scale_tol: float = 1e-6) -> None:
    assert sorted(ours) == sorted(ref) and len(ours) > 30
    for name in ref:
        a, b = np.asarray(ours[name], np.float64), np.asarray(ref[name], np.float64)
        diff = float(np.abs(a - b).max())
        assert diff <= scale_tol * max(1.0, float(np.abs(b).max())), f"{what} {name}: {diff:.3g}"


# ---------------------------------------------------------------------------------------------- PyTorch
def _pt_grads(model):
    import torch
    model.zero_grad(set_to_none=True)
    out = model(input_ids=torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK),
                pixel_values=torch.from_numpy(PIXELS), return_loss=True)
    out.loss.backward()
    return {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}


def test_pt_checkpointing_same_gradients_and_recomputes():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from clip_pt import CLIPModel
    model = CLIPModel(CONFIG, seed=0).train()
    assert model.supports_gradient_checkpointing and not model.is_gradient_checkpointing
    plain = _pt_grads(model)
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *_: calls.append(1)) for n, m in model.named_modules()
             if n.endswith(("layers.0", "layers.1"))]
    _pt_grads(model)
    assert len(calls) == LAYERS  # once each without checkpointing
    calls.clear()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = _pt_grads(model)
    assert len(calls) == 2 * LAYERS  # forward, then recomputed in the backward pass
    _close(checkpointed, plain, "pt checkpointed vs plain", 1e-7)
    calls.clear()
    with torch.no_grad():  # inference never checkpoints
        model(input_ids=torch.from_numpy(IDS), pixel_values=torch.from_numpy(PIXELS))
    assert len(calls) == LAYERS
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    calls.clear()
    _pt_grads(model)
    assert len(calls) == LAYERS
    for hook in hooks:
        hook.remove()
    # transformers' autograd on the same weights: the independent reference
    hf = transformers.CLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict())).train()
    hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.export_state().items()}, strict=False)
    _close(checkpointed, _pt_grads(hf), "pt checkpointed vs transformers", 1e-5)


def test_pt_checkpointing_kwargs_are_passed():
    pytest.importorskip("torch")
    from clip_pt import CLIPModel
    model = CLIPModel(CONFIG, seed=0).train()
    plain = _pt_grads(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    _close(_pt_grads(model), plain, "pt reentrant checkpointing", 1e-6)
    with pytest.raises(TypeError, match="gradient_checkpointing_kwargs"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=["use_reentrant"])


# ---------------------------------------------------------------------------------------------- TensorFlow
def _tf_grads(model):
    import tensorflow as tf
    names = list(model.params)
    with tf.GradientTape() as tape:
        loss = model(input_ids=IDS, attention_mask=MASK, pixel_values=PIXELS, return_loss=True).loss
    grads = tape.gradient(loss, [model.params[n] for n in names])
    return {n: tf.convert_to_tensor(g).numpy() for n, g in zip(names, grads)}


def test_tf_checkpointing_same_gradients_and_recomputes(monkeypatch):
    pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel
    model = TFCLIPModel(CONFIG, seed=0)
    model.jit_compile = True  # XLA at the first call (the default "auto" runs a new shape eagerly)
    compiled_plain = _tf_grads(model)
    model.jit_compile = False
    plain = _tf_grads(model)
    layers = model.text_model.encoder.layers + model.vision_model.encoder.layers
    calls = []  # the Python calls of the encoder layers (eager: each call runs the Python code)
    layer_class = type(layers[0])
    monkeypatch.setattr(layer_class, "__call__", _counting(layer_class.__call__, calls))
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = _tf_grads(model)
    assert len(calls) == 2 * LAYERS  # forward, then recomputed for the gradient
    _close(checkpointed, plain, "tf checkpointed vs plain (eager)", 1e-6)
    model.jit_compile = True
    _close(_tf_grads(model), compiled_plain, "tf checkpointed vs plain (XLA)", 1e-6)
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    model.jit_compile = False
    calls.clear()
    _tf_grads(model)
    assert len(calls) == LAYERS


def _counting(call, calls):
    def counted(*args, **kwargs):
        calls.append(1)
        return call(*args, **kwargs)
    return counted


# ---------------------------------------------------------------------------------------------- Flax
def test_flax_checkpointing_same_gradients_and_remats():
    jax = pytest.importorskip("jax")
    from clip_flax import FlaxCLIPModel
    model = FlaxCLIPModel(CONFIG, seed=0)

    def grads(m):
        loss = lambda p: m(IDS, PIXELS, attention_mask=MASK, params=p, return_loss=True).loss  # noqa: E731
        return jax.grad(loss), jax.jit(jax.grad(loss))(m.params)

    def cost(fn, m):  # the compiled gradient's matrix products (recomputed ones twice) and XLA's temporary bytes
        lowered = jax.jit(fn).lower(m.params)
        return lowered.as_text().count("dot_general"), lowered.compile().memory_analysis().temp_size_in_bytes

    plain_fn, plain = grads(model)
    plain_dots, plain_temp = cost(plain_fn, model)
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing
    fn, checkpointed = grads(model)
    dots, temp = cost(fn, model)
    assert dots > plain_dots  # the layers' products run again in the backward pass
    # and XLA:CPU keeps less alive (jax.checkpoint alone saved nothing here: its recomputation was merged back)
    assert temp < 0.75 * plain_temp, (temp, plain_temp)
    from clip_core.weights import from_flax_tree
    table = model.param_table(CONFIG)
    _close(from_flax_tree(jax.device_get(checkpointed), table), from_flax_tree(jax.device_get(plain), table),
           "flax checkpointed vs plain", 1e-6)
    other = FlaxCLIPModel(CONFIG, seed=0)  # a model built alike shares the compiled apply, not the checkpointing
    assert not other.is_gradient_checkpointing
    assert cost(grads(other)[0], other) == (plain_dots, plain_temp)
    model.disable_gradient_checkpointing()
    assert not model.is_gradient_checkpointing and cost(grads(model)[0], model) == (plain_dots, plain_temp)
