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
    assert learning_rate(15, cfg) == pytest.approx(0.0, abs=1e-12)  # not rising again past total_steps
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


# ---------------------------------------------------------------------------------------------- the three backends
import importlib  # noqa: E402

import numpy as np  # noqa: E402

from clip_core.config import CLIPConfig  # noqa: E402
from clip_core.weights import init_state  # noqa: E402

BACKENDS = ("pt", "tf", "flax")
MODEL_CLASS = {"pt": ("clip_pt", "CLIPModel"), "tf": ("clip_tf", "TFCLIPModel"),
               "flax": ("clip_flax", "FlaxCLIPModel")}
# the "tiny" preset (2 layers of width 64 per tower) with a 1000-token vocabulary, to keep the embedding table small
CONFIG = CLIPConfig(**{**CLIPConfig.preset("tiny").to_dict(),
                       "text_config": {**CLIPConfig.preset("tiny").text_config.to_dict(), "vocab_size": 1000}})
STATE = init_state(CONFIG, "clip", seed=3)
#: one parameter frozen by canonical name: it must not move in any backend (the reference skips it too)
FROZEN = ("text_model.embeddings.position_embedding.weight",)
CFG = TrainingConfig(lr=2e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6, warmup_steps=2, total_steps=5,
                     freeze=FROZEN)
STEPS = 5


def _batches(n=STEPS, batch=4):
    from conformance import make_inputs
    return [make_inputs(CONFIG, batch=batch, seed=10 + i) for i in range(n)]


def _model(backend, state=STATE):
    module, name = MODEL_CLASS[backend]  # copies: PyTorch parameters would share the arrays' memory and train them
    return getattr(importlib.import_module(module), name)._from_state(CONFIG, {k: np.array(v) for k, v in state.items()})


def _trainer(backend, cfg=CFG, state=STATE):
    return importlib.import_module(f"clip_{backend}.training").Trainer(_model(backend, state), cfg)


def _hf_model(state):
    import torch
    import transformers

    hf = transformers.CLIPModel(transformers.CLIPConfig(**CONFIG.to_dict(), attn_implementation="eager"))
    hf.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state.items()}, strict=False)
    return hf


def _hf_loss_and_grads(hf, batch):
    import torch

    hf.zero_grad(set_to_none=True)
    out = hf(input_ids=torch.tensor(batch["input_ids"]), attention_mask=torch.tensor(batch["attention_mask"]),
             pixel_values=torch.tensor(batch["pixel_values"]), return_loss=True)
    out.loss.backward()
    return float(out.loss.detach()), {n: p.grad.numpy().copy() for n, p in hf.named_parameters()}


@pytest.fixture(scope="module")
def reference():
    """transformers' CLIPModel (eager attention, PyTorch autograd) trained by AdamW written out in numpy from the
    formulas (torch.optim.AdamW's documentation): the independent oracle of every backend's steps."""
    import torch

    hf = _hf_model(STATE)
    params = {k: np.asarray(v, np.float64) for k, v in STATE.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    losses, first_grads = [], None
    for t, batch in enumerate(_batches(), start=1):
        loss, grads = _hf_loss_and_grads(hf, batch)
        first_grads = first_grads or grads
        losses.append(loss)
        lr = learning_rate(t - 1, CFG)
        b1, b2 = CFG.betas
        for k in (k for k in params if k not in FROZEN):
            g = grads[k].astype(np.float64)
            if decays(k):
                params[k] = params[k] * (1 - lr * CFG.weight_decay)
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            params[k] = params[k] - lr * (m[k] / (1 - b1 ** t)) / (np.sqrt(v2[k] / (1 - b2 ** t)) + CFG.eps)
        with torch.no_grad():
            for k, p in hf.named_parameters():
                p.copy_(torch.tensor(params[k], dtype=torch.float32))
    return {"losses": losses, "grads": first_grads, "state": params}


@pytest.fixture(scope="module", params=BACKENDS)
def run(request):
    """One backend: its gradients on the first batch, then STEPS updates (losses, final state, optimizer state)."""
    backend = request.param
    pytest.importorskip({"pt": "torch", "tf": "tensorflow", "flax": "flax"}[backend])
    trainer = _trainer(backend)
    batches = _batches()
    grads = trainer.gradients(batches[0])
    losses = [trainer.train_step(b) for b in batches]
    return {"backend": backend, "trainer": trainer, "grads": grads, "losses": losses,
            "state": trainer.export_state(), "optimizer": trainer.optimizer_state()}


def test_loss_clamps_the_temperature_at_ln_100():
    import torch

    from clip_pt.training import contrastive_loss as pt_loss

    # above ln(100) the temperature is clamped: exactly the loss at ln(100), no gradient to logit_scale
    # seeded: the unclamped loss must differ from the clamped one (unseeded draws could make both about 0)
    generator = torch.Generator().manual_seed(0)
    t, i = (torch.randn(3, 8, dtype=torch.float64, generator=generator) for _ in range(2))
    scale = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    loss = pt_loss(t, i, scale)
    loss.backward()
    logits = 100.0 * (t / t.norm(dim=-1, keepdim=True)) @ (i / i.norm(dim=-1, keepdim=True)).T
    expected = (torch.nn.functional.cross_entropy(logits, torch.arange(3))
                + torch.nn.functional.cross_entropy(logits.T, torch.arange(3))) / 2
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-12) and float(scale.grad) == 0.0
    assert float(pt_loss(t, i, scale, clamp=None).detach()) != pytest.approx(float(expected), abs=1e-3)


