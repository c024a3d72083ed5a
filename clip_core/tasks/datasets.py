"""Datasets of (image, caption) rows and their deterministic, framework-free batching.

A dataset is a CSV, JSONL or parquet file of rows naming an image (column ``image``, ``filepath``, ``path`` or
``file_name``; paths relative to the data file) and its caption (``caption``, ``text`` or ``title``), or a folder of
webdataset ``.tar`` shards (one image member and one ``.txt`` caption per key). :func:`read_pairs` turns any of them
into a list of :class:`Pair`; :func:`epoch_batches` orders them, the same for one seed in every framework;
:func:`make_batch` turns a batch of pairs into numpy model inputs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

IMAGE_COLUMNS = ("image", "filepath", "path", "file_name")
CAPTION_COLUMNS = ("caption", "text", "title")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
#: separates a shard's path from a member's name in a webdataset image reference (``shard.tar::key.jpg``)
MEMBER_SEP = "::"


@dataclass(frozen=True)
class Pair:
    """One row: ``image`` is an absolute file path or a webdataset member reference (``/abs/shard.tar::key.jpg``),
    ``caption`` its text."""

    image: str
    caption: str


def _pick(columns: Sequence[str], wanted: Sequence[str], what: str, source) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise ValueError(f"{source}: no {what} column; expected one of {list(wanted)}, found columns {list(columns)}")


def _pairs_from_rows(rows, columns, source: Path) -> list[Pair]:
    """Pairs from an iterable of ``(row_number, mapping)``; image paths resolved against the data file's folder."""
    image_col = _pick(columns, IMAGE_COLUMNS, "image", source)
    caption_col = _pick(columns, CAPTION_COLUMNS, "caption", source)
    base = source.resolve().parent
    pairs = []
    for number, row in rows:
        image, caption = row.get(image_col), row.get(caption_col)
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"{source} row {number}: {image_col!r} must be a non-empty path, got {image!r}")
        if not isinstance(caption, str):
            raise ValueError(f"{source} row {number}: {caption_col!r} must be text, got {caption!r}")
        path = Path(image) if os.path.isabs(image) else base / image
        if not path.is_file():
            raise FileNotFoundError(f"{source} row {number}: image file not found: {path}")
        pairs.append(Pair(str(path), caption))
    return pairs


def _read_csv(path: Path) -> list[Pair]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = []
        for number, row in enumerate(reader, start=2):  # line 1 is the header
            if None in row or None in row.values():
                raise ValueError(f"{path} row {number}: expected {len(columns)} fields, found a different number")
            rows.append((number, row))
    return _pairs_from_rows(rows, columns, path)


def _read_jsonl(path: Path) -> list[Pair]:
    rows, columns = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} row {number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} row {number}: expected a JSON object, got {type(row).__name__}")
            columns += [k for k in row if k not in columns]
            rows.append((number, row))
    if not rows:
        raise ValueError(f"{path}: no rows")
    image_col = _pick(columns, IMAGE_COLUMNS, "image", path)
    caption_col = _pick(columns, CAPTION_COLUMNS, "caption", path)
    for number, row in rows:
        for col in (image_col, caption_col):
            if col not in row:
                raise ValueError(f"{path} row {number}: missing field {col!r}")
    return _pairs_from_rows(rows, columns, path)


def _read_parquet(path: Path) -> list[Pair]:
    import pyarrow.parquet as pq

    columns = pq.read_schema(path).names
    image_col = _pick(columns, IMAGE_COLUMNS, "image", path)
    caption_col = _pick(columns, CAPTION_COLUMNS, "caption", path)
    table = pq.read_table(path, columns=[image_col, caption_col]).to_pydict()
    rows = [(i, {image_col: im, caption_col: cap})
            for i, (im, cap) in enumerate(zip(table[image_col], table[caption_col]))]
    return _pairs_from_rows(rows, columns, path)


