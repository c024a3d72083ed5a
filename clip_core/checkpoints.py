"""Read and write every checkpoint format <-> the canonical state.

Formats, named as transformers names its files:

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
are recognised by their parameter names and converted by :mod:`clip_core.openai`.

Errors: a missing file or directory raises ``FileNotFoundError``; a file that is truncated or corrupted raises
:class:`CorruptCheckpointError` (an ``OSError``); a pickle that would run code raises :class:`UnsafeCheckpointError`
(a ``ValueError``); something well-formed that is not a CLIP checkpoint raises :class:`UnsupportedCheckpointError`
(a ``ValueError``); weights that do not fit the config raise :class:`~clip_core.weights.StateMismatchError` (a
``ValueError``) naming every missing, unexpected and mis-shaped tensor. Corrupt, unsafe and unsupported derive
from :class:`CheckpointError`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import mmap
import os
import pickle
import re
import struct
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from clip_core.config import CONFIG_NAME, CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from clip_core.hub import atomic_directory, resolve_file
from clip_core.weights import (ARCHITECTURES, ParamSpec, StateMismatchError, flatten_tree, flax_path,
                               from_framework_layout, param_table, tf_name, to_framework_layout, validate_state)

logger = logging.getLogger(__name__)

WEIGHTS_NAMES = {
    "safetensors": "model.safetensors",
    "pytorch": "pytorch_model.bin",
    "tf": "tf_model.h5",
    "flax": "flax_model.msgpack",
}
FORMATS = tuple(WEIGHTS_NAMES)
INDEX_NAMES = {"safetensors": "model.safetensors.index.json", "pytorch": "pytorch_model.bin.index.json"}
#: open_clip's file names on the Hub (OpenAI-style parameter names inside).
OPEN_CLIP_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: The files :func:`load_checkpoint` looks for in a directory or Hub repo, in order of preference.
SEARCH_ORDER = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack") + OPEN_CLIP_NAMES
_FORMAT_FILES = {
    "safetensors": ("model.safetensors", "model.safetensors.index.json", "open_clip_model.safetensors"),
    "pytorch": ("pytorch_model.bin", "pytorch_model.bin.index.json", "open_clip_pytorch_model.bin"),
    "tf": ("tf_model.h5",), "flax": ("flax_model.msgpack",),
}
_FORMAT_ALIASES = {"pt": "pytorch", "torch": "pytorch", "bin": "pytorch", "h5": "tf", "tensorflow": "tf",
                   "keras": "tf", "jax": "flax", "msgpack": "flax"}
#: transformers' class for each architecture (written into ``config.json``'s ``architectures``).
HF_CLASSES = {"clip": "CLIPModel", "text": "CLIPTextModel", "text_projection": "CLIPTextModelWithProjection",
              "vision": "CLIPVisionModel", "vision_projection": "CLIPVisionModelWithProjection",
              "image_classification": "CLIPForImageClassification"}
#: The Keras model name transformers' TF classes give their weights (the first component, ignored on load).
TF_MODEL_NAMES = {"clip": "tfclip_model", "text": "tfclip_text_model",
                  "text_projection": "tfclip_text_model_with_projection", "vision": "tfclip_vision_model",
                  "vision_projection": "tfclip_vision_model_with_projection",
                  "image_classification": "tfclip_for_image_classification"}
TF_MAIN_LAYER = "clip"  # TFCLIPModel, TFCLIPTextModel and TFCLIPVisionModel all name their main layer "clip"
KERAS_VERSION = "2.21.0"
FLAX_MAX_CHUNK_SIZE = 2 ** 30  # flax splits arrays above this many bytes into chunks (msgpack's 4 GiB limit)
PROGRESS_MIN_BYTES = 100 * 2 ** 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WEIGHT_FILE = re.compile(r"^(model(-\d{5}-of-\d{5})?\.safetensors|pytorch_model(-\d{5}-of-\d{5})?\.bin|"
                          r"tf_model(-\d{5}-of-\d{5})?\.h5|flax_model(-\d{5}-of-\d{5})?\.msgpack|"
                          r"(model\.safetensors|pytorch_model\.bin|tf_model\.h5|flax_model\.msgpack)\.index\.json)$")


# ---------------------------------------------------------------------------------------------- errors
class CheckpointError(Exception):
    """Base class of the errors this module raises about a checkpoint file itself."""


class CorruptCheckpointError(CheckpointError, OSError):
    """A checkpoint file is truncated, corrupted or not in the format its name or contents claim."""


class UnsafeCheckpointError(CheckpointError, ValueError):
    """A pickled checkpoint was refused because loading it could run code: it is not a plain weights pickle."""


class UnsupportedCheckpointError(CheckpointError, ValueError):
    """A well-formed file that does not hold a CLIP model this package can load (e.g. an OpenAI ResNet)."""


_PASS_THROUGH = (CheckpointError, StateMismatchError, FileNotFoundError, PermissionError, IsADirectoryError,
                 KeyboardInterrupt)


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn any low-level failure while reading ``path`` as ``what`` into :class:`CorruptCheckpointError`.

    The errors this module documents (and a missing file) pass through unchanged.
    """
    try:
        yield
    except _PASS_THROUGH:
        raise
    except MemoryError:
        raise CorruptCheckpointError(f"{path}: ran out of memory while reading it as a {what}; the file is corrupted "
                                     "or the checkpoint is larger than the available memory") from None
    except Exception as err:  # struct, msgpack, h5py, zipfile, pickle, json ... internals
        detail = " ".join(str(err).split())[:300]
        raise CorruptCheckpointError(f"{path} is not a valid {what} (truncated or corrupted?): "
                                     f"{type(err).__name__}: {detail}") from err


