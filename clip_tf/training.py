"""Training CLIP in TensorFlow: the contrastive loss (single-process and local/data-parallel forms) and a train step
on a Keras 3 optimizer with open_clip's recipe (see :mod:`clip_core.tasks.training` for the hyper-parameters).

Keras' own ``Adam``/``AdamW`` add epsilon to the square root of the *uncorrected* second moment
(``lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``), which is another update than torch.optim.AdamW's and
optax.adamw's ``lr * m_hat / (sqrt(v_hat) + eps)``: the same only when ``eps`` is negligible. :class:`AdamW` here
is a ``keras.optimizers.Optimizer`` doing the latter; its decoupled weight decay is Keras' own
(``var -= lr * wd * var``, no decay for :data:`exclude_from_weight_decay` variables). This module is the only one of
triclip that imports Keras (Keras 3, ``import keras``; never ``tf.keras``).

The Trainer's optimizer state is exchanged as canonical arrays (``exp_avg.<name>``, ``exp_avg_sq.<name>`` in PyTorch
layouts, plus the step), the same in every backend, so a run saved by one backend resumes in another.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from clip_core.tasks.training import (LOGIT_SCALE_MAX, OPTIMIZER_FORMAT, TrainingConfig, check_optimizer_state, decays,
                                      enable_checkpointing, learning_rate, trainable_names)
from clip_core.weights import from_framework_layout, to_framework_layout
from clip_tf.modeling import normalize



def _scale(logit_scale, clamp):
    """``exp(min(logit_scale, clamp))`` (the gradient passes at the bound itself, as in every backend)."""
    logit_scale = tf.reshape(logit_scale, ())
    if clamp is not None:
        logit_scale = tf.where(logit_scale > clamp, tf.constant(clamp, logit_scale.dtype), logit_scale)
    return tf.exp(logit_scale)


def _cross_entropy(logits, labels):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX):
    """CLIP's loss from unnormalised features: both L2-normalised, ``logits_per_text = exp(min(logit_scale, clamp))
    * t @ i.T``, the mean of the text->image and image->text cross-entropies with labels ``arange(n)`` (transformers'
    ``return_loss`` when ``logit_scale <= clamp``)."""
    logits = _scale(logit_scale, clamp) * tf.matmul(normalize(text_features), normalize(image_features),
                                                    transpose_b=True)
    labels = tf.range(tf.shape(logits)[0])
    return (_cross_entropy(logits, labels) + _cross_entropy(tf.transpose(logits), labels)) / 2


def local_contrastive_loss(text_features, image_features, all_text_features, all_image_features, logit_scale,
                           offset, clamp=LOGIT_SCALE_MAX):
    """open_clip's local loss of one data-parallel worker: its rows (global indices ``offset .. offset + n - 1``)
    against the gathered global batch. The mean over equal shards equals :func:`contrastive_loss` of the whole."""
    scale = _scale(logit_scale, clamp)
    text, image = normalize(text_features), normalize(image_features)
    labels = offset + tf.range(tf.shape(text)[0])
    per_text = scale * tf.matmul(text, normalize(all_image_features), transpose_b=True)
    per_image = scale * tf.matmul(image, normalize(all_text_features), transpose_b=True)
    return (_cross_entropy(per_text, labels) + _cross_entropy(per_image, labels)) / 2


def _inputs(batch):
    return tuple(tf.cast(tf.convert_to_tensor(batch[k]), dtype) for k, dtype in
                 (("input_ids", tf.int32), ("attention_mask", tf.int32), ("pixel_values", tf.float32)))


def clip_loss(model, batch, clamp=LOGIT_SCALE_MAX, params=None):
    """The training loss of ``model`` on a batch (``input_ids``, ``attention_mask``, ``pixel_values``); ``params``
    is ignored (the model holds its variables), accepted to mirror the Flax signature."""
    input_ids, attention_mask, pixel_values = _inputs(batch)
    text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    image = model.get_image_features(pixel_values=pixel_values)
    return contrastive_loss(text, image, model.params["logit_scale"], clamp)


class CosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """:func:`clip_core.tasks.training.learning_rate` as a Keras schedule of the optimizer's ``iterations``."""

    def __init__(self, cfg: TrainingConfig):
        self.lr, self.warmup, self.total = float(cfg.lr), int(cfg.warmup_steps), int(cfg.total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float64)
        warm = self.lr * (step + 1) / max(self.warmup, 1)
        span = self.total - self.warmup
        progress = tf.minimum(step - self.warmup, span) / span if span > 0 else None
        cosine = (0.5 * (1 + tf.cos(math.pi * progress)) * self.lr) if span > 0 else \
            tf.constant(self.lr, tf.float64) + 0 * step
        return tf.cast(tf.where(step < self.warmup, warm, cosine), tf.float32)

    def get_config(self):
        return {"lr": self.lr, "warmup": self.warmup, "total": self.total}


