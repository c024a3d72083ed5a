"""The checkpoint families by name: file names, detection, reader and writer. What :mod:`clip_core.checkpoints`
dispatches through.

=================  ==========================  ===============================================================
format             file                        module
=================  ==========================  ===============================================================
``"safetensors"``  ``model.safetensors``       :mod:`~clip_core.formats.safetensors` (sharded with
                                               ``model.safetensors.index.json``: :mod:`~clip_core.formats.sharding`)
``"pytorch"``      ``pytorch_model.bin``       :mod:`~clip_core.formats.pytorch` (sharded like safetensors)
``"tf"``           ``tf_model.h5``             :mod:`~clip_core.formats.keras_h5`
``"flax"``         ``flax_model.msgpack``      :mod:`~clip_core.formats.flax_msgpack`
=================  ==========================  ===============================================================

A family module provides ``WEIGHTS_NAME`` (and ``INDEX_NAME`` / ``OPEN_CLIP_NAME`` when it has them), ``sniff(head,
size)`` (whether a file's first 16 bytes are its own), a reader ``path -> {name: array}`` and ``save(directory,
state, table, arch, max_bytes) -> [file names written]``. :data:`READERS` is the table every read goes through.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from clip_core.formats import expect as _expect
from clip_core.formats import flax_msgpack, keras_h5, pytorch, safetensors, sharding
from clip_core.formats._common import CorruptCheckpointError, UnreadTensor, _add, _owned


@dataclass(frozen=True)
class Family:
    """One checkpoint family: its format name, files, detection, reader and writer."""

    name: str
    module: object
    read: Callable[[Path], dict]
    suffixes: tuple[str, ...]

    @property
    def weights_name(self) -> str:
        return self.module.WEIGHTS_NAME

    @property
    def files(self) -> tuple[str, ...]:
        """The files ``load_checkpoint(format=name)`` looks for, in order."""
        extra = (getattr(self.module, "INDEX_NAME", None), getattr(self.module, "OPEN_CLIP_NAME", None))
        return (self.weights_name,) + tuple(name for name in extra if name)

    def save(self, directory: Path, state: Mapping[str, np.ndarray], table, arch: str,
             max_bytes: int | None) -> list[str]:
        """Write this family's file(s) for ``state`` into ``directory``; returns the names written."""
        return self.module.save(directory, state, table, arch, max_bytes)


FAMILIES = {
    "safetensors": Family("safetensors", safetensors, safetensors.read_safetensors, (".safetensors",)),
    "pytorch": Family("pytorch", pytorch, pytorch.read_pytorch, (".bin", ".pt", ".pth")),
    "tf": Family("tf", keras_h5, keras_h5.read_tf_h5, (".h5",)),
    "flax": Family("flax", flax_msgpack, flax_msgpack.read_flax_msgpack, (".msgpack",)),
}
#: The order in which :func:`detect_format` tries the families' signatures.
_SNIFF_ORDER = ("tf", "pytorch", "safetensors", "flax")

WEIGHTS_NAMES = {name: family.weights_name for name, family in FAMILIES.items()}
FORMATS = tuple(WEIGHTS_NAMES)
INDEX_NAMES = {name: family.module.INDEX_NAME for name, family in FAMILIES.items()
               if hasattr(family.module, "INDEX_NAME")}
#: open_clip's file names on the Hub (OpenAI-style parameter names inside).
OPEN_CLIP_NAMES = tuple(family.module.OPEN_CLIP_NAME for family in FAMILIES.values()
                        if hasattr(family.module, "OPEN_CLIP_NAME"))
#: The files :func:`~clip_core.checkpoints.load_checkpoint` looks for in a directory or Hub repo, in order.
SEARCH_ORDER = tuple(name for family in FAMILIES.values() for name in family.files[:2]) + OPEN_CLIP_NAMES
FORMAT_FILES = {name: family.files for name, family in FAMILIES.items()}
FORMAT_ALIASES = {"pt": "pytorch", "torch": "pytorch", "bin": "pytorch", "h5": "tf", "tensorflow": "tf",
                  "keras": "tf", "jax": "flax", "msgpack": "flax"}
#: Every weight file name a save may leave behind (one file, a shard or an index).
WEIGHT_FILE = re.compile(r"^(model(-\d{5}-of-\d{5})?\.safetensors|pytorch_model(-\d{5}-of-\d{5})?\.bin|"
                         r"tf_model(-\d{5}-of-\d{5})?\.h5|flax_model(-\d{5}-of-\d{5})?\.msgpack|"
                         r"(model\.safetensors|pytorch_model\.bin|tf_model\.h5|flax_model\.msgpack)\.index\.json)$")
#: Format name -> reader; every read dispatches through this table.
READERS: dict[str, Callable[[Path], dict]] = {name: family.read for name, family in FAMILIES.items()}


