"""The parameter table: every canonical parameter of a CLIP model, its shape and its kind.

The canonical state is ``dict[str, numpy.ndarray]`` keyed by transformers' PyTorch names in PyTorch layouts. A
parameter's *kind* decides how every other framework stores it, so the layout rules below are stated once per kind:

=============  ====================  ===============================  ======================
kind           canonical layout      Flax (name, layout)              TensorFlow (name, layout)
=============  ====================  ===============================  ======================
linear         ``[out, in]``         ``kernel``, ``[in, out]``        ``kernel``, ``[in, out]``
conv           ``[out, in, kh, kw]`` ``kernel``, ``[kh, kw, in, out]``  ``kernel``, ``[kh, kw, in, out]``
embedding      ``[rows, dim]``       ``embedding``                    ``weight`` / ``embeddings``
norm_scale     ``[dim]``             ``scale``                        ``gamma``
norm_bias      ``[dim]``             ``bias``                         ``beta``
bias           ``[dim]``             ``bias``                         ``bias``
vector         ``[dim]``             same name                        same name
scalar         ``[]``                same name, ``[]``                same name, ``[1]``
=============  ====================  ===============================  ======================
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from clip_core.config import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

#: The model classes a state can belong to, by the short name used throughout the package.
ARCHITECTURES = ("clip", "text", "text_projection", "vision", "vision_projection", "image_classification")

KINDS = ("linear", "conv", "embedding", "norm_scale", "norm_bias", "bias", "vector", "scalar")


@dataclass(frozen=True)
class ParamSpec:
    """One canonical parameter: its name, its PyTorch-layout shape and its kind (see the module docstring)."""

    name: str
    shape: tuple[int, ...]
    kind: str


def _linear(table, prefix, d_out, d_in, bias=True):
    table.append(ParamSpec(f"{prefix}.weight", (d_out, d_in), "linear"))
    if bias:
        table.append(ParamSpec(f"{prefix}.bias", (d_out,), "bias"))


def _norm(table, prefix, dim):
    table.append(ParamSpec(f"{prefix}.weight", (dim,), "norm_scale"))
    table.append(ParamSpec(f"{prefix}.bias", (dim,), "norm_bias"))


def _encoder(table, prefix, cfg):
    d, ff = cfg.hidden_size, cfg.intermediate_size
    for i in range(cfg.num_hidden_layers):
        layer = f"{prefix}.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            _linear(table, f"{layer}.self_attn.{proj}", d, d)
        _norm(table, f"{layer}.layer_norm1", d)
        _linear(table, f"{layer}.mlp.fc1", ff, d)
        _linear(table, f"{layer}.mlp.fc2", d, ff)
        _norm(table, f"{layer}.layer_norm2", d)


def text_tower_table(cfg: CLIPTextConfig) -> list[ParamSpec]:
    """The text tower's parameters (``text_model.*``)."""
    table = [
        ParamSpec("text_model.embeddings.token_embedding.weight", (cfg.vocab_size, cfg.hidden_size), "embedding"),
        ParamSpec("text_model.embeddings.position_embedding.weight",
                  (cfg.max_position_embeddings, cfg.hidden_size), "embedding"),
    ]
    _encoder(table, "text_model", cfg)
    _norm(table, "text_model.final_layer_norm", cfg.hidden_size)
    return table


def vision_tower_table(cfg: CLIPVisionConfig) -> list[ParamSpec]:
    """The vision tower's parameters (``vision_model.*``)."""
    d, p = cfg.hidden_size, cfg.patch_size
    table = [
        ParamSpec("vision_model.embeddings.class_embedding", (d,), "vector"),
        ParamSpec("vision_model.embeddings.patch_embedding.weight", (d, cfg.num_channels, p, p), "conv"),
        ParamSpec("vision_model.embeddings.position_embedding.weight", (cfg.num_patches + 1, d), "embedding"),
    ]
    _norm(table, "vision_model.pre_layrnorm", d)
    _encoder(table, "vision_model", cfg)
    _norm(table, "vision_model.post_layernorm", d)
    return table


