"""Where files come from and how they are written.

``resolve_file`` turns a local directory or a Hugging Face Hub repo id into a local file path (the Hub through
``huggingface_hub`` when it is installed; ``HF_HUB_OFFLINE=1`` is honoured by it). ``write_atomic`` and
``atomic_directory`` make every write all-or-nothing: data goes to a temporary sibling that is renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_file(path_or_repo: str | os.PathLike, filename: str, *, required: bool = True,
                 revision: str | None = None, cache_dir: str | None = None, token: str | None = None) -> Path | None:
    """Return the local path of ``filename`` inside a directory or a Hub repo.

    A missing file raises ``FileNotFoundError`` naming both the file and where it was looked for, unless
    ``required`` is false, in which case ``None`` is returned.
    """
    if not isinstance(path_or_repo, (str, os.PathLike)):
        raise TypeError(f"expected a directory path or a Hub repo id, got {type(path_or_repo).__name__}")
    local = Path(path_or_repo)
    if local.is_dir():
        candidate = local / filename
        if candidate.is_file():
            return candidate
        if required:
            raise FileNotFoundError(f"{filename} not found in {local}")
        return None
    name = os.fspath(path_or_repo)
    if local.exists() or not _looks_like_repo_id(name):
        raise FileNotFoundError(f"cannot load {filename}: {name} is not a directory (nor a Hub repo id)")
    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError
    except ImportError:
        raise FileNotFoundError(
            f"{name} is not a local directory; install huggingface_hub (pip install 'triclip[hub]') to load it "
            "from the Hub") from None
    # read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")
    where = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
    try:
        return Path(huggingface_hub.hf_hub_download(name, filename, revision=revision, cache_dir=cache_dir,
                                                    token=token, local_files_only=offline))
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{filename} not found in the Hub repo {name}{where}") from None
        return None
    except Exception as err:  # offline, unknown repo, network failure: one clear OSError
        if not required:  # the caller tries other names and reports what it looked for
            return None
        raise FileNotFoundError(f"could not fetch {filename} from the Hub repo {name}{where}: {err}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``: never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(destination: str | os.PathLike, *, overwrite: bool = False,
                     is_checkpoint=lambda p: (p / "config.json").is_file()) -> Iterator[Path]:
    """Yield a temporary sibling of ``destination``; on success its files replace ``destination``'s.

    A failure inside the block leaves ``destination`` exactly as it was. An existing non-empty directory that does
    not look like a checkpoint (no ``config.json``) is refused unless ``overwrite`` is true, so a mistyped path never
    clobbers unrelated files. Files already in a checkpoint directory that the block does not write are kept.
    """
    dest = Path(destination)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"destination {dest} exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()) and not overwrite and not is_checkpoint(dest):
        raise FileExistsError(f"refusing to write into {dest}: it is a non-empty directory that is not a "
                              "checkpoint (pass overwrite=True to write there anyway)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        dest.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            os.replace(item, dest / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
