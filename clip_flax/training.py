"""Training CLIP in JAX/Flax: the contrastive loss (single-process and local/data-parallel forms) and a train step on
``optax.adamw`` with open_clip's recipe (see :mod:`clip_core.tasks.training` for the hyper-parameters).

The Trainer's optimizer state is exchanged as canonical arrays (``exp_avg.<name>``, ``exp_avg_sq.<name>`` in PyTorch
layouts, plus the step), the same in every backend, so a run saved by one backend resumes in another.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from clip_core.tasks.training import (LOGIT_SCALE_MAX, OPTIMIZER_FORMAT, TrainingConfig, check_optimizer_state, decays,
                                      enable_checkpointing, learning_rate, trainable_names)
from clip_core.weights import flax_path, from_flax_tree, to_flax_tree
from clip_flax.modeling import normalize



def _scale(logit_scale, clamp):
    """``exp(min(logit_scale, clamp))`` (the gradient passes at the bound itself, as in every backend)."""
    logit_scale = jnp.reshape(logit_scale, ()).astype(jnp.float32)
    if clamp is not None:
        logit_scale = jnp.where(logit_scale > clamp, jnp.float32(clamp), logit_scale)
    return jnp.exp(logit_scale)


def _cross_entropy(logits, labels):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX):
    """CLIP's loss from unnormalised features: both L2-normalised, ``logits_per_text = exp(min(logit_scale, clamp))
    * t @ i.T``, the mean of the text->image and image->text cross-entropies with labels ``arange(n)`` (transformers'
    ``return_loss`` when ``logit_scale <= clamp``)."""
    logits = _scale(logit_scale, clamp) * normalize(text_features) @ normalize(image_features).T
    labels = jnp.arange(logits.shape[0])
    return (_cross_entropy(logits, labels) + _cross_entropy(logits.T, labels)) / 2


def local_contrastive_loss(text_features, image_features, all_text_features, all_image_features, logit_scale,
                           offset, clamp=LOGIT_SCALE_MAX):
    """open_clip's local loss of one data-parallel worker: its rows (global indices ``offset .. offset + n - 1``)
    against the gathered global batch. The mean over equal shards equals :func:`contrastive_loss` of the whole."""
    scale = _scale(logit_scale, clamp)
    text, image = normalize(text_features), normalize(image_features)
    labels = offset + jnp.arange(text.shape[0])
    per_text = scale * text @ normalize(all_image_features).T
    per_image = scale * image @ normalize(all_text_features).T
    return (_cross_entropy(per_text, labels) + _cross_entropy(per_image, labels)) / 2


def _inputs(batch):
    return (jnp.asarray(batch["input_ids"], jnp.int32), jnp.asarray(batch["attention_mask"], jnp.int32),
            jnp.asarray(batch["pixel_values"], jnp.float32))


def clip_loss(model, batch, clamp=LOGIT_SCALE_MAX, params=None):
    """The training loss of ``model`` on a batch (``input_ids``, ``attention_mask``, ``pixel_values``) with
    ``params`` (default ``model.params``; pass them explicitly to differentiate)."""
    params = model.params if params is None else params
    input_ids, attention_mask, pixel_values = _inputs(batch)
    text = model.get_text_features(input_ids, attention_mask, params=params)
    image = model.get_image_features(pixel_values, params=params)
    return contrastive_loss(text, image, params["logit_scale"], clamp)


def schedule(cfg: TrainingConfig) -> optax.Schedule:
    """:func:`clip_core.tasks.training.learning_rate` as an optax schedule of the update count."""
    warmup, span = cfg.warmup_steps, cfg.total_steps - cfg.warmup_steps
    after = optax.cosine_decay_schedule(cfg.lr, span) if span > 0 else optax.constant_schedule(cfg.lr)
    if not warmup:
        return after
    ramp = optax.linear_schedule(cfg.lr / warmup, cfg.lr * (warmup + 1) / warmup, warmup)  # lr * (count + 1) / W
    return optax.join_schedules([ramp, after], [warmup])


def _tree(table, predicate) -> dict:
    """A nested dict shaped like the Flax parameter tree holding ``predicate(name)`` for every parameter."""
    tree: dict = {}
    for name, spec in table.items():
        *parents, leaf = flax_path(spec)
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = bool(predicate(name))
    return tree


class Trainer:
    """One process training ``model`` (a :class:`clip_flax.FlaxCLIPModel`) under ``cfg``: ``optax.adamw`` with
    :func:`schedule` and a weight-decay mask (:func:`~clip_core.tasks.training.decays`, trainable only), chained
    with ``optax.masked(optax.set_to_zero(), frozen)`` so frozen parameters never move (their gradients are also
    stopped, so XLA skips that work). Gradients and updates run under ``jax.jit``. ``params`` is the current tree
    (written back to ``model.params`` after every update); ``step`` counts the updates applied."""

    def __init__(self, model, cfg: TrainingConfig):
        if not isinstance(cfg, TrainingConfig):
            raise TypeError(f"cfg must be a TrainingConfig, got {type(cfg).__name__}")
        self.model, self.cfg = model, cfg
        self.table = model.param_table(model.config)
        self.trainable = trainable_names(self.table, cfg)
        if cfg.grad_checkpointing:
            enable_checkpointing(model)
        keep = set(self.trainable)
        frozen = _tree(self.table, lambda n: n not in keep)
        decay = _tree(self.table, lambda n: n in keep and decays(n, self.table))
        self.optimizer = optax.chain(
            optax.adamw(schedule(cfg), b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps,
                        weight_decay=cfg.weight_decay, mask=decay),
            optax.masked(optax.set_to_zero(), frozen))
        self.params = model.params
        self.opt_state = self.optimizer.init(self.params)
        clamp = cfg.clamp

        def loss_fn(params, batch):
            params = jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
            return clip_loss(model, batch, clamp, params)

        def apply_fn(params, opt_state, grads):
            updates, opt_state = self.optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        self._grads_fn = jax.jit(jax.value_and_grad(loss_fn))
        self._apply_fn = jax.jit(apply_fn)

    @property
    def step(self) -> int:
        """The number of updates applied (optax's count)."""
        return int(self.opt_state[0][0].count)  # (adamw: (ScaleByAdamState, decay, schedule), frozen mask)

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses."""
        return learning_rate(self.step, self.cfg)

    def loss_and_grads(self, batch):
        """The loss (a float) and the gradient tree (Flax layouts; frozen leaves zero)."""
        loss, grads = self._grads_fn(self.params, dict(zip(("input_ids", "attention_mask", "pixel_values"),
                                                           _inputs(batch))))
        return float(loss), grads

    def apply_gradients(self, grads) -> None:
        """One AdamW update from the gradient tree ``grads``."""
        self.params, self.opt_state = self._apply_fn(self.params, self.opt_state, grads)
        self.model.params = self.params

    def train_step(self, batch) -> float:
        """One update on ``batch``; returns the loss before it."""
        loss, grads = self.loss_and_grads(batch)
        self.apply_gradients(grads)
        return loss

    def gradients(self, batch) -> dict[str, np.ndarray]:
        """The loss's gradient of every trainable parameter: canonical names and layouts (numpy)."""
        _, grads = self.loss_and_grads(batch)
        state = from_flax_tree(jax.device_get(grads), self.table)
        return {n: state[n] for n in self.trainable}

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``({"exp_avg.<name>": m, "exp_avg_sq.<name>": v}, {"step": ..., "format": ...})`` for every trainable
        parameter, canonical layouts (zeros before the first update)."""
        arrays = {}
        for key, field in (("exp_avg", "mu"), ("exp_avg_sq", "nu")):
            state = from_flax_tree(jax.device_get(optax.tree_utils.tree_get(self.opt_state, field)), self.table)
            arrays.update((f"{key}.{n}", np.array(state[n], np.float32)) for n in self.trainable)
        return arrays, {"step": self.step, "format": OPTIMIZER_FORMAT}

    def load_optimizer_state(self, arrays, meta) -> None:
        """Resume from :meth:`optimizer_state`'s output (of any backend)."""
        check_optimizer_state(arrays, meta, self.trainable, {n: self.table[n].shape for n in self.trainable})
        trees = {}
        for key, field in (("exp_avg", "mu"), ("exp_avg_sq", "nu")):
            state = {n: np.zeros(spec.shape, np.float32) for n, spec in self.table.items()}
            state.update((n, np.asarray(arrays[f"{key}.{n}"], np.float32)) for n in self.trainable)
            trees[field] = jax.tree_util.tree_map(jnp.asarray, to_flax_tree(state, self.table))
        count = jnp.asarray(int(meta["step"]), jnp.int32)
        self.opt_state = optax.tree_utils.tree_set(self.opt_state, mu=trees["mu"], nu=trees["nu"], count=count)

    def export_state(self) -> dict[str, np.ndarray]:
        """The model's canonical state now (copies)."""
        return {k: np.array(v) for k, v in self.model.export_state(self.params).items()}