def tower_configs(config, arch: str) -> tuple[CLIPTextConfig | None, CLIPVisionConfig | None]:
    """The (text, vision) configs an architecture uses; ``config`` may be the full or the tower's config."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    text = config.text_config if isinstance(config, CLIPConfig) else config
    vision = config.vision_config if isinstance(config, CLIPConfig) else config
    want_text = arch in ("clip", "text", "text_projection")
    want_vision = arch in ("clip", "vision", "vision_projection", "image_classification")
    if want_text and not isinstance(text, CLIPTextConfig):
        raise TypeError(f"architecture {arch!r} needs a CLIPConfig or CLIPTextConfig, got {type(config).__name__}")
    if want_vision and not isinstance(vision, CLIPVisionConfig):
        raise TypeError(f"architecture {arch!r} needs a CLIPConfig or CLIPVisionConfig, got {type(config).__name__}")
    return (text if want_text else None), (vision if want_vision else None)


def param_table(config, arch: str = "clip") -> dict[str, ParamSpec]:
    """Every canonical parameter of ``arch`` for ``config``, in a stable order, keyed by name.

    ``arch`` is one of :data:`ARCHITECTURES`. The projection size is the full config's ``projection_dim`` for
    ``"clip"``, and the tower config's ``projection_dim`` for the with-projection towers (as in transformers).
    """
    text, vision = tower_configs(config, arch)
    table: list[ParamSpec] = []
    if text is not None:
        table += text_tower_table(text)
    if vision is not None:
        table += vision_tower_table(vision)
    if arch == "clip":
        proj = config.projection_dim
        _linear(table, "visual_projection", proj, vision.hidden_size, bias=False)
        _linear(table, "text_projection", proj, text.hidden_size, bias=False)
        table.append(ParamSpec("logit_scale", (), "scalar"))
    elif arch == "text_projection":
        _linear(table, "text_projection", text.projection_dim, text.hidden_size, bias=False)
    elif arch == "vision_projection":
        _linear(table, "visual_projection", vision.projection_dim, vision.hidden_size, bias=False)
    elif arch == "image_classification":
        num_labels = len(getattr(config, "id2label", None) or {}) or getattr(config, "num_labels", 2)
        _linear(table, "classifier", num_labels, vision.hidden_size)
    return {spec.name: spec for spec in table}


# ---------------------------------------------------------------------------------------------- validation
class StateMismatchError(ValueError, RuntimeError):
    """A state does not fit the parameter table; ``missing``, ``unexpected`` and ``mismatched`` say how.

    A ``ValueError`` and a ``RuntimeError`` (what transformers raises for mis-shaped weights), so either ``except``
    catches it. ``hint`` (optional) is a last line saying what to do about it.
    """

    def __init__(self, missing, unexpected, mismatched, where: str = "", hint: str = "") -> None:
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f"the weights{(' in ' + where) if where else ''} do not match the model's parameters:"]
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} with the wrong shape:")
            lines += [f"    {n}: expected {tuple(e)}, found {tuple(f)}" for n, e, f in self.mismatched[:_SHOWN]]
            lines += [f"    ... and {len(self.mismatched) - _SHOWN:,} more"] if len(self.mismatched) > _SHOWN else []
        if self.missing:
            lines.append(f"  {len(self.missing)} missing: " + _names(self.missing))
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} unexpected: " + _names(self.unexpected))
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


#: How many names of each kind a mismatch report lists (all are kept in the exception's attributes).
_SHOWN = 20


#: The last line of a strict refusal of weights that share no parameter with the model.
_NOTHING_SHARED = "it shares no parameter with the model: these are not this model's weights"


def _names(names: list[str]) -> str:
    """The first :data:`_SHOWN` names (each cut to 200 characters), then how many more."""
    shown = ", ".join(name if len(name) <= 200 else name[:200] + "..." for name in names[:_SHOWN])
    return shown + (f", ... and {len(names) - _SHOWN:,} more" if len(names) > _SHOWN else "")


def validate_state(state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec], *, where: str = "",
                   allow_unexpected: bool = False) -> None:
    """Raise :class:`StateMismatchError` listing every missing, unexpected and mis-shaped parameter at once (saying
    so when the state shares no parameter with the table at all)."""
    missing = [name for name in table if name not in state]
    unexpected = [] if allow_unexpected else [name for name in state if name not in table]
    mismatched = [(name, spec.shape, tuple(np.shape(state[name])))
                  for name, spec in table.items() if name in state and tuple(np.shape(state[name])) != spec.shape]
    if missing or unexpected or mismatched:
        disjoint = bool(table) and bool(state) and not any(name in state for name in table)
        raise StateMismatchError(missing, unexpected, mismatched, where, hint=_NOTHING_SHARED if disjoint else "")
    for name in table:
        if not np.issubdtype(np.asarray(state[name]).dtype, np.floating) and \
                np.asarray(state[name]).dtype.name not in ("bfloat16",):
            raise TypeError(f"parameter {name} has dtype {np.asarray(state[name]).dtype}; expected a float dtype")


@dataclass
class LoadReport:
    """How a checkpoint's state was fitted to a model's parameter table (canonical names, PyTorch layouts).

    ``missing``: parameters the checkpoint lacks (newly initialised), in table order; ``unexpected``: tensors the
    model has no parameter for (dropped), in checkpoint order; ``mismatched``: ``(name, found, expected)`` shapes
    of the tensors re-initialised because ``ignore_mismatched_sizes`` was set; ``source``: the checkpoint's format
    (``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``, ...), which decides how transformers names the keys;
    ``buffers``: the buffers the checkpoint holds (``position_ids``, never loaded: transformers' Flax loader alone
    reports them as unexpected).
    """

    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    source: str = ""
    buffers: list = field(default_factory=list)


def _is_buffer(name: str) -> bool:
    """transformers' non-persistent buffers (``position_ids``): never loaded, never reported."""
    return name.endswith("position_ids")