class AdamW(keras.optimizers.Optimizer):
    """Adam with decoupled weight decay in torch.optim.AdamW's and optax.adamw's form: ``m = b1 m + (1 - b1) g``,
    ``v = b2 v + (1 - b2) g^2``, ``var -= lr * wd * var`` (Keras' weight decay), then
    ``var -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``."""

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0,
                 name="triclip_adamw", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay or None, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "exp_avg") for v in var_list]
        self._v = [self.add_variable_from_reference(v, "exp_avg_sq") for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(tf.convert_to_tensor(gradient), dtype)
        t = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        m, v = self._m[index], self._v[index]
        self.assign(m, m + (gradient - m) * (1 - self.beta_1))  # torch: exp_avg.lerp_(grad, 1 - beta1)
        self.assign(v, v * self.beta_2 + gradient * gradient * (1 - self.beta_2))
        bias1 = 1 - tf.pow(tf.cast(self.beta_1, dtype), t)
        bias2 = tf.sqrt(1 - tf.pow(tf.cast(self.beta_2, dtype), t))
        self.assign_sub(variable, (lr / bias1) * m / (tf.sqrt(v) / bias2 + self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class Trainer:
    """One process training ``model`` (a :class:`clip_tf.TFCLIPModel`) under ``cfg``: :class:`AdamW` (a Keras
    optimizer) over the trainable variables with :class:`CosineSchedule`; the no-decay variables
    (:func:`~clip_core.tasks.training.decays`) are excluded from its weight decay; frozen ones are not given to it.
    Gradients are computed under one XLA-compiled ``tf.function``. ``step`` counts the updates applied."""

    def __init__(self, model, cfg: TrainingConfig, jit_compile: bool = True):
        if not isinstance(cfg, TrainingConfig):
            raise TypeError(f"cfg must be a TrainingConfig, got {type(cfg).__name__}")
        self.model, self.cfg = model, cfg
        self.table = model.param_table(model.config)
        self.trainable = trainable_names(self.table, cfg)
        if cfg.grad_checkpointing:
            enable_checkpointing(model)
        self._vars = [model.params[n] for n in self.trainable]
        self.optimizer = AdamW(CosineSchedule(cfg), cfg.betas[0], cfg.betas[1], cfg.eps, cfg.weight_decay)
        self.optimizer.build(self._vars)
        self.optimizer.exclude_from_weight_decay(
            var_list=[model.params[n] for n in self.trainable if not decays(n, self.table)])
        clamp = cfg.clamp

        def grads_fn(batch):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self._vars)
                loss = clip_loss(model, batch, clamp)
            grads = tape.gradient(loss, self._vars)
            return loss, [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                          for g, v in zip(grads, self._vars)]

        def apply_fn(grads):
            self.optimizer.apply_gradients(zip(grads, self._vars))

        self._grads_fn = tf.function(grads_fn, jit_compile=jit_compile)
        self._apply_fn = tf.function(apply_fn)

    @property
    def step(self) -> int:
        """The number of updates applied (the optimizer's ``iterations``)."""
        return int(self.optimizer.iterations.numpy())

    @property
    def learning_rate(self) -> float:
        """The rate the next update uses."""
        return learning_rate(self.step, self.cfg)

    def loss_and_grads(self, batch):
        """The loss (a float) and ``{name: gradient}`` of the trainable variables (TensorFlow layouts)."""
        loss, grads = self._grads_fn(dict(zip(("input_ids", "attention_mask", "pixel_values"), _inputs(batch))))
        return float(loss), dict(zip(self.trainable, grads))

    def apply_gradients(self, grads) -> None:
        """One AdamW update from ``grads`` (``{name: tensor}``, TensorFlow layouts)."""
        self._apply_fn([tf.convert_to_tensor(grads[n], tf.float32) for n in self.trainable])

    def train_step(self, batch) -> float:
        """One update on ``batch``; returns the loss before it."""
        loss, grads = self.loss_and_grads(batch)
        self.apply_gradients(grads)
        return loss

    def gradients(self, batch) -> dict[str, np.ndarray]:
        """The loss's gradient of every trainable parameter: canonical names and layouts (numpy)."""
        _, grads = self.loss_and_grads(batch)
        return {n: from_framework_layout(g.numpy(), self.table[n].kind, "tf") for n, g in grads.items()}

    def optimizer_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``({"exp_avg.<name>": m, "exp_avg_sq.<name>": v}, {"step": ..., "format": ...})`` for every trainable
        parameter, canonical layouts (zeros before the first update)."""
        arrays = {}
        for i, name in enumerate(self.trainable):
            kind = self.table[name].kind
            arrays[f"exp_avg.{name}"] = from_framework_layout(self.optimizer._m[i].numpy(), kind, "tf")
            arrays[f"exp_avg_sq.{name}"] = from_framework_layout(self.optimizer._v[i].numpy(), kind, "tf")
        return arrays, {"step": self.step, "format": OPTIMIZER_FORMAT}

    def load_optimizer_state(self, arrays, meta) -> None:
        """Resume from :meth:`optimizer_state`'s output (of any backend)."""
        check_optimizer_state(arrays, meta, self.trainable, {n: self.table[n].shape for n in self.trainable})
        for i, name in enumerate(self.trainable):
            kind = self.table[name].kind
            self.optimizer._m[i].assign(to_framework_layout(np.asarray(arrays[f"exp_avg.{name}"]), kind, "tf"))
            self.optimizer._v[i].assign(to_framework_layout(np.asarray(arrays[f"exp_avg_sq.{name}"]), kind, "tf"))
        self.optimizer.iterations.assign(int(meta["step"]))

    def export_state(self) -> dict[str, np.ndarray]:
        """The model's canonical state now (copies)."""
        return {k: np.array(v) for k, v in self.model.export_state().items()}


# ---------------------------------------------------------------------------------------------- Keras compile / fit
# Keras 3 ``compile`` / ``fit`` for the TensorFlow CLIP models, on the model's own contrastive loss.
#
# The models are ``tf.Module`` s, not Keras models; :class:`KerasCLIPModel` is a ``keras.Model`` around one that
# holds no variables of its own: its ``trainable_weights`` are the CLIP model's ``trainable_variables`` (so a tower
# frozen with ``model.vision_model.trainable = False`` stays out of the optimizer), ``train_step`` differentiates the
# training loss (:func:`contrastive_loss` of the projected features, ``logit_scale`` clamped at ln 100) and applies
# the compiled optimizer. ``TFCLIPModel.compile(...)`` / ``.fit(...)`` / ``.evaluate(...)`` make one behind the scenes,
# so the transformers spelling ``model.compile(optimizer=...); model.fit(dataset)`` works.
#
# Data: a ``tf.data.Dataset`` (or anything ``keras.Model.fit`` takes) of dicts with ``input_ids``, ``pixel_values``
# and optionally ``attention_mask``; CLIP's loss needs no labels, so none may be given. This module imports Keras 3
# (``import keras``), never ``tf.keras`` (which ``TF_USE_LEGACY_KERAS=1`` turns into Keras 2). Keras' own ``AdamW``
# puts epsilon on the uncorrected ``sqrt(v)`` and decays every variable; :class:`clip_tf.training.Trainer` follows
# torch's formula and open_clip's no-decay rule.

_INPUTS = ("input_ids", "attention_mask", "pixel_values")


def _features(model, inputs: dict, training: bool):
    if not isinstance(inputs, dict) or "input_ids" not in inputs or "pixel_values" not in inputs:
        raise ValueError("KerasCLIPModel trains on dicts with input_ids, pixel_values (and optionally "
                         f"attention_mask), got {type(inputs).__name__}"
                         + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict) else ""))
    text = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                   training=training)
    image = model.get_image_features(pixel_values=inputs["pixel_values"], training=training)
    return text, image


