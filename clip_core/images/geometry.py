"""Resize planning: which pixels a resize and centre crop produce, and which source pixels PIL reads for them.

Output sizes (transformers' ``get_resize_output_image_size``), the centre crop's window (``center_crop``'s
convention, zero padding included), the source span each filter reads (Pillow's ``Resample.c`` bounds) and the order
in which the installed Pillow runs its two separable passes (checked once, on small images).
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from .options import Resampling

# Half-width of each convolution filter, as PIL's Resample.c defines it (NEAREST is not a convolution).
FILTER_SUPPORT = {
    Resampling.BOX: 0.5,
    Resampling.BILINEAR: 1.0,
    Resampling.HAMMING: 1.0,
    Resampling.BICUBIC: 2.0,
    Resampling.LANCZOS: 3.0,
}


def resize_output_size(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    """(height, width) after resizing, as transformers' ``get_resize_output_image_size`` computes it."""
    if "shortest_edge" not in size:
        return size["height"], size["width"]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def source_span(in_size: int, out_size: int, start: int, stop: int, resample: Resampling) -> tuple[int, int]:
    """Source pixels that PIL's filter reads for output pixels [start, stop) (Resample.c's bounds, plus a margin)."""
    scale = in_size / out_size
    support = FILTER_SUPPORT[resample] * max(scale, 1.0)
    first = int((start + 0.5) * scale - support + 0.5)
    last = int((stop - 0.5) * scale + support + 0.5)
    return max(0, first - 2), min(in_size, last + 2)


def vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether PIL runs the vertical pass first when resizing (in_w, in_h) to (out_w, out_h) with both passes.

    Pillow up to 12 always ran the horizontal pass first; Pillow 13 runs the vertical one first when the height
    shrinks by more than twice as many pixels as the width (python-pillow/Pillow#9549). Which rule the installed
    Pillow follows is checked once, on small images (``pass_order_rule``).
    """
    rule = pass_order_rule()
    return rule == "pillow13" and in_h > out_h and in_h - out_h > 2 * (in_w - out_w)


_pass_order: list[str | None] = []


def pass_order_rule() -> str | None:
    """"pillow13", "horizontal" (always first), or ``None`` when neither explains PIL (then windows are not used)."""
    if _pass_order:
        return _pass_order[0]
    rng = np.random.default_rng(0)
    # (in_w, in_h, out_w, out_h): height shrinking by more / exactly / less than twice the width's shrink, upscales
    cases = [(40, 120, 38, 30), (30, 90, 20, 70), (30, 90, 20, 69), (60, 50, 20, 40), (50, 60, 40, 25),
             (20, 90, 45, 60), (90, 20, 60, 45), (33, 71, 35, 37), (64, 64, 31, 17), (64, 64, 17, 31)]
    verdicts = {"pillow13": True, "horizontal": True}
    for in_w, in_h, out_w, out_h in cases:
        for mode, resample in (("RGB", Resampling.BICUBIC), ("L", Resampling.BILINEAR), ("L", Resampling.LANCZOS)):
            shape = (in_h, in_w, 3) if mode == "RGB" else (in_h, in_w)
            image = PIL.Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
            full = np.asarray(image.resize((out_w, out_h), resample))
            h_first = np.asarray(image.resize((out_w, in_h), resample).resize((out_w, out_h), resample))
            v_first = np.asarray(image.resize((in_w, out_h), resample).resize((out_w, out_h), resample))
            new_rule = in_h > out_h and in_h - out_h > 2 * (in_w - out_w)
            verdicts["pillow13"] &= np.array_equal(full, v_first if new_rule else h_first)
            verdicts["horizontal"] &= np.array_equal(full, h_first)
    rule = "pillow13" if verdicts["pillow13"] else "horizontal" if verdicts["horizontal"] else None
    _pass_order.append(rule)
    return rule


def crop_geometry(height: int, width: int, crop: tuple[int, int] | None):
    """Window of an image of this size that a (zero-padding) centre crop keeps, and where it lands in the crop.

    Returns ((y0, y1), (x0, x1), (dy, dx)) in transformers' ``center_crop`` convention: top = (height - crop) // 2.
    """
    if crop is None:
        return (0, height), (0, width), (0, 0)
    (crop_h, crop_w) = crop
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    y0, y1 = max(top, 0), min(top + crop_h, height)
    x0, x1 = max(left, 0), min(left + crop_w, width)
    return (y0, y1), (x0, x1), (y0 - top, x0 - left)