# ---------------------------------------------------------------------------------------------- progress bars
class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total_bytes: int, desc: str):
    """A tqdm bar on stderr for large transfers; a no-op when small, not a tty, or ``TRICLIP_NO_PROGRESS`` is set."""
    if total_bytes < PROGRESS_MIN_BYTES or os.environ.get("TRICLIP_NO_PROGRESS"):
        return _NoProgress()
    try:
        if not sys.stderr.isatty():
            return _NoProgress()
        from tqdm import tqdm
    except (ImportError, AttributeError, ValueError):
        return _NoProgress()
    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------- helpers
def _owned(array) -> np.ndarray:
    """A writable, C-contiguous array owning (or solely viewing) its data."""
    array = np.asarray(array)
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, order="C")


def _contiguous(array) -> np.ndarray:
    """``np.ascontiguousarray`` that keeps 0-d arrays 0-d (``logit_scale``)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _is_bf16(array) -> bool:
    return np.asarray(array).dtype.name == "bfloat16"


def _bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _bf16_to_float32(array) -> np.ndarray:
    array = _contiguous(array)
    return _bf16_bits_to_float32(array.view(np.uint16)) if _is_bf16(array) else array


def parse_size(size: int | str | None) -> int | None:
    """``max_shard_size`` in bytes: an int, or a string such as ``"2GB"`` (10**9), ``"500MiB"`` (2**20) or
    ``"100KB"``, as transformers accepts it."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", size.upper())
        if match:
            units = {None: 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
                     "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
            value = int(float(match.group(1)) * units[match.group(2)])
            if value > 0:
                return value
    raise ValueError(f"max_shard_size must be a positive int or a size such as '2GB', got {size!r}")


def _normalise_formats(formats: str | Sequence[str]) -> list[str]:
    items = [formats] if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"formats must be strings, got {item!r}")
        key = _FORMAT_ALIASES.get(item.lower(), item.lower())
        expanded = list(FORMATS) if key == "all" else [key]
        for fmt in expanded:
            if fmt not in WEIGHTS_NAMES:
                raise ValueError(f"unknown checkpoint format {item!r}; choose from {', '.join(FORMATS)} or 'all'")
            if fmt not in out:
                out.append(fmt)
    if not out:
        raise ValueError("no checkpoint format given")
    return out