def test_gradients_match_transformers_autograd(run, reference):
    grads, ref = run["grads"], reference["grads"]
    assert set(grads) == set(ref) - set(FROZEN)
    for name, g in grads.items():
        if name.endswith("k_proj.bias"):  # softmax is shift-invariant: the true gradient is zero
            assert np.abs(g).max() < 1e-5 and np.abs(ref[name]).max() < 1e-5, name
        else:
            assert np.abs(g - ref[name]).max() < 1e-5, (run["backend"], name)


def test_steps_match_numpy_adamw_on_transformers(run, reference):
    """The first loss is transformers' return_loss; then each step's loss and the final weights follow the
    reference; the frozen parameter has not moved by a bit."""
    assert np.abs(np.array(run["losses"]) - reference["losses"]).max() < 1e-4, run["backend"]
    assert all(np.array_equal(run["state"][n], STATE[n]) for n in FROZEN)
    for name, value in run["state"].items():
        # k_proj.bias has a zero true gradient: Adam's update of it is the sign of rounding noise (up to lr per
        # step), and it shifts every attention logit of a row equally, which softmax ignores; compare the rest
        tol = 5 * CFG.lr if name.endswith("k_proj.bias") else 1e-4
        assert np.abs(value - reference["state"][name]).max() < tol, (run["backend"], name)


def test_optimizer_state_moves_between_backends(run):
    """The canonical optimizer state of one backend, loaded in another, continues the same run."""
    arrays, meta = run["optimizer"]
    assert meta["step"] == STEPS and set(arrays) == {f"{k}.{n}" for k in ("exp_avg", "exp_avg_sq")
                                                     for n in STATE if n not in FROZEN}
    more = _batches(7)[5:]
    expected = [run["trainer"].train_step(b) for b in more]
    other = BACKENDS[(BACKENDS.index(run["backend"]) + 1) % 3]
    pytest.importorskip({"pt": "torch", "tf": "tensorflow", "flax": "flax"}[other])
    trainer = _trainer(other, state=run["state"])
    trainer.load_optimizer_state(arrays, meta)
    assert trainer.step == STEPS and trainer.learning_rate == pytest.approx(learning_rate(STEPS, CFG))
    assert np.abs(np.array([trainer.train_step(b) for b in more]) - expected).max() < 1e-5
    with pytest.raises(ValueError, match="format"):
        trainer.load_optimizer_state(arrays, {"step": 1, "format": "other"})


