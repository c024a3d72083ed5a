"""PyTorch files: ``pytorch_model.bin`` / ``.pt`` (``torch.save``), TorchScript archives, and the writer.

Plain ``torch.save`` files are read with ``torch.load(weights_only=True)`` (PyTorch imported only then). OpenAI's
released ``.pt`` files are TorchScript archives: :func:`read_torch_zip` reads them -- and plain ``torch.save`` zips --
*without executing anything*: the archive's ``data.pkl`` is unpickled by a restricted unpickler that only rebuilds
tensors (from the ``data/<key>`` entries) and records the attributes of TorchScript module objects; any other global
is refused with :class:`~clip_core.checkpoints.UnsafeCheckpointError`. It needs neither PyTorch nor any code from
the archive. The unpickler only describes the tensors (storage, offset, shape, strides): every size is checked --
against the file's budget (:func:`memory_budget`) and what the config implies (:mod:`clip_core.formats.expect`) --
before any storage is read, and storages only unread tensors use are never read. Containers nested deeper than
:data:`~clip_core.formats._common.MAX_NESTING` are refused as corrupt (never a ``RecursionError``).
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import re
import reprlib
import warnings
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

from clip_core.formats import sharding
from clip_core.formats._common import (CorruptCheckpointError, UnreadTensor, UnsafeCheckpointError,
                                       UnsupportedCheckpointError, _contiguous, _is_bf16, check_nesting, reading,
                                       unwrap_state_dict)
from clip_core.formats.expect import Expectation, canonical_entry, framework_of

WEIGHTS_NAME = "pytorch_model.bin"
INDEX_NAME = "pytorch_model.bin.index.json"
OPEN_CLIP_NAME = "open_clip_pytorch_model.bin"


def sniff(head: bytes, size: int) -> bool:
    """Whether a file's first bytes look like a torch file: a zip archive or a bare pickle (protocol 1-5)."""
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 1 <= head[1] <= 5)


def read_pytorch(path: str | os.PathLike, *, expect: Expectation | None = None) -> dict[str, np.ndarray]:
    """Tensors of a ``torch.save`` file (``pytorch_model.bin``, ``.pt``) or a TorchScript archive, by name.

    Plain ``torch.save`` files go through ``torch.load(map_location="cpu", weights_only=True)``: a pickle that
    references anything but tensors and containers raises :class:`UnsafeCheckpointError`. TorchScript archives (and
    zip checkpoints when PyTorch is not installed) are read by :func:`read_torch_zip`, which
    executes nothing. bfloat16 becomes float32; other dtypes are kept. ``{"state_dict": ...}`` wrappers and
    ``module.`` prefixes are removed; entries that are not tensors are dropped.

    With ``expect`` (:mod:`clip_core.formats.expect`, what the config implies) a zip checkpoint is read by the
    restricted unpickler of :func:`read_torch_zip` (it knows every tensor's shape and storage before reading any
    data), which checks each tensor against ``expect`` and reads only the storages of the tensors the model has
    (the others come back as :class:`~clip_core.formats._common.UnreadTensor`); a pickle it cannot read (a global
    it does not know) goes to ``torch.load`` after its storages' total size is checked. Legacy (non-zip) pickles
    are checked after ``torch.load`` has read their storages (they lie in the file), before any copy.
    """
    path = Path(path)
    if is_torchscript(path):
        return unwrap_state_dict(read_torch_zip(path, expect=expect))
    try:
        import torch
    except ImportError:
        if zipfile.is_zipfile(path):
            return unwrap_state_dict(read_torch_zip(path, expect=expect))
        raise UnsupportedCheckpointError(f"reading {path} (a legacy, non-zip torch pickle) needs PyTorch") from None
    if expect is not None and zipfile.is_zipfile(path):
        state = _read_state_zip(path, expect)
        if state is not None:
            return state
    budget = memory_budget(path)
    with reading(path, "PyTorch checkpoint"):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                _check_stored(archive, path)
                if expect is not None:  # torch.load reads every storage: their total first
                    expect.fits(path, "its storages", sum(info.file_size for info in archive.infolist()
                                                          if "/data/" in info.filename))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
            check_nesting(obj, path, "PyTorch checkpoint")
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
        wanted, expect = _wanted(path, {name: tuple(t.shape) for name, t in tensors.items()}, expect)
        views = {(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype): t
                 for name, t in tensors.items() if name in wanted}  # a tensor saved twice (tied) is counted once
        needed = sum(t.numel() * (4 if t.dtype == torch.bfloat16 else t.element_size()) for t in views.values())
        if needed > budget:
            raise CorruptCheckpointError(_too_large(path, needed, budget))
        if expect is not None:
            expect.spend(path, "its tensors", needed)
        state = {}
        for name, tensor in tensors.items():
            if name not in wanted:
                state[name] = UnreadTensor(tuple(tensor.shape), np.float32 if tensor.dtype == torch.bfloat16 else
                                           torch.empty(0, dtype=tensor.dtype).numpy().dtype)
            elif tensor.dtype == torch.bfloat16:
                state[name] = tensor.float().numpy()
            else:
                state[name] = _contiguous(tensor.numpy())
    return state


