"""Read and write every checkpoint format <-> the canonical state: locating, loading, saving, converting.

Formats, named as transformers names its files (one module each under :mod:`clip_core.formats`, listed by
:mod:`clip_core.formats.registry`):

=====================  ==========================  =============================================================
format                 file                        how
=====================  ==========================  =============================================================
``"safetensors"``      ``model.safetensors``       ``safetensors`` (numpy); sharded with
                                                   ``model.safetensors.index.json`` when ``max_shard_size`` is set
``"pytorch"``          ``pytorch_model.bin``       ``torch.save`` / ``torch.load(weights_only=True)``, PyTorch
                                                   imported only here (sharded like safetensors)
``"tf"``               ``tf_model.h5``             h5py, in the Keras-2 weight layout transformers' TF models write
``"flax"``             ``flax_model.msgpack``      flax's msgpack format, implemented here with ``msgpack``
=====================  ==========================  =============================================================

OpenAI's and open_clip's checkpoints (TorchScript archives, ``torch.save`` state dicts, open_clip ``.safetensors``)
are recognised by their parameter names and converted by :mod:`clip_core.formats.openai`.

Errors: a missing file or directory raises ``FileNotFoundError``; a file that is truncated or corrupted raises
:class:`CorruptCheckpointError` (an ``OSError``); a pickle that would run code raises :class:`UnsafeCheckpointError`
(a ``ValueError``); something well-formed that is not a CLIP checkpoint raises :class:`UnsupportedCheckpointError`
(a ``ValueError``); weights that do not fit the config raise :class:`~clip_core.weights.StateMismatchError` (a
``ValueError`` and a ``RuntimeError``) naming every missing, unexpected and mis-shaped tensor
(:func:`load_for_model` instead fits them as transformers' ``from_pretrained`` does). Corrupt, unsafe and
unsupported derive from :class:`CheckpointError`.

Every name this module offered before the formats moved to :mod:`clip_core.formats` is still importable from here.
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from clip_core.config import CONFIG_NAME, CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.formats import commit, openai
from clip_core.formats.commit import CheckpointWriteError
from clip_core.formats.expect import Expectation, expectation_for
from clip_core.formats._common import (PROGRESS_MIN_BYTES, CheckpointError, CorruptCheckpointError,  # noqa: F401
                                       UnsafeCheckpointError, UnsupportedCheckpointError, _bf16_to_float32,
                                       _is_bf16, _NoProgress, _progress, parse_size, reading)
from clip_core.formats.flax_msgpack import (FLAX_MAX_CHUNK_SIZE, flax_msgpack_dump,  # noqa: F401
                                            flax_msgpack_loads, read_flax_msgpack, write_flax_msgpack)
from clip_core.formats.keras_h5 import (KERAS_VERSION, TF_MAIN_LAYER, TF_MODEL_NAMES, read_tf_h5,  # noqa: F401
                                        write_tf_h5)
from clip_core.formats.pytorch import read_pytorch, write_pytorch  # noqa: F401
from clip_core.formats.registry import (FAMILIES, FORMAT_FILES, FORMATS, INDEX_NAMES, OPEN_CLIP_NAMES,  # noqa: F401
                                        READERS, SEARCH_ORDER, WEIGHT_FILE, WEIGHTS_NAMES, detect_format,
                                        from_framework_names, normalise_formats, read_sharded, read_state_file)
from clip_core.formats.safetensors import read_safetensors, write_safetensors  # noqa: F401
from clip_core.formats.sharding import read_hparams_json
from clip_core.hub import resolve_file
from clip_core.jsonio import read_json
from clip_core.weights import (ARCHITECTURES, LoadReport, ParamSpec, StateMismatchError, _is_buffer,  # noqa: F401
                               fit_state, init_state, nonfinite_parameters, param_table, validate_state)

logger = logging.getLogger(__name__)

#: The reader table (the registry's own dict: replacing an entry here changes what every read uses).
_READERS = READERS
#: transformers' class for each architecture (written into ``config.json``'s ``architectures``).
HF_CLASSES = {"clip": "CLIPModel", "text": "CLIPTextModel", "text_projection": "CLIPTextModelWithProjection",
              "vision": "CLIPVisionModel", "vision_projection": "CLIPVisionModelWithProjection",
              "image_classification": "CLIPForImageClassification"}


# ---------------------------------------------------------------------------------------------- configs
_CONFIG_CLASSES = {"clip": CLIPConfig, "image_classification": CLIPConfig, "text": CLIPTextConfig,
                   "text_projection": CLIPTextConfig, "vision": CLIPVisionConfig, "vision_projection": CLIPVisionConfig}
_PROJECTION_NAMES = {"text_projection": "text_projection.weight", "vision_projection": "visual_projection.weight"}
_OWN_PREFIXES = {
    "clip": None,
    "image_classification": ("vision_model.", "classifier."),
    "text": ("text_model.",), "text_projection": ("text_model.", "text_projection."),
    "vision": ("vision_model.",), "vision_projection": ("vision_model.", "visual_projection."),
}
_CLIP_PREFIXES = ("text_model.", "vision_model.", "text_projection.", "visual_projection.", "classifier.",
                  "logit_scale")


def read_config_file(path: str | os.PathLike):
    """A ``config.json`` as the config class its ``model_type`` names (``CLIPConfig`` for ``"clip"``,
    ``CLIPTextConfig`` / ``CLIPVisionConfig`` for the towers)."""
    path = Path(path)
    data = read_json(path, str(path), expect=dict)  # one ValueError naming the file (deep nesting, NaN, ...)
    model_type = data.get("model_type") or ("clip" if "text_config" in data or "vision_config" in data else None)
    classes = {"clip": CLIPConfig, "clip_text_model": CLIPTextConfig, "clip_vision_model": CLIPVisionConfig}
    if model_type not in classes:
        raise UnsupportedCheckpointError(f"{path} describes a {model_type!r} model, not CLIP")
    try:
        return classes[model_type].from_dict(data)
    except (ValueError, TypeError) as err:  # a bad field: say which file holds it
        if type(err) not in (ValueError, TypeError):  # a subclass with its own fields: as it is
            raise
        raise type(err)(f"{path}: {err}") from None


def config_for_arch(config, arch: str, state: Mapping[str, np.ndarray] | None = None):
    """The config ``arch`` is built from: the full config, or a tower's (from a full one when needed).

    For the with-projection towers the projection size is taken from the state's projection weight when there is
    one (a full CLIP config's tower configs often carry a stale ``projection_dim``).
    """
    expected = _CONFIG_CLASSES[arch]
    if isinstance(config, dict):
        config = (CLIPConfig if "text_config" in config or "vision_config" in config or
                  config.get("model_type") == "clip" else expected).from_dict(config)
    if expected is CLIPConfig:
        if not isinstance(config, CLIPConfig):
            raise TypeError(f"a {arch!r} model needs a CLIPConfig, got a {type(config).__name__}")
        return config
    if isinstance(config, CLIPConfig):
        sub = config.text_config if expected is CLIPTextConfig else config.vision_config
        tower = expected.from_dict(sub.to_dict())
        tower.projection_dim = config.projection_dim
    elif isinstance(config, expected):
        tower = expected.from_dict(config.to_dict())
    else:
        raise TypeError(f"a {arch!r} model needs a CLIPConfig or {expected.__name__}, got a {type(config).__name__}")
    projection = _PROJECTION_NAMES.get(arch)
    if state is not None and projection in state and np.ndim(state[projection]) == 2:
        tower.projection_dim = int(np.shape(state[projection])[0])
        tower.validate()
    return tower


def _select(state: Mapping[str, np.ndarray], arch: str) -> dict[str, np.ndarray]:
    """The entries ``arch`` uses: buffers (``position_ids``) and other CLIP parts are dropped; unknown names stay
    (and are then reported as unexpected)."""
    own = _OWN_PREFIXES[arch]
    out = {}
    for name, value in state.items():
        if name.endswith("position_ids"):
            continue
        if own is not None and name.startswith(_CLIP_PREFIXES) and not name.startswith(own):
            continue
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class _Source:
    weights: Path
    fmt: str
    sibling: Callable[[str], Path | None]


def _hub_kwargs(kwargs: dict) -> dict:
    accepted = set(inspect.signature(resolve_file).parameters) - {"path_or_repo", "filename", "required"}
    known = accepted | {"revision", "cache_dir", "token", "local_files_only", "force_download"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"load_checkpoint got unexpected arguments {unknown}")
    return {k: v for k, v in kwargs.items() if k in accepted}


def _locate(path_or_repo, fmt: str | None, hub: dict) -> _Source:
    names = SEARCH_ORDER if fmt is None else FORMAT_FILES[fmt]
    if not isinstance(path_or_repo, (str, os.PathLike)):
        raise TypeError(f"expected a directory, a weight file or a Hub repo id, got {type(path_or_repo).__name__}")
    local = Path(path_or_repo)

    if local.exists() and not local.is_dir():  # a file, or a FIFO / device that detect_format names
        return _Source(local, detect_format(local), commit.resolver(local.parent))
    if local.is_dir():
        find = commit.resolver(local)  # honours a half-applied commit: never old and new files mixed
        for name in names:
            found = find(name)
            if found is not None:
                return _Source(found, detect_format(found), find)
        raise FileNotFoundError(f"no model weights in the directory {local}: looked for {', '.join(names)}")
    text = os.fspath(path_or_repo)
    parts = text.replace("\\", "/").split("/")
    if local.is_absolute() or text.startswith((".", "~")) or len(parts) > 2 or not all(parts) or local.exists():
        raise FileNotFoundError(f"{text}: no such file or directory")

    def on_hub(name: str) -> Path | None:
        return resolve_file(text, name, required=False, **hub)

    for name in names:
        found = on_hub(name)
        if found is not None:
            return _Source(Path(found), detect_format(found), on_hub)
    raise FileNotFoundError(f"no model weights in the Hub repo {text}: looked for {', '.join(names)}")


def _read_source(source: _Source, mmap: bool = False,
                 expect: Expectation | None = None) -> tuple[dict[str, np.ndarray], CLIPConfig | None]:
    """The canonical state of a located checkpoint (+ the config inferred for OpenAI / open_clip files).

    ``expect`` (what the config implies, :func:`~clip_core.formats.expect.expectation_for`) is checked by the
    readers before they read any data; tensors the model lacks come back unread (name and shape only)."""
    extra = {} if expect is None else {"expect": expect}
    if source.fmt.endswith("_index"):
        raw = read_sharded(source.weights, source.sibling, mmap=mmap, **extra)
    elif source.fmt == "safetensors" and mmap:
        raw = read_safetensors(source.weights, mmap=True, **extra)
    else:
        raw = _READERS[source.fmt](source.weights, **extra)
    raw = from_framework_names(openai.unwrap_state_dict(raw), source.weights)
    if not openai.looks_like_openai(raw):
        return dict(raw), None
    hparams_file = source.sibling("open_clip_config.json")
    hparams = read_hparams_json(hparams_file, "open_clip hyper-parameters") if hparams_file else None
    config = openai.openai_config(raw, hparams, where=str(source.weights))  # first: it explains ResNets best
    return openai.convert_openai_state(raw), config


def _load(path_or_repo, arch: str | None, config, fmt: str | None, hub_kwargs: dict, mmap: bool = False,
          strict: bool = True, ignore_mismatched_sizes: bool = False):
    """``(config, state, arch, report)``: strict (every missing, unknown or mis-shaped tensor raises) or
    fitted as transformers does (:func:`clip_core.weights.fit_state`); ``report`` says what was done."""
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if fmt is not None:
        fmt = normalise_formats(fmt)[0]
    if isinstance(config, dict):
        config = _config_from_dict(config, arch)
    source = _locate(path_or_repo, fmt, _hub_kwargs(hub_kwargs))
    config_error = None
    if config is None:  # read first: what it implies bounds the read of the weights (issue 20, class 4)
        config_file = source.sibling(CONFIG_NAME)
        if config_file is not None:
            try:
                config = read_config_file(config_file)
            except UnsupportedCheckpointError as err:  # an OpenAI file may sit beside another library's config
                config_error = err
    state, inferred = _read_source(source, mmap, expectation_for(config, arch))
    if config is None:
        if config_error is not None and inferred is None:
            raise config_error
        config = inferred
        if config is None:
            raise FileNotFoundError(
                f"{CONFIG_NAME} not found next to {source.weights}: pass config= (the model's config, e.g. "
                f"CLIPConfig.from_pretrained(<the folder it was loaded from>)) to load it. transformers' Trainer "
                f"writes only the weights of a model that is not a transformers PreTrainedModel: save a trained "
                f"triclip model with model.save_pretrained(folder) for a folder that loads on its own")
    if arch is None:
        arch = detect_arch(config, state)
    config = config_for_arch(config, arch, state)
    table = param_table(config, arch)
    raw_names = list(state)
    if strict:
        state, report = _strict_state(state, table, config, arch, str(source.weights))
    else:
        state, report = fit_state({k: v for k, v in state.items() if not _is_buffer(k)}, table, config, arch,
                                  ignore_mismatched_sizes=ignore_mismatched_sizes, where=str(source.weights))
    report.source, report.buffers = source.fmt, [k for k in raw_names if _is_buffer(k)]
    bad = nonfinite_parameters(state)
    if bad:
        shown = ", ".join(bad[:20]) + (f", ... and {len(bad) - 20} more" if len(bad) > 20 else "")
        warnings.warn(f"{source.weights}: {len(bad)} parameter(s) hold NaN or infinite values: {shown}; the model's "
                      "outputs will be NaN or infinite wherever they are used", NonFiniteWeightsWarning, stacklevel=3)
    return config, state, arch, report


def _strict_state(state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec], config, arch: str, where: str):
    """The strict fit: the other CLIP parts a tower's checkpoint holds are dropped (reported as unexpected); a
    missing classifier head of a CLIP checkpoint is newly initialised (reported as missing); anything else that
    does not fit raises :class:`StateMismatchError`."""
    selected = _select(state, arch)
    report = LoadReport(unexpected=[k for k in state if k not in selected and not _is_buffer(k)])
    if arch == "image_classification" and not any(name.startswith("classifier.") for name in selected):
        report.missing = [name for name in table if name.startswith("classifier.")]
        selected.update(_fresh_classifier(config, arch, report.missing, selected))
    validate_state(selected, table, where=where)
    return {name: selected[name] for name in table}, report


class NonFiniteWeightsWarning(UserWarning):
    """A loaded checkpoint holds NaN or infinite weights (named in the message)."""


def _config_from_dict(data: dict, arch: str | None):
    model_type = data.get("model_type")
    if model_type == "clip" or "text_config" in data or "vision_config" in data:
        return CLIPConfig.from_dict(data)
    classes = {"clip_text_model": CLIPTextConfig, "clip_vision_model": CLIPVisionConfig}
    if model_type in classes:
        return classes[model_type].from_dict(data)
    return (_CONFIG_CLASSES[arch] if arch is not None else CLIPConfig).from_dict(data)


def _fresh_classifier(config, arch: str, names: Sequence[str], state: Mapping[str, np.ndarray]) -> dict:
    """transformers' initialisation of a missing classifier head (:func:`~clip_core.weights.init_state` of those
    names: normal with std hidden**-0.5, zero bias), in the dtype of the loaded weights."""
    known = "vision_model.post_layernorm.weight"
    dtype = np.asarray(state[known]).dtype if known in state else np.float32
    return init_state(config, arch, 0, dtype=dtype, names=names)


def detect_arch(config, state: Mapping[str, np.ndarray]) -> str:
    """The architecture a (config, state) pair describes: ``"clip"``, ``"image_classification"``, ``"text"``,
    ``"text_projection"``, ``"vision"`` or ``"vision_projection"``."""
    if isinstance(config, CLIPConfig):
        return "image_classification" if any(k.startswith("classifier.") for k in state) else "clip"
    if isinstance(config, CLIPTextConfig):
        return "text_projection" if "text_projection.weight" in state else "text"
    if isinstance(config, CLIPVisionConfig):
        return "vision_projection" if "visual_projection.weight" in state else "vision"
    raise TypeError(f"not a CLIP config: {type(config).__name__}")


def load_checkpoint(path_or_repo: str | os.PathLike, *, arch: str = "clip", config=None, format: str | None = None,
                    mmap: bool = False, **hub_kwargs):
    """Return ``(config, state)`` for model ``arch`` from a directory, a weight file or a Hub repo id.

    Args:
        path_or_repo: a directory (searched for :data:`SEARCH_ORDER` in that order), one weight file (any format,
            recognised by its contents; ``config.json`` is read next to it), or a Hub repo id.
        arch: one of :data:`clip_core.weights.ARCHITECTURES`. The returned config is a ``CLIPConfig`` for
            ``"clip"`` / ``"image_classification"``, the tower's config otherwise. A tower loading a full CLIP
            checkpoint gets the tower's config and only the tower's (and its projection's) weights; the
            with-projection towers take the projection size from the checkpoint's projection weight.
        config: replaces the checkpoint's ``config.json`` (a config object or dict).
        format: restrict the search to one format (``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``).
        mmap: safetensors only: return copy-on-write views of the files mapped into memory instead of arrays the
            process owns (less memory until the tensors are used). Caveat: a model holding such views changes when
            the file is rewritten in place, and reading them after the file is truncated kills the process
            (``SIGBUS``). Off by default.
        hub_kwargs: ``revision``, ``cache_dir``, ``token`` ... for Hub repos; ``subfolder`` (a folder inside
            the directory or the repo holding the config and the weights) for both.

    OpenAI / open_clip state dicts are converted (their config inferred from the shapes when there is no
    ``config.json``). The state holds exactly the table's names, in PyTorch layouts, with the stored dtypes
    (bfloat16 widened to float32).

    Raises:
        FileNotFoundError: no such path, no weights in the directory (naming the files looked for), no config.
        StateMismatchError: the weights do not fit the config (every missing, unexpected, mis-shaped tensor); a
            ``ValueError`` and a ``RuntimeError``. Strict: :func:`load_for_model` fits them as transformers does.
        CorruptCheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError: see the module docstring.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    path_or_repo, hub_kwargs = _in_subfolder(path_or_repo, hub_kwargs)
    config, state, _, report = _load(path_or_repo, arch, config, format, hub_kwargs, mmap)
    if report.missing:  # only a classifier head a CLIP checkpoint lacks gets here
        logger.warning("%s has no classifier: it is newly initialised", path_or_repo)
    return config, state


def load_any(path_or_repo: str | os.PathLike, *, config=None, format: str | None = None, mmap: bool = False,
             **hub_kwargs):
    """Like :func:`load_checkpoint`, with the architecture detected: returns ``(config, state, arch)``."""
    path_or_repo, hub_kwargs = _in_subfolder(path_or_repo, hub_kwargs)
    config, state, arch, report = _load(path_or_repo, None, config, format, hub_kwargs, mmap)
    if report.missing:
        logger.warning("%s has no classifier: it is newly initialised", path_or_repo)
    return config, state, arch


def load_for_model(path_or_repo: str | os.PathLike, *, arch: str, config=None, format: str | None = None,
                   strict: bool = False, ignore_mismatched_sizes: bool = False, mmap: bool = False,
                   **hub_kwargs) -> tuple[Any, dict[str, np.ndarray], LoadReport]:
    """What ``from_pretrained`` loads: ``(config, state, report)`` for model ``arch``.

    Not ``strict`` (the default), the weights are fitted as transformers does (:func:`clip_core.weights.fit_state`):
    missing parameters newly initialised, unexpected tensors dropped, mis-shaped ones a
    :class:`StateMismatchError` (a ``ValueError`` and a ``RuntimeError``) unless ``ignore_mismatched_sizes``, which
    initialises them anew; a checkpoint sharing no parameter with the model gives, as in transformers, a newly
    initialised state (every parameter missing; strict, it raises). ``strict`` is
    :func:`load_checkpoint`'s rule (only the other CLIP parts a tower does not use are dropped, and a classifier
    head a CLIP checkpoint lacks is initialised). The :class:`~clip_core.weights.LoadReport` says what was done;
    nothing is logged here. Other arguments as :func:`load_checkpoint` (``subfolder`` too).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    path_or_repo, hub_kwargs = _in_subfolder(path_or_repo, hub_kwargs)
    config, state, _, report = _load(path_or_repo, arch, config, format, hub_kwargs, mmap, strict=strict,
                                     ignore_mismatched_sizes=ignore_mismatched_sizes)
    return config, state, report


def _in_subfolder(path_or_repo, hub_kwargs: dict):
    """``(path, hub_kwargs)`` with a ``subfolder`` applied: joined to a local directory (then dropped), kept for
    a Hub repo id (the download takes it)."""
    subfolder = hub_kwargs.get("subfolder")
    if not subfolder:
        return path_or_repo, {k: v for k, v in hub_kwargs.items() if k != "subfolder"}
    if not isinstance(subfolder, (str, os.PathLike)):
        raise TypeError(f"subfolder must be a string, got {type(subfolder).__name__}")
    if isinstance(path_or_repo, (str, os.PathLike)) and Path(path_or_repo).is_dir():
        folder = Path(path_or_repo) / os.fspath(subfolder).strip("/")
        if not folder.is_dir():
            raise FileNotFoundError(f"no subfolder {os.fspath(subfolder)!r} in {path_or_repo}")
        return folder, {k: v for k, v in hub_kwargs.items() if k != "subfolder"}
    return path_or_repo, hub_kwargs


# ---------------------------------------------------------------------------------------------- saving
def _config_to_write(config, arch: str):
    data = config.to_dict()
    data["architectures"] = [HF_CLASSES[arch]]
    return type(config).from_dict(data)


def save_checkpoint(directory: str | os.PathLike, config, state: Mapping[str, np.ndarray], *,
                    formats: str | Sequence[str] = "safetensors", arch: str = "clip", overwrite: bool = False,
                    max_shard_size: int | str | None = None, remove_stale: bool = True,
                    allow_missing: bool = False) -> None:
    """Write ``config.json`` and the weights in each of ``formats`` into ``directory`` in one commit.

    Args:
        directory: created if needed. An existing non-empty directory without ``config.json`` is refused unless
            ``overwrite``. The save is one commit (:mod:`clip_core.formats.commit`): files are written to a
            staging folder inside ``directory`` and moved in only once all are complete, under a lock that makes
            concurrent writers wait; a failure or a kill leaves the old checkpoint or the new one, never a mix.
            Weight files of earlier saves that this call did not write (other formats, old shards) are removed in
            the same commit (they would not match the new ``config.json``) unless ``remove_stale`` is false.
            Every I/O failure (a full disk included) raises an ``OSError``
            (:class:`~clip_core.formats.commit.CheckpointWriteError` when a library raised something else).
        config: ``CLIPConfig`` (``"clip"``, ``"image_classification"``) or the tower's config (a ``CLIPConfig``
            is reduced to the tower's).
        state: the canonical state; validated against the table first (float dtypes only; ml_dtypes bfloat16
            arrays are kept in safetensors and PyTorch files, widened to float32 in the others).
        formats: ``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``, ``"all"`` or a list.
        arch: one of :data:`clip_core.weights.ARCHITECTURES`.
        max_shard_size: shard safetensors / PyTorch files above this size (``"2GB"``, an int of bytes), with
            transformers' ``*.index.json``; TF and Flax files are always written whole.
        allow_missing: write a ``state`` that lacks some parameters (as transformers' ``save_pretrained`` with
            ``params=`` / ``state_dict=`` does): only the tensors it holds are written, each still checked for
            name, shape and dtype; a state holding none of the parameters is refused.
    """
    formats = normalise_formats(formats)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    config = config_for_arch(config, arch, state)
    table = param_table(config, arch)
    if allow_missing and any(name in state for name in table):
        table = {name: spec for name, spec in table.items() if name in state}
    validate_state(state, table, where="the state to save")
    max_bytes = parse_size(max_shard_size)
    stale = (lambda name: bool(WEIGHT_FILE.match(name))) if remove_stale else (lambda name: False)
    with commit.commit(directory, overwrite=overwrite, stale=stale) as tmp:
        with commit.writing(tmp / CONFIG_NAME, "config"):
            _config_to_write(config, arch).save_pretrained(tmp)
        for fmt in formats:
            with commit.writing(tmp / FAMILIES[fmt].weights_name, f"{fmt} weights"):
                FAMILIES[fmt].save(tmp, state, table, arch, max_bytes)


def cast_state(state: Mapping[str, np.ndarray], dtype: str | None) -> dict[str, np.ndarray]:
    """``state`` with every array cast to ``dtype`` (``"float32"``, ``"float16"``, ``"bfloat16"``; ``None`` keeps)."""
    if dtype is None:
        return dict(state)
    if dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise ValueError("dtype bfloat16 needs the ml_dtypes package (installed with jax)") from None
        target = np.dtype(ml_dtypes.bfloat16)
    elif dtype in ("float32", "float16"):
        target = np.dtype(dtype)
    else:
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    return {k: np.asarray(v).astype(target) for k, v in state.items()}


def _same_folder(source, destination) -> bool:
    """Whether ``destination`` is the folder ``source`` lives in (then its other formats stay: converting adds)."""
    folder = Path(source) if Path(source).is_dir() else Path(source).parent
    try:
        return Path(destination).is_dir() and os.path.samefile(folder, destination)
    except OSError:
        return False


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                       formats: str | Sequence[str] = "safetensors", arch: str | None = None,
                       dtype: str | None = None, hparams: Mapping[str, Any] | str | os.PathLike | None = None,
                       overwrite: bool = False, max_shard_size: int | str | None = None, verify: bool = True,
                       **hub_kwargs) -> tuple[Any, str, dict[str, np.ndarray]]:
    """Read any checkpoint and write it in ``formats`` (no framework needed); returns ``(config, arch, state)``.

    ``hparams`` (OpenAI / open_clip sources only) supplies what shapes cannot tell, such as the head counts (see
    :func:`clip_core.formats.openai.read_openai`). ``dtype`` casts the weights. With ``verify`` (default), every written
    format is read back and compared bit-exactly with what was meant to be written (bfloat16 read back as float32
    is compared after widening); a difference raises ``ValueError`` naming the tensor and the format. Converting
    into the source's own folder adds formats: the files already there are never removed.
    """
    formats = normalise_formats(formats)
    if hparams is not None:
        config, state = openai.read_openai(source, hparams=hparams)
        arch = arch or "clip"
    elif arch is None:
        config, state, arch = load_any(source, **hub_kwargs)
    else:
        config, state = load_checkpoint(source, arch=arch, **hub_kwargs)
    state = cast_state(state, dtype)
    save_checkpoint(destination, config, state, formats=formats, arch=arch, overwrite=overwrite,
                    max_shard_size=max_shard_size, remove_stale=not _same_folder(source, destination))
    if verify:
        for fmt in formats:
            _, again = load_checkpoint(destination, arch=arch, format=fmt)
            for name, value in state.items():
                value = _bf16_to_float32(value) if _is_bf16(value) else np.asarray(value)
                back = np.asarray(again[name])
                if value.shape != back.shape or value.dtype != back.dtype or value.tobytes() != back.tobytes():
                    raise ValueError(f"verification failed: {name} differs after writing the {fmt} file in "
                                     f"{destination} (wrote {value.dtype}{list(value.shape)}, read "
                                     f"{back.dtype}{list(back.shape)})")
    return config, arch, state


__all__ = [
    "load_checkpoint", "load_any", "load_for_model", "save_checkpoint", "convert_checkpoint", "cast_state",
    "read_state_file", "read_safetensors",
    "read_pytorch", "read_tf_h5", "read_flax_msgpack", "read_sharded", "write_safetensors", "write_pytorch",
    "write_tf_h5", "write_flax_msgpack", "flax_msgpack_loads", "flax_msgpack_dump", "detect_format",
    "detect_arch", "config_for_arch", "read_config_file", "parse_size", "reading",
    "CheckpointError", "CorruptCheckpointError", "CheckpointWriteError", "NonFiniteWeightsWarning",
    "UnsafeCheckpointError", "UnsupportedCheckpointError",
    "StateMismatchError", "WEIGHTS_NAMES", "FORMATS", "SEARCH_ORDER", "INDEX_NAMES", "HF_CLASSES",
]