# ---------------------------------------------------------------------------------------------- foreign names
def _canonical_from_tf(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """``text_model/encoder/layers_._0/self_attn/q_proj/kernel:0`` -> the canonical name and layout."""
    name = re.sub(r":\d+$", "", name)
    parts: list[str] = []
    for part in name.split("/"):
        match = re.fullmatch(r"layers_\._(\d+)", part)
        parts += ["layers", match.group(1)] if match else [part]
    leaf, parent = parts[-1], (parts[-2] if len(parts) > 1 else "")
    kind = None
    if leaf == "kernel":
        kind = "conv" if value.ndim == 4 else "linear"
    elif leaf == "gamma":
        kind = "norm_scale"
    elif leaf == "beta":
        kind = "norm_bias"
    elif (leaf == "embeddings" and parent.endswith("embedding")) or (leaf == "weight" and parent == "token_embedding"):
        kind = "embedding"
    elif leaf == "logit_scale" and value.size == 1:
        kind = "scalar"
    if kind in ("linear", "conv", "norm_scale", "embedding"):
        parts[-1] = "weight"
    elif kind == "norm_bias":
        parts[-1] = "bias"
    return ".".join(parts), (from_framework_layout(value, kind, "tf") if kind else value)


def _canonical_from_flax(path: tuple[str, ...], value: np.ndarray) -> tuple[str, np.ndarray]:
    """``("text_model", "encoder", "layers", "0", "self_attn", "q_proj", "kernel")`` -> canonical name and layout."""
    parts = list(path)
    leaf = parts[-1]
    kind = {"scale": "norm_scale", "embedding": "embedding"}.get(leaf)
    if leaf == "kernel":
        kind = "conv" if value.ndim == 4 else "linear"
    elif leaf == "logit_scale" and value.size == 1:
        kind = "scalar"
    if kind in ("linear", "conv", "norm_scale", "embedding"):
        parts[-1] = "weight"
    return ".".join(parts), (from_framework_layout(value, kind, "flax") if kind else value)


def _from_framework_names(state: Mapping[str, np.ndarray], path) -> dict[str, np.ndarray]:
    """Canonical names for safetensors files written by transformers' TF models (``clip/text_model/.../kernel:0``,
    metadata ``format: tf``) or Flax models (``text_model....q_proj.kernel``, ``format: flax``); others unchanged."""
    if any("/" in name or name.endswith(":0") for name in state):
        out: dict[str, np.ndarray] = {}
        for name, value in state.items():
            parts = name.split("/")
            if len(parts) > 1 and parts[0] == TF_MAIN_LAYER:
                parts = parts[1:]
            new, value = _canonical_from_tf("/".join(parts), np.asarray(value))
            _add(out, new, _owned(value), path)
        return out
    if any(name.rsplit(".", 1)[-1] in ("kernel", "scale", "embedding") for name in state):
        out = {}
        for name, value in state.items():
            new, value = _canonical_from_flax(tuple(name.split(".")), np.asarray(value))
            _add(out, new, _owned(value), path)
        return out
    return dict(state)


def _add(state: dict, name: str, value, path) -> None:
    if name in state:
        raise CorruptCheckpointError(f"{path} holds the parameter {name} twice")
    state[name] = value


# ---------------------------------------------------------------------------------------------- readers
def _safetensors_header(handle, path) -> tuple[dict, int]:
    size = os.fstat(handle.fileno()).st_size
    head = handle.read(8)
    if len(head) != 8:
        raise ValueError("the file is shorter than a safetensors header")
    (length,) = struct.unpack("<Q", head)
    if length > size - 8:
        raise ValueError(f"the header claims {length} bytes but the file has {size - 8} after its length")
    header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, 8 + length


def _read_bf16_safetensors(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """bfloat16 tensors of a safetensors file, widened exactly to float32 (numpy has no bfloat16)."""
    out = {}
    with open(path, "rb") as handle:
        header, start = _safetensors_header(handle, path)
        size = os.fstat(handle.fileno()).st_size
        for name in names:
            info = header[name]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
            count = math.prod(shape)
            if end - begin != 2 * count or start + end > size or begin < 0:
                raise ValueError(f"tensor {name}: offsets {begin}..{end} do not fit its shape {shape}")
            bits = np.empty(count, dtype=np.uint16)
            handle.seek(start + begin)
            if handle.readinto(memoryview(bits.view(np.uint8))) != 2 * count:
                raise ValueError(f"tensor {name} is truncated")
            out[name] = _bf16_bits_to_float32(bits).reshape(shape)
    return out


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
                       "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file by its stored name (bfloat16 widened to float32).

    The arrays are copy-on-write views of the file mapped into memory, as transformers loads it: nothing is read
    until used, the pages stay the operating system's file cache, and writing to an array changes only this
    process's copy. (Savers write to a new file and rename it, so a mapped file is never overwritten in place.)
    """
    from safetensors import safe_open

    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "safetensors file"):
        with open(path, "rb") as handle:  # our own header check first: clearer errors than the library's
            header, start = _safetensors_header(handle, path)
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        with safe_open(str(path), framework="np") as archive:  # the library validates every offset and shape
            names = list(archive.keys())
            dtypes = {name: archive.get_slice(name).get_dtype() for name in names}
            bf16 = [name for name in names if dtypes[name] == "BF16"]
            for name in names:
                if name in bf16:
                    continue
                dtype = np.dtype(_SAFETENSORS_DTYPES.get(dtypes[name], np.uint8))
                shape = tuple(int(d) for d in header[name]["shape"])
                offset = start + int(header[name]["data_offsets"][0])
                if dtypes[name] not in _SAFETENSORS_DTYPES or offset % dtype.itemsize or not math.prod(shape):
                    state[name] = archive.get_tensor(name)  # unusual dtype, misaligned or empty: read it
                else:
                    state[name] = np.frombuffer(mapped, dtype, math.prod(shape), offset).reshape(shape)
        if bf16:
            state.update(_read_bf16_safetensors(path, bf16))
    return {name: state[name] for name in names}


def read_pytorch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a ``torch.save`` file (``pytorch_model.bin``, ``.pt``) or a TorchScript archive, by name.

    Plain ``torch.save`` files go through ``torch.load(map_location="cpu", weights_only=True)``: a pickle that
    references anything but tensors and containers raises :class:`UnsafeCheckpointError`. TorchScript archives (and
    zip checkpoints when PyTorch is not installed) are read by :func:`clip_core.openai.read_torch_zip`, which
    executes nothing. bfloat16 becomes float32; other dtypes are kept. ``{"state_dict": ...}`` wrappers and
    ``module.`` prefixes are removed; entries that are not tensors are dropped.
    """
    from clip_core import openai

    path = Path(path)
    if openai.is_torchscript(path):
        return openai.unwrap_state_dict(openai.read_torch_zip(path))
    try:
        import torch
    except ImportError:
        if zipfile.is_zipfile(path):
            return openai.unwrap_state_dict(openai.read_torch_zip(path))
        raise UnsupportedCheckpointError(f"reading {path} (a legacy, non-zip torch pickle) needs PyTorch") from None
    with reading(path, "PyTorch checkpoint"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            message = str(err)
            if "Weights only load failed" in message:  # torch's safe unpickler met something it does not allow
                reason = message.split("WeightsUnpickler error:")[-1].strip().split("\n")[0][:200]
                raise UnsafeCheckpointError(
                    f"refused to load {path}: it is not a plain weights pickle, loading it could run code "
                    f"({reason})") from None
            raise
        obj = openai.unwrap_state_dict(obj)
        if not isinstance(obj, Mapping):
            raise UnsupportedCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
        state = {}
        for name, tensor in obj.items():
            if not isinstance(tensor, torch.Tensor):
                continue
            tensor = tensor.detach()
            if tensor.dtype == torch.bfloat16:
                state[str(name)] = tensor.float().numpy()
            else:
                state[str(name)] = _contiguous(tensor.numpy())
    return state


def _h5_names(group, name: str) -> list[str]:
    """A Keras-2 string-list attribute (``layer_names``, ``weight_names``), chunked or not."""
    if name in group.attrs:
        values = [group.attrs[name]]
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.append(group.attrs[f"{name}{chunk}"])
            chunk += 1
    out = []
    for value in values:
        for item in np.atleast_1d(np.asarray(value, dtype=object)).tolist():
            if isinstance(item, float):  # transformers' empty `weight_names` is an empty float array
                continue
            out.append(item.decode("utf8") if isinstance(item, bytes) else str(item))
    return out


def read_tf_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The canonical state of a ``tf_model.h5`` written by transformers' TF models (or by :func:`write_tf_h5`).

    Variable names ``<model name>/<main layer>/text_model/encoder/layers_._0/self_attn/q_proj/kernel:0`` become
    ``text_model.encoder.layers.0.self_attn.q_proj.weight`` with the PyTorch layout, whatever the model name
    (``tfclip_model``, ``tfclip_text_model``, ...).
    """
    import h5py

    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "Keras HDF5 weights file"):
        with h5py.File(path, "r") as archive:
            layers = _h5_names(archive, "layer_names")
            if not layers:
                raise ValueError("no 'layer_names' attribute: not a Keras weights file")
            bar = _progress(path.stat().st_size, f"reading {path.name}")
            try:
                for layer in layers:
                    group = archive[layer]
                    for weight in _h5_names(group, "weight_names"):
                        dataset = group[weight]
                        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f":
                            raise ValueError(f"{layer}/{weight} is not a float dataset")
                        needed = dataset.size * dataset.dtype.itemsize
                        if dataset.chunks is None and dataset.id.get_storage_size() != needed:
                            raise ValueError(f"{layer}/{weight} stores {dataset.id.get_storage_size()} bytes, "
                                             f"its shape {dataset.shape} needs {needed}")
                        value = np.asarray(dataset[()])
                        parts = weight.split("/")[1:]  # the model name comes first, whatever it is
                        if parts and parts[0] == layer:
                            parts = parts[1:]
                        name, value = _canonical_from_tf("/".join(parts), value)
                        _add(state, name, _owned(value), path)
                        bar.update(needed)
            finally:
                bar.close()
    return state


def _flax_ndarray(data: bytes) -> np.ndarray:
    import msgpack

    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"malformed array shape {shape!r}")
    name = dtype_name.decode("ascii") if isinstance(dtype_name, bytes) else str(dtype_name)
    count = math.prod(shape)
    if name == "bfloat16":
        if len(buffer) != 2 * count:
            raise ValueError(f"array of shape {tuple(shape)} needs {2 * count} bytes, found {len(buffer)}")
        return _bf16_bits_to_float32(np.frombuffer(buffer, dtype=np.uint16)).reshape(shape)
    dtype = np.dtype(name)
    if dtype.hasobject or dtype.fields is not None or len(buffer) != count * dtype.itemsize:
        raise ValueError(f"malformed array: dtype {name}, shape {tuple(shape)}, {len(buffer)} bytes")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _flax_ext_hook(code: int, data: bytes):
    import msgpack

    if code == 1:  # ndarray
        return _flax_ndarray(data)
    if code == 2:  # native complex
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    if code == 3:  # numpy scalar
        return _flax_ndarray(data)[()]
    return msgpack.ExtType(code, data)


def _unchunk(node):
    if isinstance(node, dict):
        if node.get("__msgpack_chunked_array__") is True:
            shape = tuple(node["shape"][str(i)] for i in range(len(node["shape"])))
            chunks = [np.asarray(node["chunks"][str(i)]) for i in range(len(node["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        return {key: _unchunk(value) for key, value in node.items()}
    return node


def flax_msgpack_loads(buffer) -> dict:
    """Decode flax's msgpack serialization (``flax.serialization.msgpack_restore``) without flax or jax.

    Arrays come back as numpy (bfloat16 widened to float32); chunked arrays are reassembled.
    """
    import msgpack

    tree = msgpack.unpackb(buffer, ext_hook=_flax_ext_hook, raw=False, strict_map_key=False)
    return _unchunk(tree)


def read_flax_msgpack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The canonical state of a ``flax_model.msgpack`` written by transformers' Flax models (any CLIP class).

    A ``{"params": ...}`` wrapper is removed; ``kernel``/``scale``/``embedding`` leaves become ``weight`` with the
    PyTorch layout.
    """
    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "flax msgpack file"):
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise ValueError("the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                tree = flax_msgpack_loads(buffer)
        if not isinstance(tree, dict):
            raise ValueError(f"the top level is a {type(tree).__name__}, not a parameter tree")
        while set(tree) == {"params"} and isinstance(tree["params"], dict):
            tree = tree["params"]
        for leaf_path, value in list(flatten_tree(tree)):
            if not isinstance(value, (np.ndarray, np.generic)):
                raise ValueError(f"{'/'.join(leaf_path)} is a {type(value).__name__}, not an array")
            name, value = _canonical_from_flax(leaf_path, np.asarray(value))
            _add(state, name, _owned(value), path)
    return state


def detect_format(path: str | os.PathLike) -> str:
    """The format of a weight file from its first bytes (its name when they say nothing):
    ``"safetensors"``, ``"safetensors_index"``, ``"pytorch"``, ``"pytorch_index"``, ``"tf"`` or ``"flax"``."""
    path = Path(path)
    name = path.name
    if name.endswith(".index.json"):
        return "safetensors_index" if ".safetensors" in name else "pytorch_index"
    with open(path, "rb") as handle:
        head = handle.read(16)
        size = os.fstat(handle.fileno()).st_size
    if head.startswith(_HDF5_SIGNATURE):
        return "tf"
    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5):
        return "pytorch"
    if len(head) >= 9 and struct.unpack("<Q", head[:8])[0] <= size - 8 and head[8:9] == b"{":
        return "safetensors"
    if len(head) >= 1 and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return "flax"
    for suffix, fmt in ((".safetensors", "safetensors"), (".bin", "pytorch"), (".pt", "pytorch"),
                        (".pth", "pytorch"), (".h5", "tf"), (".msgpack", "flax")):
        if name.endswith(suffix):
            return fmt  # the reader will say what is wrong with it
    raise CorruptCheckpointError(f"{path} is not a checkpoint file this package knows (safetensors, PyTorch, "
                                 "Keras HDF5 or flax msgpack)")


_READERS: dict[str, Callable[[Path], dict]] = {
    "safetensors": read_safetensors, "pytorch": read_pytorch, "tf": read_tf_h5, "flax": read_flax_msgpack,
}


def read_sharded(index_path: str | os.PathLike, sibling: Callable[[str], Path | None] | None = None
                 ) -> dict[str, np.ndarray]:
    """The tensors of a sharded checkpoint: ``*.index.json`` (``{"weight_map": {name: shard file}}``) + shards.

    ``sibling(name)`` finds a shard (default: next to the index).
    """
    index_path = Path(index_path)
    sibling = sibling or (lambda n: (index_path.parent / n) if (index_path.parent / n).is_file() else None)
    with reading(index_path, "sharded checkpoint index"):
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError("'weight_map' must map tensor names to file names")
    shards = list(dict.fromkeys(weight_map.values()))
    state: dict[str, np.ndarray] = {}
    for shard in shards:
        if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise CorruptCheckpointError(f"{index_path} names the shard {shard!r}, which is not a file name")
        shard_path = sibling(shard)
        if shard_path is None:
            raise FileNotFoundError(f"{index_path} lists the shard {shard}, which is missing")
        part = _READERS[detect_format(shard_path)](shard_path)
        for name, value in part.items():
            _add(state, name, value, index_path)
    return state


def read_state_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of one weight file or shard index, in any supported format.

    The names are the file's own after the format's rules: canonical for ``tf_model.h5`` and
    ``flax_model.msgpack``; as stored for safetensors and PyTorch files (which may be OpenAI's names).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass it to load_checkpoint")
    fmt = detect_format(path)
    if fmt.endswith("_index"):
        return read_sharded(path)
    return _READERS[fmt](path)


# ---------------------------------------------------------------------------------------------- writers
def write_safetensors(path: str | os.PathLike, state: Mapping[str, np.ndarray],
                      metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` to a ``.safetensors`` file (metadata ``{"format": "pt"}`` as transformers expects)."""
    from safetensors.numpy import save_file

    tensors = {name: _contiguous(value) for name, value in state.items()}
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")  # then renamed: a model mapping the old file keeps it intact
    try:
        save_file(tensors, str(partial), metadata=dict(metadata or {"format": "pt"}))
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def write_pytorch(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> None:
    """Write ``state`` as ``torch.save`` of a dict of tensors (``pytorch_model.bin``). Imports PyTorch."""
    import torch

    tensors = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read-only numpy arrays: torch only reads them here
        for name, value in state.items():
            array = _contiguous(value)
            if _is_bf16(array):
                tensors[name] = torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
            else:
                tensors[name] = torch.from_numpy(array)
    torch.save(tensors, str(path))


def _h5_write_names(group, name: str, values: Sequence[str]) -> None:
    import h5py

    data = np.array(list(values), dtype=h5py.string_dtype())
    chunks = max(1, math.ceil(len(values) / 2000))  # keep each attribute well inside HDF5's 64 KiB header
    if chunks == 1:
        group.attrs[name] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{i}"] = part


def write_tf_h5(path: str | os.PathLike, state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec],
                arch: str = "clip") -> None:
    """Write ``tf_model.h5`` exactly as transformers' ``TFCLIPModel`` / ``TFCLIPTextModel`` / ``TFCLIPVisionModel``
    ``save_pretrained`` does (Keras-2 ``save_weights`` layout), so their ``from_pretrained`` reads it.

    Root attributes ``layer_names`` (the main layer ``clip``), ``backend``, ``keras_version``; the group ``clip``
    with ``weight_names`` ``<model name>/clip/<tf_name>``; one dataset per weight at that path (TF layout).
    bfloat16 is written as float32 (HDF5 has no bfloat16).
    """
    import h5py

    model = TF_MODEL_NAMES[arch]
    names = []
    total = sum(np.asarray(state[name]).nbytes for name in table)
    bar = _progress(total, f"writing {Path(path).name}")
    try:
        with h5py.File(path, "w") as archive:
            _h5_write_names(archive, "layer_names", [TF_MAIN_LAYER])
            archive.attrs["backend"] = "tensorflow"
            archive.attrs["keras_version"] = KERAS_VERSION
            group = archive.create_group(TF_MAIN_LAYER)
            for name, spec in table.items():
                weight = f"{model}/{TF_MAIN_LAYER}/{tf_name(spec)}"
                value = to_framework_layout(_bf16_to_float32(state[name]), spec.kind, "tf")
                group.create_dataset(weight, data=value)
                names.append(weight)
                bar.update(value.nbytes)
            _h5_write_names(group, "weight_names", names)
            archive.create_group("top_level_model_weights").attrs["weight_names"] = np.zeros(0)
    finally:
        bar.close()


def _msgpack_ext_header(code: int, length: int) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if length in fixed:
        return bytes((fixed[length], code))
    if length < 2 ** 8:
        return struct.pack(">BBb", 0xC7, length, code)
    if length < 2 ** 16:
        return struct.pack(">BHb", 0xC8, length, code)
    return struct.pack(">BIb", 0xC9, length, code)


def _msgpack_bin_header(length: int) -> bytes:
    if length < 2 ** 8:
        return struct.pack(">BB", 0xC4, length)
    if length < 2 ** 16:
        return struct.pack(">BH", 0xC5, length)
    return struct.pack(">BI", 0xC6, length)


def _write_flax_array(handle, packer, array: np.ndarray) -> None:
    """One array as flax's ExtType 1 (msgpack of ``(shape, dtype name, bytes)``), streamed without a copy."""
    array = _contiguous(array)
    prefix = (packer.pack_array_header(3) + packer.pack(list(array.shape)) + packer.pack(array.dtype.name)
              + _msgpack_bin_header(array.nbytes))
    handle.write(_msgpack_ext_header(1, len(prefix) + array.nbytes))
    handle.write(prefix)
    handle.write(memoryview(array.reshape(-1).view(np.uint8)))


def _write_flax_node(handle, packer, node, bar) -> None:
    if isinstance(node, dict):
        handle.write(packer.pack_map_header(len(node)))
        for key in sorted(node):
            handle.write(packer.pack(key))
            _write_flax_node(handle, packer, node[key], bar)
        return
    array = node() if callable(node) else np.asarray(node)
    if array.nbytes > FLAX_MAX_CHUNK_SIZE:  # flax's chunked form, which msgpack_restore reassembles
        flat = array.reshape(-1)
        step = max(1, FLAX_MAX_CHUNK_SIZE // array.dtype.itemsize)
        chunks = {str(i): flat[start:start + step] for i, start in enumerate(range(0, flat.size, step))}
        node = {"__msgpack_chunked_array__": True, "chunks": chunks,
                "shape": {str(i): int(d) for i, d in enumerate(array.shape)}}
        handle.write(packer.pack_map_header(3))
        for key in ("__msgpack_chunked_array__", "shape", "chunks"):
            handle.write(packer.pack(key))
            if key == "chunks":
                handle.write(packer.pack_map_header(len(chunks)))
                for index in range(len(chunks)):
                    handle.write(packer.pack(str(index)))
                    _write_flax_array(handle, packer, chunks[str(index)])
            else:
                handle.write(packer.pack(node[key]))
    else:
        _write_flax_array(handle, packer, array)
    bar.update(array.nbytes)


def flax_msgpack_dump(tree: Mapping, handle) -> None:
    """Write a nested dict of arrays to ``handle`` in flax's msgpack format (``flax.serialization.to_bytes``).

    Leaves may be arrays or zero-argument callables returning one (converted one at a time, so writing holds at
    most one converted array in memory). Keys are written sorted, as flax does.
    """
    import msgpack

    packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    _write_flax_node(handle, packer, tree, _NoProgress())


def write_flax_msgpack(path: str | os.PathLike, state: Mapping[str, np.ndarray],
                       table: Mapping[str, ParamSpec]) -> None:
    """Write ``flax_model.msgpack`` with transformers' Flax parameter tree (see :func:`clip_core.weights.flax_path`),
    so ``FlaxCLIPModel`` / ``FlaxCLIPTextModel`` / ... ``from_pretrained`` reads it."""
    import msgpack

    tree: dict = {}
    for name, spec in table.items():
        node = tree
        *parents, leaf = flax_path(spec)
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = (lambda n=name, s=spec: to_framework_layout(np.asarray(state[n]), s.kind, "flax"))
    total = sum(np.asarray(state[name]).nbytes for name in table)
    bar = _progress(total, f"writing {Path(path).name}")
    try:
        with open(path, "wb") as handle:
            _write_flax_node(handle, msgpack.Packer(use_bin_type=True, autoreset=True), tree, bar)
    finally:
        bar.close()


def _plan_shards(state: Mapping[str, np.ndarray], names: Sequence[str], max_bytes: int | None) -> list[list[str]]:
    shards: list[list[str]] = [[]]
    current = 0
    for name in names:
        size = np.asarray(state[name]).nbytes
        if max_bytes is not None and shards[-1] and current + size > max_bytes:
            shards.append([])
            current = 0
        shards[-1].append(name)
        current += size
    return shards


def _write_sharded(directory: Path, fmt: str, state: Mapping[str, np.ndarray], names: Sequence[str],
                   max_bytes: int | None) -> list[str]:
    writer = write_safetensors if fmt == "safetensors" else write_pytorch
    stem, ext = WEIGHTS_NAMES[fmt].rsplit(".", 1)
    shards = _plan_shards(state, names, max_bytes)
    if len(shards) == 1:
        writer(directory / WEIGHTS_NAMES[fmt], {n: state[n] for n in names})
        return [WEIGHTS_NAMES[fmt]]
    files, weight_map = [], {}
    total = sum(np.asarray(state[n]).nbytes for n in names)
    bar = _progress(total, f"writing {WEIGHTS_NAMES[fmt]} shards")
    try:
        for i, shard in enumerate(shards, 1):
            file = f"{stem}-{i:05d}-of-{len(shards):05d}.{ext}"
            writer(directory / file, {n: state[n] for n in shard})
            weight_map.update({n: file for n in shard})
            files.append(file)
            bar.update(sum(np.asarray(state[n]).nbytes for n in shard))
    finally:
        bar.close()
    index = {"metadata": {"total_size": total, "total_parameters": sum(int(np.size(state[n])) for n in names)},
             "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX_NAMES[fmt]).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files + [INDEX_NAMES[fmt]]


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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    model_type = data.get("model_type") or ("clip" if "text_config" in data or "vision_config" in data else None)
    classes = {"clip": CLIPConfig, "clip_text_model": CLIPTextConfig, "clip_vision_model": CLIPVisionConfig}
    if model_type not in classes:
        raise UnsupportedCheckpointError(f"{path} describes a {model_type!r} model, not CLIP")
    return classes[model_type].from_dict(data)


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
    names = SEARCH_ORDER if fmt is None else _FORMAT_FILES[fmt]
    if not isinstance(path_or_repo, (str, os.PathLike)):
        raise TypeError(f"expected a directory, a weight file or a Hub repo id, got {type(path_or_repo).__name__}")
    local = Path(path_or_repo)

    def next_to(folder: Path) -> Callable[[str], Path | None]:
        return lambda name: (folder / name) if (folder / name).is_file() else None

    if local.is_file():
        return _Source(local, detect_format(local), next_to(local.parent))
    if local.is_dir():
        for name in names:
            if (local / name).is_file():
                return _Source(local / name, detect_format(local / name), next_to(local))
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


def _read_source(source: _Source) -> tuple[dict[str, np.ndarray], CLIPConfig | None]:
    """The canonical state of a located checkpoint (+ the config inferred for OpenAI / open_clip files)."""
    from clip_core import openai

    if source.fmt.endswith("_index"):
        raw = read_sharded(source.weights, source.sibling)
    else:
        raw = _READERS[source.fmt](source.weights)
    raw = _from_framework_names(openai.unwrap_state_dict(raw), source.weights)
    if not openai.looks_like_openai(raw):
        return dict(raw), None
    hparams_file = source.sibling("open_clip_config.json")
    hparams = json.loads(Path(hparams_file).read_text(encoding="utf-8")) if hparams_file else None
    config = openai.openai_config(raw, hparams)  # first: it explains unsupported models (ResNets) best
    return openai.convert_openai_state(raw), config


def _load(path_or_repo, arch: str | None, config, fmt: str | None, hub_kwargs: dict):
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    if fmt is not None:
        fmt = _normalise_formats(fmt)[0]
    if isinstance(config, dict):
        config = _config_from_dict(config, arch)
    source = _locate(path_or_repo, fmt, _hub_kwargs(hub_kwargs))
    state, inferred = _read_source(source)
    if config is None:
        config_file = source.sibling(CONFIG_NAME)
        if config_file is not None:
            try:
                config = read_config_file(config_file)
            except UnsupportedCheckpointError:
                if inferred is None:
                    raise
        if config is None:
            config = inferred
        if config is None:
            raise FileNotFoundError(f"{CONFIG_NAME} not found next to {source.weights}: pass config= to load it")
    if arch is None:
        arch = detect_arch(config, state)
    config = config_for_arch(config, arch, state)
    state = _select(state, arch)
    table = param_table(config, arch)
    if arch == "image_classification" and not any(name.startswith("classifier.") for name in state):
        logger.warning("%s has no classifier: it is newly initialised", source.weights)
        state.update(_fresh_classifier(config, table, state))
    validate_state(state, table, where=str(source.weights))
    return config, {name: state[name] for name in table}, arch


def _config_from_dict(data: dict, arch: str | None):
    model_type = data.get("model_type")
    if model_type == "clip" or "text_config" in data or "vision_config" in data:
        return CLIPConfig.from_dict(data)
    classes = {"clip_text_model": CLIPTextConfig, "clip_vision_model": CLIPVisionConfig}
    if model_type in classes:
        return classes[model_type].from_dict(data)
    return (_CONFIG_CLASSES[arch] if arch is not None else CLIPConfig).from_dict(data)


def _fresh_classifier(config, table: Mapping[str, ParamSpec], state: Mapping[str, np.ndarray]) -> dict:
    """transformers' initialisation of a missing classifier head (normal, std hidden**-0.5; zero bias)."""
    vision = config.vision_config
    dtype = np.asarray(state["vision_model.post_layernorm.weight"]).dtype if \
        "vision_model.post_layernorm.weight" in state else np.float32
    rng = np.random.default_rng(0)
    weight, bias = table["classifier.weight"], table["classifier.bias"]
    std = vision.hidden_size ** -0.5 * getattr(vision, "initializer_factor", 1.0)
    return {weight.name: (rng.standard_normal(weight.shape, dtype=np.float32) * np.float32(std)).astype(dtype),
            bias.name: np.zeros(bias.shape, dtype=dtype)}


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
                    **hub_kwargs):
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
        hub_kwargs: ``revision``, ``cache_dir``, ``token`` ... for Hub repos.

    OpenAI / open_clip state dicts are converted (their config inferred from the shapes when there is no
    ``config.json``). The state holds exactly the table's names, in PyTorch layouts, with the stored dtypes
    (bfloat16 widened to float32).

    Raises:
        FileNotFoundError: no such path, no weights in the directory (naming the files looked for), no config.
        StateMismatchError: the weights do not fit the config (every missing, unexpected, mis-shaped tensor).
        CorruptCheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError: see the module docstring.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    config, state, _ = _load(path_or_repo, arch, config, format, hub_kwargs)
    return config, state


def load_any(path_or_repo: str | os.PathLike, *, config=None, format: str | None = None, **hub_kwargs):
    """Like :func:`load_checkpoint`, with the architecture detected: returns ``(config, state, arch)``."""
    return _load(path_or_repo, None, config, format, hub_kwargs)


# ---------------------------------------------------------------------------------------------- saving
def _config_to_write(config, arch: str):
    data = config.to_dict()
    data["architectures"] = [HF_CLASSES[arch]]
    return type(config).from_dict(data)


def save_checkpoint(directory: str | os.PathLike, config, state: Mapping[str, np.ndarray], *,
                    formats: str | Sequence[str] = "safetensors", arch: str = "clip", overwrite: bool = False,
                    max_shard_size: int | str | None = None) -> None:
    """Write ``config.json`` and the weights in each of ``formats`` into ``directory``, atomically.

    Args:
        directory: created if needed. An existing non-empty directory without ``config.json`` is refused unless
            ``overwrite``. Files are written to a temporary sibling and moved in only once all are complete, so a
            failure leaves ``directory`` as it was. Afterwards, weight files of earlier saves that this call did
            not write (other formats, old shards) are removed: they would not match the new ``config.json``.
        config: ``CLIPConfig`` (``"clip"``, ``"image_classification"``) or the tower's config (a ``CLIPConfig``
            is reduced to the tower's).
        state: the canonical state; validated against the table first (float dtypes only; ml_dtypes bfloat16
            arrays are kept in safetensors and PyTorch files, widened to float32 in the others).
        formats: ``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``, ``"all"`` or a list.
        arch: one of :data:`clip_core.weights.ARCHITECTURES`.
        max_shard_size: shard safetensors / PyTorch files above this size (``"2GB"``, an int of bytes), with
            transformers' ``*.index.json``; TF and Flax files are always written whole.
    """
    formats = _normalise_formats(formats)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    config = config_for_arch(config, arch, state)
    table = param_table(config, arch)
    validate_state(state, table, where="the state to save")
    max_bytes = parse_size(max_shard_size)
    names = list(table)
    written = [CONFIG_NAME]
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        _config_to_write(config, arch).save_pretrained(tmp)
        for fmt in formats:
            if fmt in ("safetensors", "pytorch"):
                written += _write_sharded(tmp, fmt, state, names, max_bytes)
            elif fmt == "tf":
                write_tf_h5(tmp / WEIGHTS_NAMES[fmt], state, table, arch)
                written.append(WEIGHTS_NAMES[fmt])
            else:
                write_flax_msgpack(tmp / WEIGHTS_NAMES[fmt], state, table)
                written.append(WEIGHTS_NAMES[fmt])
    for item in Path(directory).iterdir():
        if item.name not in written and _WEIGHT_FILE.match(item.name) and item.is_file():
            with contextlib.suppress(OSError):
                item.unlink()


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


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                       formats: str | Sequence[str] = "safetensors", arch: str | None = None,
                       dtype: str | None = None, hparams: Mapping[str, Any] | str | os.PathLike | None = None,
                       overwrite: bool = False, max_shard_size: int | str | None = None, verify: bool = True,
                       **hub_kwargs) -> tuple[Any, str, dict[str, np.ndarray]]:
    """Read any checkpoint and write it in ``formats`` (no framework needed); returns ``(config, arch, state)``.

    ``hparams`` (OpenAI / open_clip sources only) supplies what shapes cannot tell, such as the head counts (see
    :func:`clip_core.openai.read_openai`). ``dtype`` casts the weights. With ``verify`` (default), every written
    format is read back and compared bit-exactly with what was meant to be written (bfloat16 read back as float32
    is compared after widening); a difference raises ``ValueError`` naming the tensor and the format.
    """
    formats = _normalise_formats(formats)
    if hparams is not None:
        from clip_core.openai import read_openai

        config, state = read_openai(source, hparams=hparams)
        arch = arch or "clip"
    elif arch is None:
        config, state, arch = load_any(source, **hub_kwargs)
    else:
        config, state = load_checkpoint(source, arch=arch, **hub_kwargs)
    state = cast_state(state, dtype)
    save_checkpoint(destination, config, state, formats=formats, arch=arch, overwrite=overwrite,
                    max_shard_size=max_shard_size)
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
    "load_checkpoint", "load_any", "save_checkpoint", "convert_checkpoint", "cast_state", "read_state_file", "read_safetensors",
    "read_pytorch", "read_tf_h5", "read_flax_msgpack", "read_sharded", "write_safetensors", "write_pytorch",
    "write_tf_h5", "write_flax_msgpack", "flax_msgpack_loads", "flax_msgpack_dump", "detect_format",
    "detect_arch", "config_for_arch", "read_config_file", "parse_size", "reading",
    "CheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError", "UnsupportedCheckpointError",
    "StateMismatchError", "WEIGHTS_NAMES", "FORMATS", "SEARCH_ORDER", "INDEX_NAMES", "HF_CLASSES",
]
