"""Sharded checkpoints, as transformers writes them: ``<stem>-00001-of-0000N.<ext>`` files + ``<name>.index.json``.

The index is ``{"metadata": {"total_size": ..., "total_parameters": ...}, "weight_map": {tensor: shard file}}``.
The writer takes the family's one-file writer (safetensors or PyTorch); reading a sharded checkpoint is
:func:`clip_core.formats.registry.read_sharded` (each shard is read by the reader of its own format).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from clip_core.formats._common import CorruptCheckpointError, _progress


def plan_shards(state: Mapping[str, np.ndarray], names: Sequence[str], max_bytes: int | None) -> list[list[str]]:
    """``names`` in order, cut into consecutive groups of at most ``max_bytes`` (a larger tensor stands alone)."""
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


def write_sharded(directory: Path, weights_name: str, index_name: str,
                  writer: Callable[[Path, Mapping[str, np.ndarray]], None], state: Mapping[str, np.ndarray],
                  names: Sequence[str], max_bytes: int | None) -> list[str]:
    """Write ``names`` of ``state`` with ``writer`` as ``weights_name``, or as shards + ``index_name`` when they
    exceed ``max_bytes``; returns the file names written."""
    stem, ext = weights_name.rsplit(".", 1)
    shards = plan_shards(state, names, max_bytes)
    if len(shards) == 1:
        writer(directory / weights_name, {n: state[n] for n in names})
        return [weights_name]
    files, weight_map = [], {}
    total = sum(np.asarray(state[n]).nbytes for n in names)
    bar = _progress(total, f"writing {weights_name} shards")
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
    (directory / index_name).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return files + [index_name]


def read_hparams_json(path: str | os.PathLike, what: str) -> dict:
    """A small JSON object from a checkpoint folder (a shard index, ``open_clip_config.json``, ``--hparams``):
    checked to be a regular file first (a FIFO would block), every failure an error naming the file."""
    from clip_core.formats.registry import check_regular
    from clip_core.jsonio import JSONFileError, read_json

    check_regular(path)
    try:
        return read_json(path, f"{path} ({what})", expect=dict)
    except JSONFileError as err:
        raise CorruptCheckpointError(str(err)) from None


def shard_files(index_path: str | os.PathLike, sibling: Callable[[str], Path | None] | None = None) -> list[Path]:
    """The shard files an ``*.index.json`` names, in order, each found by ``sibling(name)`` (default: next to the
    index). A name that is not a plain file name raises :class:`CorruptCheckpointError`; a missing shard
    ``FileNotFoundError``."""
    index_path = Path(index_path)
    sibling = sibling or (lambda n: (index_path.parent / n) if (index_path.parent / n).exists() else None)
    weight_map = read_hparams_json(index_path, "sharded checkpoint index").get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise CorruptCheckpointError(f"{index_path}: its 'weight_map' must map tensor names to shard file names")
    paths = []
    for shard in dict.fromkeys(weight_map.values()):
        if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise CorruptCheckpointError(f"{index_path} names the shard {shard!r}, which is not a file name")
        shard_path = sibling(shard)
        if shard_path is None:
            raise FileNotFoundError(f"{index_path} lists the shard {shard}, which is missing")
        paths.append(shard_path)
    return paths
