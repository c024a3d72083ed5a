"""What ``triclip embed`` reads: an image folder, a list file of paths, a parquet of paths, or a text file; and how
the job is cut into shards.

A :class:`Corpus` is a fixed, ordered list of items (image paths or texts) with an id each; shard ``i`` holds items
``[i * shard_size, (i + 1) * shard_size)`` and is written as ``part-{i:05d}.parquet``. The corpus fingerprint (a hash
of its ids and items) ties an output folder to its input, so a resumed job refuses a different corpus.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
_PATH_COLUMNS = ("path", "image", "filepath", "file", "url")
_CAPTION_COLUMNS = ("caption", "text", "title")


@dataclass(frozen=True)
class Corpus:
    """An ordered list of items to embed: ``kind`` is ``"image"`` (``items`` are absolute paths) or ``"text"``.

    ``columns`` holds extra per-item columns copied into the output (e.g. ``caption``).
    """

    kind: str
    ids: tuple[str, ...]
    items: tuple[str, ...]
    source: str
    columns: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """A SHA-256 of the kind, ids and items: equal for equal inputs, different otherwise."""
        digest = hashlib.sha256(self.kind.encode())
        for i, item in zip(self.ids, self.items):
            digest.update(b"\0" + i.encode("utf-8", "surrogatepass") + b"\1" + item.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def shards(self, shard_size: int) -> list[tuple[int, int, int]]:
        """``[(index, start, stop), ...]`` covering every item in order."""
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
        return [(i, start, min(start + shard_size, len(self)))
                for i, start in enumerate(range(0, len(self), shard_size))]


def shard_name(index: int) -> str:
    """The file name of shard ``index``: ``part-00000.parquet``."""
    return f"part-{index:05d}.parquet"


def _folder(folder: Path) -> Corpus:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not paths:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    return Corpus("image", tuple(p.relative_to(folder).as_posix() for p in paths),
                  tuple(str(p.resolve()) for p in paths), str(folder))


def _list_file(path: Path) -> Corpus:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{path} lists no image paths (one path per line; relative paths are read from its folder)")
    return Corpus("image", tuple(lines), tuple(str((path.parent / line).resolve()) for line in lines), str(path))


def _parquet(path: Path) -> Corpus:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = table.column_names
    column = next((c for c in _PATH_COLUMNS if c in names), None)
    if column is None:
        raise ValueError(f"{path} has no image path column (one of {_PATH_COLUMNS}); its columns are {names}")
    rel = [str(v) for v in table.column(column).to_pylist()]
    if any(v.startswith(("http://", "https://")) for v in rel):
        raise ValueError(f"{path}: image URLs are not downloaded; give local paths")
    ids = [str(v) for v in table.column("id").to_pylist()] if "id" in names else rel
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: ids are not unique")
    caption = next((c for c in _CAPTION_COLUMNS if c in names), None)
    columns = {"caption": [str(v) for v in table.column(caption).to_pylist()]} if caption else {}
    return Corpus("image", tuple(ids), tuple(str((path.parent / v).resolve()) for v in rel), str(path), columns)


def image_source(spec: str | os.PathLike) -> Corpus:
    """An image corpus from a folder (every image file below it, sorted; ids are relative paths), a ``.parquet``
    (a ``path``/``image`` column, optional ``id`` and ``caption``), or a list file (one path per line)."""
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"image source not found: {path}")
    if path.is_dir():
        return _folder(path)
    if path.suffix.lower() == ".parquet":
        return _parquet(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ValueError(f"{path} is an image; give a folder, a list file or a parquet of paths")
    return _list_file(path)


def text_source(spec: str | os.PathLike) -> Corpus:
    """A text corpus from a UTF-8 file, one text per line; empty lines are skipped, ids are 0-based line numbers."""
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    pairs = [(str(i), line.strip()) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
             if line.strip()]
    if not pairs:
        raise ValueError(f"{path} holds no text lines")
    return Corpus("text", tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), str(path))
