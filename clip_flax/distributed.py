"""Data-parallel CLIP training in JAX/Flax: ``jax.sharding`` over N devices (accelerators, or CPU devices made by
:func:`setup` / ``XLA_FLAGS=--xla_force_host_platform_device_count=N``).

The global batch is split along a one-axis device mesh (``"data"``) and the parameters replicated. Under
``jax.shard_map`` every device encodes its shard, all-gathers the features of every device (``jax.lax.all_gather``,
whose transpose sums every device's gradient for a shard into its owner) and computes open_clip's local loss: its
rows against the global batch (:func:`clip_flax.training.local_contrastive_loss`); the ``pmean`` of the local losses
is the loss of one device holding the whole batch, and its gradient (replicated, all-reduced by XLA) that loss's
gradient, up to float32 summation order. The update is :class:`clip_flax.training.Trainer`'s, on replicated arrays.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from clip_core.tasks.training import LOGIT_SCALE_MAX, TrainingConfig, shard
from clip_flax.training import Trainer, _tree, local_contrastive_loss

_AXIS = "data"  # the mesh axis the batch is split along


def gather_features(features, axis_name: str = _AXIS):
    """Every device's ``features`` concatenated in device order (``[devices * n, d]``), inside ``shard_map`` (or
    ``pmap``) over ``axis_name``; the gradient flows back to each device's own rows (summed over the devices)."""
    return jax.lax.all_gather(features, axis_name, tiled=True)


def distributed_contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX,
                                 axis_name: str = _AXIS):
    """This device's local loss over the global batch (its rows against every device's gathered features), inside
    ``shard_map`` over ``axis_name``. The ``pmean`` over the devices is :func:`clip_flax.training.contrastive_loss`
    of the global batch, gradients included."""
    offset = jax.lax.axis_index(axis_name) * text_features.shape[0]
    return local_contrastive_loss(text_features, image_features, gather_features(text_features, axis_name),
                                  gather_features(image_features, axis_name), logit_scale, offset, clamp)



class DistributedTrainer(Trainer):
    """:class:`clip_flax.training.Trainer` over ``cfg.devices`` devices of a ``jax.sharding.Mesh``:
    ``train_step(batch)`` takes the global batch (split along the mesh, parameters and optimizer state replicated)
    and returns the global batch's loss. ``mesh`` is the mesh; ``is_main`` is True (one process)."""

    def __init__(self, model, cfg: TrainingConfig):
        devices = setup(cfg.devices)
        super().__init__(model, cfg)
        self.world, self.is_main = cfg.devices, True
        self.mesh = Mesh(np.array(devices), (_AXIS,))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.params = jax.device_put(self.params, replicated)
        self.opt_state = jax.device_put(self.opt_state, replicated)
        self.model.params = self.params
        keep, clamp = set(self.trainable), cfg.clamp
        frozen = _tree(self.table, lambda n: n not in keep)

        def local_loss(params, batch):
            params = jax.tree_util.tree_map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
            text = model.get_text_features(batch["input_ids"], batch["attention_mask"], params=params)
            image = model.get_image_features(batch["pixel_values"], params=params)
            return jax.lax.pmean(distributed_contrastive_loss(text, image, params["logit_scale"], clamp), _AXIS)

        loss = jax.shard_map(local_loss, mesh=self.mesh, in_specs=(PartitionSpec(), PartitionSpec(_AXIS)),
                             out_specs=PartitionSpec())
        self._grads_fn = jax.jit(jax.value_and_grad(loss))  # used by Trainer.loss_and_grads

    def loss_and_grads(self, batch):
        """The global batch's loss (a float) and its gradient tree (replicated; frozen leaves zero)."""
        size = len(batch["input_ids"])
        if size % self.world:
            shard(batch, 0, self.world)  # the clear error
        return super().loss_and_grads(batch)


def setup(devices: int) -> list:
    """``devices`` JAX devices for the mesh: the default backend's when it has enough, else CPU devices (made here,
    with ``jax_num_cpu_devices``, when JAX's backends have not started; a clear error when they have with fewer)."""
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    try:
        from jax._src import xla_bridge
        started = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # pragma: no cover - other JAX versions
        started = True
    if not started:
        try:
            if jax.config.jax_num_cpu_devices < devices:
                jax.config.update("jax_num_cpu_devices", devices)
        except (AttributeError, RuntimeError):  # pragma: no cover - older JAX
            pass
    if len(jax.devices()) >= devices:
        return jax.devices()[:devices]
    cpus = jax.devices("cpu")
    if len(cpus) >= devices:
        return cpus[:devices]
    raise RuntimeError(f"data-parallel training on {devices} devices, but JAX has started with {len(cpus)} CPU "
                       f"devices: call clip_flax.distributed.setup({devices}) before any JAX computation, or set "
                       f"XLA_FLAGS=--xla_force_host_platform_device_count={devices}")


def launch(function, devices: int, *args):
    """Run ``function(*args)`` here, after :func:`setup` (one process drives every device; PyTorch's ``launch``
    starts one process per device instead)."""
    setup(devices)
    return function(*args)


__all__ = ["gather_features", "distributed_contrastive_loss", "shard", "DistributedTrainer", "setup", "launch"]
