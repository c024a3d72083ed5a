"""Data-parallel CLIP training in TensorFlow: ``tf.distribute.MirroredStrategy`` over N devices (GPUs, or logical
CPU devices made by :func:`setup`).

Every replica encodes its shard of the global batch, all-gathers the features of every replica
(``ReplicaContext.all_gather``, whose gradient sums every replica's gradient for a shard and hands it to the shard's
owner) and computes open_clip's local loss: its rows against the global batch
(:func:`clip_tf.training.local_contrastive_loss`). The replicas' gradients are averaged (all-reduce), so the mean of
the local losses and the averaged gradients are the loss and gradients of one device holding the whole batch (up to
float32 summation order). The update is :class:`clip_tf.training.Trainer`'s, once, on the model's variables.
"""

from __future__ import annotations

import tensorflow as tf

from clip_core.tasks.training import LOGIT_SCALE_MAX, TrainingConfig, shard
from clip_tf.training import Trainer, _inputs, local_contrastive_loss

_NAMES = ("input_ids", "attention_mask", "pixel_values")


def gather_features(features):
    """Every replica's ``features`` concatenated in replica order (``[replicas * n, d]``), in a replica context;
    the gradient flows back to each replica's own rows (summed over the replicas). Outside a strategy (one
    replica) the features themselves."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return features
    return context.all_gather(features, axis=0)


def distributed_contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX):
    """This replica's local loss over the global batch (its rows against every replica's gathered features). The
    mean over the replicas is :func:`clip_tf.training.contrastive_loss` of the global batch; so are the gradients
    once averaged over the replicas."""
    context = tf.distribute.get_replica_context()
    replica = 0 if context is None else context.replica_id_in_sync_group
    offset = tf.cast(replica, tf.int32) * tf.shape(text_features)[0]
    return local_contrastive_loss(text_features, image_features, gather_features(text_features),
                                  gather_features(image_features), logit_scale, offset, clamp)



class DistributedTrainer(Trainer):
    """:class:`clip_tf.training.Trainer` on ``cfg.devices`` replicas of a ``MirroredStrategy``: ``train_step(batch)``
    takes the global batch, runs each shard on its device and returns the global batch's loss. ``strategy`` is the
    strategy; ``is_main`` is True (one process)."""

    def __init__(self, model, cfg: TrainingConfig):
        devices = setup(cfg.devices)
        super().__init__(model, cfg, jit_compile=False)
        self.world, self.is_main = cfg.devices, True
        self.strategy = tf.distribute.MirroredStrategy(devices)
        clamp, variables = cfg.clamp, self._vars

        def replica(inputs):
            context = tf.distribute.get_replica_context()
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                text = model.get_text_features(input_ids=inputs["input_ids"],
                                               attention_mask=inputs["attention_mask"], training=True)
                image = model.get_image_features(pixel_values=inputs["pixel_values"], training=True)
                loss = distributed_contrastive_loss(text, image, model.params["logit_scale"], clamp)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                     for g, v in zip(tape.gradient(loss, variables), variables)]
            return context.all_reduce(tf.distribute.ReduceOp.MEAN, (loss, grads))

        self._replica_step = tf.function(lambda inputs: self.strategy.run(replica, args=(inputs,)))

    def loss_and_grads(self, batch):
        """The global batch's loss (a float) and the averaged ``{name: gradient}`` (TensorFlow layouts)."""
        tensors = dict(zip(_NAMES, _inputs(batch)))
        shards = [shard(tensors, r, self.world) for r in range(self.world)]
        inputs = self.strategy.experimental_distribute_values_from_function(
            lambda context: shards[context.replica_id_in_sync_group])
        loss, grads = self._replica_step(inputs)
        first = self.strategy.experimental_local_results  # every replica holds the same all-reduced values
        return float(first(loss)[0]), {n: tf.identity(first(g)[0]) for n, g in zip(self.trainable, grads)}


def setup(devices: int) -> list[str]:
    """The names of ``devices`` devices for a ``MirroredStrategy``: GPUs when there are enough, else logical CPU
    devices (made here when TensorFlow's runtime has not started yet; a clear error when it has with fewer)."""
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) >= devices:
        return [f"/gpu:{i}" for i in range(devices)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if configured is None or len(configured) < devices:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
        except RuntimeError as error:
            have = len(tf.config.list_logical_devices("CPU"))
            if have < devices:
                raise RuntimeError(f"data-parallel training on {devices} devices needs {devices} logical CPU devices "
                                   f"but TensorFlow has started with {have}: call clip_tf.distributed.setup"
                                   f"({devices}) before creating any model or tensor") from error
    return [f"/cpu:{i}" for i in range(devices)]


def launch(function, devices: int, *args):
    """Run ``function(*args)`` here, after :func:`setup` (one process drives every replica; PyTorch's ``launch``
    starts one process per device instead)."""
    setup(devices)
    return function(*args)


__all__ = ["gather_features", "distributed_contrastive_loss", "shard", "DistributedTrainer", "setup", "launch"]
