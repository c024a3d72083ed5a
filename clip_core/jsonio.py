"""Reading JSON files that come from outside: every failure is one ``ValueError`` naming the file.

Python's ``json`` module raises ``RecursionError`` on deeply nested input, ``UnicodeDecodeError`` on bytes that are
not UTF-8, accepts ``Infinity`` / ``NaN`` (which no other JSON reader does) and reads files of any size.
:func:`read_json` turns each of these into a :class:`JSONFileError` (a ``ValueError``) whose message names the file
and what was wrong, so callers (``config.json``, ``vocab.json``, ``open_clip_config.json``, ...) never see a raw
exception.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

#: Default size cap: far above any real CLIP JSON file (``tokenizer.json`` is about 3.6 MB).
MAX_JSON_BYTES = 64 * 1024 * 1024


class JSONFileError(ValueError):
    """A JSON file cannot be used: unreadable, not UTF-8, not JSON, too large, too deep or holding ``NaN``."""


class _NonFinite(float):
    """``Infinity`` / ``-Infinity`` / ``NaN`` as parsed, marked so the object hook can name its key."""

    def __new__(cls, text: str):
        value = super().__new__(cls, float(text.replace("Infinity", "inf")))
        value.text = text
        return value


def _find_nonfinite(data: Any) -> tuple[str, Any] | None:
    """``(path, value)`` of the first non-finite number in ``data`` (path like ``a.b[2]``), or ``None``.

    Iterative, so data nested as deeply as the parser allows never hits the recursion limit here.
    """
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        trail, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return trail, value
        if isinstance(value, dict):
            stack.extend(reversed([(f"{trail}.{k}" if trail else str(k), v) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{trail}[{i}]", v) for i, v in enumerate(value)]))
    return None


def loads_json(text: str | bytes, what: str, *, allow_nonfinite: bool = False, expect: type | None = None) -> Any:
    """Parse ``text`` as JSON; ``what`` names its origin in every message (see :func:`read_json`)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise JSONFileError(f"{what} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        data = json.loads(text, parse_constant=float if allow_nonfinite else _NonFinite)
    except RecursionError:
        raise JSONFileError(f"{what} is nested too deeply to be read (arrays or objects inside one another "
                            "thousands of levels deep)") from None
    except json.JSONDecodeError as err:
        raise JSONFileError(f"{what} is not valid JSON: {err}") from None
    if not allow_nonfinite:
        found = _find_nonfinite(data)
        if found is not None:
            where, value = found
            raise JSONFileError(f"{what}: {where or 'the value'} is {getattr(value, 'text', repr(value))}; JSON "
                                "numbers must be finite (NaN / Infinity are not JSON)")
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "a JSON object", list: "a JSON array"}.get(expect, expect.__name__)
        raise JSONFileError(f"{what} must hold {kind}, found {_json_kind(data)}")
    return data


def read_json(path: str | os.PathLike, what: str | None = None, *, allow_nonfinite: bool = False,
              expect: type | None = dict, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and parse the JSON file ``path``.

    Args:
        path: the file. A missing file raises ``FileNotFoundError`` naming it; other read failures ``OSError``.
        what: how messages name the file (default: its path).
        allow_nonfinite: accept ``NaN`` / ``Infinity`` / ``-Infinity`` (they become floats); by default they are
            rejected with a message naming the key that holds one (``"text_config.layer_norm_eps"``).
        expect: the top-level type required (``dict`` by default, ``list``, or ``None`` for any).
        max_bytes: files larger than this are refused before being read.

    Raises:
        JSONFileError: (a ``ValueError``) for a file that is too large, not UTF-8, not JSON, nested too deeply for
            Python's parser, holding a non-finite number, or of the wrong top-level type.
    """
    path = Path(path)
    what = what or str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no such file") from None
    if path.is_dir():
        raise IsADirectoryError(f"{what} is a directory, not a JSON file")
    if size > max_bytes:
        raise JSONFileError(f"{what} is {size:,} bytes, more than the {max_bytes:,} bytes a JSON file may have here")
    with open(path, "rb") as handle:
        data = handle.read(min(size, max_bytes) + 1)  # read(n) allocates n bytes up front
    if len(data) > max_bytes:  # grew while we looked
        raise JSONFileError(f"{what} is more than the {max_bytes:,} bytes a JSON file may have here")
    return loads_json(data, what, allow_nonfinite=allow_nonfinite, expect=expect)


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


__all__ = ["read_json", "loads_json", "JSONFileError", "MAX_JSON_BYTES"]
