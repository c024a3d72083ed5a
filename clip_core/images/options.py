"""The arguments of ``CLIPImageProcessor``, normalised as transformers reads them.

Sizes (``get_size_dict`` for the keys CLIP uses), the PIL resampling filter, the channel layout names and per-channel
means / standard deviations; each bad value raises a ValueError naming the argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"

Resampling = PIL.Image.Resampling


def size_dict(size: Any, default_to_square: bool, name: str) -> dict[str, int]:
    """transformers' ``get_size_dict`` for the keys CLIP uses: an int, a (height, width) pair or a dict."""
    if isinstance(size, dict):
        result = dict(size)
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        result = {"height": int(size), "width": int(size)} if default_to_square else {"shortest_edge": int(size)}
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        result = {"height": size[0], "width": size[1]}
    else:
        raise ValueError(f"{name} must be an int, a (height, width) pair or a dict, got {size!r}")
    if set(result) not in ({"shortest_edge"}, {"height", "width"}):
        raise ValueError(f"{name} must have the keys {{'shortest_edge'}} or {{'height', 'width'}}, got {size!r}")
    for key, value in result.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}[{key!r}] must be a positive int, got {value!r}")
        result[key] = int(value)
    return result


def crop_size_dict(crop_size: Any) -> dict[str, int]:
    result = size_dict(crop_size, True, "crop_size")
    if "shortest_edge" in result:
        raise ValueError(f"crop_size must be an int, a (height, width) pair or {{'height', 'width'}}, got {crop_size!r}")
    return result


def resampling(value: Any) -> Resampling:
    """A PIL resampling filter from an enum, its int value (0..5) or its name ("bicubic")."""
    if isinstance(value, str):
        try:
            return Resampling[value.upper()]
        except KeyError:
            pass
    else:
        try:
            return Resampling(int(value))
        except (TypeError, ValueError):
            pass
    names = ", ".join(f"{r.name} ({r.value})" for r in Resampling)
    raise ValueError(f"resample must be a PIL resampling filter, one of {names}; got {value!r}")


def channel_format(value: Any, name: str, allow_none: bool) -> str | None:
    value = getattr(value, "value", value)  # transformers' ChannelDimension enum
    allowed = (CHANNELS_FIRST, CHANNELS_LAST) + (("none", None) if allow_none else ())
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def per_channel(values: Any, channels: int, name: str) -> list[float]:
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        return [float(values)] * channels
    values = list(values)
    if len(values) != channels:
        raise ValueError(f"{name} must have {channels} elements for {channels}-channel images, got {len(values)}")
    return [float(v) for v in values]
