"""Gradient parity: every parameter's gradient of the contrastive loss, by canonical name, in every backend and in
transformers' PyTorch ``CLIPModel`` (eager attention, PyTorch autograd: an independent implementation).

The loss is transformers' ``return_loss`` (each backend's ``clip_loss`` with ``clamp=None``: the ln(100) clamp is a
training rule transformers' model does not apply; below ln(100) the two are the same function). Gradients are
compared within 1e-5 absolute (DESIGN.md). Parameters whose true gradient is zero are compared by absolute value
only: ``k_proj.bias`` adds the same amount to every attention logit of a query row, which softmax ignores, so its
gradient is rounding noise of either sign in every implementation.
"""

from __future__ import annotations

import importlib
from typing import Iterable, Mapping

import numpy as np

from clip_core.config import CLIPConfig
from clip_core.weights import init_state
from conformance.forward import Report, Row, available_backends, make_inputs

GRADIENT_TOLERANCE = 1e-5
MODEL_CLASSES = {"pt": ("clip_pt", "CLIPModel"), "tf": ("clip_tf", "TFCLIPModel"),
                 "flax": ("clip_flax", "FlaxCLIPModel")}


def zero_gradient(name: str) -> bool:
    """Whether a parameter's true gradient of the loss is zero (softmax's shift invariance: ``k_proj.bias``)."""
    return name.endswith("self_attn.k_proj.bias")


def resolve(config=None, state=None, checkpoint=None, preset=None, seed: int = 0):
    """``(config, state)`` from a checkpoint, or a config / preset (default ``"tiny"``) with seeded random weights."""
    if checkpoint is not None:
        from clip_core.checkpoints import load_checkpoint

        return load_checkpoint(checkpoint, arch="clip")
    config = config if config is not None else CLIPConfig.preset(preset or "tiny")
    return config, (dict(state) if state is not None else init_state(config, "clip", seed))


def model_for(backend: str, config, state):
    """A float32 model of ``backend`` holding a copy of ``state``."""
    module, name = MODEL_CLASSES[backend]
    cls = getattr(importlib.import_module(module), name)
    return cls._from_state(config, {k: np.array(v, np.float32) for k, v in state.items()})


def backend_gradients(backend: str, config, state, batch, clamp=None) -> tuple[float, dict[str, np.ndarray]]:
    """``(loss, {name: gradient})`` of ``backend`` through its Trainer (every parameter trainable)."""
    from clip_core.tasks.training import TrainingConfig

    training = importlib.import_module(f"{MODEL_CLASSES[backend][0]}.training")
    trainer = training.Trainer(model_for(backend, config, state), TrainingConfig(clamp=clamp))
    loss, _ = trainer.loss_and_grads(batch)
    return loss, trainer.gradients(batch)


def transformers_model(config, state):
    """transformers' PyTorch ``CLIPModel`` (eager attention) holding ``state``."""
    import torch
    import transformers

    hf = transformers.CLIPModel(transformers.CLIPConfig(**config.to_dict(), attn_implementation="eager"))
    missing, unexpected = hf.load_state_dict({k: torch.tensor(np.array(v, np.float32)) for k, v in state.items()},
                                             strict=False)
    if [m for m in missing if "position_ids" not in m] or unexpected:
        raise ValueError(f"state does not fit transformers' CLIPModel: missing {missing}, unexpected {unexpected}")
    return hf


def transformers_loss_and_grads(hf, batch) -> tuple[float, dict[str, np.ndarray]]:
    """transformers' ``return_loss`` and PyTorch autograd's gradient of every parameter."""
    import torch

    hf.zero_grad(set_to_none=True)
    out = hf(input_ids=torch.as_tensor(batch["input_ids"]), attention_mask=torch.as_tensor(batch["attention_mask"]),
             pixel_values=torch.as_tensor(batch["pixel_values"]), return_loss=True)
    out.loss.backward()
    return float(out.loss.detach()), {n: p.grad.detach().numpy().copy() for n, p in hf.named_parameters()}


def compare_gradients(rows: list, a: Mapping, b: Mapping, pair: str, tolerance: float = GRADIENT_TOLERANCE) -> None:
    """One row per canonical name present in both: max abs difference, or for zero-gradient parameters the
    larger of the two max abs values (``name |g|``)."""
    for name in a:
        if name not in b:
            continue
        if zero_gradient(name):
            value = max(float(np.abs(a[name]).max()), float(np.abs(b[name]).max()))
            rows.append(Row(f"{name} |g|", pair, value, tolerance))
        else:
            rows.append(Row(name, pair, float(np.abs(np.asarray(a[name]) - np.asarray(b[name])).max()), tolerance))


def run_gradient_conformance(*, config: CLIPConfig | None = None, state: Mapping[str, np.ndarray] | None = None,
                             checkpoint=None, preset: str | None = None, backends: Iterable[str] | None = None,
                             batch: int = 4, seed: int = 0) -> Report:
    """Every parameter's gradient in every installed backend (``pt``, ``tf``, ``flax``; ``hf`` = transformers'
    PyTorch autograd, the reference, when installed), compared pairwise and with the reference."""
    config, state = resolve(config, state, checkpoint, preset, seed)
    names = available_backends(backends or ("pt", "tf", "flax", "hf"))
    inputs = make_inputs(config, batch=batch, seed=seed)
    grads, losses = {}, {}
    for name in names:
        if name == "hf":
            losses[name], grads[name] = transformers_loss_and_grads(transformers_model(config, state), inputs)
        else:
            losses[name], grads[name] = backend_gradients(name, config, state, inputs)
    report = Report(backends=names, title=f"gradients of the contrastive loss, batch {batch}, every parameter "
                                          f"by canonical name (|g|: true gradient zero, compared by size)")
    ours = [n for n in names if n != "hf"]
    for i, a in enumerate(ours):
        for b in ours[i + 1:]:
            report.rows.append(Row("loss", f"{a}-{b}", abs(losses[a] - losses[b]), 1e-4))
            compare_gradients(report.rows, grads[a], grads[b], f"{a}-{b}")
    if "hf" in names:
        for a in ours:
            report.rows.append(Row("loss", f"{a}-hf", abs(losses[a] - losses["hf"]), 1e-4))
            compare_gradients(report.rows, grads[a], grads["hf"], f"{a}-hf")
    return report
