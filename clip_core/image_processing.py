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

* With ``do_convert_rgb`` (the default) 2-D and 1-channel arrays are repeated to 3 channels (as PIL's "L" -> "RGB");
  transformers converts only PIL images (and fails on such arrays). A 4-channel array keeps its 4 channels, as in
  transformers, where ``image_mean`` / ``image_std`` fit 4 channels (a number, 4 values) or ``do_normalize=False``;
  with 3-value ones (the default, where transformers fails) it loses its alpha channel (as PIL's "RGBA" -> "RGB").
* The channel layout of an array is inferred per image (transformers infers it from the first image only).
* ``pixel_values`` are always float32.
* Non-finite values, zero-size images, unsupported dtypes and channel counts raise ``ValueError`` / ``TypeError``
  naming the image's index in the batch, its type and shape.

Float arrays follow transformers exactly, quirks included: when resizing, an array goes through PIL as uint8, so
float values in [0, 1] are scaled by 255 and truncated first (and brought back to [0, 1] afterwards), and float arrays
holding only whole numbers in [0, 255] are taken as 0..255 pixel values. Then ``do_rescale`` divides by 255 again:
pass ``do_rescale=False`` for images already in [0, 1] (a warning says so, as in transformers).

This module holds the public class (and its threads and files); its parts live in :mod:`clip_core.images`: argument
normalisation (``options``), input handling (``convert``), resize planning (``geometry``), the compiled kernel and
its loader (``kernel``), resizing (``resize``) and the per-call plan that fills ``pixel_values`` (``pipeline``). The
names this module offered before stay importable from it; the kernel's state (``_resample``, its verdict and
``check_kernel``) is in :mod:`clip_core.images.kernel`, which is where to patch it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .hub import resolve_file as resolve_file_in
from .hub import write_atomic
from .images.convert import flatten_images, infer_layout, ingest
from .images.options import CHANNELS_FIRST, CHANNELS_LAST, Resampling, channel_format, crop_size_dict, resampling
from .images.options import per_channel, size_dict
from .jsonio import JSONFileError, read_json
from .images.pipeline import Plan
from .tensors import BatchEncoding, batch, check_return_tensors, estimate_bytes

# The names of the parts that this module offered before (clip_core.processor, the tests and bench/ use them).
from .images.convert import is_image_like as _is_image_like  # noqa: F401
from .images.geometry import crop_geometry as _crop_geometry  # noqa: F401
from .images.geometry import resize_output_size as _resize_output_size  # noqa: F401
from .images.kernel import _resample  # noqa: F401
from .images.kernel import arrow_pixels as _arrow_pixels  # noqa: F401
from .images.kernel import kernel_matches_pillow as _kernel_matches_pillow  # noqa: F401
from .images.kernel import kernel_weights as _kernel_weights  # noqa: F401
from .images.kernel import kernel_window as _kernel_window  # noqa: F401
from .images.resize import resize_window as _resize_window  # noqa: F401

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
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
               "resume_download", "use_auth_token")
_PREPROCESS_ARGS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                    "do_normalize", "image_mean", "image_std", "do_convert_rgb")

#: Largest pixel_values a call may produce: a larger crop_size / size fails before allocating anything.
MAX_OUTPUT_BYTES = 8 * 1024**3

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


def _read_config(path: Path) -> dict[str, Any]:
    """A ``preprocessor_config.json`` as a dict; an OSError (and ValueError) naming the file otherwise."""
    try:
        return read_json(path, str(path))
    except JSONFileError as err:
        raise ConfigFileError(str(err)) from None


class ConfigFileError(OSError, ValueError):
    """A ``preprocessor_config.json`` that cannot be read: an OSError as before, and a ValueError like jsonio's."""


