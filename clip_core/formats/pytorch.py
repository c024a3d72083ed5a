"""PyTorch files: ``pytorch_model.bin`` / ``.pt`` (``torch.save``), TorchScript archives, and the writer.

Plain ``torch.save`` files are read with ``torch.load(weights_only=True)`` (PyTorch imported only then). OpenAI's
released ``.pt`` files are TorchScript archives: :func:`read_torch_zip` reads them -- and plain ``torch.save`` zips --
*without executing anything*: the archive's ``data.pkl`` is unpickled by a restricted unpickler that only rebuilds
tensors (from the ``data/<key>`` entries) and records the attributes of TorchScript module objects; any other global
is refused with :class:`~clip_core.checkpoints.UnsafeCheckpointError`. It needs neither PyTorch nor any code from
the archive.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from clip_core.formats import sharding
from clip_core.formats._common import (CorruptCheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError,
                                       _contiguous, _is_bf16, reading, unwrap_state_dict)

WEIGHTS_NAME = "pytorch_model.bin"
INDEX_NAME = "pytorch_model.bin.index.json"
OPEN_CLIP_NAME = "open_clip_pytorch_model.bin"


def sniff(head: bytes, size: int) -> bool:
    """Whether a file's first bytes look like a torch file: a zip archive or a bare pickle (protocol 1-5)."""
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5)


def read_pytorch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a ``torch.save`` file (``pytorch_model.bin``, ``.pt``) or a TorchScript archive, by name.

    Plain ``torch.save`` files go through ``torch.load(map_location="cpu", weights_only=True)``: a pickle that
    references anything but tensors and containers raises :class:`UnsafeCheckpointError`. TorchScript archives (and
    zip checkpoints when PyTorch is not installed) are read by :func:`read_torch_zip`, which
    executes nothing. bfloat16 becomes float32; other dtypes are kept. ``{"state_dict": ...}`` wrappers and
    ``module.`` prefixes are removed; entries that are not tensors are dropped.
    """
    path = Path(path)
    if is_torchscript(path):
        return unwrap_state_dict(read_torch_zip(path))
    try:
        import torch
    except ImportError:
        if zipfile.is_zipfile(path):
            return unwrap_state_dict(read_torch_zip(path))
        raise UnsupportedCheckpointError(f"reading {path} (a legacy, non-zip torch pickle) needs PyTorch") from None
    budget = memory_budget(path)
    with reading(path, "PyTorch checkpoint"):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                _check_stored(archive, path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            message = str(err)
            if "Weights only load failed" in message:  # torch's safe unpickler met something it does not allow
                raise UnsafeCheckpointError(f"refused to load {path}: it is not a plain weights pickle, loading it "
                                            f"could run code ({_refused_global(message)})") from None
            raise
        obj = unwrap_state_dict(obj)
        if not isinstance(obj, Mapping):
            raise UnsupportedCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
        tensors = {str(name): t.detach() for name, t in obj.items() if isinstance(t, torch.Tensor)}
        views = {(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype): t
                 for t in tensors.values()}  # a tensor saved twice (tied weights) is counted once
        needed = sum(t.numel() * (4 if t.dtype == torch.bfloat16 else t.element_size()) for t in views.values())
        if needed > budget:
            raise CorruptCheckpointError(_too_large(path, needed, budget))
        state = {}
        for name, tensor in tensors.items():
            if tensor.dtype == torch.bfloat16:
                state[str(name)] = tensor.float().numpy()
            else:
                state[str(name)] = _contiguous(tensor.numpy())
    return state


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
    with open(path, "wb") as handle:
        recorder = _RecordingWriter(handle)
        try:
            torch.save(tensors, recorder)
        except RuntimeError:
            if recorder.error is not None:  # torch's writer hides the OSError (a full disk) behind its own message
                raise recorder.error from None
            raise


class _RecordingWriter:
    """A write-only file for ``torch.save`` that keeps the ``OSError`` a write raised."""

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()



def save(directory: Path, state: Mapping[str, np.ndarray], table, arch: str, max_bytes: int | None) -> list[str]:
    """Write ``pytorch_model.bin`` (sharded above ``max_bytes``) into ``directory``; returns the file names."""
    return sharding.write_sharded(directory, WEIGHTS_NAME, INDEX_NAME, write_pytorch, state, list(table), max_bytes)


# ---------------------------------------------------------------------------------------------- torch zip archives
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": "bf16",
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """What ``GLOBAL torch.FloatStorage`` (and its kin) becomes: a dtype marker, never callable."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bf16 = _STORAGE_DTYPES[name] == "bf16"
        self.dtype = np.dtype(np.uint16 if self.bf16 else _STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, array: np.ndarray, storage_type: _StorageType) -> None:
        self.array, self.type = array, storage_type


class ScriptObject:
    """Stands in for a TorchScript module object: keeps the attributes it was pickled with, runs nothing."""

    qualified_name = ""

    def __setstate__(self, state) -> None:
        self.__dict__["_state"] = state


