"""Keras-2 HDF5: ``tf_model.h5`` as transformers' TF CLIP classes write it (``save_weights`` layout) <-> the state.

Variable names ``<model name>/clip/text_model/encoder/layers_._0/self_attn/q_proj/kernel:0`` map to canonical names
(``text_model.encoder.layers.0.self_attn.q_proj.weight``) and TF layouts to PyTorch's. HDF5 has no bfloat16: it is
written as float32. Needs ``h5py`` (imported when a file is read or written).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from clip_core.formats._common import (CorruptCheckpointError, UnreadTensor, UnsafeCheckpointError,
                                       UnsupportedCheckpointError, _add, _bf16_to_float32, _owned, _progress,
                                       mapped_shape, reading)
from clip_core.weights import ParamSpec, from_framework_layout, tf_name, to_framework_layout

WEIGHTS_NAME = "tf_model.h5"
#: The Keras model name transformers' TF classes give their weights (the first component, ignored on load).
TF_MODEL_NAMES = {"clip": "tfclip_model", "text": "tfclip_text_model",
                  "text_projection": "tfclip_text_model_with_projection", "vision": "tfclip_vision_model",
                  "vision_projection": "tfclip_vision_model_with_projection",
                  "image_classification": "tfclip_for_image_classification"}
TF_MAIN_LAYER = "clip"  # TFCLIPModel, TFCLIPTextModel and TFCLIPVisionModel all name their main layer "clip"
KERAS_VERSION = "2.21.0"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sniff(head: bytes, size: int) -> bool:
    """Whether a file starts with HDF5's signature."""
    return head.startswith(_HDF5_SIGNATURE)


def canonical_from_tf(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
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


def _resolve(archive, name: str, path: Path):
    """The object at ``name`` inside ``archive``, following only hard links (each component checked first):
    external links (other files), soft links (aliases) and anything else are refused by name."""
    import h5py

    node = archive
    parts = [part for part in name.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise UnsupportedCheckpointError(f"{path}: {name!r} is not a plain HDF5 path")
    for depth, part in enumerate(parts):
        where = "/".join(parts[:depth + 1])
        if not isinstance(node, h5py.Group) or part not in node:
            raise CorruptCheckpointError(f"{path}: {where} is listed in the Keras weight names but missing")
        link = node.get(part, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise UnsafeCheckpointError(f"refused to read {path}: {where} is an external link to "
                                        f"{link.filename}:{link.path}; a Keras weights file holds its own datasets")
        if isinstance(link, h5py.SoftLink):
            raise UnsupportedCheckpointError(f"refused to read {path}: {where} is a soft link (an alias of "
                                             f"{link.path}); Keras writes every weight as its own dataset")
        if not isinstance(link, h5py.HardLink):
            raise UnsupportedCheckpointError(f"refused to read {path}: {where} is a {type(link).__name__}")
        node = node[part]
    return node


def _plain_dataset(archive, name: str, path: Path, budget: int):
    """The dataset ``name`` if it is as Keras writes it -- float, contiguous (or compact), no filters, no external
    storage, all its bytes written inside the file -- checked before any data is read; refused by name otherwise."""
    import h5py

    dataset = _resolve(archive, name, path)
    if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f" or dataset.dtype.itemsize not in (2, 4, 8):
        kind = type(dataset).__name__ if not isinstance(dataset, h5py.Dataset) else f"dataset of {dataset.dtype}"
        raise UnsupportedCheckpointError(f"{path}: {name} is a {kind}, not a float dataset")
    plist = dataset.id.get_create_plist()
    if plist.get_external_count():
        target = plist.get_external(0)[0].decode(errors="replace")
        raise UnsafeCheckpointError(f"refused to read {path}: the dataset {name} keeps its data outside the file "
                                    f"(external raw storage in {target}); a Keras weights file holds its own data")
    layout = plist.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        raise UnsafeCheckpointError(f"refused to read {path}: the dataset {name} is virtual (its data is mapped "
                                    "from other datasets or files)")
    if layout not in (h5py.h5d.CONTIGUOUS, h5py.h5d.COMPACT) or plist.get_nfilters():
        filters = [plist.get_filter(i)[3].decode(errors="replace") for i in range(plist.get_nfilters())]
        how = f"compressed ({', '.join(filters)})" if filters else "chunked"
        raise UnsupportedCheckpointError(f"refused to read {path}: the dataset {name} is {how}; Keras writes "
                                         "plain contiguous datasets (read and re-save it with h5py to convert)")
    needed = dataset.size * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    if stored != needed or needed > budget:
        raise CorruptCheckpointError(f"{path}: the dataset {name} stores {stored} bytes, its shape {dataset.shape} "
                                     f"needs {needed}" + (" (it was never written)" if stored == 0 and needed else
                                                          "" if needed <= budget else ", more than the file holds"))
    return dataset


def read_tf_h5(path: str | os.PathLike, *, expect=None) -> dict[str, np.ndarray]:
    """The canonical state of a ``tf_model.h5`` written by transformers' TF models (or by :func:`write_tf_h5`).

    Variable names ``<model name>/<main layer>/text_model/encoder/layers_._0/self_attn/q_proj/kernel:0`` become
    ``text_model.encoder.layers.0.self_attn.q_proj.weight`` with the PyTorch layout, whatever the model name
    (``tfclip_model``, ``tfclip_text_model``, ...). ``expect`` (:mod:`clip_core.formats.expect`): every dataset is
    checked against it from its metadata before any data is read, and datasets whose names the model lacks are not
    read (:class:`~clip_core.formats._common.UnreadTensor`).
    """
    import h5py

    path = Path(path)
    state: dict[str, np.ndarray] = {}
    with reading(path, "Keras HDF5 weights file"):
        with h5py.File(path, "r") as archive:
            layers = _h5_names(archive, "layer_names")
            if not layers:
                raise ValueError("no 'layer_names' attribute: not a Keras weights file")
            budget = path.stat().st_size  # plain datasets hold their bytes in the file: never more than its size
            datasets = []  # every dataset checked before any data is read
            for layer in layers:
                group = _resolve(archive, layer, path)
                for weight in _h5_names(group, "weight_names"):
                    parts = weight.split("/")[1:]  # the model name comes first, whatever it is
                    if parts and parts[0] == layer:
                        parts = parts[1:]
                    dataset = _plain_dataset(archive, f"{layer}/{weight}", path, budget)
                    datasets.append(("/".join(parts), dataset))
                    budget -= dataset.id.get_storage_size()
            unread = _plan(path, datasets, expect)
            bar = _progress(path.stat().st_size, f"reading {path.name}")
            try:
                for index, (tf_path, dataset) in enumerate(datasets):
                    if index in unread:
                        name, shape = unread[index]
                        _add(state, name, UnreadTensor(shape, dataset.dtype), path)
                        continue
                    value = np.asarray(dataset[()])
                    name, value = canonical_from_tf(tf_path, value)
                    _add(state, name, _owned(value), path)
                    bar.update(value.nbytes)
            finally:
                bar.close()
    return state


def _plan(path: Path, datasets: list, expect) -> dict[int, tuple[str, tuple[int, ...]]]:
    """Check every dataset against ``expect`` from its metadata; the ones not to read, with their canonical name
    and shape."""
    if expect is None:
        return {}
    unread = {}
    for index, (tf_path, dataset) in enumerate(datasets):
        name, shape = mapped_shape(canonical_from_tf, tf_path, dataset.shape)
        expect.check_tensor(path, dataset.name.lstrip("/"), dataset.shape, name)
        if expect.wants(name, shape):
            expect.spend(path, dataset.name.lstrip("/"), dataset.size * dataset.dtype.itemsize)
        else:
            unread[index] = (name, shape)
    return unread


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
        # h5py writes through a Python file: a full disk is an OSError here, where HDF5's own writer fails in
        # odd ways (RuntimeError from its metadata flush, or worse)
        with open(path, "wb") as handle, h5py.File(handle, "w") as archive:
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



def save(directory: Path, state: Mapping[str, np.ndarray], table: Mapping[str, ParamSpec], arch: str,
         max_bytes: int | None) -> list[str]:
    """Write ``tf_model.h5`` into ``directory`` (always one file: ``max_bytes`` does not apply)."""
    write_tf_h5(directory / WEIGHTS_NAME, state, table, arch)
    return [WEIGHTS_NAME]
