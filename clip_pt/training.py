"""Training CLIP in PyTorch: the contrastive loss (single-process and local/data-parallel forms) and a train step on
``torch.optim.AdamW`` with open_clip's recipe (see :mod:`clip_core.tasks.training` for the hyper-parameters).

The Trainer's optimizer state is exchanged as canonical arrays (``exp_avg.<name>``, ``exp_avg_sq.<name>`` in PyTorch
layouts, plus the step), the same in every backend, so a run saved by one backend resumes in another.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from clip_core.tasks.training import (LOGIT_SCALE_MAX, OPTIMIZER_FORMAT, TrainingConfig, check_optimizer_state, decays,
                                      enable_checkpointing, learning_rate, trainable_names)
from clip_pt.modeling import normalize



def _scale(logit_scale, clamp):
    """``exp(min(logit_scale, clamp))`` (the gradient passes at the bound itself, as in every backend)."""
    logit_scale = logit_scale.reshape(())
    if clamp is not None:
        logit_scale = torch.where(logit_scale > clamp, torch.full_like(logit_scale, clamp), logit_scale)
    return logit_scale.exp()


def contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX):
    """CLIP's loss from unnormalised features: both L2-normalised, ``logits_per_text = exp(min(logit_scale, clamp))
    * t @ i.T``, the mean of the text->image and image->text cross-entropies with labels ``arange(n)`` (transformers'
    ``return_loss`` when ``logit_scale <= clamp``)."""
    logits = _scale(logit_scale, clamp) * normalize(text_features) @ normalize(image_features).t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def local_contrastive_loss(text_features, image_features, all_text_features, all_image_features, logit_scale,
                           offset, clamp=LOGIT_SCALE_MAX):
    """open_clip's local loss of one data-parallel worker: its rows (global indices ``offset .. offset + n - 1``)
    against the gathered global batch. The mean over equal shards equals :func:`contrastive_loss` of the whole."""
    scale = _scale(logit_scale, clamp)
    text, image = normalize(text_features), normalize(image_features)
    labels = offset + torch.arange(text.shape[0], device=text.device)
    per_text = scale * text @ normalize(all_image_features).t()
    per_image = scale * image @ normalize(all_text_features).t()
    return (F.cross_entropy(per_text, labels) + F.cross_entropy(per_image, labels)) / 2


def _inputs(batch):
    return (torch.as_tensor(np.asarray(batch["input_ids"]), dtype=torch.long),
            torch.as_tensor(np.asarray(batch["attention_mask"]), dtype=torch.long),
            torch.as_tensor(np.asarray(batch["pixel_values"]), dtype=torch.float32))


def clip_loss(model, batch, clamp=LOGIT_SCALE_MAX, params=None):
    """The training loss of ``model`` on a batch (``input_ids``, ``attention_mask``, ``pixel_values``); ``params``
    is ignored (the model holds its parameters), accepted to mirror the Flax signature."""
    input_ids, attention_mask, pixel_values = _inputs(batch)
    text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    image = model.get_image_features(pixel_values=pixel_values)
    return contrastive_loss(text, image, model.logit_scale, clamp)


class Trainer:
    """One process training ``model`` (a :class:`clip_pt.CLIPModel`) under ``cfg``: ``torch.optim.AdamW`` with two
    parameter groups (decay / no decay, :func:`~clip_core.tasks.training.decays`) and a ``LambdaLR`` following
    :func:`~clip_core.tasks.training.learning_rate`; frozen parameters get ``requires_grad=False`` and stay out of
    the optimizer. ``step`` counts the updates applied."""

    def __init__(self, model, cfg: TrainingConfig):
        if not isinstance(cfg, TrainingConfig):
            raise TypeError(f"cfg must be a TrainingConfig, got {type(cfg).__name__}")
        self.model, self.cfg = model, cfg
        self.table = model.param_table(model.config)
        self.trainable = trainable_names(self.table, cfg)
        if cfg.grad_checkpointing:
            enable_checkpointing(model)
        self._params = dict(model.named_parameters())
        keep = set(self.trainable)
        for name, param in self._params.items():
            param.requires_grad_(name in keep)
        groups = [{"params": [self._params[n] for n in self.trainable if decays(n, self.table) == wd],
                   "weight_decay": cfg.weight_decay if wd else 0.0} for wd in (True, False)]
        self.optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas,
                                           eps=cfg.eps, foreach=False)
        self.step = 0
        self._schedule()
        model.train()

    def _schedule(self) -> None:
        """A LambdaLR whose factor makes group ``lr`` equal :func:`learning_rate` of update ``self.step``."""
        factor = (lambda s: learning_rate(s, self.cfg) / self.cfg.lr) if self.cfg.lr else (lambda s: 0.0)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = self.cfg.lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor, last_epoch=self.step - 1)
        if self.step == 0:
            return
        for group in self.optimizer.param_groups:  # last_epoch > -1 does not set the rate itself
            group["lr"] = learning_rate(self.step, self.cfg)

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses."""
        return learning_rate(self.step, self.cfg)

    def loss_and_grads(self, batch):
        """The loss (a float) and ``{name: gradient tensor}`` of the trainable parameters (also left in ``.grad``)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = clip_loss(self.model, batch, self.cfg.clamp)
        loss.backward()
        return float(loss.detach()), {n: self._params[n].grad for n in self.trainable}

    def apply_gradients(self, grads) -> None:
        """One AdamW update from ``grads`` (``{name: tensor}``; written into ``.grad`` when they are other tensors)."""
        for name in self.trainable:
            param = self._params[name]
            if grads[name] is not param.grad:
                param.grad = grads[name].detach().to(param.dtype).reshape(param.shape)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1

    def train_step(self, batch) -> float:
        """One update on ``batch``; returns the loss before it."""
        loss, grads = self.loss_and_grads(batch)
        self.apply_gradients(grads)
        return loss

    def gradients(self, batch) -> dict[str, np.ndarray]:
        """The loss's gradient of every trainable parameter: canonical names and layouts (numpy)."""
        _, grads = self.loss_and_grads(batch)
        out = {n: g.detach().cpu().numpy().copy() for n, g in grads.items()}
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``({"exp_avg.<name>": m, "exp_avg_sq.<name>": v}, {"step": ..., "format": ...})`` for every trainable
        parameter, canonical layouts (zeros before the first update)."""
        arrays = {}
        for name in self.trainable:
            param = self._params[name]
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                value = state.get(key)
                arrays[f"{key}.{name}"] = (np.zeros(param.shape, np.float32) if value is None
                                           else value.detach().cpu().float().numpy().copy())
        return arrays, {"step": self.step, "format": OPTIMIZER_FORMAT}

    def load_optimizer_state(self, arrays, meta) -> None:
        """Resume from :meth:`optimizer_state`'s output (of any backend)."""
        check_optimizer_state(arrays, meta, self.trainable, {n: tuple(self._params[n].shape) for n in self.trainable})
        step = int(meta["step"])
        for name in self.trainable:
            param = self._params[name]
            self.optimizer.state[param] = {
                "step": torch.tensor(float(step)),
                "exp_avg": torch.tensor(np.asarray(arrays[f"exp_avg.{name}"]), dtype=param.dtype),
                "exp_avg_sq": torch.tensor(np.asarray(arrays[f"exp_avg_sq.{name}"]), dtype=param.dtype)}
        self.step = step
        self._schedule()

    def export_state(self) -> dict[str, np.ndarray]:
        """The model's canonical state now (copies)."""
        return {k: np.array(v) for k, v in self.model.export_state().items()}
