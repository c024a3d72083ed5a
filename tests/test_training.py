"""Training: framework-free hyper-parameters (clip_core.tasks.training) and the three backends' training.py."""

from __future__ import annotations

import math

import pytest

from clip_core.tasks.training import LOGIT_SCALE_MAX, TrainingConfig, decays, frozen, learning_rate, trainable_names


def test_learning_rate_is_open_clips_cosine_lr():
    cfg = TrainingConfig(lr=0.1, warmup_steps=4, total_steps=12)
    # open_clip cosine_lr: warm-up base_lr * (step + 1) / warmup, then 0.5 * (1 + cos(pi * e / es)) * base_lr
    assert [learning_rate(s, cfg) for s in range(4)] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert learning_rate(4, cfg) == pytest.approx(0.1)
    assert learning_rate(8, cfg) == pytest.approx(0.05)  # halfway through the 8 decay steps
    assert learning_rate(10, cfg) == pytest.approx(0.05 * (1 + math.cos(math.pi * 6 / 8)))
    assert learning_rate(12, cfg) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(3, TrainingConfig(lr=0.1, warmup_steps=5, total_steps=5)) == pytest.approx(0.08)
    assert learning_rate(7, TrainingConfig(lr=0.1, warmup_steps=5, total_steps=5)) == pytest.approx(0.1)


def test_decay_follows_open_clips_rule():
    # open_clip: no decay when ndim < 2 or the name holds bn/ln/bias/embedding/logit_scale (its patch conv, conv1,
    # decays; ours is named patch_embedding, so the rule is the kind's, not the name's)
    yes = ["text_model.encoder.layers.0.self_attn.q_proj.weight", "vision_model.encoder.layers.7.mlp.fc2.weight",
           "text_projection.weight", "visual_projection.weight", "vision_model.embeddings.patch_embedding.weight",
           "classifier.weight"]
    no = ["logit_scale", "text_model.encoder.layers.0.self_attn.k_proj.bias", "vision_model.pre_layrnorm.weight",
          "vision_model.post_layernorm.bias", "text_model.final_layer_norm.weight",
          "text_model.embeddings.token_embedding.weight", "text_model.embeddings.position_embedding.weight",
          "vision_model.embeddings.class_embedding", "vision_model.encoder.layers.11.layer_norm2.weight",
          "classifier.bias"]
    assert all(decays(n) for n in yes) and not any(decays(n) for n in no)
    with pytest.raises(ValueError, match="unknown parameter 'text_model.nope'"):
        decays("text_model.nope")


def test_frozen_by_tower_name_and_pattern():
    assert frozen("vision_model.encoder.layers.0.mlp.fc1.weight", lock_image=True)
    assert frozen("visual_projection.weight", lock_image=True)
    assert not frozen("text_projection.weight", lock_image=True) and not frozen("logit_scale", lock_image=True)
    assert frozen("text_model.embeddings.token_embedding.weight", patterns=["text_model.embeddings"])
    assert frozen("text_model.encoder.layers.3.layer_norm1.bias", patterns=["*.layer_norm1.*"])
    assert frozen("logit_scale", patterns="logit_scale")
    assert not frozen("text_model.embeddings_x", patterns=["text_model.embeddings"])
    table = {n: None for n in ("logit_scale", "text_projection.weight", "vision_model.post_layernorm.weight")}
    assert trainable_names(table, TrainingConfig(lock_image=True)) == ["logit_scale", "text_projection.weight"]
    with pytest.raises(ValueError, match="matches no parameter"):
        trainable_names(table, TrainingConfig(freeze=("text_model.typo",)))


def test_config_checks_and_round_trip():
    cfg = TrainingConfig(lr=1e-3, betas=[0.9, 0.999], freeze=["logit_scale"], warmup_steps=3)
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainingConfig().clamp == pytest.approx(math.log(100)) == LOGIT_SCALE_MAX
    for bad in (dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(eps=0.0), dict(total_steps=0)):
        with pytest.raises(ValueError):
            TrainingConfig(**bad)
    with pytest.raises(TypeError):
        TrainingConfig(warmup_steps=1.5)
    with pytest.raises(ValueError, match="unknown TrainingConfig fields"):
        TrainingConfig.from_dict({"learning_rate": 1})