def _channels_first(image: np.ndarray, input_data_format: str | None) -> bool:
    fmt = channel_format(input_data_format, "input_data_format", allow_none=True)
    if fmt is not None:
        return fmt == CHANNELS_FIRST
    return image.ndim == 3 and infer_layout(image.shape, 0) == CHANNELS_FIRST


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
    is_fast = False

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
        self._processor_class = kwargs.pop("processor_class", kwargs.pop("_processor_class", None))
        self.do_resize = do_resize
        self.size = size_dict({"shortest_edge": 224} if size is None else size, False, "size")
        self.resample = resampling(resample)
        self.do_center_crop = do_center_crop
        self.crop_size = crop_size_dict({"height": 224, "width": 224} if crop_size is None else crop_size)
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(OPENAI_CLIP_MEAN) if image_mean is None else image_mean
        self.image_std = list(OPENAI_CLIP_STD) if image_std is None else image_std
        self.do_convert_rgb = do_convert_rgb
        # preprocess's named arguments, as transformers' attribute lists them (its tests compare the two)
        self._valid_processor_keys = ["images", *_PREPROCESS_ARGS, "return_tensors", "data_format",
                                      "input_data_format"]
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
        data_format = channel_format(data_format, "data_format", allow_none=False)
        input_data_format = channel_format(input_data_format, "input_data_format", allow_none=True)
        pick = lambda value, default: default if value is None else value  # noqa: E731
        plan = Plan(
            do_resize=bool(pick(do_resize, self.do_resize)),
            size=size_dict(pick(size, self.size), False, "size"),
            resample=resampling(pick(resample, self.resample)),
            do_center_crop=bool(pick(do_center_crop, self.do_center_crop)),
            crop_size=crop_size_dict(pick(crop_size, self.crop_size)),
            do_rescale=bool(pick(do_rescale, self.do_rescale)),
            rescale_factor=float(pick(rescale_factor, self.rescale_factor)),
            do_normalize=bool(pick(do_normalize, self.do_normalize)),
            image_mean=pick(image_mean, self.image_mean),
            image_std=pick(image_std, self.image_std),
            do_convert_rgb=bool(pick(do_convert_rgb, self.do_convert_rgb)),
            channels_last=data_format == CHANNELS_LAST,
        )

        drop_alpha = plan.drops_alpha()
        sources = [ingest(obj, i, plan.do_convert_rgb, input_data_format, drop_alpha) for i, obj in enumerate(
            flatten_images(images))]
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
                hint = ("; 4 channels need do_convert_rgb=True (drops alpha) or a 4-value image_mean / image_std"
                        if channels == 4 else "")
                raise ValueError(f"image {index}: {err}{hint}") from None
            height, width = plan.output_hw(source)
            shapes.append((height, width, channels) if plan.channels_last else (channels, height, width))

        needed = sum(int(np.prod(shape, dtype=np.float64)) for shape in shapes) * 4
        estimate_bytes(needed, MAX_OUTPUT_BYTES, f"pixel_values of {len(shapes)} image(s) of output shape "
                       f"{max(shapes, key=lambda sh: np.prod(sh, dtype=np.float64))} (float32)")
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
        """The settings as transformers' ``to_dict`` gives them: every attribute, ``_processor_class`` and
        ``image_processor_type`` included (:meth:`to_json_string` writes ``processor_class`` instead)."""
        output = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        output["resample"] = int(self.resample)
        for key, value in output.items():
            if isinstance(value, np.ndarray):
                output[key] = value.tolist()
        output["_processor_class"] = self._processor_class
        output["image_processor_type"] = type(self).__name__
        return output

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike) -> "CLIPImageProcessor":
        """Build from a ``preprocessor_config.json`` file (what :meth:`to_json_file` writes)."""
        return cls.from_dict(_read_config(Path(json_file)))

    # transformers' per-image helpers (numpy arrays, HWC or CHW), as its image processors offer them

    def rescale(self, image: np.ndarray, scale: float, **kwargs: Any) -> np.ndarray:
        """``image * scale`` as float32 (transformers' ``rescale``: a float64 product, then float32)."""
        return (np.asarray(image, dtype=np.float64) * scale).astype(np.float32)

    def normalize(self, image: np.ndarray, mean: Any, std: Any, data_format: str | None = None,
                  input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """``(image - mean) / std`` per channel (channels first or last, inferred as in :meth:`preprocess`)."""
        image = np.asarray(image)
        image = image.astype(np.float32) if not np.issubdtype(image.dtype, np.floating) else image
        first = _channels_first(image, input_data_format)
        channels = image.shape[0] if first else image.shape[-1]
        shape = (channels, 1, 1) if first else (channels,)
        mean = np.array(per_channel(mean, channels, "mean"), dtype=image.dtype).reshape(shape)
        std = np.array(per_channel(std, channels, "std"), dtype=image.dtype).reshape(shape)
        return (image - mean) / std

    def center_crop(self, image: np.ndarray, size: dict[str, int] | int, data_format: str | None = None,
                    input_data_format: str | None = None, **kwargs: Any) -> np.ndarray:
        """Centre crop to ``size`` ({"height", "width"} or an int), zero padding a smaller image."""
        crop = crop_size_dict(size)
        image = np.asarray(image)
        first = _channels_first(image, input_data_format)
        hw = image.shape[1:] if first else image.shape[:2]
        (y0, y1), (x0, x1), (dy, dx) = _crop_geometry(hw[0], hw[1], (crop["height"], crop["width"]))
        if first:
            out = np.zeros((image.shape[0], crop["height"], crop["width"]), dtype=image.dtype)
            out[:, dy:dy + y1 - y0, dx:dx + x1 - x0] = image[:, y0:y1, x0:x1]
        else:
            out = np.zeros((crop["height"], crop["width"]) + image.shape[2:], dtype=image.dtype)
            out[dy:dy + y1 - y0, dx:dx + x1 - x0] = image[y0:y1, x0:x1]
        return out

    @classmethod
    def from_dict(cls, image_processor_dict: dict[str, Any], **kwargs: Any) -> "CLIPImageProcessor":
        """Build from a dict such as :meth:`to_dict` or a ``preprocessor_config.json`` gives; ``kwargs`` override."""
        config = dict(image_processor_dict)
        config.update(kwargs)
        return cls(**config)

    def to_json_string(self) -> str:
        """The settings as ``preprocessor_config.json`` holds them (sorted keys, indent 2), as transformers writes."""
        output = self.to_dict()
        processor_class = output.pop("_processor_class")
        if processor_class is not None:
            output["processor_class"] = processor_class
        return json.dumps(output, indent=2, sort_keys=True) + "\n"

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
        return cls.from_dict(_read_config(path), **kwargs)

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