def _read_shards(folder: Path) -> list[Pair]:
    shards = sorted(p for p in folder.iterdir() if p.suffix == ".tar")
    if not shards:
        raise ValueError(f"{folder}: no webdataset .tar shards in this folder")
    pairs = []
    for shard in shards:
        images, captions = {}, {}
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    ext = ext.lower()
                    if ext in IMAGE_EXTENSIONS:
                        images[key] = member.name
                    elif ext == "txt":
                        captions[key] = tar.extractfile(member).read().decode("utf-8").strip()
        except (tarfile.TarError, UnicodeDecodeError) as err:
            raise ValueError(f"{shard}: not a readable webdataset shard ({err})") from None
        for key in images.keys() | captions.keys():
            if key not in images or key not in captions:
                missing = "an image member" if key not in images else "a .txt caption"
                raise ValueError(f"{shard}: sample {key!r} has no {missing}")
        for key in sorted(images, key=list(images).index):  # shard order
            pairs.append(Pair(f"{shard.resolve()}{MEMBER_SEP}{images[key]}", captions[key]))
    return pairs


def read_pairs(path) -> list[Pair]:
    """Every (image, caption) row of a CSV / JSONL / parquet file, or of a folder of webdataset ``.tar`` shards,
    in file order. Raises ``FileNotFoundError`` for a missing data file or image (naming the row), ``ValueError``
    for a missing column, a bad row or an unknown file type."""
    path = Path(path)
    if path.is_dir():
        return _read_shards(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    suffix = path.suffix.lower()
    readers = {".csv": _read_csv, ".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet}
    if suffix not in readers:
        raise ValueError(f"{path}: unknown dataset type {suffix!r}; expected .csv, .jsonl, .parquet or a folder "
                         f"of webdataset .tar shards")
    pairs = readers[suffix](path)
    if not pairs:
        raise ValueError(f"{path}: no rows")
    return pairs


_TAR_CACHE: dict[str, tuple[tarfile.TarFile, dict]] = {}


def _member_bytes(ref: str) -> bytes:
    shard, _, name = ref.partition(MEMBER_SEP)
    if shard not in _TAR_CACHE:
        if len(_TAR_CACHE) >= 8:  # a few shards open at once is plenty for sequential reading
            _TAR_CACHE.pop(next(iter(_TAR_CACHE)))[0].close()
        tar = tarfile.open(shard)
        _TAR_CACHE[shard] = (tar, {m.name: m for m in tar.getmembers()})
    tar, members = _TAR_CACHE[shard]
    if name not in members:
        raise FileNotFoundError(f"{shard}: no member {name!r}")
    return tar.extractfile(members[name]).read()


def load_image(pair_or_ref) -> Image.Image:
    """The RGB image of a :class:`Pair` or of an image reference (a path or ``shard.tar::member``)."""
    ref = pair_or_ref.image if isinstance(pair_or_ref, Pair) else str(pair_or_ref)
    try:
        if MEMBER_SEP in ref:
            image = Image.open(io.BytesIO(_member_bytes(ref)))
        else:
            image = Image.open(ref)
        image.load()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise OSError(f"cannot read image {ref}: {err}") from None
    return image.convert("RGB")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = True) -> list[np.ndarray]:
    """The row indices of every batch of one epoch: a permutation of ``range(n)`` drawn by
    ``numpy.random.default_rng([seed, epoch])``, cut into consecutive batches of ``batch_size`` (the last, shorter
    one dropped when ``drop_last``). The same for one ``(seed, epoch)`` everywhere."""
    for name, value in (("n", n), ("batch_size", batch_size), ("seed", seed), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if n < 0 or batch_size < 1 or seed < 0 or epoch < 0:
        raise ValueError(f"need n >= 0, batch_size >= 1, seed >= 0 and epoch >= 0; got n={n}, "
                         f"batch_size={batch_size}, seed={seed}, epoch={epoch}")
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(int(n))
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def make_batch(pairs: Sequence[Pair], index, processor, max_length: int) -> dict[str, np.ndarray]:
    """Model inputs for ``pairs[index]``: ``input_ids`` and ``attention_mask`` (int64, padded to ``max_length``,
    truncated) and ``pixel_values`` (float32 NCHW) from ``processor`` (a :class:`~clip_core.CLIPProcessor`)."""
    rows = [pairs[int(i)] for i in index]
    text = processor.tokenizer([p.caption for p in rows], padding="max_length", truncation=True,
                               max_length=max_length, return_tensors="np")
    pixels = processor.image_processor([load_image(p) for p in rows], return_tensors="np")["pixel_values"]
    return {"input_ids": np.asarray(text["input_ids"], np.int64),
            "attention_mask": np.asarray(text["attention_mask"], np.int64),
            "pixel_values": np.asarray(pixels, np.float32)}
