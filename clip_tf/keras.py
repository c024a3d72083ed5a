"""Keras 3 ``compile`` / ``fit`` for the TensorFlow CLIP models, on the model's own contrastive loss.

The models are ``tf.Module`` s, not Keras models; :class:`KerasCLIPModel` is a ``keras.Model`` around one that holds no
variables of its own: its ``trainable_weights`` are the CLIP model's ``trainable_variables`` (so a tower frozen with
``model.vision_model.trainable = False`` stays out of the optimizer), ``train_step`` differentiates the training loss
(:func:`clip_tf.training.contrastive_loss` of the projected features, ``logit_scale`` clamped at ln 100) and applies
the compiled optimizer. ``TFCLIPModel.compile(...)`` / ``.fit(...)`` / ``.evaluate(...)`` make one behind the scenes,
so the transformers spelling ``model.compile(optimizer=...); model.fit(dataset)`` works.

Data: a ``tf.data.Dataset`` (or anything ``keras.Model.fit`` takes) of dicts with ``input_ids``, ``pixel_values``
and optionally ``attention_mask``; CLIP's loss needs no labels, so none may be given. This module imports Keras 3
(``import keras``), never ``tf.keras`` (which ``TF_USE_LEGACY_KERAS=1`` turns into Keras 2). Keras' own ``AdamW``
puts epsilon on the uncorrected ``sqrt(v)`` and decays every variable; :class:`clip_tf.training.Trainer` follows
torch's formula and open_clip's no-decay rule.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from clip_core.tasks.training import LOGIT_SCALE_MAX

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
        from clip_tf.training import contrastive_loss
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