def fit_state(state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec], config, arch: str, *,
              ignore_mismatched_sizes: bool = False, where: str = "", seed: int = 0
              ) -> tuple[dict[str, np.ndarray], LoadReport]:
    """``state`` fitted to ``table`` as transformers' ``from_pretrained`` does, and a :class:`LoadReport`.

    Missing parameters are newly initialised (:func:`init_state` of those names only, seeded by ``seed``);
    unexpected tensors are dropped; mis-shaped ones raise :class:`StateMismatchError` unless
    ``ignore_mismatched_sizes``, which re-initialises them. New values take the dtype of the loaded ones.
    A state sharing no parameter with the table gives, as in transformers, a newly initialised state (float32),
    every parameter reported missing and every tensor unexpected (strict loads raise: :func:`validate_state`).
    """
    missing = [name for name in table if name not in state]
    unexpected = [name for name in state if name not in table and not _is_buffer(name)]
    mismatched = [(name, tuple(np.shape(state[name])), spec.shape) for name, spec in table.items()
                  if name in state and tuple(np.shape(state[name])) != spec.shape]
    if mismatched and not ignore_mismatched_sizes:
        raise StateMismatchError([], [], [(n, e, f) for n, f, e in mismatched], where,
                                 hint="pass ignore_mismatched_sizes=True to initialise them anew instead")
    fresh = set(missing) | {name for name, _, _ in mismatched}
    loaded = [name for name in table if name not in fresh]
    validate_state({name: state[name] for name in loaded}, {name: table[name] for name in loaded}, where=where)
    dtype = np.asarray(state[loaded[0]]).dtype if loaded else np.dtype(np.float32)  # nothing loaded: the default
    new = init_state(config, arch, seed, dtype=dtype, names=fresh) if fresh else {}
    fitted = {name: new[name] if name in fresh else state[name] for name in table}
    return fitted, LoadReport(missing, unexpected, mismatched)


def nonfinite_parameters(state: Mapping[str, np.ndarray]) -> list[str]:
    """The names of the parameters holding a NaN or an infinity (bfloat16 arrays included)."""
    bad = []
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype.name == "bfloat16":
            array = array.astype(np.float32)
        if array.dtype.kind != "f":
            continue
        # the sum is finite when every value is (NaN and inf propagate) and needs no boolean copy of the tensor;
        # a non-finite sum (which may also be an overflow) is confirmed value by value
        with np.errstate(all="ignore"):
            if not np.isfinite(np.add.reduce(array, axis=None)) and not np.isfinite(array).all():
                bad.append(name)
    return bad


