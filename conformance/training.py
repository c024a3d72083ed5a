"""Training parity: K AdamW steps from one state on one batch stream in every backend, and in transformers' PyTorch
``CLIPModel`` driven by ``torch.optim.AdamW`` (the reference: another model implementation and the reference
optimizer, with open_clip's decay rule and the same schedule).

Compared: the loss of every step (1e-4, DESIGN.md) and, after the K steps, the logits and normalised embeddings of a
held-out batch (1e-4 and 1e-5, the forward tolerances). Not compared: the ``k_proj.bias`` parameters. Their true
gradient is zero (softmax ignores a shift shared by a whole row of attention logits), so each implementation's
gradient is rounding noise of either sign, and Adam, which divides by the gradient's own running size, turns that
noise into steps of up to about ``lr`` in arbitrary directions. Those parameters therefore drift apart between
backends (the table reports by how much, for information) but, by the same invariance, the drift changes no output:
that is what the logits and embeddings rows show.
"""

from __future__ import annotations

import importlib
from typing import Iterable, Mapping

import numpy as np

from clip_core.config import CLIPConfig
from clip_core.tasks.training import TrainingConfig, decays, learning_rate
from conformance.forward import Report, Row, available_backends, make_inputs
from conformance.gradients import (MODEL_CLASSES, model_for, resolve, transformers_loss_and_grads,
                                   transformers_model, zero_gradient)

LOSS_TOLERANCE, LOGITS_TOLERANCE, EMBEDS_TOLERANCE = 1e-4, 1e-4, 1e-5


def default_training_config(steps: int) -> TrainingConfig:
    """The hyper-parameters of the comparison: open_clip's betas and epsilon, warm-up then cosine over ``steps``."""
    return TrainingConfig(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6,
                          warmup_steps=min(2, max(steps - 1, 0)), total_steps=max(steps, 1))


def _outputs(backend: str, model, batch) -> dict[str, np.ndarray]:
    from clip_core.tasks.features import image_features, l2_normalize, text_features

    text = l2_normalize(text_features(model, batch["input_ids"], batch["attention_mask"]))
    image = l2_normalize(image_features(model, batch["pixel_values"]))
    if backend == "flax":
        scale = float(np.asarray(model.params["logit_scale"]))
    elif backend == "tf":
        scale = float(model.params["logit_scale"].numpy().reshape(()))
    else:
        scale = float(model.logit_scale.detach())
    return {"logits_per_image": np.exp(scale) * image @ text.T, "text_embeds": text, "image_embeds": image}


def backend_run(backend: str, config, state, batches, cfg: TrainingConfig, probe) -> dict:
    """Train a ``backend`` model ``len(batches)`` steps; its losses, final state and outputs on ``probe``."""
    training = importlib.import_module(f"{MODEL_CLASSES[backend][0]}.training")
    trainer = training.Trainer(model_for(backend, config, state), cfg)
    losses = [trainer.train_step(b) for b in batches]
    return {"losses": losses, "state": trainer.export_state(), "outputs": _outputs(backend, trainer.model, probe)}


def transformers_run(config, state, batches, cfg: TrainingConfig, probe) -> dict:
    """The reference: transformers' ``CLIPModel`` with ``torch.optim.AdamW`` (decay / no-decay groups by
    :func:`~clip_core.tasks.training.decays`) and ``LambdaLR`` over :func:`learning_rate`; the ln(100) clamp is
    applied to ``logit_scale`` before each step's loss (transformers' model has none)."""
    import torch

    hf = transformers_model(config, state)
    params = dict(hf.named_parameters())
    groups = [{"params": [p for n, p in params.items() if decays(n)], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in params.items() if not decays(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: learning_rate(s, cfg) / cfg.lr)
    losses = []
    for batch in batches:
        if cfg.clamp is not None and float(hf.logit_scale.detach()) > cfg.clamp:
            raise ValueError("the reference run applies no clamp: keep logit_scale below ln(100)")
        losses.append(transformers_loss_and_grads(hf, batch)[0])
        opt.step()
        sched.step()
    state_out = {n: p.detach().numpy().copy() for n, p in params.items()}
    with torch.no_grad():
        out = hf(input_ids=torch.as_tensor(probe["input_ids"]), attention_mask=torch.as_tensor(probe["attention_mask"]),
                 pixel_values=torch.as_tensor(probe["pixel_values"]))
    outputs = {"logits_per_image": out.logits_per_image.numpy(), "text_embeds": out.text_embeds.numpy(),
               "image_embeds": out.image_embeds.numpy()}
    return {"losses": losses, "state": state_out, "outputs": outputs}


def _compare(rows: list, a: dict, b: dict, pair: str) -> None:
    for step, (la, lb) in enumerate(zip(a["losses"], b["losses"]), start=1):
        rows.append(Row(f"loss step {step}", pair, abs(la - lb), LOSS_TOLERANCE))
    for name, tol in (("logits_per_image", LOGITS_TOLERANCE), ("text_embeds", EMBEDS_TOLERANCE),
                      ("image_embeds", EMBEDS_TOLERANCE)):
        rows.append(Row(f"final {name}", pair, float(np.abs(a["outputs"][name] - b["outputs"][name]).max()), tol))


def drift(a: Mapping, b: Mapping) -> dict[str, float]:
    """Max abs difference of the zero-gradient parameters (informative) and of all others."""
    zero = [float(np.abs(a[n] - b[n]).max()) for n in a if zero_gradient(n) and n in b]
    rest = [float(np.abs(a[n] - b[n]).max()) for n in a if not zero_gradient(n) and n in b]
    return {"k_proj.bias": max(zero, default=0.0), "others": max(rest, default=0.0)}


def run_training_conformance(*, steps: int = 5, config: CLIPConfig | None = None,
                             state: Mapping[str, np.ndarray] | None = None, checkpoint=None, preset: str | None = None,
                             backends: Iterable[str] | None = None, batch: int = 4, seed: int = 0,
                             cfg: TrainingConfig | None = None) -> Report:
    """``steps`` AdamW steps in every installed backend (and the transformers + torch.optim reference ``hf``),
    one batch stream (:func:`~conformance.forward.make_inputs` seeded ``seed + i``); per-step losses and the final
    outputs compared pairwise and with the reference. Parameter drift is added as informative rows (tolerance
    ``inf``): the zero-gradient ``k_proj.bias`` parameters apart from all others."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    config, state = resolve(config, state, checkpoint, preset, seed)
    cfg = cfg or default_training_config(steps)
    names = available_backends(backends or ("pt", "tf", "flax", "hf"))
    batches = [make_inputs(config, batch=batch, seed=seed + 1 + i) for i in range(steps)]
    probe = make_inputs(config, batch=batch, seed=seed + 1000)
    runs = {n: transformers_run(config, state, batches, cfg, probe) if n == "hf" else
            backend_run(n, config, state, batches, cfg, probe) for n in names}
    report = Report(backends=names, title=f"{steps} AdamW steps (lr {cfg.lr:g}, warm-up {cfg.warmup_steps}, "
                                          f"cosine, weight decay {cfg.weight_decay:g}), batch {batch}")
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in pairs:
        _compare(report.rows, runs[a], runs[b], f"{a}-{b}")
    for a, b in pairs:
        d = drift(runs[a]["state"], runs[b]["state"])
        report.rows.append(Row("drift: k_proj.bias (info)", f"{a}-{b}", d["k_proj.bias"], float("inf")))
        report.rows.append(Row("drift: other params (info)", f"{a}-{b}", d["others"], float("inf")))
    return report
