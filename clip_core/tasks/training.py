"""Training hyper-parameters and their rules, the same for every backend (no framework imported here).

- :class:`TrainingConfig`: AdamW (decoupled weight decay, bias correction, epsilon outside the square root, as
  ``torch.optim.AdamW`` and ``optax.adamw``), the learning-rate schedule, the logit-scale clamp, batching, freezing.
- :func:`learning_rate`: the rate of the ``step``-th update (0-based): linear warm-up then cosine decay to zero, as
  open_clip's ``cosine_lr``.
- :func:`decays`: whether a canonical parameter gets weight decay (only ``linear`` and ``conv`` kernels; no decay for
  biases, norms, embeddings, the class embedding and ``logit_scale``), read from :mod:`clip_core.weights`' kinds.
- :func:`frozen`: whether a canonical parameter is frozen (``lock_image`` and name patterns).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

#: OpenAI's bound on the learned temperature: ``exp(logit_scale) <= 100``
LOGIT_SCALE_MAX = math.log(100.0)
#: the kinds of parameter that get weight decay (see :mod:`clip_core.weights`)
DECAY_KINDS = ("linear", "conv")
#: what ``lock_image`` freezes: the vision tower and its projection (open_clip's locked-image tuning)
IMAGE_PREFIXES = ("vision_model.", "visual_projection.")


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of contrastive training; every backend reads them with the same meaning.

    ``lr`` peak learning rate; ``weight_decay`` decoupled (the update subtracts ``lr_t * weight_decay * param``, as
    torch.optim.AdamW / optax.adamw); ``betas``, ``eps`` Adam's (``eps`` added to ``sqrt(v_hat)``);
    ``warmup_steps`` linear warm-up length and ``total_steps`` the schedule's length (see :func:`learning_rate`);
    ``clamp`` the upper bound of ``logit_scale`` before ``exp`` in the training loss (``None``: no clamp);
    ``seed`` the data order; ``batch_size`` the global batch; ``lock_image`` freeze the vision tower and its
    projection; ``freeze`` canonical names or glob patterns (``"text_model.embeddings.*"``) to freeze;
    ``grad_checkpointing`` recompute each encoder layer in the backward pass; ``devices`` data-parallel workers.
    """

    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 0
    total_steps: int = 1000
    clamp: float | None = LOGIT_SCALE_MAX
    seed: int = 0
    batch_size: int = 32
    lock_image: bool = False
    freeze: tuple[str, ...] = field(default_factory=tuple)
    grad_checkpointing: bool = False
    devices: int = 1

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "freeze", tuple(self.freeze))
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")
        for name in ("warmup_steps", "total_steps", "seed", "batch_size", "devices"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if self.warmup_steps < 0 or self.total_steps < 1 or self.seed < 0 or self.batch_size < 1 \
                or self.devices < 1:
            raise ValueError("need warmup_steps >= 0, total_steps >= 1, seed >= 0, batch_size >= 1, devices >= 1")
        if self.clamp is not None and not math.isfinite(self.clamp):
            raise ValueError(f"clamp must be a finite number or None, got {self.clamp!r}")
        if not all(isinstance(p, str) and p for p in self.freeze):
            raise TypeError(f"freeze must hold non-empty strings, got {self.freeze!r}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (``from_dict`` reads it back)."""
        out = dataclasses.asdict(self)
        out["betas"], out["freeze"] = list(self.betas), list(self.freeze)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "TrainingConfig":
        """The config of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainingConfig fields {sorted(unknown)}")
        return cls(**{**data, "betas": tuple(data.get("betas", cls.betas)), "freeze": tuple(data.get("freeze", ()))})


def learning_rate(step: int, cfg: TrainingConfig) -> float:
    """The learning rate of update number ``step`` (0-based), as open_clip's ``cosine_lr``:

    ``lr * (step + 1) / warmup_steps`` while ``step < warmup_steps``, then
    ``0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))) * lr`` up to ``total_steps`` and
    zero after it (open_clip's cosine would rise again; optax's cosine_decay_schedule stays at its end, as here);
    ``lr`` itself after the warm-up when ``total_steps <= warmup_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = cfg.total_steps - cfg.warmup_steps
    if span <= 0:
        return cfg.lr
    progress = min(step - cfg.warmup_steps, span) / span
    return 0.5 * (1.0 + math.cos(math.pi * progress)) * cfg.lr


@functools.lru_cache(maxsize=1)
def _kinds_by_pattern() -> dict[str, str]:
    """The kind of every canonical name, with layer numbers replaced by ``*``, from a one-layer table."""
    from clip_core.config import CLIPConfig
    from clip_core.weights import param_table

    tiny = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(text_config=dict(tiny, vocab_size=16, max_position_embeddings=8),
                        vision_config=dict(tiny, image_size=8, patch_size=4), projection_dim=8)
    kinds = {}
    for arch in ("clip", "image_classification"):
        for name, spec in param_table(config, arch).items():
            kinds[_LAYER.sub(".*.", name)] = spec.kind
    return kinds


