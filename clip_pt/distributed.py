"""Data-parallel CLIP training in PyTorch: ``DistributedDataParallel`` over gloo (or any torch.distributed backend).

Every worker encodes its shard of the global batch, all-gathers the features of every worker (its own shard keeping
its gradients) and computes open_clip's local loss: its rows against the global batch
(:func:`clip_pt.training.local_contrastive_loss`). The gather's backward sums every worker's gradient for a shard and
hands it to the shard's owner; DDP then averages the parameter gradients. The mean of the local losses is the loss
of one process holding the whole batch, and the averaged gradients are that loss's gradients, so N workers train
exactly as one (up to float32 summation order).

Workers are started by :func:`launch` (``torch.multiprocessing`` processes meeting on 127.0.0.1) or by ``torchrun``
(:func:`setup` reads its environment).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
from torch import nn

from clip_core.tasks.training import LOGIT_SCALE_MAX, TrainingConfig, shard
from clip_pt.training import Trainer, _inputs, local_contrastive_loss


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` along the batch; backward: every worker's gradient summed, each worker keeps its own rows
    (a reduce-scatter, written as all-reduce + slice because gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, features):
        parts = [torch.empty_like(features) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, features.contiguous())
        ctx.rows, ctx.rank = features.shape[0], dist.get_rank()
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_features(features):
    """Every worker's ``features`` concatenated in rank order (``[world * n, d]``); the gradient flows back to each
    worker's own rows. With one worker (or no process group) the features themselves."""
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return features
    return _GatherWithGrad.apply(features)


def distributed_contrastive_loss(text_features, image_features, logit_scale, clamp=LOGIT_SCALE_MAX):
    """This worker's local loss over the global batch (its rows against every worker's gathered features). The mean
    over the workers is :func:`clip_pt.training.contrastive_loss` of the global batch; so are the gradients once
    averaged (as DDP averages them)."""
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return local_contrastive_loss(text_features, image_features, gather_features(text_features),
                                  gather_features(image_features), logit_scale, rank * text_features.shape[0], clamp)



class _Features(nn.Module):
    """What DDP runs: both towers' unnormalised features and the temperature, so the reducer sees every gradient."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, pixel_values):
        return (self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask),
                self.model.get_image_features(pixel_values=pixel_values), self.model.logit_scale)


class DistributedTrainer(Trainer):
    """:class:`clip_pt.training.Trainer` on ``cfg.devices`` workers: ``train_step(batch)`` takes the global batch
    (the same on every worker), trains on this worker's shard and returns the global batch's loss. Needs the process
    group of :func:`launch` or ``torchrun`` (see :func:`setup`). ``is_main`` is True on rank 0 alone, the worker
    that should write files."""

    def __init__(self, model, cfg: TrainingConfig):
        setup(cfg.devices)
        if dist.get_world_size() != cfg.devices:
            raise ValueError(f"cfg.devices is {cfg.devices} but the process group has {dist.get_world_size()} workers")
        super().__init__(model, cfg)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        self.ddp = nn.parallel.DistributedDataParallel(_Features(model))  # broadcasts rank 0's parameters

    def loss_and_grads(self, batch):
        """The global batch's loss (a float, the same on every worker) and the averaged gradients, as
        :meth:`Trainer.loss_and_grads`."""
        self.optimizer.zero_grad(set_to_none=True)
        input_ids, attention_mask, pixel_values = _inputs(shard(batch, self.rank, self.world))
        text, image, logit_scale = self.ddp(input_ids, attention_mask, pixel_values)
        loss = distributed_contrastive_loss(text, image, logit_scale, self.cfg.clamp)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        return float(total) / self.world, {n: self._params[n].grad for n in self.trainable}


def setup(devices: int) -> None:
    """Make sure a process group exists: nothing when one does, else one from ``torchrun``'s environment
    (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) over gloo; otherwise a clear error."""
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed")
    if dist.is_initialized():
        return
    if all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        dist.init_process_group("gloo")
        return
    raise RuntimeError(f"data-parallel training on {devices} devices needs a torch.distributed process group: "
                       "start the workers with clip_pt.distributed.launch or torchrun")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, function, devices: int, port: int, args) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(devices), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=devices)
    try:
        function(*args)
    finally:
        dist.destroy_process_group()


def launch(function, devices: int, *args) -> None:
    """Run ``function(*args)`` in ``devices`` new processes joined in a gloo process group on 127.0.0.1 (each sees
    its rank in ``torch.distributed.get_rank()`` and the ``RANK`` variable). ``function`` must be importable (a
    module-level function); an exception in any worker is raised here. Under ``torchrun`` (``RANK`` and
    ``WORLD_SIZE`` set) this process is one of the workers already: it joins the group and runs ``function``."""
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        if int(os.environ["WORLD_SIZE"]) != devices:
            raise ValueError(f"devices is {devices} but torchrun started {os.environ['WORLD_SIZE']} workers")
        setup(devices)
        function(*args)
        return
    torch.multiprocessing.spawn(_worker, args=(function, devices, _free_port(), args), nprocs=devices, join=True)


__all__ = ["gather_features", "distributed_contrastive_loss", "shard", "DistributedTrainer", "setup", "launch"]