def normalise_formats(formats: str | Sequence[str]) -> list[str]:
    """Format names (or aliases such as ``"pt"``, ``"h5"``, or ``"all"``) -> the distinct canonical names."""
    items = [formats] if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"formats must be strings, got {item!r}")
        key = FORMAT_ALIASES.get(item.lower(), item.lower())
        expanded = list(FORMATS) if key == "all" else [key]
        for fmt in expanded:
            if fmt not in WEIGHTS_NAMES:
                raise ValueError(f"unknown checkpoint format {item!r}; choose from {', '.join(FORMATS)} or 'all'")
            if fmt not in out:
                out.append(fmt)
    if not out:
        raise ValueError("no checkpoint format given")
    return out


_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (named pipe)",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def check_regular(path: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` for a missing ``path`` and :class:`CorruptCheckpointError` for one that is not a
    regular file (a FIFO would block its reader forever, ``/dev/zero`` never ends), naming what it is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise CorruptCheckpointError(f"{path} is {kind}, not a regular file: a checkpoint file must be one")


def detect_format(path: str | os.PathLike) -> str:
    """The format of a weight file from its first bytes (its name when they say nothing):
    ``"safetensors"``, ``"safetensors_index"``, ``"pytorch"``, ``"pytorch_index"``, ``"tf"`` or ``"flax"``."""
    path = Path(path)
    name = path.name
    check_regular(path)
    if name.endswith(".index.json"):
        return "safetensors_index" if ".safetensors" in name else "pytorch_index"
    with open(path, "rb") as handle:
        head = handle.read(16)
        size = os.fstat(handle.fileno()).st_size
    for fmt in _SNIFF_ORDER:
        if FAMILIES[fmt].module.sniff(head, size):
            return fmt
    for fmt, family in FAMILIES.items():
        if name.endswith(family.suffixes):
            return fmt  # the reader will say what is wrong with it
    raise CorruptCheckpointError(f"{path} is not a checkpoint file this package knows (safetensors, PyTorch, "
                                 "Keras HDF5 or flax msgpack)")


def read_sharded(index_path: str | os.PathLike, sibling: Callable[[str], Path | None] | None = None, *,
                 mmap: bool = False, expect: _expect.Expectation | None = None) -> dict[str, np.ndarray]:
    """The tensors of a sharded checkpoint: ``*.index.json`` (``{"weight_map": {name: shard file}}``) + shards.

    ``sibling(name)`` finds a shard (default: next to the index); ``mmap`` maps safetensors shards (see
    :func:`~clip_core.formats.safetensors.read_safetensors`); ``expect`` (:mod:`clip_core.formats.expect`) bounds
    the read over all shards together.
    """
    state: dict[str, np.ndarray] = {}
    extra = {} if expect is None else {"expect": expect}
    for shard_path in sharding.shard_files(index_path, sibling):
        fmt = detect_format(shard_path)
        if fmt.endswith("_index") or fmt not in READERS:
            raise CorruptCheckpointError(f"{index_path} names {shard_path.name} as a shard, but it is not a weight "
                                         "file (an index cannot list another index)")
        part = safetensors.read_safetensors(shard_path, mmap=True, **extra) if mmap and fmt == "safetensors" else \
            READERS[fmt](shard_path, **extra)
        for name, value in part.items():
            _add(state, name, value, Path(index_path))
    return state


def read_state_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of one weight file or shard index, in any supported format.

    The names are the file's own after the format's rules: canonical for ``tf_model.h5`` and
    ``flax_model.msgpack``; as stored for safetensors and PyTorch files (which may be OpenAI's names).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass it to load_checkpoint")
    check_regular(path)
    fmt = detect_format(path)
    if fmt.endswith("_index"):
        return read_sharded(path)
    return READERS[fmt](path)


def from_framework_names(state: Mapping[str, np.ndarray], path) -> dict[str, np.ndarray]:
    """Canonical names for safetensors files written by transformers' TF models (``clip/text_model/.../kernel:0``,
    metadata ``format: tf``) or Flax models (``text_model....q_proj.kernel``, ``format: flax``); others unchanged.
    Unread tensors (:class:`~clip_core.formats._common.UnreadTensor`) get their canonical name and shape."""
    framework = _expect.framework_of(state)
    if framework is None:
        return dict(state)
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if isinstance(value, UnreadTensor):
            new, shape = _expect.canonical_entry(framework, name, value.shape)
            _add(out, new, UnreadTensor(shape, value.dtype), path)
            continue
        if framework == "tf":
            parts = name.split("/")
            if len(parts) > 1 and parts[0] == keras_h5.TF_MAIN_LAYER:
                parts = parts[1:]
            new, value = keras_h5.canonical_from_tf("/".join(parts), np.asarray(value))
        else:
            new, value = flax_msgpack.canonical_from_flax(tuple(name.split(".")), np.asarray(value))
        _add(out, new, _owned(value), path)
    return out


__all__ = ["FAMILIES", "Family", "READERS", "WEIGHTS_NAMES", "FORMATS", "INDEX_NAMES", "OPEN_CLIP_NAMES",
           "SEARCH_ORDER", "FORMAT_FILES", "FORMAT_ALIASES", "normalise_formats", "detect_format", "check_regular", "read_sharded",
           "read_state_file", "from_framework_names"]
