"""CLIP image preprocessing: transformers' ``CLIPImageProcessor`` numbers, several times faster.

The default pipeline reproduces transformers 4.57's ``CLIPImageProcessor`` (its PIL path) bit for bit: convert to
RGB, resize the shortest edge to 224 with PIL's bicubic filter, centre crop 224x224 (zero padding an image smaller
than the crop), rescale by 1/255, normalise with OpenAI's mean and standard deviation.

How it is faster while giving the same numbers:

* PIL still does every resize, on the same uint8 image transformers gives it, but only the rows and columns the centre
  crop keeps go through each of PIL's two separable passes (the passes are independent per row / per column, so the
  kept pixels are unchanged).
* Rescale and normalise map each of the 256 possible uint8 values to one float32 number, so they are done once, on a
  256-entry table per channel computed with transformers' own float64 / float32 steps, and the crop is mapped through
  it straight into one preallocated float32 batch.
* Images are processed by two threads (PIL and numpy release the GIL during the heavy parts).

Deliberate differences from transformers, all on inputs transformers rejects or mangles:

* With ``do_convert_rgb`` (the default) every image comes out with 3 channels, arrays included: 2-D and 1-channel
  arrays are repeated to 3 channels (as PIL's "L" -> "RGB"), 4-channel arrays lose their alpha channel (as PIL's
  "RGBA" -> "RGB"). transformers converts only PIL images.
* The channel layout of an array is inferred per image (transformers infers it from the first image only).
* ``pixel_values`` are always float32.
* Non-finite values, zero-size images, unsupported dtypes and channel counts raise ``ValueError`` / ``TypeError``
  naming the image's index in the batch, its type and shape.

Float arrays follow transformers exactly, quirks included: when resizing, an array goes through PIL as uint8, so
float values in [0, 1] are scaled by 255 and truncated first (and brought back to [0, 1] afterwards), and float arrays
holding only whole numbers in [0, 255] are taken as 0..255 pixel values. Then ``do_rescale`` divides by 255 again:
pass ``do_rescale=False`` for images already in [0, 1] (a warning says so, as in transformers).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import PIL.Image

try:  # the optional compiled resize (clip_core/_resample.c); without it PIL resizes, with the same pixels
    from . import _resample
except ImportError:  # pragma: no cover - exercised only where the extension could not be built
    _resample = None
from .hub import resolve_file as resolve_file_in
from .hub import write_atomic
from .tensors import BatchEncoding, batch, check_return_tensors

logger = logging.getLogger(__name__)

__all__ = [
    "CLIPImageProcessor",
    "CLIPFeatureExtractor",
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "IMAGE_PROCESSOR_NAME",
]

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGE_PROCESSOR_NAME = "preprocessor_config.json"

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"

Resampling = PIL.Image.Resampling
# Half-width of each convolution filter, as PIL's Resample.c defines it (NEAREST is not a convolution).
_FILTER_SUPPORT = {
    Resampling.BOX: 0.5,
    Resampling.BILINEAR: 1.0,
    Resampling.HAMMING: 1.0,
    Resampling.BICUBIC: 2.0,
    Resampling.LANCZOS: 3.0,
}
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
               "resume_download", "use_auth_token")
_PREPROCESS_ARGS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                    "do_normalize", "image_mean", "image_std", "do_convert_rgb")

# Threads preprocessing the images of one call (PIL and numpy release the GIL in the heavy parts). Two suit the
# PIL-bound work; set TRICLIP_IMAGE_THREADS (or this attribute) to change it, 1 to stay in the calling thread.
NUM_THREADS = max(1, int(os.environ.get("TRICLIP_IMAGE_THREADS", 0)) or min(2, os.cpu_count() or 1))
_executor: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, executor)
_executor_lock = threading.Lock()


def _get_executor() -> ThreadPoolExecutor:
    """The shared worker pool; a new one after a fork (a forked child has none of its parent's threads)."""
    global _executor
    with _executor_lock:
        if _executor is None or _executor[:2] != (os.getpid(), NUM_THREADS):
            if _executor is not None and _executor[0] == os.getpid():
                _executor[2].shutdown(wait=False)
            _executor = (os.getpid(), NUM_THREADS,
                         ThreadPoolExecutor(max_workers=NUM_THREADS, thread_name_prefix="clip-image"))
        return _executor[2]


# --------------------------------------------------------------------------------------------------------------------
# Argument normalisation
# --------------------------------------------------------------------------------------------------------------------


def _size_dict(size: Any, default_to_square: bool, name: str) -> dict[str, int]:
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


def _crop_size_dict(crop_size: Any) -> dict[str, int]:
    result = _size_dict(crop_size, True, "crop_size")
    if "shortest_edge" in result:
        raise ValueError(f"crop_size must be an int, a (height, width) pair or {{'height', 'width'}}, got {crop_size!r}")
    return result


def _resampling(value: Any) -> Resampling:
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


def _channel_format(value: Any, name: str, allow_none: bool) -> str | None:
    value = getattr(value, "value", value)  # transformers' ChannelDimension enum
    allowed = (CHANNELS_FIRST, CHANNELS_LAST) + (("none", None) if allow_none else ())
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def _per_channel(values: Any, channels: int, name: str) -> list[float]:
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        return [float(values)] * channels
    values = list(values)
    if len(values) != channels:
        raise ValueError(f"{name} must have {channels} elements for {channels}-channel images, got {len(values)}")
    return [float(v) for v in values]


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


def _describe(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    if isinstance(obj, PIL.Image.Image):
        return f"PIL image of mode {obj.mode} and size {obj.size}"
    text = type(obj).__module__ + "." + type(obj).__qualname__
    return f"{text} of shape {tuple(shape)}" if shape is not None else text


def _is_tensor(obj: Any) -> bool:
    """A torch / TensorFlow / JAX tensor (recognised by its module, without importing any framework)."""
    module = type(obj).__module__.split(".", 1)[0]
    return module in ("torch", "tensorflow", "jax", "jaxlib", "keras") and hasattr(obj, "shape")


def _to_numpy(obj: Any) -> np.ndarray:
    if hasattr(obj, "detach"):  # torch: no grad, on the CPU, bfloat16 has no numpy type
        obj = obj.detach().cpu()
        if str(obj.dtype) == "torch.bfloat16":
            obj = obj.float()
        return obj.numpy()
    if hasattr(obj, "numpy") and not isinstance(obj, np.ndarray):  # TensorFlow eager tensors
        return np.asarray(obj.numpy())
    return np.asarray(obj)


def _is_image_like(obj: Any) -> bool:
    return isinstance(obj, (PIL.Image.Image, np.ndarray)) or _is_tensor(obj)


def _flatten_images(images: Any) -> list[Any]:
    """One flat list of single images: lists (nested once) of images, 4-D arrays are batches."""
    if images is None:
        raise ValueError("images is None: give a PIL image, an array or a list of them")
    if isinstance(images, (str, os.PathLike)) or _is_image_like(images):
        items = [images]
    elif isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("images is an empty list: give at least one image")
        items = []
        for item in images:
            if isinstance(item, (list, tuple)):  # nested lists, as transformers flattens them
                items.extend(item)
            else:
                items.append(item)
        if not items:
            raise ValueError("images holds only empty lists: give at least one image")
    else:
        raise TypeError(
            f"images must be a PIL image, a numpy array, a torch/tf/jax tensor or a list of them, "
            f"got {_describe(images)}")
    flat = []
    for item in items:
        if isinstance(item, np.ndarray) or _is_tensor(item):
            if len(item.shape) == 4:  # a batch of images
                array = item if isinstance(item, np.ndarray) else _to_numpy(item)
                flat.extend(array[i] for i in range(array.shape[0]))
                continue
        flat.append(item)
    if not flat:
        raise ValueError("images holds no image (a batch array with zero images?)")
    return flat


class _Source:
    """One validated input image: a PIL image ready for PIL ("RGB" or "L" once converted) or an HWC array."""

    __slots__ = ("pil", "convert", "array", "height", "width", "channels")

    def __init__(self, pil=None, convert=None, array=None, height=0, width=0, channels=3):
        self.pil = pil  # PIL.Image.Image, possibly still to be converted with .convert(self.convert)
        self.convert = convert
        self.array = array  # np.ndarray (H, W) or (H, W, 3), uint8 / other real dtype
        self.height = height
        self.width = width
        self.channels = channels  # 1 or 3: the channels of the pixels before any gray -> RGB repetition


def _load_path(path: Any, index: int) -> PIL.Image.Image:
    text = os.fspath(path)
    if "://" in text:
        raise ValueError(f"image {index}: URLs are not fetched ({text!r}); load the image and pass it instead")
    if not os.path.isfile(text):
        raise ValueError(f"image {index}: {text!r} is not an image file")
    with PIL.Image.open(text) as image:
        image.load()
        return image.copy()


def _ingest(obj: Any, index: int, do_convert_rgb: bool, input_data_format: str | None) -> _Source:
    """Check one image and describe it; no pixel work yet."""
    if isinstance(obj, (str, os.PathLike)):
        obj = _load_path(obj, index)
    if isinstance(obj, PIL.Image.Image):
        width, height = obj.size
        if width == 0 or height == 0:
            raise ValueError(f"image {index} is empty: {_describe(obj)}")
        if obj.mode == "RGB":
            return _Source(pil=obj, height=height, width=width, channels=3)
        if obj.mode == "L":  # resized as "L" and repeated: the same numbers as "RGB", a third of the work
            return _Source(pil=obj, height=height, width=width, channels=1)
        if do_convert_rgb:
            return _Source(pil=obj, convert="RGB", height=height, width=width, channels=3)
        if obj.mode in ("P", "PA"):
            raise ValueError(f"image {index}: palette image (mode {obj.mode}) needs do_convert_rgb=True")
        return _ingest_array(np.asarray(obj), index, do_convert_rgb, "none" if len(obj.getbands()) == 1
                             else CHANNELS_LAST, obj)
    if isinstance(obj, np.ndarray) or _is_tensor(obj) or hasattr(obj, "__array_interface__"):
        array = obj if isinstance(obj, np.ndarray) else _to_numpy(obj)
        return _ingest_array(array, index, do_convert_rgb, input_data_format, obj)
    raise TypeError(
        f"image {index} has type {type(obj).__module__}.{type(obj).__qualname__}; expected a PIL image, a numpy "
        "array or a torch/tf/jax tensor")


def _infer_layout(shape: tuple[int, ...], index: int) -> str:
    # transformers' rule: a first or last axis of size 1 or 3 is the channel axis (first wins a tie); then size 4
    for sizes in ((1, 3), (4,)):
        if shape[0] in sizes:
            return CHANNELS_FIRST
        if shape[-1] in sizes:
            return CHANNELS_LAST
    raise ValueError(
        f"image {index}: cannot tell the channel axis of an array of shape {shape}: expected 1, 3 or 4 channels "
        "first or last (give input_data_format to say which)")


def _ingest_array(array: np.ndarray, index: int, do_convert_rgb: bool, layout: str | None, original: Any) -> _Source:
    what = _describe(original)
    if array.dtype == bool:
        array = array.view(np.uint8)
    elif not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"image {index}: unsupported dtype {array.dtype} ({what}); use uint8 or float")
    if array.ndim == 2:
        if layout not in (None, "none"):
            raise ValueError(f"image {index}: input_data_format={layout!r} needs a 3-D array, got {what}")
        array = array[:, :, None]
    elif array.ndim == 3:
        if layout == "none":
            raise ValueError(f"image {index}: input_data_format='none' needs a 2-D array, got {what}")
        if layout is None:
            layout = _infer_layout(array.shape, index)
        if layout == CHANNELS_FIRST:
            array = array.transpose(1, 2, 0)
    else:
        raise ValueError(
            f"image {index}: expected a 2-D (height, width) or 3-D image array (or a 4-D batch), got {array.ndim} "
            f"dimensions ({what})")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ValueError(f"image {index} is empty: {what}")
    if channels == 4 and do_convert_rgb:
        array = array[:, :, :3]  # as PIL's RGBA -> RGB: the alpha channel is dropped
        channels = 3
    elif channels not in (1, 3):
        hint = " (4 channels need do_convert_rgb=True)" if channels == 4 else ""
        raise ValueError(f"image {index} has {channels} channels ({what}); expected 1 or 3{hint}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"image {index} contains NaN or infinite values ({what})")
    if channels == 1:
        array = array[:, :, 0]
    return _Source(array=array, height=height, width=width, channels=channels)


def _array_to_uint8(array: np.ndarray, index: int) -> tuple[np.ndarray, bool]:
    """transformers' ``to_pil_image`` for resizing: (uint8 pixels, whether they were scaled from [0, 1] by 255)."""
    rescaled = False
    if array.dtype != np.uint8:
        if np.allclose(array, array.astype(int)):  # whole numbers: taken as 0..255 pixel values
            if array.min() < 0 or array.max() > 255:
                raise ValueError(
                    f"image {index} has whole-number values in [{array.min()}, {array.max()}], outside 0..255 "
                    f"(dtype {array.dtype}); scale it to uint8 or to floats in [0, 1]")
        elif array.min() >= 0 and array.max() <= 1:
            array = (array.astype(np.float64) * 255).astype(np.float32)
            rescaled = True
        else:
            raise ValueError(
                f"image {index} has fractional values in [{array.min()}, {array.max()}] (dtype {array.dtype}); "
                "float images must lie in [0, 1] (or hold whole numbers in 0..255)")
        array = array.astype(np.uint8)
    return array, rescaled


# --------------------------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------------------------


def _resize_output_size(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    """(height, width) after resizing, as transformers' ``get_resize_output_image_size`` computes it."""
    if "shortest_edge" not in size:
        return size["height"], size["width"]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _source_span(in_size: int, out_size: int, start: int, stop: int, resample: Resampling) -> tuple[int, int]:
    """Source pixels that PIL's filter reads for output pixels [start, stop) (Resample.c's bounds, plus a margin)."""
    scale = in_size / out_size
    support = _FILTER_SUPPORT[resample] * max(scale, 1.0)
    first = int((start + 0.5) * scale - support + 0.5)
    last = int((stop - 0.5) * scale + support + 0.5)
    return max(0, first - 2), min(in_size, last + 2)


def _vertical_first(in_w: int, in_h: int, out_w: int, out_h: int) -> bool:
    """Whether PIL runs the vertical pass first when resizing (in_w, in_h) to (out_w, out_h) with both passes.

    Pillow up to 12 always ran the horizontal pass first; Pillow 13 runs the vertical one first when the height
    shrinks by more than twice as many pixels as the width (python-pillow/Pillow#9549). Which rule the installed
    Pillow follows is checked once, on small images (``_pass_order_rule``).
    """
    rule = _pass_order_rule()
    return rule == "pillow13" and in_h > out_h and in_h - out_h > 2 * (in_w - out_w)


_pass_order: list[str | None] = []


def _pass_order_rule() -> str | None:
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


def _resize_window(image: PIL.Image.Image | np.ndarray, out_h: int, out_w: int, resample: Resampling,
                   rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``np.asarray(image.resize((out_w, out_h), resample))[rows, cols]``, computing little more than the window.

    ``image`` is a PIL image, or uint8 pixels (H, W) or (H, W, 3) standing for the "L" or "RGB" image they make.
    PIL resizes in two separable passes, each output pixel of a pass depending only on its own row (horizontal
    pass) or column (vertical pass) of the pass' input. So the first pass is run only on the source lines the window
    needs, its output cut to the window, and the second pass run on that alone: the same integer arithmetic on the
    same numbers, hence the same pixels. The passes run in the order PIL would run them. "L" and "RGB" images with
    the bicubic or bilinear filter go to the compiled kernel (``_kernel_window``) once it has been found to match
    the installed Pillow; everything else to PIL.
    """
    pixels = image if isinstance(image, np.ndarray) else None
    in_h, in_w = pixels.shape[:2] if pixels is not None else image.size[::-1]
    if (resample in _KERNEL_FILTERS and (pixels is not None or image.mode in ("RGB", "L"))
            and _pass_order_rule() is not None and _kernel_matches_pillow()):
        return _kernel_window(image, out_h, out_w, resample, rows, cols)
    if pixels is not None:
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels))
    if (resample not in _FILTER_SUPPORT or (in_w, in_h) == (out_w, out_h) or _pass_order_rule() is None):
        return np.asarray(image.resize((out_w, out_h), resample, reducing_gap=None))[rows[0]:rows[1],
                                                                                     cols[0]:cols[1]]
    if in_w != out_w and in_h != out_h and _vertical_first(in_w, in_h, out_w, out_h):
        # A vertical pass is a horizontal pass of the transposed image (same coefficients, same arithmetic).
        flipped = image.transpose(PIL.Image.Transpose.TRANSPOSE)
        return np.swapaxes(_horizontal_first_window(flipped, out_w, out_h, resample, cols, rows), 0, 1)
    return _horizontal_first_window(image, out_h, out_w, resample, rows, cols)


def _horizontal_first_window(image: PIL.Image.Image, out_h: int, out_w: int, resample: Resampling,
                             rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    in_w, in_h = image.size
    (y0, y1), (x0, x1) = rows, cols
    r0, r1 = _source_span(in_h, out_h, y0, y1, resample) if out_h != in_h else (y0, y1)
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


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic, a = -0.5, with Resample.c's grouping of the operations: the weights must match to the bit
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                    np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


# The filters the compiled kernel takes: their weights need no transcendental function, so numpy computes exactly
# Resample.c's doubles (HAMMING and LANCZOS call sin/cos, whose last bit may differ between libraries).
_KERNEL_FILTERS = {Resampling.BILINEAR: _bilinear, Resampling.BICUBIC: _bicubic}
_PRECISION_BITS = 22  # Resample.c: 32 bits less 8 for the pixel and 2 of headroom


@functools.lru_cache(maxsize=512)
def _kernel_weights(in_size: int, out_size: int, start: int, stop: int, resample: Resampling):
    """Resample.c's ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` for output pixels [start, stop) of one axis:
    (first input, input count, (outputs, taps) int32 weights); an identity pass when the size does not change."""
    if in_size == out_size:
        n = stop - start
        return _frozen(np.arange(start, stop, dtype=np.int32), np.ones(n, np.int32),
                       np.full((n, 1), 1 << _PRECISION_BITS, np.int32))
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _FILTER_SUPPORT[resample] * filterscale
    taps = np.arange(int(math.ceil(support)) * 2 + 1)
    center = (np.arange(start, stop, dtype=np.float64) + 0.5) * scale
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates; below 0 clips to 0
    count = np.minimum((center + support + 0.5).astype(np.int64), in_size) - first
    valid = taps < count[:, None]
    weights = np.where(valid, _KERNEL_FILTERS[resample]((taps + first[:, None] - center[:, None] + 0.5)
                                                        * (1.0 / filterscale)), 0.0)
    total = np.cumsum(weights, axis=1)[:, -1:]  # C adds them one by one
    weights = np.where(total != 0.0, weights / np.where(total != 0.0, total, 1.0), weights)
    scaled = weights * (1 << _PRECISION_BITS)
    fixed = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5))  # C's (int)(x -/+ 0.5)
    return _frozen(first.astype(np.int32), count.astype(np.int32), np.where(valid, fixed, 0.0).astype(np.int32))


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays, read-only (they are cached and shared between threads)."""
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _kernel_window(image: PIL.Image.Image | np.ndarray, out_h: int, out_w: int, resample: Resampling,
                   rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The rows/cols window of PIL's resize of an "RGB" or "L" image, or of uint8 pixels (H, W) or (H, W, 3), by the
    compiled kernel. A PIL image is read in place where Pillow exports it to Arrow, else copied to numpy."""
    if isinstance(image, np.ndarray):
        source, (in_h, in_w), channels = np.ascontiguousarray(image), image.shape[:2], 3 if image.ndim == 3 else 1
    else:
        (in_w, in_h), channels = image.size, 3 if image.mode == "RGB" else 1
        source = _arrow_pixels(image)
        source = np.asarray(image) if source is None else source
    col_first, col_count, col_weights = _kernel_weights(in_w, out_w, cols[0], cols[1], resample)
    row_first, row_count, row_weights = _kernel_weights(in_h, out_h, rows[0], rows[1], resample)
    out = np.empty((rows[1] - rows[0], cols[1] - cols[0], channels), np.uint8)
    vertical_first = in_w != out_w and in_h != out_h and _vertical_first(in_w, in_h, out_w, out_h)
    _resample.resize(source, in_h, in_w, channels, out, out.shape[0], out.shape[1],
                     col_first, col_count, col_weights, col_weights.shape[1],
                     row_first, row_count, row_weights, row_weights.shape[1], vertical_first)
    return out if channels == 3 else out[:, :, 0]


def _arrow_pixels(image: PIL.Image.Image):
    """The (schema, array) capsules of Pillow's zero-copy Arrow export (Pillow 11.2 and later), or None where there
    is none (an older Pillow, or an image stored in several memory blocks)."""
    export = getattr(image, "__arrow_c_array__", None)
    try:
        return None if export is None else export()
    except (ValueError, NotImplementedError):
        return None


_kernel_verdict: list[bool] = []
_kernel_lock = threading.Lock()


def _kernel_matches_pillow() -> bool:
    """Whether the compiled kernel is built and gives the installed Pillow's pixels: checked once, on small random
    images (both modes and filters, down- and upscaling, either pass first, one axis alone, cut windows)."""
    with _kernel_lock:
        if not _kernel_verdict:
            try:
                trusted = _resample is not None and _check_kernel()
            except Exception as err:  # noqa: BLE001 - whatever went wrong, PIL does the work (with the same pixels)
                logger.warning("clip_core._resample failed its check (%s); PIL resizes instead", err)
                trusted = False
            _kernel_verdict.append(trusted)
        return _kernel_verdict[0]


def _check_kernel() -> bool:
    rng = np.random.default_rng(0)
    cases = [(64, 48, 29, 22), (48, 64, 22, 29), (40, 120, 38, 30), (33, 71, 35, 37), (90, 20, 60, 45),
             (20, 90, 45, 60), (64, 64, 17, 31), (50, 37, 50, 19), (37, 50, 19, 50), (301, 200, 337, 224)]
    for in_w, in_h, out_w, out_h in cases:
        for shape in ((in_h, in_w, 3), (in_h, in_w)):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            image = PIL.Image.fromarray(pixels)
            for resample in _KERNEL_FILTERS:
                full = np.asarray(image.resize((out_w, out_h), resample, reducing_gap=None))
                rows, cols = (out_h // 5, out_h - out_h // 4), (out_w // 3, out_w - out_w // 6)
                want = full[rows[0]:rows[1], cols[0]:cols[1]]
                if not all(np.array_equal(_kernel_window(source, out_h, out_w, resample, rows, cols), want)
                           for source in (pixels, image)):
                    logger.warning("clip_core._resample differs from the installed Pillow %s; PIL resizes instead",
                                   PIL.__version__)
                    return False
    return True


def _crop_geometry(height: int, width: int, crop: tuple[int, int] | None):
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


class _Plan:
    """The settings of one ``preprocess`` call, with the uint8 -> float32 lookup tables they imply."""

    def __init__(self, do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor,
                 do_normalize, image_mean, image_std, do_convert_rgb, channels_last):
        self.do_resize = do_resize
        self.size = size
        self.resample = resample
        self.crop = (crop_size["height"], crop_size["width"]) if do_center_crop else None
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = image_mean
        self.image_std = image_std
        self.do_convert_rgb = do_convert_rgb
        self.channels_last = channels_last
        self._luts: dict[tuple[int, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    def output_hw(self, source: _Source) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop
        if self.do_resize:
            return _resize_output_size(source.height, source.width, self.size)
        return source.height, source.width

    def output_channels(self, source: _Source) -> int:
        return 3 if self.do_convert_rgb else source.channels

    def float_steps(self, image: np.ndarray, channels: int) -> np.ndarray:
        """transformers' rescale then normalise, step by step (float64 product, float32 result; HWC layout)."""
        if self.do_rescale:
            image = (image.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            if not np.issubdtype(image.dtype, np.floating):
                image = image.astype(np.float32)
            mean = np.array(_per_channel(self.image_mean, channels, "image_mean"), dtype=image.dtype)
            std = np.array(_per_channel(self.image_std, channels, "image_std"), dtype=image.dtype)
            image = (image - mean) / std
        return image.astype(np.float32, copy=False)

    def lut(self, channels: int, pil_rescaled: bool) -> np.ndarray:
        """(channels, 256) float32: what transformers' steps make of each uint8 value, per channel."""
        key = (channels, pil_rescaled)
        with self._lock:
            table = self._luts.get(key)
            if table is None:
                values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)  # (256, C), HWC-like
                if pil_rescaled:  # transformers' resize brings a [0, 1] image back with rescale(x, 1/255)
                    values = (values.astype(np.float64) * (1 / 255)).astype(np.float32)
                table = np.ascontiguousarray(self.float_steps(values, channels).T)
                self._luts[key] = table
        return table

    def check_channels(self, channels: int) -> None:
        if self.do_normalize:
            _per_channel(self.image_mean, channels, "image_mean")
            _per_channel(self.image_std, channels, "image_std")

    def run(self, source: _Source, index: int, out: np.ndarray) -> None:
        """Process one image into ``out`` ((C, H, W), or (H, W, C) when channels_last)."""
        try:
            self._run(source, index, out)
        except Exception as err:
            err.add_note(f"while preprocessing image {index}")
            raise

    def _run(self, source: _Source, index: int, out: np.ndarray) -> None:
        pil_rescaled = False
        if self.do_resize:
            if source.pil is not None:
                image = source.pil.convert(source.convert) if source.convert else source.pil
            else:
                image, pil_rescaled = _array_to_uint8(source.array, index)
            out_h, out_w = _resize_output_size(source.height, source.width, self.size)
            rows, cols, (dy, dx) = _crop_geometry(out_h, out_w, self.crop)
            window = _resize_window(image, out_h, out_w, self.resample, rows, cols)
        else:
            if source.pil is not None:
                image = source.pil.convert(source.convert) if source.convert else source.pil
                pixels = np.asarray(image)
            else:
                pixels = source.array
            rows, cols, (dy, dx) = _crop_geometry(source.height, source.width, self.crop)
            window = pixels[rows[0]:rows[1], cols[0]:cols[1]]
        channels = out.shape[-1] if self.channels_last else out.shape[0]
        gray = window.ndim == 2
        win_h, win_w = window.shape[:2]
        full = (win_h, win_w) == (out.shape[:2] if self.channels_last else out.shape[1:])
        view = (lambda c: out[dy:dy + win_h, dx:dx + win_w, c]) if self.channels_last else \
            (lambda c: out[c, dy:dy + win_h, dx:dx + win_w])
        if window.dtype == np.uint8:
            table = self.lut(channels, pil_rescaled)
            for c in range(channels):
                lut = table[c]
                if not full:  # the zero padding of centre_crop, after rescale and normalise
                    (out[..., c] if self.channels_last else out[c]).fill(lut[0])
                np.take(lut, window if gray else window[:, :, c], out=view(c), mode="clip")
            return
        # A non-uint8 array that is not resized: transformers' float steps on the cropped pixels.
        if not full:
            padded = np.zeros(self.output_hw(source) + window.shape[2:], dtype=window.dtype)
            padded[dy:dy + win_h, dx:dx + win_w] = window
            window, dy, dx, win_h, win_w = padded, 0, 0, padded.shape[0], padded.shape[1]
        if gray:
            window = np.repeat(window[:, :, None], channels, axis=2)
        values = self.float_steps(window, channels)
        for c in range(channels):
            view(c)[...] = values[:, :, c]


# --------------------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------------------


def _resolve_file(path_or_repo: str | os.PathLike, filename: str, **hub_kwargs: Any) -> Path:
    """Local path of ``filename`` in a directory or a Hub repo (``clip_core.hub.resolve_file``), or the file itself.

    ``subfolder`` is honoured; ``revision``, ``cache_dir`` and ``token`` go to the Hub download (``HF_HUB_OFFLINE=1``
    is honoured by ``huggingface_hub``). Raises ``OSError`` (``FileNotFoundError``) saying what was looked for, where.
    """
    if isinstance(path_or_repo, (str, os.PathLike)) and Path(path_or_repo).is_file():
        return Path(path_or_repo)
    subfolder = hub_kwargs.get("subfolder") or ""
    kwargs = {k: hub_kwargs.get(k) for k in ("revision", "cache_dir", "token")}
    return resolve_file_in(path_or_repo, f"{subfolder.strip('/')}/{filename}" if subfolder else filename, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------------------------------


class CLIPImageProcessor:
    """Turns images into CLIP's ``pixel_values``, with transformers' ``CLIPImageProcessor`` arguments and numbers.

    Args:
        do_resize: resize the image (default ``True``).
        size: ``{"shortest_edge": n}`` (keep the aspect ratio; the long edge becomes ``int(n * long / short)``) or
            ``{"height": h, "width": w}``; an int means ``{"shortest_edge": n}``. Default ``{"shortest_edge": 224}``.
        resample: the PIL filter (``PIL.Image.Resampling`` or its int value; default ``BICUBIC`` = 3).
        do_center_crop: centre crop to ``crop_size``, zero padding images smaller than it (default ``True``).
        crop_size: ``{"height": h, "width": w}``, or an int for a square (default 224).
        do_rescale: multiply by ``rescale_factor`` (default ``True``, ``1/255``).
        do_normalize: subtract ``image_mean``, divide by ``image_std`` (default ``True``; OpenAI's values).
        do_convert_rgb: make every image 3-channel RGB (default ``True``).
        **kwargs: other keys of a ``preprocessor_config.json`` are kept as attributes and saved back.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        resample: Resampling | int = Resampling.BICUBIC,
        do_center_crop: bool = True,
        crop_size: dict[str, int] | int | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("feature_extractor_type", None)  # a leftover of feature-extractor era configs
        kwargs.pop("image_processor_type", None)  # written from the class name, never stored
        self._processor_class = kwargs.pop("processor_class", None)
        self.do_resize = do_resize
        self.size = _size_dict({"shortest_edge": 224} if size is None else size, False, "size")
        self.resample = _resampling(resample)
        self.do_center_crop = do_center_crop
        self.crop_size = _crop_size_dict({"height": 224, "width": 224} if crop_size is None else crop_size)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(OPENAI_CLIP_MEAN) if image_mean is None else image_mean
        self.image_std = list(OPENAI_CLIP_STD) if image_std is None else image_std
        self.do_convert_rgb = do_convert_rgb
        for key, value in kwargs.items():  # unknown config keys survive a load / save round trip, as in transformers
            setattr(self, key, value)

    # ---------------------------------------------------------------------------------------------------------------

    def preprocess(
        self,
        images: Any,
        do_resize: bool | None = None,
        size: dict[str, int] | int | None = None,
        resample: Resampling | int | None = None,
        do_center_crop: bool | None = None,
        crop_size: dict[str, int] | int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        do_convert_rgb: bool | None = None,
        return_tensors: str | None = None,
        data_format: str = CHANNELS_FIRST,
        input_data_format: str | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Preprocess one image or a batch into ``BatchEncoding({"pixel_values": ...})``.

        Args:
            images: a PIL image (any mode), a numpy array (HWC or CHW, or 2-D grayscale; uint8, or floats: see the
                module docstring), a torch / tf / jax tensor, a path to an image file, a 4-D batch array, or a list
                (nested once at most) of these.
            do_resize, size, resample, do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize,
            image_mean, image_std, do_convert_rgb: override the processor's settings for this call.
            return_tensors: ``None`` (a list of float32 arrays, as transformers), "np", "pt", "tf" or "jax" (one
                float32 batch of shape (N, C, H, W), or (N, H, W, C) with ``data_format="channels_last"``).
            data_format: "channels_first" (default) or "channels_last" for the output.
            input_data_format: the layout of array inputs ("channels_first", "channels_last", or "none" for 2-D);
                inferred per image when not given (the axis of size 1 or 3, first one winning; then 4).

        Raises:
            ValueError / TypeError: naming the image (its index in the batch), its type and shape, for inputs that
                are not images, empty, of an unsupported channel count or dtype, holding NaN / inf values, or of
                different output sizes when a batch tensor is asked for.
        """
        check_return_tensors(return_tensors)
        if kwargs:
            warnings.warn(f"CLIPImageProcessor.preprocess ignores unknown arguments {sorted(kwargs)}", stacklevel=2)
        data_format = _channel_format(data_format, "data_format", allow_none=False)
        input_data_format = _channel_format(input_data_format, "input_data_format", allow_none=True)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        plan = _Plan(
            do_resize=bool(pick(do_resize, self.do_resize)),
            size=_size_dict(pick(size, self.size), False, "size"),
            resample=_resampling(pick(resample, self.resample)),
            do_center_crop=bool(pick(do_center_crop, self.do_center_crop)),
            crop_size=_crop_size_dict(pick(crop_size, self.crop_size)),
            do_rescale=bool(pick(do_rescale, self.do_rescale)),
            rescale_factor=float(pick(rescale_factor, self.rescale_factor)),
            do_normalize=bool(pick(do_normalize, self.do_normalize)),
            image_mean=pick(image_mean, self.image_mean),
            image_std=pick(image_std, self.image_std),
            do_convert_rgb=bool(pick(do_convert_rgb, self.do_convert_rgb)),
            channels_last=data_format == CHANNELS_LAST,
        )

        sources = [_ingest(obj, i, plan.do_convert_rgb, input_data_format) for i, obj in enumerate(
            _flatten_images(images))]
        if plan.do_rescale and any(s.array is not None and s.array.dtype.kind == "f" for s in sources):
            first = next(s.array for s in sources if s.array is not None and s.array.dtype.kind == "f")
            if first.min() >= 0 and first.max() <= 1:
                warnings.warn(
                    "It looks like you are rescaling images that are already in [0, 1] (do_rescale=True divides by "
                    "255 again); pass do_rescale=False for such images.", stacklevel=2)
        shapes = []
        for index, source in enumerate(sources):
            channels = plan.output_channels(source)
            try:
                plan.check_channels(channels)
            except ValueError as err:
                raise ValueError(f"image {index}: {err}") from None
            height, width = plan.output_hw(source)
            shapes.append((height, width, channels) if plan.channels_last else (channels, height, width))

        uniform = all(shape == shapes[0] for shape in shapes)
        if uniform:
            pixel_values = np.empty((len(sources),) + shapes[0], dtype=np.float32)
            outputs = list(pixel_values)
        else:
            if return_tensors is not None:
                raise ValueError(
                    f"images of different output shapes ({sorted(set(shapes))}) cannot make one batch tensor; use "
                    "do_center_crop=True (or a fixed size), or return_tensors=None for a list")
            outputs = [np.empty(shape, dtype=np.float32) for shape in shapes]
        if len(sources) > 1 and NUM_THREADS > 1:
            repeated = {id(s.pil) for s in sources if s.pil is not None}
            if len(repeated) < sum(s.pil is not None for s in sources):  # one image object twice in the batch:
                for source in sources:  # decode lazily opened files here, not in two threads at once
                    if source.pil is not None:
                        source.pil.load()
            futures = [_get_executor().submit(plan.run, s, i, o) for i, (s, o) in enumerate(zip(sources, outputs))]
            for future in futures:
                future.result()
        else:
            for i, (source, out) in enumerate(zip(sources, outputs)):
                plan.run(source, i, out)
        if return_tensors is None:
            return batch({"pixel_values": outputs}, None)
        return batch({"pixel_values": pixel_values}, return_tensors)

    def __call__(self, images: Any, **kwargs: Any) -> BatchEncoding:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, **kwargs)

    # ---------------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, with ``image_processor_type`` (and ``processor_class`` when set)."""
        output = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        output["resample"] = int(self.resample)
        for key, value in output.items():
            if isinstance(value, np.ndarray):
                output[key] = value.tolist()
        output["image_processor_type"] = type(self).__name__
        if self._processor_class is not None:
            output["processor_class"] = self._processor_class
        return output

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs: Any) -> "CLIPImageProcessor":
        """Build from a dict such as :meth:`to_dict` or a ``preprocessor_config.json`` gives; ``kwargs`` override."""
        config = dict(image_processor_dict)
        config.update(kwargs)
        return cls(**config)

    def to_json_string(self) -> str:
        """The settings as ``preprocessor_config.json`` holds them (sorted keys, indent 2), as transformers writes."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        """Write :meth:`to_json_string` to a file, atomically."""
        write_atomic(Path(json_file_path), self.to_json_string().encode("utf-8"))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Write ``preprocessor_config.json`` into ``save_directory`` (created if needed); returns its path."""
        directory = Path(save_directory)
        if directory.is_file():
            raise ValueError(f"save_directory {directory} is a file, not a directory")
        path = directory / IMAGE_PROCESSOR_NAME
        self.to_json_file(path)
        return [str(path)]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "CLIPImageProcessor":
        """Load ``preprocessor_config.json`` from a directory, a path to the file, or a Hub repo id.

        Hub arguments ``revision``, ``cache_dir``, ``token`` and ``subfolder`` are used (``local_files_only`` and
        transformers' other download arguments are accepted and ignored: ``HF_HUB_OFFLINE=1`` keeps to the cache);
        other ``kwargs`` override the loaded settings.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        path = _resolve_file(pretrained_model_name_or_path, IMAGE_PROCESSOR_NAME, **hub_kwargs)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise OSError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(config, dict):
            raise OSError(f"{path} does not hold a JSON object")
        return cls.from_dict(config, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


class CLIPFeatureExtractor(CLIPImageProcessor):
    """Deprecated alias of :class:`CLIPImageProcessor` (warns with ``FutureWarning``, as transformers does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "The class CLIPFeatureExtractor is deprecated and will be removed in version 5 of Transformers. Please"
            " use CLIPImageProcessor instead.",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
