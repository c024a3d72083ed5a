"""safetensors: ``model.safetensors`` (and open_clip's ``open_clip_model.safetensors``) <-> a dict of arrays.

Reading copies every tensor into memory the process owns (``mmap=True`` maps the file instead); bfloat16 and float8
tensors are widened exactly to float32 (numpy has neither). Writing goes to a temporary and is renamed. Sharded checkpoints
(``model.safetensors.index.json``) are :mod:`clip_core.formats.sharding`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap as _mmap
import os
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from clip_core.formats import sharding
from clip_core.formats._common import (UnreadTensor, UnsupportedCheckpointError, _bf16_bits_to_float32, _contiguous,
                                       reading)
from clip_core.formats.expect import Expectation, canonical_entry, framework_of

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
OPEN_CLIP_NAME = "open_clip_model.safetensors"


def sniff(head: bytes, size: int) -> bool:
    """Whether a file's first 16 bytes (of ``size``) look like safetensors: a length that fits, then ``{``."""
    return len(head) >= 9 and struct.unpack("<Q", head[:8])[0] <= size - 8 and head[8:9] == b"{"


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


_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
                       "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
                       "U8": np.uint8, "BOOL": np.bool_}
#: Stored dtypes numpy lacks, widened exactly to float32: bfloat16 here, float8 through ml_dtypes.
_WIDENED = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _dtype_of(name: str, code: str, path) -> tuple[np.dtype, str | None]:
    """The numpy dtype a tensor is stored as (``uint16`` for bfloat16) and the ml_dtypes name to widen from."""
    if code in _SAFETENSORS_DTYPES:
        return np.dtype(_SAFETENSORS_DTYPES[code]), None
    if code == "BF16":
        return np.dtype(np.uint16), "bfloat16"
    if code in _WIDENED:
        try:
            import ml_dtypes
        except ImportError:
            raise UnsupportedCheckpointError(f"{path}: tensor {name} is stored as {code}; reading it needs the "
                                             "ml_dtypes package (installed with jax)") from None
        return np.dtype(getattr(ml_dtypes, _WIDENED[code])), _WIDENED[code]
    raise UnsupportedCheckpointError(f"{path}: tensor {name} has the dtype {code}, which this package cannot load "
                                     "(supported: float64/32/16, bfloat16, float8 e4m3/e5m2, integers, bool)")


def _read_into(handle, array: np.ndarray, offset: int, name: str) -> None:
    """Fill ``array`` with the file's bytes from ``offset``: the one copy of an owned read (page cache -> array).

    One read per tensor, each into its own ``np.empty``: measured against a single ``readinto`` of the whole data
    section into one buffer (tests/test_load_copies.py, docs/performance.md), that one big read cost 3-5x the kernel
    time (faulting a fresh transparent-huge-page region inside ``read``), and one buffer would keep every tensor
    alive while any is (a tower loaded from a full CLIP file would hold the other tower too).
    """
    view = memoryview(array.reshape(-1).view(np.uint8))
    handle.seek(offset)
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled:])
        if not got:
            raise ValueError(f"tensor {name} is truncated")
        filled += got


def _check_entry(name: str, info, dtype: np.dtype, data_size: int) -> tuple[tuple[int, ...], int, int]:
    if not isinstance(info, dict) or not isinstance(info.get("shape"), list) or \
            not isinstance(info.get("data_offsets"), list) or len(info["data_offsets"]) != 2:
        raise ValueError(f"tensor {name}: malformed header entry {str(info)[:200]}")
    values = list(info["shape"]) + list(info["data_offsets"])
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise ValueError(f"tensor {name}: malformed shape or offsets {values}")
    shape, (begin, end) = tuple(info["shape"]), info["data_offsets"]
    if end - begin != math.prod(shape) * dtype.itemsize or end > data_size:
        raise ValueError(f"tensor {name}: offsets {begin}..{end} do not fit its shape {shape} "
                         f"({data_size} bytes of data)")
    return shape, begin, end


def read_safetensors(path: str | os.PathLike, *, mmap: bool = False,
                     expect: Expectation | None = None) -> dict[str, np.ndarray]:
    """Every tensor of a ``.safetensors`` file by its stored name (bfloat16 and float8 widened to float32).

    By default every array is read into memory the process owns: the model never changes when the file does.
    ``mmap=True`` returns copy-on-write views of the file mapped into memory instead (nothing read until used,
    pages shared with the OS file cache), with the caveat every mapping has: rewriting the file in place (``cp``
    over it) changes those arrays, and truncating it kills the process with ``SIGBUS`` when they are next read.
    Savers here always write a new file and rename it, which mapped readers survive.

    ``expect`` (:mod:`clip_core.formats.expect`, from the config): every tensor is checked against it from the
    header before anything is read, and tensors whose (canonical) names the model lacks are not read
    (:class:`~clip_core.formats._common.UnreadTensor`).
    """
    from safetensors import safe_open

    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "safetensors file"):
        with open(path, "rb") as handle:  # our own header check first: clearer errors than the library's
            header, start = _safetensors_header(handle, path)
            data_size = os.fstat(handle.fileno()).st_size - start
            header.pop("__metadata__", None)
            entries = {}
            for name, info in header.items():
                if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
                    raise ValueError(f"tensor {name}: malformed header entry {str(info)[:200]}")
                dtype, widen = _dtype_of(name, info["dtype"], path)
                entries[name] = (dtype, widen, *_check_entry(name, info, dtype, data_size))
            unread = _plan(path, entries, expect)  # every check before any data is read
            mapped = _mmap.mmap(handle.fileno(), 0, access=_mmap.ACCESS_COPY) if mmap and data_size else None
            for name, (dtype, widen, shape, begin, end) in entries.items():
                if name in unread:
                    state[name] = UnreadTensor(shape, np.float32 if widen else dtype)
                    continue
                offset = start + begin
                if mapped is not None and widen is None and not offset % dtype.itemsize and math.prod(shape):
                    state[name] = np.frombuffer(mapped, dtype, math.prod(shape), offset).reshape(shape)
                    continue
                array = np.empty(shape, dtype=dtype)
                _read_into(handle, array, offset, name)
                if widen == "bfloat16":
                    array = _bf16_bits_to_float32(array.view(np.uint16)).reshape(shape)
                elif widen is not None:
                    array = array.astype(np.float32)
                state[name] = array
        with safe_open(str(path), framework="np") as archive:  # the library's own validation of the layout
            names = list(archive.keys())
    return {name: state[name] for name in names}


def _plan(path: Path, entries: dict, expect: Expectation | None) -> set[str]:
    """Check every tensor of a header against ``expect``; the stored names not to read (the model lacks them)."""
    expect = expect.for_names(entries) if expect is not None else None
    if expect is None:
        return set()
    framework = framework_of(entries)
    unread = set()
    for name, (dtype, widen, shape, begin, end) in entries.items():
        canonical, canonical_shape = canonical_entry(framework, name, shape)
        expect.check_tensor(path, name, shape, canonical)
        if not expect.wants(canonical, canonical_shape):
            unread.add(name)
        else:  # widened dtypes take float32 (and, for a moment, the stored copy too)
            expect.spend(path, name, (end - begin) + (4 * math.prod(shape) if widen else 0))
    return unread


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



def save(directory: Path, state: Mapping[str, np.ndarray], table, arch: str, max_bytes: int | None) -> list[str]:
    """Write ``model.safetensors`` (sharded above ``max_bytes``) into ``directory``; returns the file names."""
    return sharding.write_sharded(directory, WEIGHTS_NAME, INDEX_NAME, write_safetensors, state, list(table),
                                  max_bytes)