def test_lock_image_never_moves_the_vision_tower():
    """lock_image freezes the vision tower and its projection (the same trainable-name list every backend uses;
    freezing by canonical name is checked in every backend by test_steps_match_numpy_adamw_on_transformers)."""
    cfg = TrainingConfig(lr=1e-2, weight_decay=0.5, lock_image=True, freeze=("text_model.embeddings",),
                         total_steps=2)
    trainer = _trainer("pt", cfg)
    assert not any(n.startswith(("vision_model.", "visual_projection.", "text_model.embeddings."))
                   for n in trainer.trainable)
    for batch in _batches(2, batch=2):
        trainer.train_step(batch)
    for name, value in trainer.export_state().items():
        assert np.array_equal(value, STATE[name]) == frozen(name, True, cfg.freeze), name
    assert set(trainer.optimizer_state()[0]) == {f"{k}.{n}" for k in ("exp_avg", "exp_avg_sq")
                                                 for n in trainer.trainable}


def test_local_loss_over_shards_is_the_global_loss():
    import torch

    from clip_pt.training import contrastive_loss, local_contrastive_loss

    t = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    i = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    whole = contrastive_loss(t, i, scale)
    g_whole = torch.autograd.grad(whole, (t, i, scale))
    shards = sum(local_contrastive_loss(t[k:k + 2], i[k:k + 2], t, i, scale, k) for k in (0, 2, 4)) / 3
    g_shards = torch.autograd.grad(shards, (t, i, scale))
    assert float(shards.detach()) == pytest.approx(float(whole.detach()), abs=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g_whole, g_shards))
    for backend in ("tf", "flax"):
        mod = importlib.import_module(f"clip_{backend}.training")
        tn, inn = t.detach().numpy(), i.detach().numpy()
        local = np.mean([float(np.asarray(mod.local_contrastive_loss(tn[k:k + 2], inn[k:k + 2], tn, inn,
                                                                     np.float64(2.0), k))) for k in (0, 2, 4)])
        assert local == pytest.approx(float(whole), abs=1e-5), backend


def test_keras_adamw_is_torchs_formula_and_keras_adam_is_not():
    """Where epsilon matters (gradients near eps), the Keras optimizer here follows torch.optim.AdamW step for step;
    Keras' own AdamW (epsilon on the uncorrected sqrt(v)) does not."""
    import keras
    import tensorflow as tf
    import torch

    from clip_tf.training import AdamW

    grads = [np.array([3e-6, -1e-6, 5e-7, 2.0], np.float32) * (k + 1) for k in range(4)]
    start = np.array([0.5, -0.25, 1.0, 0.1], np.float32)
    p = torch.tensor(start.copy(), requires_grad=True)
    opt = torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    ours, theirs = tf.Variable(start.copy()), tf.Variable(start.copy())
    keras_ours = AdamW(0.1, 0.9, 0.98, 1e-6, 0.2)
    keras_theirs = keras.optimizers.AdamW(0.1, weight_decay=0.2, beta_1=0.9, beta_2=0.98, epsilon=1e-6)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        keras_ours.apply_gradients([(tf.constant(g), ours)])
        keras_theirs.apply_gradients([(tf.constant(g), theirs)])
    assert np.abs(ours.numpy() - p.detach().numpy()).max() < 1e-6
    assert np.abs(theirs.numpy() - p.detach().numpy()).max() > 1e-2


@pytest.mark.slow
def test_conformance_gradients_and_train_steps_command(tmp_path, capsys):
    """`triclip conformance --gradients --train-steps 2`: every parameter by canonical name in every backend and
    in transformers' autograd, then two AdamW steps against transformers + torch.optim; exit 0, all PASS."""
    from clip_core.cli import main

    small = CLIPConfig(**{**CONFIG.to_dict(), "text_config": {**CONFIG.text_config.to_dict(), "vocab_size": 200,
                                                              "num_hidden_layers": 1}})
    small.save_pretrained(tmp_path)
    assert main(["conformance", "--gradients", "--train-steps", "2", "--config", str(tmp_path / "config.json"),
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for pair in ("pt-tf", "pt-flax", "tf-flax", "pt-hf", "tf-hf", "flax-hf"):
        assert f"text_model.encoder.layers.0.mlp.fc2.weight {pair}".replace(" ", "") in out.replace(" ", "")
        assert f"loss step 2 {pair}".replace(" ", "") in out.replace(" ", "")
    assert "k_proj.bias |g|" in out and "FAIL" not in out and out.count("all within tolerance") == 2