def _wanted(path: Path, shapes: Mapping[str, tuple[int, ...]],
            expect: Expectation | None) -> tuple[set[str], Expectation | None]:
    """The names of ``shapes`` to keep, and the expectation that applies: all and none without ``expect`` or for
    OpenAI's names; otherwise each tensor checked against it and only the ones whose (canonical, ``module.``-less)
    names the model has."""
    strip = "module." if shapes and all(name.startswith("module.") for name in shapes) else ""
    bare = {name: name[len(strip):] for name in shapes}
    expect = expect.for_names(bare.values()) if expect is not None else None
    if expect is None:
        return set(shapes), None
    framework = framework_of(bare.values())
    wanted = set()
    for name, shape in shapes.items():
        canonical, canonical_shape = canonical_entry(framework, bare[name], shape)
        expect.check_tensor(path, name, shape, canonical)
        if expect.wants(canonical, canonical_shape):
            wanted.add(name)
    return wanted, expect


def _read_state_zip(path: Path, expect: Expectation) -> dict[str, np.ndarray] | None:
    """A ``torch.save`` zip read by the restricted unpickler, checked against ``expect`` before any data is read;
    ``None`` when its pickle uses a global that unpickler does not know (``torch.load`` then decides)."""
    with reading(path, "PyTorch checkpoint"):
        with zipfile.ZipFile(path) as archive:
            try:
                root = _unpickle(archive, path, "PyTorch checkpoint")
            except UnsafeCheckpointError:
                return None
            obj = unwrap_state_dict(root)
            if not isinstance(obj, Mapping):
                raise UnsupportedCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
            refs = {str(name): t for name, t in obj.items() if isinstance(t, _TensorRef)}
            return _materialise(refs, archive, path, expect)


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
    """A storage of the archive (``data/<key>``), known by its size; its bytes are read only when a tensor that is
    kept needs them."""

    def __init__(self, key: str, entry: zipfile.ZipInfo, storage_type: _StorageType, numel: int) -> None:
        self.key, self.entry, self.type, self.numel = key, entry, storage_type, numel
        self.array: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.type.dtype.itemsize


class _TensorRef:
    """A tensor of the pickle, not yet made: its storage, offset, shape and strides (in elements)."""

    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.storage.type.bf16 else self.storage.type.dtype

    def whole(self) -> bool:
        """Whether the tensor is its whole storage in order (then it needs no copy of its own)."""
        expected, step = [], 1
        for n in reversed(self.shape):
            expected.insert(0, step)
            step *= n
        return self.offset == 0 and step == self.storage.numel and \
            all(s == e for n, s, e in zip(self.shape, self.stride, expected) if n > 1)

    def cost(self) -> int:
        """The bytes making this tensor allocates beyond its storage: a copy unless it is the whole storage in
        order (broadcast / stride-0 views grow here), and bfloat16's widening to float32."""
        count = math.prod(self.shape)
        return (0 if self.whole() else count * self.storage.type.dtype.itemsize) + \
            (4 * count if self.storage.type.bf16 else 0)


class ScriptObject:
    """Stands in for a TorchScript module object: keeps the attributes it was pickled with, runs nothing."""

    qualified_name = ""

    def __setstate__(self, state) -> None:
        self.__dict__["_state"] = state


