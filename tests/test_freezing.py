"""TensorFlow freezing through ``.trainable``: a frozen tower's variables leave ``trainable_variables`` (counted
against the canonical parameter table), gradients of ``trainable_variables`` leave them untouched, and unfreezing
brings them back. (PyTorch freezes with ``requires_grad``; every backend's Trainer freezes by canonical name.)"""

from __future__ import annotations

import numpy as np
import pytest

from clip_core.config import CLIPConfig
from clip_core.weights import param_table

tf = pytest.importorskip("tensorflow")

CONFIG = CLIPConfig(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
TABLE = param_table(CONFIG, "clip")
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]], dtype=np.int64)
PIXELS = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def _names(model, variables):
    by_id = {id(v): name for name, v in model.params.items()}
    names = [by_id[id(v)] for v in variables]
    assert len(names) == len(set(names)), "a variable is listed twice"
    return set(names)


def _under(prefix):
    return {n for n in TABLE if n.startswith(prefix)}


def test_tower_trainable_false_removes_its_variables():
    from clip_tf import TFCLIPModel
    model = TFCLIPModel(CONFIG, seed=0)
    assert model.trainable and model.vision_model.trainable
    assert _names(model, model.trainable_variables) == set(TABLE)
    assert len(model.variables) == len(TABLE)
    model.vision_model.trainable = False  # locked-image tuning
    assert _names(model, model.trainable_variables) == set(TABLE) - _under("vision_model.")
    assert "visual_projection.weight" in _names(model, model.trainable_variables)  # outside the tower
    assert model.vision_model.trainable_variables == ()
    assert _names(model, model.non_trainable_variables) == _under("vision_model.")
    assert model.num_parameters(only_trainable=True) == sum(
        int(np.prod(spec.shape)) for n, spec in TABLE.items() if not n.startswith("vision_model."))
    model.text_model.trainable = False
    assert _names(model, model.trainable_variables) == {"visual_projection.weight", "text_projection.weight",
                                                        "logit_scale"}
    model.trainable = False
    assert model.trainable_variables == () and len(model.non_trainable_variables) == len(TABLE)
    model.trainable = True  # the towers keep their own setting
    assert _names(model, model.trainable_variables) == {"visual_projection.weight", "text_projection.weight",
                                                        "logit_scale"}
    model.vision_model.trainable = model.text_model.trainable = True
    assert _names(model, model.trainable_variables) == set(TABLE)
    with pytest.raises(TypeError, match="trainable"):
        model.vision_model.trainable = "no"


def test_frozen_tower_gets_no_update():
    from clip_tf import TFCLIPModel
    model = TFCLIPModel(CONFIG, seed=0)
    model.vision_model.trainable = False
    before = {n: v.numpy().copy() for n, v in model.params.items()}
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = model(input_ids=IDS, pixel_values=PIXELS, return_loss=True).loss
    grads = tape.gradient(loss, variables)
    for var, grad in zip(variables, grads):
        var.assign_sub(0.1 * tf.convert_to_tensor(grad))
    moved = {n for n, v in model.params.items() if not np.array_equal(v.numpy(), before[n])}
    assert moved and not moved & _under("vision_model.")
    assert "text_model.final_layer_norm.weight" in moved and "visual_projection.weight" in moved


def test_text_only_model_trainable():
    from clip_tf import TFCLIPTextModel
    model = TFCLIPTextModel(CONFIG.text_config, seed=0)
    total = len(model.trainable_variables)
    model.text_model.encoder.trainable = False
    layer_vars = len([n for n in param_table(CONFIG.text_config, "text") if ".encoder." in n])
    assert len(model.trainable_variables) == total - layer_vars > 0