# ---------------------------------------------------------------------------------------------- random init
def init_state(config, arch: str = "clip", seed: int = 0, dtype=np.float32,
               names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """A random state following transformers' CLIP initialisation, reproducible from ``seed`` in every backend.

    Normal draws with: embeddings ``initializer_range``; the class token ``d**-0.5``; q/k/v ``d**-0.5 (2L)**-0.5``;
    ``out_proj`` ``d**-0.5``; ``fc1`` ``(2d)**-0.5``; ``fc2`` ``d**-0.5 (2L)**-0.5``; projections and the classifier
    ``d**-0.5`` (each times ``initializer_factor``). Layer norms start at 1/0, biases at 0, ``logit_scale`` at
    ``logit_scale_init_value``.

    ``names`` (optional) draws only those parameters, each from a generator of its own seeded by ``seed`` and its
    name (cheap for a few names of a large model; the values differ from a full draw's).
    """
    rng = np.random.default_rng(seed)
    table = param_table(config, arch)
    if names is not None:
        names = set(names)
        unknown = sorted(names - set(table))
        if unknown:
            raise ValueError(f"init_state: {arch!r} has no parameters {unknown}")
        table = {name: spec for name, spec in table.items() if name in names}
    text, vision = tower_configs(config, arch)
    state: dict[str, np.ndarray] = {}
    for name, spec in table.items():
        tower = text if name.startswith("text_") else vision
        tower = tower if tower is not None else (text or vision)
        factor = getattr(tower, "initializer_factor", 1.0)
        d, layers = tower.hidden_size, tower.num_hidden_layers
        leaf = name.rsplit(".", 2)
        if spec.kind in ("norm_scale",):
            value = np.ones(spec.shape)
        elif spec.kind in ("norm_bias", "bias"):
            value = np.zeros(spec.shape)
        elif spec.kind == "scalar":
            value = np.asarray(config.logit_scale_init_value)
        else:
            if spec.kind in ("embedding", "conv"):
                std = tower.initializer_range
            elif spec.kind == "vector":
                std = d ** -0.5
            elif leaf[-2] in ("q_proj", "k_proj", "v_proj", "fc2"):
                std = d ** -0.5 * (2 * layers) ** -0.5
            elif leaf[-2] == "fc1":
                std = (2 * d) ** -0.5
            else:  # out_proj, the projections, the classifier: fan-in scaled
                std = spec.shape[1] ** -0.5
            draw = rng if names is None else np.random.default_rng((seed, zlib.crc32(name.encode())))
            value = draw.standard_normal(spec.shape, dtype=np.float32) * np.float32(std * factor)
        state[name] = np.asarray(value, dtype=dtype)
    return state


# ---------------------------------------------------------------------------------------------- layouts by kind
_FLAX_LEAF = {"linear": "kernel", "conv": "kernel", "embedding": "embedding", "norm_scale": "scale",
              "norm_bias": "bias", "bias": "bias"}
_TF_LEAF = {"linear": "kernel", "conv": "kernel", "norm_scale": "gamma", "norm_bias": "beta", "bias": "bias"}


def to_framework_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    """Canonical (PyTorch) layout -> the ``"tf"`` or ``"flax"`` layout of a parameter of ``kind``."""
    if kind == "linear":
        return np.ascontiguousarray(np.transpose(array))
    if kind == "conv":
        return np.ascontiguousarray(np.transpose(array, (2, 3, 1, 0)))
    if kind == "scalar" and framework == "tf":
        return np.reshape(array, (1,))
    return array


def from_framework_layout(array: np.ndarray, kind: str, framework: str) -> np.ndarray:
    """The inverse of :func:`to_framework_layout`."""
    if kind == "linear":
        return np.ascontiguousarray(np.transpose(array))
    if kind == "conv":
        return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
    if kind == "scalar":
        return np.reshape(array, ())
    return array


def flax_path(spec: ParamSpec) -> tuple[str, ...]:
    """The parameter's path in transformers' Flax parameter tree."""
    parts = spec.name.split(".")
    if spec.kind in _FLAX_LEAF:
        parts[-1] = _FLAX_LEAF[spec.kind]
    return tuple(parts)


def tf_name(spec: ParamSpec) -> str:
    """The parameter's variable name below the main layer in transformers' TF models (``.../kernel:0``)."""
    parts = spec.name.split(".")
    if spec.kind in _TF_LEAF:
        parts[-1] = _TF_LEAF[spec.kind]
    elif spec.kind == "embedding":
        # transformers' TF CLIP names the token table "weight" and the position tables "embeddings"
        parts[-1] = "weight" if parts[-2] == "token_embedding" else "embeddings"
    parts = [f"layers_._{p}" if p.isdigit() and parts[i - 1] == "layers" else p for i, p in enumerate(parts)]
    parts = [p for p in parts if p != "layers"]
    return "/".join(parts) + ":0"


def to_flax_tree(state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec]) -> dict:
    """Nested Flax parameter dict (transformers' tree) from a canonical state."""
    tree: dict = {}
    for name, spec in table.items():
        node = tree
        *parents, leaf = flax_path(spec)
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = to_framework_layout(state[name], spec.kind, "flax")
    return tree


def from_flax_tree(tree: Mapping, table: Mapping[str, ParamSpec], *, where: str = "") -> dict[str, np.ndarray]:
    """Canonical state from a (nested) Flax parameter dict; validates names and shapes against ``table``."""
    flat = dict(flatten_tree(tree))
    by_path = {flax_path(spec): spec for spec in table.values()}
    state, unexpected = {}, []
    for path, value in flat.items():
        spec = by_path.get(path)
        if spec is None:
            unexpected.append("/".join(path))
            continue
        state[spec.name] = from_framework_layout(np.asarray(value), spec.kind, "flax")
    if unexpected:
        raise StateMismatchError([n for n in table if n not in state], unexpected, [], where)
    validate_state(state, table, where=where)
    return state


def flatten_tree(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], object]]:
    """Yield ``(path, leaf)`` for every leaf of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from flatten_tree(value, prefix + (str(key),))
        else:
            yield prefix + (str(key),), value


__all__ = [
    "ARCHITECTURES", "KINDS", "ParamSpec", "param_table", "text_tower_table", "vision_tower_table", "tower_configs",
    "StateMismatchError", "validate_state", "LoadReport", "fit_state", "init_state", "to_framework_layout",
    "from_framework_layout", "flax_path", "tf_name", "to_flax_tree", "from_flax_tree", "flatten_tree",
]
