"""flax's msgpack: ``flax_model.msgpack`` as transformers' Flax CLIP classes write it <-> the canonical state.

The format (``flax.serialization.to_bytes`` / ``msgpack_restore``) is implemented here with ``msgpack`` alone: arrays
are ExtType 1 of ``(shape, dtype name, bytes)``; arrays above :data:`FLAX_MAX_CHUNK_SIZE` bytes are written in flax's
chunked form. Neither flax nor jax is needed.
"""

from __future__ import annotations

import io
import math
import mmap
import reprlib
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from clip_core.formats._common import (CorruptCheckpointError, UnreadTensor, _add, _bf16_bits_to_float32,
                                       _contiguous, _NoProgress, _owned, _progress, check_nesting, mapped_shape,
                                       reading)
from clip_core.weights import ParamSpec, flatten_tree, flax_path, from_framework_layout, to_framework_layout

WEIGHTS_NAME = "flax_model.msgpack"
FLAX_MAX_CHUNK_SIZE = 2 ** 30  # flax splits arrays above this many bytes into chunks (msgpack's 4 GiB limit)


def sniff(head: bytes, size: int) -> bool:
    """Whether a file starts like a msgpack map (a fixmap, map16 or map32)."""
    return len(head) >= 1 and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))


def canonical_from_flax(path: tuple[str, ...], value: np.ndarray) -> tuple[str, np.ndarray]:
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


def _flax_ndarray(data: bytes) -> np.ndarray:
    """An array from flax's ExtType 1 payload (msgpack of ``(shape, dtype name, bytes)``): the shape is read before
    anything of the array's size is made; the data is viewed in ``data``, not copied."""
    import msgpack

    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=True, read_size=256, max_array_len=64, max_str_len=64,
                                max_bin_len=len(data), max_map_len=0)
    if unpacker.read_array_header() != 3:
        raise ValueError("malformed array: its header is not (shape, dtype, bytes)")
    shape, dtype_name = unpacker.unpack(), unpacker.unpack()
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"malformed array shape {reprlib.repr(shape)}")
    start = unpacker.tell()
    code = data[start] if start < len(data) else None
    if code in (0xC4, 0xC5, 0xC6):  # bin 8 / 16 / 32: a view of its bytes
        width = {0xC4: 1, 0xC5: 2, 0xC6: 4}[code]
        length = int.from_bytes(data[start + 1:start + 1 + width], "big")
        begin = start + 1 + width
        if begin + length != len(data):
            raise ValueError("malformed array: its bytes do not end the payload")
        buffer = memoryview(data)[begin:]
    else:
        buffer = unpacker.unpack()
        if not isinstance(buffer, bytes):
            raise ValueError(f"malformed array: its data is a {type(buffer).__name__}, not bytes")
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


class TreeTooLargeError(ValueError):
    """A msgpack tree with far more entries than any parameter tree."""


#: The most map entries + array items a flax file may hold in all (a CLIP tree has a few thousand): a file of small
#: entries would otherwise become Python objects some 50 times its size.
MAX_TREE_ITEMS = 1_000_000


def flax_msgpack_loads(buffer, max_items: int = MAX_TREE_ITEMS) -> dict:
    """Decode flax's msgpack serialization (``flax.serialization.msgpack_restore``) without flax or jax.

    Arrays come back as numpy (bfloat16 widened to float32); chunked arrays are reassembled. More than
    ``max_items`` map entries and array items in all raise ``ValueError`` as they are met. An array's shape is
    checked against its payload's size before the array is made.
    """
    import msgpack

    left = [max_items]

    def count(n: int) -> None:
        left[0] -= n
        if left[0] < 0:
            raise TreeTooLargeError(f"the tree holds more than {max_items:,} entries (a parameter tree has a few "
                                    "thousand): refused before it fills memory")

    def pairs(items):
        count(len(items))
        return dict(items)

    def array(items):
        count(len(items))
        return items

    limit = min(len(buffer), max_items)
    try:
        tree = msgpack.unpackb(buffer, ext_hook=_flax_ext_hook, raw=False,
                               strict_map_key=False,
                               object_pairs_hook=pairs, list_hook=array, max_map_len=limit, max_array_len=limit)
    except ValueError as err:
        if "exceeds max_" in str(err):
            raise TreeTooLargeError(f"a map or array of the tree is longer than {limit:,} items ({err})") from None
        raise
    return _unchunk(tree)


def read_flax_msgpack(path: str | os.PathLike, *, expect=None) -> dict[str, np.ndarray]:
    """The canonical state of a ``flax_model.msgpack`` written by transformers' Flax models (any CLIP class).

    A ``{"params": ...}`` wrapper is removed; ``kernel``/``scale``/``embedding`` leaves become ``weight`` with the
    PyTorch layout. ``expect`` (:mod:`clip_core.formats.expect`): every array (a view of the file's bytes while it
    is decoded) is checked against it by name and shape, and the bytes of the arrays kept before they are copied;
    arrays the model lacks, or holds at another shape, are dropped (:class:`~clip_core.formats._common.UnreadTensor`).
    msgpack decodes the whole file, so the arrays' raw bytes are in memory once (bounded by the file's size) whatever
    ``expect`` says.
    """
    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "flax msgpack file"):
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise ValueError("the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                try:  # an array's payload holds its bytes (a shape claiming more is malformed): views, no copies
                    tree = flax_msgpack_loads(buffer)
                except TreeTooLargeError as err:
                    raise CorruptCheckpointError(f"{path}: {err}") from None
        if not isinstance(tree, dict):
            raise ValueError(f"the top level is a {type(tree).__name__}, not a parameter tree")
        check_nesting(tree, path, "flax msgpack file")
        while set(tree) == {"params"} and isinstance(tree["params"], dict):
            tree = tree["params"]
        for leaf_path, value in list(flatten_tree(tree)):
            if not isinstance(value, (np.ndarray, np.generic)):
                raise ValueError(f"{'/'.join(leaf_path)} is a {type(value).__name__}, not an array")
            value = np.asarray(value)
            if expect is not None:  # the name first: a kernel's layout change copies it
                name, shape = mapped_shape(lambda _, v, p=leaf_path: canonical_from_flax(p, v), "", value.shape)
                expect.check_tensor(path, name, value.shape, name)
                if not expect.wants(name, shape):
                    _add(state, name, UnreadTensor(shape, value.dtype), path)
                    continue
                expect.spend(path, name, value.nbytes)
            name, value = canonical_from_flax(leaf_path, value)
            _add(state, name, _owned(value), path)
    return state


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



def save(directory: Path, state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec], arch: str,
         max_bytes: int | None) -> list[str]:
    """Write ``flax_model.msgpack`` into ``directory`` (always one file: ``max_bytes`` does not apply)."""
    write_flax_msgpack(directory / WEIGHTS_NAME, state, table)
    return [WEIGHTS_NAME]
