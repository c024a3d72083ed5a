"""Keras 3 ``compile`` / ``fit`` on ``TFCLIPModel``: it trains on the model's own contrastive loss (the loss falls,
the variables move, a frozen tower stays put), its loss is transformers' ``return_loss``, and it refuses rather
than train nothing. Keras 3 is imported explicitly (``import keras``): ``tf.keras`` is Keras 2 in the test process
(``TF_USE_LEGACY_KERAS=1`` for transformers' TF oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from clip_core.config import CLIPConfig

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

CONFIG = CLIPConfig(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       image_size=16, patch_size=8),
)


def _data(n=16):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 48, (n, 6))
    ids[:, 0] = 48
    ends = rng.integers(2, 6, n)
    ids[np.arange(n), ends] = 49
    mask = (np.arange(6) <= ends[:, None]).astype(np.int32)
    return dict(input_ids=np.where(mask == 1, ids, 0).astype(np.int32), attention_mask=mask,
                pixel_values=rng.standard_normal((n, 3, 16, 16)).astype(np.float32))


def _dataset(data, batch=8):
    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


def _transformers_loss(state, data, batch=8):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.CLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict())).eval()
    hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)
    losses = []
    with torch.no_grad():
        for start in range(0, len(data["input_ids"]), batch):
            part = {k: torch.from_numpy(v[start:start + batch]).long() if v.dtype.kind == "i" else
                    torch.from_numpy(v[start:start + batch]) for k, v in data.items()}
            losses.append(float(hf(**part, return_loss=True).loss))
    return float(np.mean(losses))


def test_compile_fit_trains_on_the_models_own_loss():
    assert keras.__version__.startswith("3.")
    from clip_tf import TFCLIPModel
    model = TFCLIPModel(CONFIG, seed=0)
    data = _data()
    before = model.export_state()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2))
    evaluated = model.evaluate(_dataset(data), verbose=0)
    assert abs(evaluated - _transformers_loss(before, data)) < 1e-5
    history = model.fit(_dataset(data), epochs=4, verbose=0)
    losses = history.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.5, losses
    after = model.export_state()
    assert all(not np.array_equal(after[n], before[n]) for n in ("text_projection.weight", "logit_scale",
                                                                 "vision_model.encoder.layers.0.mlp.fc1.weight"))
    assert model.evaluate(_dataset(data), verbose=0) < evaluated


def test_fit_honours_a_frozen_tower():
    from clip_tf import TFCLIPModel
    model = TFCLIPModel(CONFIG, seed=1)
    model.vision_model.trainable = False
    before = model.export_state()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    model.fit(_dataset(_data()), epochs=1, verbose=0)
    after = model.export_state()
    moved = {n for n in before if not np.array_equal(before[n], after[n])}
    assert moved and not any(n.startswith("vision_model.") for n in moved)
    assert "visual_projection.weight" in moved and "text_model.embeddings.token_embedding.weight" in moved


def test_refuses_to_train_nothing():
    from clip_tf import TFCLIPModel, TFCLIPVisionModel
    model = TFCLIPModel(CONFIG, seed=0)
    with pytest.raises(ValueError, match="own contrastive loss"):
        model.compile(optimizer="adam", loss="mse")
    model.compile(optimizer="adam")
    model.trainable = False
    with pytest.raises(ValueError, match="frozen"):
        model.fit(_dataset(_data()), epochs=1, verbose=0)
    model.trainable = True
    with pytest.raises(ValueError, match="labels"):
        model.fit(tf.data.Dataset.from_tensor_slices((_data(), np.zeros(16))).batch(8), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="input_ids, pixel_values"):
        model.fit(tf.data.Dataset.from_tensor_slices({"input_ids": _data()["input_ids"]}).batch(8), epochs=1,
                  verbose=0)
    with pytest.raises(TypeError, match="TFCLIPModel"):
        TFCLIPVisionModel(CONFIG.vision_config, seed=0).compile(optimizer="adam")
    with pytest.raises(ValueError, match="compile"):
        TFCLIPModel(CONFIG, seed=0).fit(_dataset(_data()), epochs=1, verbose=0)
