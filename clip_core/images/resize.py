"""Resizing: the window of PIL's resize that the centre crop keeps, computing little more than that window.

By the compiled kernel where it is trusted (:mod:`clip_core.images.kernel`), else by PIL run pass by pass on the
source lines the window needs (:func:`resize_window`); either way the pixels are PIL's.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from .geometry import FILTER_SUPPORT, pass_order_rule, source_span, vertical_first
from .kernel import KERNEL_FILTERS, kernel_matches_pillow, kernel_window
from .options import Resampling


def resize_window(image: PIL.Image.Image | np.ndarray, out_h: int, out_w: int, resample: Resampling,
                  rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``np.asarray(image.resize((out_w, out_h), resample))[rows, cols]``, computing little more than the window.

    ``image`` is a PIL image, or uint8 pixels (H, W) or (H, W, 3) standing for the "L" or "RGB" image they make.
    PIL resizes in two separable passes, each output pixel of a pass depending only on its own row (horizontal
    pass) or column (vertical pass) of the pass' input. So the first pass is run only on the source lines the window
    needs, its output cut to the window, and the second pass run on that alone: the same integer arithmetic on the
    same numbers, hence the same pixels. The passes run in the order PIL would run them. "L" and "RGB" images with
    the bicubic or bilinear filter go to the compiled kernel (``kernel_window``) once it has been found to match
    the installed Pillow; everything else to PIL.
    """
    pixels = image if isinstance(image, np.ndarray) else None
    in_h, in_w = pixels.shape[:2] if pixels is not None else image.size[::-1]
    if pixels is not None and pixels.ndim == 3 and pixels.shape[2] != 3:  # RGBA (do_convert_rgb=False): one PIL
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels))  # resize, as transformers (no split passes)
        return np.asarray(image.resize((out_w, out_h), resample, reducing_gap=None))[rows[0]:rows[1],
                                                                                     cols[0]:cols[1]]
    if (resample in KERNEL_FILTERS and (pixels is not None or image.mode in ("RGB", "L"))
            and pass_order_rule() is not None and kernel_matches_pillow()):
        return kernel_window(image, out_h, out_w, resample, rows, cols)
    if pixels is not None:
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels))
    if (resample not in FILTER_SUPPORT or (in_w, in_h) == (out_w, out_h) or pass_order_rule() is None):
        return np.asarray(image.resize((out_w, out_h), resample, reducing_gap=None))[rows[0]:rows[1],
                                                                                     cols[0]:cols[1]]
    if in_w != out_w and in_h != out_h and vertical_first(in_w, in_h, out_w, out_h):
        # A vertical pass is a horizontal pass of the transposed image (same coefficients, same arithmetic).
        flipped = image.transpose(PIL.Image.Transpose.TRANSPOSE)
        return np.swapaxes(horizontal_first_window(flipped, out_w, out_h, resample, cols, rows), 0, 1)
    return horizontal_first_window(image, out_h, out_w, resample, rows, cols)


def horizontal_first_window(image: PIL.Image.Image, out_h: int, out_w: int, resample: Resampling,
                            rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    in_w, in_h = image.size
    (y0, y1), (x0, x1) = rows, cols
    r0, r1 = source_span(in_h, out_h, y0, y1, resample) if out_h != in_h else (y0, y1)
    band = image if (r0, r1) == (0, in_h) else image.crop((0, r0, in_w, r1))
    if out_w != in_w:
        band = band.resize((out_w, r1 - r0), resample, reducing_gap=None)  # horizontal pass only
    if (x0, x1) != (0, out_w):
        band = band.crop((x0, 0, x1, r1 - r0))
    if out_h == in_h:
        return np.asarray(band)
    if (r0, r1) != (0, in_h):  # the vertical pass needs the source geometry: rows outside the band are never read
        canvas = PIL.Image.new(band.mode, (x1 - x0, in_h))
        canvas.paste(band, (0, r0))
        band = canvas
    band = band.resize((x1 - x0, out_h), resample, reducing_gap=None)  # vertical pass only
    return np.asarray(band)[y0:y1]