def _check_ints(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in values):
        raise ValueError(f"malformed tensor {what}: {values!r}")
    return values


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch zip archive, rebuilding tensors as numpy arrays and nothing else."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, _Storage] = {}
        self._classes: dict[str, type] = {}
        self._limit = self._budget = memory_budget(path)  # bytes it may still make: broadcasts count, cumulatively

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad=False, hooks=None: data
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self._classes[qualified]
        raise UnsafeCheckpointError(
            f"refused to load {self._path}: its pickle references {module}.{name}, which a plain weights file never "
            "does (loading it could run arbitrary code)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and
                isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise ValueError(f"malformed storage reference {pid!r}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if key not in self._storages:
            entry = f"{self._prefix}data/{key}"
            info = self._archive.getinfo(entry)
            nbytes = numel * storage_type.dtype.itemsize
            if numel < 0 or info.file_size != nbytes:
                raise ValueError(f"storage {entry} holds {info.file_size} bytes, expected {nbytes}")
            self._spend(nbytes)
            array = np.empty(numel, dtype=storage_type.dtype)
            with self._archive.open(info) as handle:
                view = memoryview(array.view(np.uint8))
                filled = 0
                while filled < nbytes:
                    got = handle.readinto(view[filled:])
                    if not got:
                        raise ValueError(f"storage {entry} is truncated")
                    filled += got
            self._storages[key] = _Storage(array, storage_type)
        return self._storages[key]

    def _spend(self, nbytes: int) -> None:
        self._budget -= nbytes
        if self._budget < 0:
            raise CorruptCheckpointError(_too_large(self._path, self._limit - self._budget, self._limit))

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise ValueError("malformed tensor: no storage")
        size, stride = _check_ints(size, "size"), _check_ints(stride, "stride")
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise ValueError("malformed tensor: size, stride and offset disagree")
        data = storage.array
        if 0 in size:
            array = np.zeros(size, dtype=data.dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= data.size:
                raise ValueError(f"malformed tensor: it reaches element {last} of a storage of {data.size}")
            itemsize = data.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                                   strides=tuple(s * itemsize for s in stride), writeable=False)
            contiguous_whole = offset == 0 and int(np.prod(size)) == data.size and \
                view.flags.c_contiguous and data.flags.writeable
            if not contiguous_whole:  # a copy: broadcast (stride-0) views grow here, so they are counted
                self._spend(view.nbytes * (2 if storage.type.bf16 else 1))
            array = data.reshape(size) if contiguous_whole else np.array(view, order="C")
        if storage.type.bf16:  # numpy has no bfloat16: widen exactly to float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _refused_global(message: str) -> str:
    """What torch's weights-only unpickler refused, from its message (whose wording changes between releases)."""
    found = re.search(r"GLOBAL\s+([\w.]+)", message) or re.search(r"[Uu]nsupported (?:global|class)[:\s]+([\w.]+)",
                                                                  message)
    if found:
        return f"it references {found.group(1).rstrip('.')}, which is not allowed in a weights file"
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if "weights_only" not in line and "Weights only" not in line]
    return (useful or lines or ["torch refused it"])[0][:200]


def memory_budget(path: str | os.PathLike) -> int:
    """The most bytes reading ``path`` may allocate: twice its size (bfloat16 widens to float32) + 64 MiB. Plain
    weight files never need more; broadcast (stride-0) views and compressed storages would."""
    return 2 * os.stat(path).st_size + 64 * 2 ** 20


def _too_large(path, needed: int, budget: int) -> str:
    return (f"{path}: its tensors would take {needed:,}+ bytes in memory, more than {budget:,} (twice the file's size + "
            "64 MiB); a weights file never expands like this (broadcast / stride-0 views or repeated views)")


def _check_stored(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse compressed entries that would be read (pickles, storages): ``torch.save`` and ``torch.jit.save``
    never compress them, and a deflated storage can inflate to gigabytes from a few kilobytes."""
    for info in archive.infolist():
        inner = info.filename.split("/", 1)[-1]
        if inner.startswith("code/") or inner.endswith(".debug_pkl"):
            continue  # TorchScript's source code (compressed by torch.jit.save), never read here
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsupportedCheckpointError(
                f"refused to read {path}: its entry {info.filename} is compressed ({info.file_size:,} bytes from "
                f"{info.compress_size:,}); torch.save never compresses, re-save it with torch.save")


def _archive_prefix(archive: zipfile.ZipFile, path: Path) -> str:
    candidates = [n[: -len("data.pkl")] for n in archive.namelist()
                  if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(candidates) != 1:
        raise ValueError(f"{path} is a zip archive but not a torch checkpoint (no single <name>/data.pkl)")
    return candidates[0]


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``constants.pkl`` or a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(n.count("/") >= 1 and (n.split("/", 1)[1] == "constants.pkl" or n.split("/", 1)[1].startswith("code/"))
               for n in names)


def _flatten_objects(obj, prefix: str, out: dict, seen: set) -> None:
    if id(obj) in seen:
        return
    if isinstance(obj, ScriptObject):
        seen.add(id(obj))
        state = obj.__dict__.get("_state")
        if isinstance(state, Mapping):
            for key, value in state.items():
                _flatten_objects(value, f"{prefix}{key}.", out, seen)
    elif isinstance(obj, Mapping):
        seen.add(id(obj))
        for key, value in obj.items():
            _flatten_objects(value, f"{prefix}{key}.", out, seen)
    elif isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj


def read_torch_zip(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a TorchScript archive or a ``torch.save`` zip, by dotted name, as numpy arrays.

    Nothing from the archive is executed and PyTorch is not needed: only tensors, ``OrderedDict`` and TorchScript
    module objects (as attribute holders) are rebuilt; any other global raises ``UnsafeCheckpointError``. bfloat16
    tensors are widened to float32; a malformed archive raises ``CorruptCheckpointError``.
    """
    path = Path(path)
    with reading(path, "torch zip archive"):
        with zipfile.ZipFile(path) as archive:
            _check_stored(archive, path)
            prefix = _archive_prefix(archive, path)
            with archive.open(f"{prefix}data.pkl") as handle:
                root = _RestrictedUnpickler(handle, archive, prefix, path).load()
    out: dict[str, np.ndarray] = {}
    _flatten_objects(root, "", out, set())
    return out


__all__ = ["read_pytorch", "write_pytorch", "read_torch_zip", "is_torchscript", "ScriptObject", "WEIGHTS_NAME",
           "INDEX_NAME"]
