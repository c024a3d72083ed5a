"""safetensors: ``model.safetensors`` (and open_clip's ``open_clip_model.safetensors``) <-> a dict of arrays.

Reading maps the file into memory copy-on-write (nothing is read until used); bfloat16 tensors are widened exactly
to float32 (numpy has no bfloat16). Writing goes to a temporary and is renamed. Sharded checkpoints
(``model.safetensors.index.json``) are :mod:`clip_core.formats.sharding`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import mmap
import os
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from clip_core.formats import sharding
from clip_core.formats._common import _bf16_bits_to_float32, _contiguous, reading

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
