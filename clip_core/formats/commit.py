"""Checkpoint commits: a save is all-or-nothing for the whole folder, not just per file.

A save into ``DIR``:

1. takes an exclusive ``flock`` on ``DIR/.triclip.lock`` (a second writer waits for the first, then replaces its
   checkpoint with its own: the result is always one complete checkpoint);
2. finishes a commit a killed writer left half-applied, and removes staging folders killed writers left behind;
3. writes every file into a staging folder *inside* ``DIR`` (``DIR/.triclip-staging-*``), so renames never cross a
   file system (``DIR`` may be a mount point) and the parent may be read-only;
4. writes the journal ``DIR/.triclip-commit.json`` -- the files to move in, the stale files to remove -- with one
   atomic rename: **the commit point**;
5. moves the files in, removes the stale ones, deletes the journal and the staging folder.

A kill before step 4 leaves the old checkpoint untouched (the staging folder is cleaned by the next save); a kill
after it leaves a journal that :func:`resolver` honours -- every reader here sees the new checkpoint whole -- and
that the next save completes. Readers that ignore the journal (other libraries) may see old and new files side by
side until then.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

LOCK_NAME = ".triclip.lock"
JOURNAL_NAME = ".triclip-commit.json"
STAGING_PREFIX = ".triclip-staging-"


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, I/O error, a library's own write error); the folder is unchanged."""


def _journal(directory: Path) -> dict | None:
    path = directory / JOURNAL_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: written by a rename, so it is never partial; treat as absent
    names = data.get("files", []) + data.get("remove", []) if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                              for n in names) or not isinstance(data.get("staging"), str) or \
            not data["staging"].startswith(STAGING_PREFIX) or "/" in data["staging"]:
        return None
    return data


def resolver(directory: str | os.PathLike) -> Callable[[str], Path | None]:
    """``name -> path`` of a file of the checkpoint in ``directory`` as its last commit left it (``None`` if absent):
    a half-applied commit's journal is honoured, so a reader never mixes files of two saves."""
    directory = Path(directory)

    def find(name: str) -> Path | None:
        journal = _journal(directory)
        if journal is not None:
            if name in journal["remove"]:
                return None
            staged = directory / journal["staging"] / name
            if name in journal["files"] and staged.exists():
                return staged
        path = directory / name
        return path if path.exists() and not path.is_dir() else None  # a FIFO or device: the reader says so

    return find


def _apply(directory: Path, journal: dict) -> None:
    staging = directory / journal["staging"]
    for name in journal["files"]:
        if (staging / name).exists():
            os.replace(staging / name, directory / name)
    for name in journal["remove"]:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    (directory / JOURNAL_NAME).unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _recover(directory: Path) -> None:
    """Complete a commit a killed writer left; remove staging folders no live writer owns (we hold the lock)."""
    journal = _journal(directory)
    if journal is not None:
        _apply(directory, journal)
    elif (directory / JOURNAL_NAME).exists():
        (directory / JOURNAL_NAME).unlink()
    for item in directory.iterdir():
        if item.name.startswith(STAGING_PREFIX) and item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``directory/.triclip.lock`` for the duration (waits for other writers).

    The holder deletes the lock file before releasing it, so a finished save leaves no trace; a waiter that then
    holds the lock of a deleted file sees that its inode is no longer the path's, and takes the lock again.
    """
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = os.stat(path)
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        if current.st_ino == os.fstat(fd).st_ino and current.st_dev == os.fstat(fd).st_dev:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock


def _check_destination(dest: Path, overwrite: bool, is_checkpoint: Callable[[Path], bool]) -> None:
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"destination {dest} exists and is not a directory")
    hidden = (LOCK_NAME, JOURNAL_NAME)
    if dest.is_dir() and not overwrite and not is_checkpoint(dest) and \
            any(not (p.name in hidden or p.name.startswith(STAGING_PREFIX)) for p in dest.iterdir()):
        raise FileExistsError(errno.EEXIST, f"refusing to write into {dest}: it is a non-empty directory that is "
                              "not a checkpoint (pass overwrite=True to write there anyway)")


@contextlib.contextmanager
def commit(destination: str | os.PathLike, *, overwrite: bool = False,
           is_checkpoint: Callable[[Path], bool] = lambda p: (p / "config.json").is_file(),
           stale: Callable[[str], bool] = lambda name: False) -> Iterator[Path]:
    """Yield a staging folder inside ``destination``; when the block succeeds, its files replace
    ``destination``'s in one commit, and files ``stale(name)`` selects that the block did not write are removed.

    A failure inside the block leaves ``destination`` as it was. An existing non-empty directory that does not look
    like a checkpoint is refused (``FileExistsError``) unless ``overwrite``.
    """
    dest = Path(destination)
    _check_destination(dest, overwrite, is_checkpoint)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _committing(dest, overwrite, is_checkpoint, stale) as staging:
            yield staging
    except BaseException:
        if created:  # a folder this save made and filled with nothing goes again
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise


@contextlib.contextmanager
def _committing(dest: Path, overwrite: bool, is_checkpoint, stale) -> Iterator[Path]:
    with locked(dest):
        _check_destination(dest, overwrite, is_checkpoint)  # another writer may have filled it while we waited
        _recover(dest)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
        try:
            yield staging
            written = sorted(item.name for item in staging.iterdir())
            remove = sorted(item.name for item in dest.iterdir() if item.name not in written and
                            stale(item.name) and item.is_file())
            _write_journal(dest, {"staging": staging.name, "files": written, "remove": remove})
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _apply(dest, {"staging": staging.name, "files": written, "remove": remove})


def _write_journal(dest: Path, journal: dict) -> None:
    tmp = dest / journal["staging"] / JOURNAL_NAME
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(journal, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, dest / JOURNAL_NAME)  # the commit point


def writing(path: str | os.PathLike, what: str) -> contextlib.AbstractContextManager:
    """Turn any failure while writing ``path`` into :class:`CheckpointWriteError` (an ``OSError`` naming the file
    and the cause: a full disk says so, whatever library wrote)."""
    return _Writing(Path(path), what)


class _Writing:
    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, err, tb) -> bool:
        if err is None or isinstance(err, (KeyboardInterrupt, SystemExit, CheckpointWriteError)):
            return False
        if isinstance(err, (ValueError, TypeError)) and not _disk_error(err):
            return False  # a bad state: the caller's message is the right one
        code = getattr(err, "errno", None) if isinstance(err, OSError) else _disk_error(err)
        detail = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
        reason = detail if not code else os.strerror(code) if isinstance(err, OSError) else \
            f"{os.strerror(code)} ({detail})"
        folder = self.path.parent
        if folder.name.startswith(STAGING_PREFIX):
            folder = folder.parent
        raise CheckpointWriteError(code or errno.EIO, f"cannot write the {self.what} {self.path.name} into {folder}: "
                                   f"{reason}; the checkpoint there is unchanged") from err


def _disk_error(err: BaseException) -> int | None:
    """The errno a library's non-OSError write failure stands for (safetensors, torch and h5py wrap them)."""
    text = str(err).lower()
    found = re.search(r"os error (\d+)|errno[ =]+(\d+)", text)
    if found:
        return int(found.group(1) or found.group(2))
    for code, words in ((errno.ENOSPC, ("no space left", "enospc", "disk full")),
                        (errno.EFBIG, ("file too large", "efbig")), (errno.EDQUOT, ("quota",))):
        if any(word in text for word in words):
            return code
    return None

