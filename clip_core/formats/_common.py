"""What every checkpoint family shares: the error classes, :func:`reading`, progress bars, array helpers.

Errors: a file that is truncated or corrupted raises :class:`CorruptCheckpointError` (an ``OSError``); a pickle that
would run code raises :class:`UnsafeCheckpointError` (a ``ValueError``); something well-formed that is not a CLIP
checkpoint raises :class:`UnsupportedCheckpointError` (a ``ValueError``). All three derive from
:class:`CheckpointError`; :mod:`clip_core.checkpoints` re-exports them (the same class objects).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from typing import Any, Iterator, Mapping

import numpy as np

from clip_core.weights import StateMismatchError

PROGRESS_MIN_BYTES = 100 * 2 ** 20


# ---------------------------------------------------------------------------------------------- errors
class CheckpointError(Exception):
    """Base class of the errors this module raises about a checkpoint file itself."""


class CorruptCheckpointError(CheckpointError, OSError):
    """A checkpoint file is truncated, corrupted or not in the format its name or contents claim."""


class UnsafeCheckpointError(CheckpointError, ValueError):
    """A pickled checkpoint was refused because loading it could run code: it is not a plain weights pickle."""


class UnsupportedCheckpointError(CheckpointError, ValueError):
    """A well-formed file that does not hold a CLIP model this package can load (e.g. an OpenAI ResNet)."""


_PASS_THROUGH = (CheckpointError, StateMismatchError, FileNotFoundError, PermissionError, IsADirectoryError,
                 KeyboardInterrupt)


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn any low-level failure while reading ``path`` as ``what`` into :class:`CorruptCheckpointError`.

    The errors this module documents (and a missing file) pass through unchanged.
    """
    try:
        yield
    except _PASS_THROUGH:
        raise
    except MemoryError:
        raise CorruptCheckpointError(f"{path}: ran out of memory while reading it as a {what}; the file is corrupted "
                                     "or the checkpoint is larger than the available memory") from None
    except RecursionError:
        raise CorruptCheckpointError(_too_deep(path, what)) from None
    except Exception as err:
        if type(err).__name__ == "StackError":  # msgpack's own nesting limit
            raise CorruptCheckpointError(_too_deep(path, what)) from None
        detail = " ".join(str(err).split())[:300]
        raise CorruptCheckpointError(f"{path} is not a valid {what} (truncated or corrupted?): "
                                     f"{type(err).__name__}: {detail}") from err


def _too_deep(path, what: str) -> str:
    return (f"{path} is nested too deeply to be read as a {what} (containers inside one another hundreds or "
            "thousands of levels deep; a weights file is a shallow tree of tensors)")


#: How deep containers may nest in a checkpoint's object tree (a state dict is 1-3 levels, a TorchScript model's
#: attribute tree a few dozen); deeper is refused as corrupt before anything walks it recursively.
MAX_NESTING = 200


def check_nesting(root, path, what: str, limit: int = MAX_NESTING) -> None:
    """Raise :class:`CorruptCheckpointError` when lists, tuples, dicts or objects' attribute dicts inside ``root``
    nest more than ``limit`` deep (walked without recursion; each container once)."""
    seen: set[int] = set()
    stack = [(root, 0)]
    while stack:
        obj, depth = stack.pop()
        if isinstance(obj, Mapping):
            children = obj.values()
        elif isinstance(obj, (list, tuple)):
            children = obj
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            children = vars(obj).values()
        else:
            continue
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if depth >= limit:
            raise CorruptCheckpointError(_too_deep(path, what))
        stack.extend((child, depth + 1) for child in children)


# ---------------------------------------------------------------------------------------------- progress bars
class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total_bytes: int, desc: str):
    """A tqdm bar on stderr for large transfers; a no-op when small, not a tty, or ``TRICLIP_NO_PROGRESS`` is set."""
    if total_bytes < PROGRESS_MIN_BYTES or os.environ.get("TRICLIP_NO_PROGRESS"):
        return _NoProgress()
    try:
        if not sys.stderr.isatty():
            return _NoProgress()
        from tqdm import tqdm
    except (ImportError, AttributeError, ValueError):
        return _NoProgress()
    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------- helpers
def _owned(array) -> np.ndarray:
    """A writable, C-contiguous array owning (or solely viewing) its data (an :class:`UnreadTensor` as it is)."""
    if isinstance(array, UnreadTensor):
        return array
    array = np.asarray(array)
    if array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, order="C")


def _contiguous(array) -> np.ndarray:
    """``np.ascontiguousarray`` that keeps 0-d arrays 0-d (``logit_scale``)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else np.array(array, order="C")


def _is_bf16(array) -> bool:
    return np.asarray(array).dtype.name == "bfloat16"


def _bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _bf16_to_float32(array) -> np.ndarray:
    array = _contiguous(array)
    return _bf16_bits_to_float32(array.view(np.uint16)) if _is_bf16(array) else array


def parse_size(size: int | str | None) -> int | None:
    """``max_shard_size`` in bytes: an int, or a string such as ``"2GB"`` (10**9), ``"500MiB"`` (2**20) or
    ``"100KB"``, as transformers accepts it."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", size.upper())
        if match:
            units = {None: 1, "B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9, "TB": 10 ** 12,
                     "KIB": 2 ** 10, "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}
            value = int(float(match.group(1)) * units[match.group(2)])
            if value > 0:
                return value
    raise ValueError(f"max_shard_size must be a positive int or a size such as '2GB', got {size!r}")


class UnreadTensor:
    """A tensor of a checkpoint that was not read, because the model has no parameter of its name: its shape and
    dtype only, so that it can still be reported (as unexpected) by name and shape.

    It holds no data: ``np.asarray`` of it is a read-only zero-stride view of a single zero (no memory).
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype) -> None:
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __array__(self, dtype=None, copy=None):
        if copy:
            raise ValueError(f"an unread tensor of shape {self.shape} has no data to copy")
        return np.broadcast_to(np.zeros((), dtype=dtype or self.dtype), self.shape)

    def __repr__(self) -> str:
        return f"UnreadTensor(shape={self.shape}, dtype={self.dtype})"


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)


def mapped_shape(mapper, name: str, shape) -> tuple[str, tuple[int, ...]]:
    """What ``mapper(name, array) -> (name, array)`` (a framework-name and layout rule) makes of a tensor of
    ``shape``, worked out on a tiny stand-in array (distinct primes for the dimensions), so nothing of the real
    size is ever allocated."""
    shape = tuple(int(d) for d in shape)
    if len(shape) > len(_PRIMES):
        new, _ = mapper(name, np.zeros((0,) * len(shape), dtype=np.uint8))
        return new, shape
    stand_in = tuple(1 if d == 1 else p for d, p in zip(shape, _PRIMES))
    new, value = mapper(name, np.zeros(stand_in, dtype=np.uint8))
    back = {p: d for p, d in zip(stand_in, shape)}
    return new, tuple(back.get(int(d), 1) for d in np.shape(value))


def _add(state: dict, name: str, value, path) -> None:
    if name in state:
        raise CorruptCheckpointError(f"{path} holds the parameter {name} twice")
    state[name] = value


def unwrap_state_dict(obj: Any) -> Any:
    """The state dict inside a training checkpoint (``{"state_dict": ...}`` / ``{"model": ...}``), without the
    ``module.`` prefix that ``DistributedDataParallel`` adds."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping) and \
                not any(hasattr(v, "shape") for v in obj.values()):
            obj = obj[key]
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj

