"""A Python function -> the JSON schema a chat template's ``tools`` expect (transformers 4.57's ``get_json_schema``).

The function needs a type hint on every argument and a Google-style docstring describing each of them::

    def get_weather(city: str, unit: Literal["C", "F"] = "C") -> float:
        '''The temperature in a city.

        Args:
            city: the city's name
            unit: the unit of the answer
        '''

gives ``{"type": "function", "function": {"name": "get_weather", "description": "The temperature in a city.",
"parameters": {"type": "object", "properties": {...}, "required": ["city"]}, "return": {"type": "number"}}}``.
An argument's description may end with ``(choices: ["a", "b"])`` (a JSON list): it becomes the argument's ``enum``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from typing import Any, Callable

_SECTIONS = ("Args:", "Returns:", "Raises:")
_ARGS_BLOCK = re.compile(r"\n\s*Args:\n\s*(.*?)[\n\s]*(?:Returns:|Raises:|\Z)", re.DOTALL)
_RETURNS_BLOCK = re.compile(r"\n\s*Returns:\n\s*(.*?)[\n\s]*(?:Raises:|\Z)", re.DOTALL)
_ARG_LINE = re.compile(r"\s*(\w+):\s*(.*)", re.DOTALL)
_CHOICES = re.compile(r"\(choices:\s*(.*?)\)\s*$", re.IGNORECASE)
_LITERAL_TYPES = (int, float, str, bool, type(None))


class ToolSchemaError(ValueError):
    """A function that cannot be described as a tool: a missing type hint or docstring entry, an unsupported hint."""


def _google_docstring(doc: str) -> tuple[str, dict[str, str], str | None]:
    """(description, {argument: description}, returns description) of a Google-style docstring."""
    cut = min([doc.find(s) for s in _SECTIONS if s in doc] or [len(doc)])
    description = doc[:cut].strip()
    arguments: dict[str, str] = {}
    block = _ARGS_BLOCK.search(doc)
    if block:
        name, lines = None, []
        for line in [ln for ln in block.group(1).strip().split("\n") if ln.strip()] + [None]:
            entry = _ARG_LINE.fullmatch(line) if line is not None else None
            if entry and name is not None and not any(p.strip() for p in lines):
                entry = None  # an argument with no text yet takes the next line as its text, whatever it says
            if line is None or entry:  # a new argument (or the end): the previous one is complete
                if name is not None:
                    arguments[name] = " ".join(p.strip() for p in lines if p.strip())
                if entry:
                    name, lines = entry.group(1), [entry.group(2)]
            elif name is not None:
                lines.append(line)
    returns = _RETURNS_BLOCK.search(doc)
    return description, arguments, (returns.group(1).strip() if returns else None)


def _basic(hint: Any) -> dict:
    table = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    if hint is Any:
        return {}
    if hint in table:
        return {"type": table[hint]}
    image = getattr(sys.modules.get("PIL.Image"), "Image", None)  # only present if the hint's module imported it
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    if image is not None and hint is image:
        return {"type": "image"}
    if tensor is not None and hint is tensor:
        return {"type": "audio"}
    return {"type": "object"}


def hint_schema(hint: Any) -> dict:
    """The JSON schema of one type hint (``int``, ``str | None``, ``list[float]``, ``Literal[...]``, ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None:
        return _basic(hint)
    if origin is typing.Union or origin is getattr(types, "UnionType", ()):
        parts = [hint_schema(a) for a in args if a is not type(None)]
        if len(parts) == 1:
            out = parts[0]
        elif all(isinstance(p.get("type"), str) for p in parts):
            out = {"type": sorted(p["type"] for p in parts)}
        else:
            out = {"anyOf": parts}
        if type(None) in args:
            out["nullable"] = True
        return out
    if origin is typing.Literal and args:
        kinds: list[str] = []
        for value in args:
            if type(value) not in _LITERAL_TYPES:
                raise ToolSchemaError("Only the valid python literals can be listed in typing.Literal.")
            kind = _basic(type(value))["type"]
            if kind not in kinds:
                kinds.append(kind)
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": hint_schema(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 1 or ... in args:
            raise ToolSchemaError(f"the type hint {hint} is not supported: use list[...] for variable-length inputs, "
                                  "or the element itself for a single one")
        return {"type": "array", "prefixItems": [hint_schema(a) for a in args]}
    if origin is dict:
        return {"type": "object", **({"additionalProperties": hint_schema(args[1])} if len(args) == 2 else {})}
    raise ToolSchemaError(f"Couldn't parse this type hint, likely due to a custom class or object: {hint}")


def function_schema(func: Callable) -> dict:
    """The tool schema of ``func`` (see the module docstring); :class:`ToolSchemaError` naming what is missing."""
    name = getattr(func, "__name__", repr(func))
    doc = (inspect.getdoc(func) or "").strip()
    if not doc:
        raise ToolSchemaError(f"Cannot generate JSON schema for {name} because it has no docstring!")
    description, arguments, returns = _google_docstring(doc)
    hints = typing.get_type_hints(func)
    required = []
    for param in inspect.signature(func).parameters.values():
        if param.annotation is inspect.Parameter.empty:
            raise ToolSchemaError(f"Argument {param.name} is missing a type hint in function {name}")
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
    properties = {key: hint_schema(hint) for key, hint in hints.items()}
    returned = properties.pop("return", None)
    if returned is not None and returns is not None:
        returned["description"] = returns
    for arg, schema in properties.items():
        if arg not in arguments:
            raise ToolSchemaError(f"Cannot generate JSON schema for {name} because the docstring has no description "
                                  f"for the argument '{arg}'")
        text = arguments[arg]
        choices = _CHOICES.search(text)
        if choices:
            schema["enum"] = [c.strip() for c in json.loads(choices.group(1))]
            text = text[:choices.start()].strip()
        schema["description"] = text
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    out: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if returned is not None:
        out["return"] = returned
    return {"type": "function", "function": out}
