"""Input images for ``CLIPImageProcessor``: checked, described, and brought to what the resize takes.

A call's ``images`` (PIL images, numpy arrays, torch / tf / jax tensors, file paths, 4-D batches, lists nested once)
become one flat list (:func:`flatten_images`); each image is checked and described as a :class:`Source` without any
pixel work (:func:`ingest`: mode, channel layout, size, dtype, finiteness; errors name the image's index, type and
shape). :func:`array_to_uint8` is transformers' ``to_pil_image`` step for arrays that are resized.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import PIL.Image

from ..tensors import TooLargeError
from .options import CHANNELS_FIRST, CHANNELS_LAST


class ImageTooLargeError(TooLargeError):
    """An image file beyond PIL's decompression-bomb limit (PIL's warning or error, turned into one ValueError)."""


def describe(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    if isinstance(obj, PIL.Image.Image):
        return f"PIL image of mode {obj.mode} and size {obj.size}"
    text = type(obj).__module__ + "." + type(obj).__qualname__
    return f"{text} of shape {tuple(shape)}" if shape is not None else text


def is_tensor(obj: Any) -> bool:
    """A torch / TensorFlow / JAX tensor (recognised by its module, without importing any framework)."""
    module = type(obj).__module__.split(".", 1)[0]
    return module in ("torch", "tensorflow", "jax", "jaxlib", "keras") and hasattr(obj, "shape")


def to_numpy(obj: Any) -> np.ndarray:
    if hasattr(obj, "detach"):  # torch: no grad, on the CPU, bfloat16 has no numpy type
        obj = obj.detach().cpu()
        if str(obj.dtype) == "torch.bfloat16":
            obj = obj.float()
        return obj.numpy()
    if hasattr(obj, "numpy") and not isinstance(obj, np.ndarray):  # TensorFlow eager tensors
        return np.asarray(obj.numpy())
    return np.asarray(obj)


def is_image_like(obj: Any) -> bool:
    return isinstance(obj, (PIL.Image.Image, np.ndarray)) or is_tensor(obj)


def flatten_images(images: Any) -> list[Any]:
    """One flat list of single images: lists (nested once) of images, 4-D arrays are batches."""
    if images is None:
        raise ValueError("images is None: give a PIL image, an array or a list of them")
    if isinstance(images, (str, os.PathLike)) or is_image_like(images):
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
            f"got {describe(images)}")
    flat = []
    for item in items:
        if isinstance(item, np.ndarray) or is_tensor(item):
            if len(item.shape) == 4:  # a batch of images
                array = item if isinstance(item, np.ndarray) else to_numpy(item)
                flat.extend(array[i] for i in range(array.shape[0]))
                continue
        flat.append(item)
    if not flat:
        raise ValueError("images holds no image (a batch array with zero images?)")
    return flat


class Source:
    """One validated input image: a PIL image ready for PIL ("RGB" or "L" once converted) or an HWC array."""

    __slots__ = ("pil", "convert", "array", "height", "width", "channels")

    def __init__(self, pil=None, convert=None, array=None, height=0, width=0, channels=3):
        self.pil = pil  # PIL.Image.Image, possibly still to be converted with .convert(self.convert)
        self.convert = convert
        self.array = array  # np.ndarray (H, W) or (H, W, 3), uint8 / other real dtype
        self.height = height
        self.width = width
        self.channels = channels  # 1 or 3: the channels of the pixels before any gray -> RGB repetition


def load_path(path: Any, index: int) -> PIL.Image.Image:
    text = os.fspath(path)
    if "://" in text:
        raise ValueError(f"image {index}: URLs are not fetched ({text!r}); load the image and pass it instead")
    if not os.path.isfile(text):
        raise ValueError(f"image {index}: {text!r} is not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(text) as image:
                image.load()
                return image.copy()
    except (PIL.Image.DecompressionBombWarning, PIL.Image.DecompressionBombError) as err:
        raise ImageTooLargeError(
            f"image {index}: {text!r} is too large to decode safely ({err}); PIL's limit is "
            f"{PIL.Image.MAX_IMAGE_PIXELS:,} pixels (PIL.Image.MAX_IMAGE_PIXELS, about "
            f"{PIL.Image.MAX_IMAGE_PIXELS * 4 / 2**30:.1f} GiB as RGBA); raise it if you trust the file") from None
    except PIL.UnidentifiedImageError:
        raise ValueError(f"image {index}: {text!r} is not an image file PIL can read") from None


def ingest(obj: Any, index: int, do_convert_rgb: bool, input_data_format: str | None,
           drop_alpha: bool | None = None) -> Source:
    """Check one image and describe it; no pixel work yet. ``drop_alpha`` (default: ``do_convert_rgb``): a
    4-channel array loses its fourth channel (as PIL's RGBA -> RGB)."""
    drop_alpha = do_convert_rgb if drop_alpha is None else drop_alpha
    if isinstance(obj, (str, os.PathLike)):
        obj = load_path(obj, index)
    if isinstance(obj, PIL.Image.Image):
        width, height = obj.size
        if width == 0 or height == 0:
            raise ValueError(f"image {index} is empty: {describe(obj)}")
        if obj.mode == "RGB":
            return Source(pil=obj, height=height, width=width, channels=3)
        if obj.mode == "L":  # resized as "L" and repeated: the same numbers as "RGB", a third of the work
            return Source(pil=obj, height=height, width=width, channels=1)
        if do_convert_rgb:
            return Source(pil=obj, convert="RGB", height=height, width=width, channels=3)
        if obj.mode in ("P", "PA"):
            raise ValueError(f"image {index}: palette image (mode {obj.mode}) needs do_convert_rgb=True")
        return ingest_array(np.asarray(obj), index, do_convert_rgb, "none" if len(obj.getbands()) == 1
                            else CHANNELS_LAST, obj)
    if isinstance(obj, np.ndarray) or is_tensor(obj) or hasattr(obj, "__array_interface__"):
        array = obj if isinstance(obj, np.ndarray) else to_numpy(obj)
        return ingest_array(array, index, drop_alpha, input_data_format, obj)
    raise TypeError(
        f"image {index} has type {type(obj).__module__}.{type(obj).__qualname__}; expected a PIL image, a numpy "
        "array or a torch/tf/jax tensor")


def infer_layout(shape: tuple[int, ...], index: int) -> str:
    # transformers' rule: a first or last axis of size 1 or 3 is the channel axis (first wins a tie); then size 4
    for sizes in ((1, 3), (4,)):
        if shape[0] in sizes:
            return CHANNELS_FIRST
        if shape[-1] in sizes:
            return CHANNELS_LAST
    raise ValueError(
        f"image {index}: cannot tell the channel axis of an array of shape {shape}: expected 1, 3 or 4 channels "
        "first or last (give input_data_format to say which)")


def ingest_array(array: np.ndarray, index: int, drop_alpha: bool, layout: str | None, original: Any) -> Source:
    what = describe(original)
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
            layout = infer_layout(array.shape, index)
        if layout == CHANNELS_FIRST:
            array = array.transpose(1, 2, 0)
    else:
        raise ValueError(
            f"image {index}: expected a 2-D (height, width) or 3-D image array (or a 4-D batch), got {array.ndim} "
            f"dimensions ({what})")
    height, width, channels = array.shape
    if height == 0 or width == 0:
        raise ValueError(f"image {index} is empty: {what}")
    if channels == 4 and drop_alpha:
        array = array[:, :, :3]  # as PIL's RGBA -> RGB: the alpha channel is dropped
        channels = 3
    elif channels not in (1, 3, 4):
        raise ValueError(f"image {index} has {channels} channels ({what}); expected 1, 3 or 4")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"image {index} contains NaN or infinite values ({what})")
    if channels == 1:
        array = array[:, :, 0]
    return Source(array=array, height=height, width=width, channels=channels)


def array_to_uint8(array: np.ndarray, index: int) -> tuple[np.ndarray, bool]:
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