class KerasCLIPModel(keras.Model):
    """A ``keras.Model`` training ``model`` (a :class:`clip_tf.TFCLIPModel`) on its contrastive loss.

    ``KerasCLIPModel(model, clamp=ln(100))``, then ``compile(optimizer=...)`` (no ``loss``: the model's own is used)
    and ``fit(dataset)``. Raises ``ValueError`` rather than train nothing: when every variable is frozen, when a
    ``loss`` or labels are given.
    """

    def __init__(self, model, clamp: float | None = LOGIT_SCALE_MAX, **kwargs):
        super().__init__(**kwargs)
        arch = getattr(model, "arch", None)
        if arch != "clip":
            raise TypeError(f"KerasCLIPModel trains a TFCLIPModel (contrastive), got {type(model).__name__}")
        object.__setattr__(self, "clip_model", model)  # not tracked by Keras: its variables are tf.Variables
        self.clamp = clamp
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    # ------------------------------------------------------------------ the CLIP model's variables
    @property
    def trainable_weights(self):
        return list(self.clip_model.trainable_variables) if self.trainable else []

    @property
    def non_trainable_weights(self):
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.clip_model.variables if id(v) not in trainable]

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _require_trainable(self):
        if not self.trainable_weights:
            raise ValueError("every variable of the CLIP model is frozen (trainable = False): fit would train "
                             "nothing; unfreeze a tower or some variables first")

    # ------------------------------------------------------------------ Keras API
    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """``keras.Model.compile`` without ``loss`` (or ``loss=None``): CLIP trains on its own contrastive loss."""
        if loss is not None:
            raise ValueError("KerasCLIPModel trains on the CLIP model's own contrastive loss: compile() without "
                             f"loss, got loss={loss!r}")
        super().compile(optimizer=optimizer, **kwargs)

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``; refuses when no variable is trainable."""
        self._require_trainable()
        return super().fit(*args, **kwargs)

    def call(self, inputs, training=False):
        """The CLIP model's outputs for a dict of inputs."""
        return self.clip_model(**{k: v for k, v in inputs.items() if k in _INPUTS}, training=training)

    def compute_clip_loss(self, inputs, training: bool = False):
        """The training loss on a dict of inputs: the contrastive loss with ``logit_scale`` clamped."""
        text, image = _features(self.clip_model, inputs, training)
        return contrastive_loss(text, image, self.clip_model.params["logit_scale"], self.clamp)

    @staticmethod
    def _inputs(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is not None or sample_weight is not None:
            raise ValueError("CLIP's contrastive loss takes no labels or sample weights: give a dataset of input "
                             "dicts only")
        return x

    def train_step(self, data):
        variables = self.trainable_weights
        if not variables:
            self._require_trainable()
        with tf.GradientTape() as tape:
            loss = self.compute_clip_loss(self._inputs(data), training=True)
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        self.loss_tracker.update_state(self.compute_clip_loss(self._inputs(data), training=False))
        return {"loss": self.loss_tracker.result()}


__all__ = ["KerasCLIPModel"]
