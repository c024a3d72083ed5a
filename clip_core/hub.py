"""Where files come from and how they are written.

``resolve_file`` turns a local directory or a Hugging Face Hub repo id into a local file path (the Hub through
``huggingface_hub`` when it is installed). Without the Hub (``HF_HUB_OFFLINE=1``, no network) a repo id that is
not in the local cache fails at once with :class:`HubUnreachableError`, saying how to load from a local folder. ``write_atomic`` and
``atomic_directory`` make every write all-or-nothing: data goes to a temporary sibling that is renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator


_TRUE = ("1", "ON", "YES", "TRUE")
#: How long a failed reachability probe is remembered (seconds), and how long a probe may wait.
_PROBE_MEMORY_S, _PROBE_TIMEOUT_S = 30.0, 3.0
_probes: dict[tuple[str, int], tuple[float, str | None]] = {}


class HubUnreachableError(ConnectionError, FileNotFoundError):
    """The Hugging Face Hub cannot be reached (``HF_HUB_OFFLINE``, no network) and the file is not in the local
    cache. A ``ConnectionError`` and a ``FileNotFoundError`` (both ``OSError``, as transformers raises); the message
    says how to load from a local folder instead."""


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or transformers' ``TRANSFORMERS_OFFLINE``) is set, read at call time."""
    return any(os.environ.get(k, "").strip().upper() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` read at call time, else ``https://huggingface.co``."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` (or the proxy in front of it) does not accept a TCP connection, or ``None`` if it does.

    One connection attempt of at most a few seconds, remembered for a while; ``huggingface_hub`` itself would retry
    a refused connection for about 25 seconds per file.
    """
    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or "", proxied.port or 8080
    key = (host, port)
    seen = _probes.get(key)
    if seen is not None and time.monotonic() - seen[0] < _PROBE_MEMORY_S:
        return seen[1]
    try:
        socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S).close()
        reason = None
    except OSError as err:
        reason = f"{host}:{port} does not answer: {err.strerror or err}"
    _probes[key] = (time.monotonic(), reason)
    return reason


def _in_cache(repo: str, cache_dir: str | os.PathLike | None) -> bool:
    """Whether the local Hub cache holds any snapshot of ``repo``."""
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE
    snapshots = Path(cache_dir) / f"models--{repo.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _unreachable_message(name: str, filename: str, reason: str) -> str:
    local = name.split("/")[-1]
    return (f"cannot load {filename} from {name!r}: the Hugging Face Hub cannot be reached ({reason}) and the repo "
            f"is not in the local cache, and there is no local folder {name!r}. To load from a local folder, pass "
            f"its path (a directory holding config.json and the weights, e.g. './{local}' or an absolute path); "
            + ("to use the Hub, unset HF_HUB_OFFLINE" if "HF_HUB_OFFLINE" in reason else
               "to use the Hub, pass local_files_only=False" if "local_files_only" in reason else
               "to use the Hub, check the network connection (and HF_ENDPOINT, or the proxy settings)"))


def resolve_file(path_or_repo: str | os.PathLike, filename: str, *, required: bool = True,
                 revision: str | None = None, cache_dir: str | None = None, token: str | None = None,
                 subfolder: str | None = None, local_files_only: bool = False,
                 force_download: bool = False) -> Path | None:
    """Return the local path of ``filename`` inside a directory (or its ``subfolder``) or a Hub repo.

    A missing file raises ``FileNotFoundError`` naming both the file and where it was looked for, unless
    ``required`` is false, in which case ``None`` is returned. When the Hub cannot be reached (``HF_HUB_OFFLINE=1``,
    ``local_files_only``, no network, a dead ``HF_ENDPOINT``) files come from the local cache; a repo that is not
    cached raises :class:`HubUnreachableError` at once, whatever ``required`` says. So does a repo that does not
    exist or cannot be accessed (``FileNotFoundError``).
    """
    if not isinstance(path_or_repo, (str, os.PathLike)):
        raise TypeError(f"expected a directory path or a Hub repo id, got {type(path_or_repo).__name__}")
    if subfolder is not None and not isinstance(subfolder, (str, os.PathLike)):
        raise TypeError(f"subfolder must be a string, got {type(subfolder).__name__}")
    subfolder = os.fspath(subfolder).strip("/") if subfolder else ""
    local = Path(path_or_repo)
    if local.is_dir():
        folder = local / subfolder if subfolder else local
        candidate = folder / filename
        if candidate.is_file():
            return candidate
        if required:
            raise FileNotFoundError(f"{filename} not found in {folder}")
        return None
    name = os.fspath(path_or_repo)
    if local.exists() or not _looks_like_repo_id(name):
        raise FileNotFoundError(f"cannot load {filename}: {name} is not a directory (nor a Hub repo id)")
    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
        from huggingface_hub.utils import RevisionNotFoundError
    except ImportError:
        raise FileNotFoundError(
            f"{name} is not a local directory; install huggingface_hub (pip install 'triclip[hub]') to load it "
            "from the Hub") from None
    shown = f"{subfolder}/{filename}" if subfolder else filename
    endpoint = hub_endpoint()
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    elif local_files_only:
        reason = "local_files_only=True"
    else:
        reason = _unreachable(endpoint)
    download = dict(subfolder=subfolder or None, revision=revision, cache_dir=cache_dir, token=token)
    if reason is not None:  # the local cache only
        try:
            return Path(huggingface_hub.hf_hub_download(name, filename, local_files_only=True, **download))
        except (EntryNotFoundError, OSError, ValueError):
            pass
        if not _in_cache(name, cache_dir):
            raise HubUnreachableError(_unreachable_message(name, shown, reason))
        if required:
            raise FileNotFoundError(f"{shown} is not in the local cache of the Hub repo {name} ({reason})")
        return None
    try:
        return Path(huggingface_hub.hf_hub_download(name, filename, force_download=force_download,
                                                    endpoint=endpoint, **download))
    except LocalEntryNotFoundError as err:  # the connection failed after the probe
        raise HubUnreachableError(_unreachable_message(name, shown, f"the download failed: {err}")) from None
    except EntryNotFoundError:
        if required:
            raise FileNotFoundError(f"{shown} not found in the Hub repo {name}") from None
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:  # about the whole repo: no use trying others
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"{name} is not a local folder, and the Hub has no repo {name!r} this token can "
                                f"read{f' at revision {revision!r}' if revision else ''} ({first})") from None
    except Exception as err:  # network failure, server errors: one clear OSError
        if not required:  # the caller tries other names and reports what it looked for
            return None
        raise FileNotFoundError(f"could not fetch {shown} from the Hub repo {name}: {err}") from None


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