_LAYER = re.compile(r"\.\d+\.")


def kind_of(name: str, table: Mapping | None = None) -> str:
    """The kind (:data:`clip_core.weights.KINDS`) of a canonical parameter name; from ``table`` (a parameter table)
    when given, else from the naming rules of :mod:`clip_core.weights`. Unknown names are a ``ValueError``."""
    if table is not None:
        if name not in table:
            raise ValueError(f"unknown parameter {name!r}: not in the model's parameter table")
        return table[name].kind
    kind = _kinds_by_pattern().get(_LAYER.sub(".*.", name))
    if kind is None:
        raise ValueError(f"unknown parameter {name!r}: not a canonical CLIP parameter name")
    return kind


def decays(canonical_name: str, table: Mapping | None = None) -> bool:
    """Whether weight decay applies: only to ``linear`` and ``conv`` kernels (projections included); never to
    biases, norm scales and biases, embedding tables, the class embedding or ``logit_scale`` (open_clip's rule)."""
    return kind_of(canonical_name, table) in DECAY_KINDS


def frozen(canonical_name: str, lock_image: bool = False, patterns: Sequence[str] = ()) -> bool:
    """Whether a parameter is frozen: ``lock_image`` freezes ``vision_model.*`` and ``visual_projection.*``; each of
    ``patterns`` freezes the name it equals, the names below it (``"text_model.embeddings"``) or the names its glob
    matches (``"*.layer_norm1.*"``)."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if lock_image and canonical_name.startswith(IMAGE_PREFIXES):
        return True
    return any(canonical_name == p or canonical_name.startswith(p.rstrip(".") + ".")
               or fnmatch.fnmatchcase(canonical_name, p) for p in patterns)


def trainable_names(table: Mapping, cfg: TrainingConfig) -> list[str]:
    """The names of ``table`` that train under ``cfg`` (table order); a ``freeze`` pattern matching nothing is a
    ``ValueError`` (a typo would otherwise train what was meant to be frozen)."""
    for pattern in cfg.freeze:
        if not any(frozen(name, False, (pattern,)) for name in table):
            raise ValueError(f"freeze pattern {pattern!r} matches no parameter of this model")
    names = [name for name in table if not frozen(name, cfg.lock_image, cfg.freeze)]
    if not names:
        raise ValueError("every parameter is frozen: nothing to train")
    return names


# ---------------------------------------------------------------------------------------------- optimizer state
#: The format tag of an optimizer state saved by any backend's Trainer (canonical names and layouts).
OPTIMIZER_FORMAT = "triclip-adamw/1"


def check_optimizer_state(arrays: Mapping, meta, names: Sequence[str], shapes: Mapping[str, Sequence[int]]) -> None:
    """Clear errors for an optimizer state of another format, model or freezing: every trainable ``name`` needs
    ``exp_avg.<name>`` and ``exp_avg_sq.<name>`` of its canonical shape."""
    if not isinstance(meta, dict) or meta.get("format") != OPTIMIZER_FORMAT:
        raise ValueError(f"optimizer state format {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                         f"expected {OPTIMIZER_FORMAT!r}")
    for name in names:
        for key in ("exp_avg", "exp_avg_sq"):
            value = arrays.get(f"{key}.{name}")
            if value is None:
                raise ValueError(f"optimizer state has no {key}.{name} (saved with other frozen parameters?)")
            if tuple(np.shape(value)) != tuple(shapes[name]):
                raise ValueError(f"optimizer state {key}.{name} has shape {tuple(np.shape(value))}, "
                                 f"expected {tuple(shapes[name])}")


def enable_checkpointing(model) -> None:
    """``model.gradient_checkpointing_enable()``, or a clear error for a model without it."""
    enable = getattr(model, "gradient_checkpointing_enable", None)
    if enable is None:
        raise NotImplementedError(f"{type(model).__name__} has no gradient_checkpointing_enable()")
    enable()


def shard(batch: Mapping, rank: int, world: int) -> dict:
    """Worker (or device) ``rank``'s rows of a global batch (a dict of arrays); the batch must split into ``world``
    equal shards."""
    size = len(batch["input_ids"])
    if size % world:
        raise ValueError(f"the global batch of {size} rows does not split into {world} equal shards: "
                         f"use a batch size divisible by the number of devices")
    rows = size // world
    return {key: value[rank * rows:(rank + 1) * rows] for key, value in batch.items()}
