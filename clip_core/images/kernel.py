"""The compiled resize kernel (``clip_core._resample``, built from ``clip_core/_resample.c``) and its loader.

The kernel takes "L" and "RGB" uint8 images with the bilinear or bicubic filter and gives PIL's pixels: the integer
weights are Resample.c's (:func:`kernel_weights`), the passes run in the installed Pillow's order. Before first use
it is checked once against the installed Pillow on small random images (:func:`kernel_matches_pillow`); where it is
not built, fails the check or cannot run it, PIL resizes instead (same pixels, slower).
"""

from __future__ import annotations

import functools
import logging
import math
import threading

import numpy as np
import PIL.Image

try:  # the optional compiled resize (clip_core/_resample.c); without it PIL resizes, with the same pixels
    from .. import _resample
except ImportError:  # pragma: no cover - exercised only where the extension could not be built
    _resample = None
from .geometry import FILTER_SUPPORT, vertical_first
from .options import Resampling

logger = logging.getLogger("clip_core.image_processing")  # the public module's name, as before


def bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def bicubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic, a = -0.5, with Resample.c's grouping of the operations: the weights must match to the bit
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                    np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


# The filters the compiled kernel takes: their weights need no transcendental function, so numpy computes exactly
# Resample.c's doubles (HAMMING and LANCZOS call sin/cos, whose last bit may differ between libraries).
KERNEL_FILTERS = {Resampling.BILINEAR: bilinear, Resampling.BICUBIC: bicubic}
PRECISION_BITS = 22  # Resample.c: 32 bits less 8 for the pixel and 2 of headroom


@functools.lru_cache(maxsize=512)
def kernel_weights(in_size: int, out_size: int, start: int, stop: int, resample: Resampling):
    """Resample.c's ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` for output pixels [start, stop) of one axis:
    (first input, input count, (outputs, taps) int32 weights); an identity pass when the size does not change."""
    if in_size == out_size:
        n = stop - start
        return frozen(np.arange(start, stop, dtype=np.int32), np.ones(n, np.int32),
                      np.full((n, 1), 1 << PRECISION_BITS, np.int32))
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = FILTER_SUPPORT[resample] * filterscale
    taps = np.arange(int(math.ceil(support)) * 2 + 1)
    center = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates; below 0 clips to 0
    count = np.minimum((center + support + 0.5).astype(np.int64), in_size) - first
    valid = taps < count[:, None]
    weights = np.where(valid, KERNEL_FILTERS[resample]((taps + first[:, None] - center[:, None] + 0.5)
                                                       * (1.0 / filterscale)), 0.0)
    total = np.cumsum(weights, axis=1)[:, -1:]  # C adds them one by one
    weights = np.where(total != 0.0, weights / np.where(total != 0.0, total, 1.0), weights)
    scaled = weights * (1 << PRECISION_BITS)
    fixed = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5))  # C's (int)(x -/+ 0.5)
    return frozen(first.astype(np.int32), count.astype(np.int32), np.where(valid, fixed, 0.0).astype(np.int32))


def frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays, read-only (they are cached and shared between threads)."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


def kernel_window(image: PIL.Image.Image | np.ndarray, out_h: int, out_w: int, resample: Resampling,
                  rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The rows/cols window of PIL's resize of an "RGB" or "L" image, or of uint8 pixels (H, W) or (H, W, 3), by the
    compiled kernel. A PIL image is read in place where Pillow exports it to Arrow, else copied to numpy."""
    if isinstance(image, np.ndarray):
        source, (in_h, in_w), channels = np.ascontiguousarray(image), image.shape[:2], 3 if image.ndim == 3 else 1
    else:
        (in_w, in_h), channels = image.size, 3 if image.mode == "RGB" else 1
        source = arrow_pixels(image)
        source = np.asarray(image) if source is None else source
    col_first, col_count, col_weights = kernel_weights(in_w, out_w, cols[0], cols[1], resample)
    row_first, row_count, row_weights = kernel_weights(in_h, out_h, rows[0], rows[1], resample)
    out = np.empty((rows[1] - rows[0], cols[1] - cols[0], channels), np.uint8)
    vertical_pass_first = in_w != out_w and in_h != out_h and vertical_first(in_w, in_h, out_w, out_h)
    _resample.resize(source, in_h, in_w, channels, out, out.shape[0], out.shape[1],
                     col_first, col_count, col_weights, col_weights.shape[1],
                     row_first, row_count, row_weights, row_weights.shape[1], vertical_pass_first)
    return out if channels == 3 else out[:, :, 0]


def arrow_pixels(image: PIL.Image.Image):
    """The (schema, array) capsules of Pillow's zero-copy Arrow export (Pillow 11.2 and later), or None where there
    is none (an older Pillow, or an image stored in several memory blocks)."""
    export = getattr(image, "__arrow_c_array__", None)
    try:
        return None if export is None else export()
    except (ValueError, NotImplementedError):
        return None


_verdict: list[bool] = []
_lock = threading.Lock()


def kernel_matches_pillow() -> bool:
    """Whether the compiled kernel is built and gives the installed Pillow's pixels: checked once, on small random
    images (both modes and filters, down- and upscaling, either pass first, one axis alone, cut windows)."""
    with _lock:
        if not _verdict:
            try:
                trusted = _resample is not None and check_kernel()
            except Exception as err:  # noqa: BLE001 - whatever went wrong, PIL does the work (with the same pixels)
                logger.warning("clip_core._resample failed its check (%s); PIL resizes instead", err)
                trusted = False
            _verdict.append(trusted)
        return _verdict[0]


def check_kernel() -> bool:
    rng = np.random.default_rng(0)
    cases = [(64, 48, 29, 22), (48, 64, 22, 29), (40, 120, 38, 30), (33, 71, 35, 37), (90, 20, 60, 45),
             (20, 90, 45, 60), (64, 64, 17, 31), (50, 37, 50, 19), (37, 50, 19, 50), (301, 200, 337, 224)]
    for in_w, in_h, out_w, out_h in cases:
        for shape in ((in_h, in_w, 3), (in_h, in_w)):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            image = PIL.Image.fromarray(pixels)
            for resample in KERNEL_FILTERS:
                full = np.asarray(image.resize((out_w, out_h), resample, reducing_gap=None))
                rows, cols = (out_h // 5, out_h - out_h // 4), (out_w // 3, out_w - out_w // 6)
                want = full[rows[0]:rows[1], cols[0]:cols[1]]
                if not all(np.array_equal(kernel_window(source, out_h, out_w, resample, rows, cols), want)
                           for source in (pixels, image)):
                    logger.warning("clip_core._resample differs from the installed Pillow %s; PIL resizes instead",
                                   PIL.__version__)
                    return False
    return True