def _check_ints(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                for v in values):
        raise ValueError(f"malformed tensor {what}: {reprlib.repr(values)}")
    return values


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of a torch zip archive into :class:`_TensorRef` s (no tensor data is read) and
    nothing else: any global but tensors, storages, ``OrderedDict`` and TorchScript objects is refused."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, _Storage] = {}
        self._classes: dict[str, type] = {}

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
            raise ValueError(f"malformed storage reference {reprlib.repr(pid)}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if key not in self._storages:
            entry = f"{self._prefix}data/{key}"
            info = self._archive.getinfo(entry)
            nbytes = numel * storage_type.dtype.itemsize
            if numel < 0 or info.file_size != nbytes:
                raise ValueError(f"storage {entry} holds {info.file_size} bytes, expected {nbytes}")
            self._storages[key] = _Storage(key, info, storage_type, numel)
        return self._storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise ValueError("malformed tensor: no storage")
        size, stride = _check_ints(size, "size"), _check_ints(stride, "stride")
        if len(size) != len(stride) or not isinstance(offset, int) or offset < 0:
            raise ValueError("malformed tensor: size, stride and offset disagree")
        if 0 not in size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if last >= storage.numel:
                raise ValueError(f"malformed tensor: it reaches element {last} of a storage of {storage.numel}")
        return _TensorRef(storage, offset, size, stride)


def _make(ref: _TensorRef, archive: zipfile.ZipFile) -> np.ndarray:
    """The numpy array of a tensor, its storage read from the archive the first time one of its tensors is made."""
    storage = ref.storage
    if storage.array is None:
        array = np.empty(storage.numel, dtype=storage.type.dtype)
        with archive.open(storage.entry) as handle:
            view = memoryview(array.view(np.uint8))
            filled = 0
            while filled < storage.nbytes:
                got = handle.readinto(view[filled:])
                if not got:
                    raise ValueError(f"storage {storage.entry.filename} is truncated")
                filled += got
        storage.array = array
    data = storage.array
    if 0 in ref.shape:
        array = np.zeros(ref.shape, dtype=data.dtype)
    elif ref.whole():
        array = data.reshape(ref.shape)
    else:  # a copy: broadcast (stride-0) views grow here, so they were counted
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.shape,
                                               strides=tuple(s * itemsize for s in ref.stride), writeable=False)
        array = np.array(view, order="C")
    if storage.type.bf16:  # numpy has no bfloat16: widen exactly to float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _materialise(refs: Mapping[str, _TensorRef], archive: zipfile.ZipFile, path: Path,
                 expect: Expectation | None) -> dict[str, np.ndarray]:
    """Arrays for ``refs`` (by name). Every check comes first, before any storage is read: the bytes the kept
    tensors take (their storages once each, and copies) within the file's budget (:func:`memory_budget`) and, with
    ``expect``, each tensor's size and the total within what the config implies; tensors whose names the model
    lacks are not read (:class:`~clip_core.formats._common.UnreadTensor`), nor storages only they use."""
    wanted, expect = _wanted(path, {name: ref.shape for name, ref in refs.items()}, expect)
    kept, seen, needed = {}, set(), 0
    limit = memory_budget(path)
    for name, ref in refs.items():
        if name not in wanted:
            continue
        view = (ref.storage.key, ref.offset, ref.shape, ref.stride)  # a tensor saved twice (tied) counts once
        cost = (0 if view in seen else ref.cost()) + (0 if ref.storage.key in seen else ref.storage.nbytes)
        seen.update((view, ref.storage.key))
        needed += cost
        if needed > limit:
            raise CorruptCheckpointError(_too_large(path, needed, limit))
        if expect is not None:
            expect.spend(path, name, cost)
        kept[name] = view
    made: dict[tuple, np.ndarray] = {}
    out = {}
    for name, ref in refs.items():
        if name not in kept:
            out[name] = UnreadTensor(ref.shape, ref.dtype)
            continue
        if kept[name] not in made:
            made[kept[name]] = _make(ref, archive)
        out[name] = made[kept[name]]
    return out


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


def _flatten_objects(root) -> dict[str, _TensorRef]:
    """Every tensor under ``root`` (TorchScript objects' attributes and mappings, nested) by dotted name; without
    recursion, so a pickle nested thousands deep costs no stack."""
    out: dict[str, _TensorRef] = {}
    seen: set[int] = set()
    stack = [(root, "")]
    while stack:
        obj, prefix = stack.pop()
        if isinstance(obj, _TensorRef):
            out[prefix[:-1]] = obj
            continue
        if isinstance(obj, ScriptObject):
            state = obj.__dict__.get("_state")
        elif isinstance(obj, Mapping):
            state = obj
        else:
            continue
        if id(obj) in seen or not isinstance(state, Mapping):
            continue
        seen.add(id(obj))
        stack.extend((value, f"{prefix}{key}.") for key, value in reversed(list(state.items())))
    return out


def _unpickle(archive: zipfile.ZipFile, path: Path, what: str):
    """The object ``data.pkl`` of a torch zip (read as ``what``) describes, every tensor a :class:`_TensorRef`
    (nothing read)."""
    _check_stored(archive, path)
    prefix = _archive_prefix(archive, path)
    with archive.open(f"{prefix}data.pkl") as handle:
        root = _RestrictedUnpickler(handle, archive, prefix, path).load()
    check_nesting(root, path, what)
    return root


def read_torch_zip(path: str | os.PathLike, *, expect: Expectation | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a TorchScript archive or a ``torch.save`` zip, by dotted name, as numpy arrays.

    Nothing from the archive is executed and PyTorch is not needed: only tensors, ``OrderedDict`` and TorchScript
    module objects (as attribute holders) are rebuilt; any other global raises ``UnsafeCheckpointError``. bfloat16
    tensors are widened to float32; a malformed archive raises ``CorruptCheckpointError``. Every tensor's size is
    checked (against the file's budget and ``expect``, :mod:`clip_core.formats.expect`) before any storage is read;
    with ``expect``, tensors the model lacks are not read.
    """
    path = Path(path)
    with reading(path, "torch zip archive"):
        with zipfile.ZipFile(path) as archive:
            refs = _flatten_objects(_unpickle(archive, path, "torch zip archive"))
            return _materialise(refs, archive, path, expect)


__all__ = ["read_pytorch", "write_pytorch", "read_torch_zip", "is_torchscript", "ScriptObject", "WEIGHTS_NAME",
           "INDEX_NAME"]
