"""CLIPProcessor: CLIP's image processor and tokenizer behind one call, as transformers' ``CLIPProcessor``.

``__call__`` has transformers 4.57's signature (``images, text, videos, audio, **kwargs:
Unpack[CLIPProcessorKwargs]``) and its routing of keyword arguments: flat ones go to every component whose typed
kwargs name them, ``text_kwargs`` / ``images_kwargs`` / ``common_kwargs`` dicts to one component (or all, for
``common_kwargs``), and the tokenizer's own init settings (``padding``, ``max_length`` given to its
``from_pretrained``) are the defaults that call arguments override.
"""

import copy
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, TypedDict, Union

from .image_processing import _HUB_KWARGS, _PREPROCESS_ARGS, CLIPImageProcessor
from .images.convert import is_image_like
from .tensors import BatchEncoding, check_return_tensors

if sys.version_info >= (3, 11):  # the Unpack transformers' processor tests look for
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

__all__ = ["CLIPProcessor", "CLIPProcessorKwargs"]

logger = logging.getLogger(__name__)

# Arguments of ``from_pretrained`` that belong to the image processor; every other keyword goes to the tokenizer.
_IMAGE_KWARGS = frozenset(_PREPROCESS_ARGS) | {"data_format", "input_data_format"}


# The typed keyword arguments of ``__call__``, key for key transformers 4.57's ``processing_utils`` ones (which decide
# where a flat keyword goes), plus ``do_convert_rgb`` for the image processor (transformers' ``ImagesKwargs`` lacks it
# and drops it with a warning).

class CommonKwargs(TypedDict, total=False):
    """Arguments every component gets."""
    return_tensors: Optional[str]


class TextKwargs(TypedDict, total=False):
    """The tokenizer's arguments."""
    text_pair: Any
    text_target: Any
    text_pair_target: Any
    add_special_tokens: Optional[bool]
    padding: Union[bool, str]
    truncation: Union[bool, str]
    max_length: Optional[int]
    stride: Optional[int]
    is_split_into_words: Optional[bool]
    pad_to_multiple_of: Optional[int]
    return_token_type_ids: Optional[bool]
    return_attention_mask: Optional[bool]
    return_overflowing_tokens: Optional[bool]
    return_special_tokens_mask: Optional[bool]
    return_offsets_mapping: Optional[bool]
    return_length: Optional[bool]
    verbose: Optional[bool]
    padding_side: Optional[str]
    return_mm_token_type_ids: Optional[bool]


class ImagesKwargs(TypedDict, total=False):
    """The image processor's arguments."""
    do_resize: Optional[bool]
    size: Optional[dict]
    crop_size: Optional[dict]
    resample: Optional[int]
    do_rescale: Optional[bool]
    rescale_factor: Optional[float]
    do_normalize: Optional[bool]
    image_mean: Optional[Union[float, list]]
    image_std: Optional[Union[float, list]]
    do_pad: Optional[bool]
    pad_size: Optional[dict]
    do_center_crop: Optional[bool]
    data_format: Optional[str]
    input_data_format: Optional[str]
    device: Optional[str]
    do_convert_rgb: Optional[bool]


class VideosKwargs(TypedDict, total=False):
    """A video processor's arguments (CLIP has none: only used to route keywords as transformers does)."""
    do_convert_rgb: Optional[bool]
    do_resize: Optional[bool]
    size: Optional[dict]
    default_to_square: Optional[bool]
    resample: Optional[int]
    do_rescale: Optional[bool]
    rescale_factor: Optional[float]
    do_normalize: Optional[bool]
    image_mean: Optional[Union[float, list]]
    image_std: Optional[Union[float, list]]
    do_center_crop: Optional[bool]
    crop_size: Optional[dict]
    data_format: Optional[str]
    input_data_format: Optional[str]
    device: Optional[str]
    do_sample_frames: Optional[bool]
    video_metadata: Any
    fps: Optional[float]
    num_frames: Optional[int]
    return_metadata: Optional[bool]


class AudioKwargs(TypedDict, total=False):
    """A feature extractor's arguments (CLIP has none: only used to route keywords as transformers does)."""
    sampling_rate: Optional[int]
    raw_speech: Any
    padding: Union[bool, str, None]
    max_length: Optional[int]
    truncation: Optional[bool]
    pad_to_multiple_of: Optional[int]
    return_attention_mask: Optional[bool]


class CLIPProcessorKwargs(TypedDict, total=False):
    """``CLIPProcessor.__call__``'s keyword arguments, by component; ``_defaults`` are the processor's own defaults
    (none, as in transformers: the tokenizer's and image processor's settings apply)."""
    _defaults = {}  # type: ignore[misc]
    common_kwargs: CommonKwargs
    text_kwargs: TextKwargs
    images_kwargs: ImagesKwargs
    videos_kwargs: VideosKwargs
    audio_kwargs: AudioKwargs


_MODALITIES = ("text_kwargs", "images_kwargs", "audio_kwargs", "videos_kwargs", "common_kwargs")


def merge_kwargs(kwargs_class: Any, tokenizer: Any, kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-component keyword arguments of one call, by transformers 4.57's ``ProcessorMixin._merge_kwargs`` rules.

    Lowest to highest priority: ``kwargs_class._defaults``; the tokenizer's init settings (``tokenizer.init_kwargs``,
    read back from the tokenizer's attribute when it has one); a ``<component>_kwargs`` dict; a flat keyword (given
    to every component whose typed kwargs name it, unless that component got a dict). A key both flat and in the
    dict of a component that takes it is a ``ValueError``. Keys no typed kwargs name: taken from the dicts as they
    are; flat ones are dropped with a warning. ``common_kwargs`` end up in every component's.
    """
    known = {m: set(kwargs_class.__annotations__[m].__annotations__) for m in _MODALITIES}
    structured = {m: dict(kwargs[m] or {}) for m in _MODALITIES if m in kwargs}
    flat = {k: v for k, v in kwargs.items() if k not in _MODALITIES}
    init = getattr(tokenizer, "init_kwargs", None) or {}
    merged: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for modality in _MODALITIES:
        out = dict(getattr(kwargs_class, "_defaults", {}).get(modality, {}))
        for key in known[modality]:
            if key in init:
                out[key] = getattr(tokenizer, key) if hasattr(tokenizer, key) else init[key]
        for key in sorted(known[modality]):
            if modality in structured:
                if key not in structured[modality]:
                    continue
                if key in flat:
                    raise ValueError(f"Keyword argument {key} was passed two times:\nin a dictionary for "
                                     f"{modality} and as a **kwarg.")
                out[key] = structured[modality].pop(key)
            elif key in flat:
                out[key] = flat[key]
            else:
                continue
            used.add(key)
        merged[modality] = out
    if structured:  # the dicts' keys that no typed kwargs name, as they are (flat ones are not looked at)
        for modality, extra in structured.items():
            for key, value in extra.items():
                if key not in used:
                    merged[modality][key] = value
                    used.add(key)
    else:
        for key in flat:
            if key not in used:
                _warn_once(f"Keyword argument `{key}` is not a valid argument for this processor and will be "
                           "ignored.")
    for modality in _MODALITIES:
        merged[modality].update(merged["common_kwargs"])
    return merged


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def _is_tokenizer_key(key: str) -> bool:
    """A ``from_pretrained`` keyword that only the tokenizer takes (special tokens, padding settings, ...)."""
    return key.endswith("_token") or key in {
        "additional_special_tokens", "model_max_length", "padding_side", "truncation_side", "errors",
        "clean_up_tokenization_spaces", "split_special_tokens", "add_prefix_space", "do_lower_case",
        "padding", "truncation", "max_length", "model_input_names", "added_tokens_decoder"}


def _is_text(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(w, str) for w in v))
                    for v in value))


def _is_images(value: Any) -> bool:
    if is_image_like(value):
        return True
    return isinstance(value, (list, tuple)) and len(value) > 0 and is_image_like(value[0])


def _names_image_files(value: Any) -> bool:
    """Whether a string (or every string of a list) is an existing file or a URL, as an image path would be."""
    items = [value] if isinstance(value, str) else value
    return all(isinstance(s, str) and (s.startswith(("http://", "https://")) or os.path.isfile(s)) for s in items)


class CLIPProcessor:
    """A :class:`~clip_core.image_processing.CLIPImageProcessor` and a CLIP tokenizer behind one call.

    Args:
        image_processor: the image processor (default: a :class:`CLIPImageProcessor` with transformers' defaults).
        tokenizer: a ``CLIPTokenizer`` / ``CLIPTokenizerFast`` (from ``clip_core.tokenizer``); needed for text.
        feature_extractor: deprecated name of ``image_processor`` (``FutureWarning``).
    """

    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "CLIPImageProcessor"
    tokenizer_class = "CLIPTokenizerFast"
    valid_processor_kwargs = CLIPProcessorKwargs

    def __init__(self, image_processor: CLIPImageProcessor | None = None, tokenizer: Any = None,
                 **kwargs: Any) -> None:
        if "feature_extractor" in kwargs:
            warnings.warn("The `feature_extractor` argument is deprecated and will be removed in v5, use "
                          "`image_processor` instead.", FutureWarning, stacklevel=2)
            feature_extractor = kwargs.pop("feature_extractor")
            image_processor = image_processor if image_processor is not None else feature_extractor
        if kwargs:
            raise TypeError(f"CLIPProcessor got unexpected arguments {sorted(kwargs)}")
        self.image_processor = image_processor if image_processor is not None else CLIPImageProcessor()
        self.tokenizer = tokenizer
        self.chat_template = None  # CLIP has no chat template (transformers' attribute, always None here)

    def to_dict(self) -> dict[str, Any]:
        """What transformers' ``CLIPProcessor.to_dict`` gives: ``{"processor_class": "CLIPProcessor"}`` (the image
        processor and tokenizer are saved in their own files)."""
        return {"processor_class": type(self).__name__}

    def to_json_string(self) -> str:
        """:meth:`to_dict` as JSON (indent 2, sorted keys), as transformers writes it."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @property
    def feature_extractor(self) -> CLIPImageProcessor:
        """Deprecated name of :attr:`image_processor` (``FutureWarning``)."""
        warnings.warn("`feature_extractor` is deprecated and will be removed in v5. Use `image_processor` instead.",
                      FutureWarning, stacklevel=2)
        return self.image_processor

    @property
    def model_input_names(self) -> list[str]:
        """The model inputs this processor makes: ``["pixel_values", "input_ids", "attention_mask"]``."""
        names = list(self.image_processor.model_input_names)
        text_names = getattr(self.tokenizer, "model_input_names", ["input_ids", "attention_mask"])
        return names + [name for name in text_names if name not in names]

    def __call__(
        self,
        images: Optional[Any] = None,
        text: Optional[Union[str, list]] = None,
        videos: Optional[Any] = None,
        audio: Optional[Any] = None,
        **kwargs: Unpack[CLIPProcessorKwargs],
    ) -> BatchEncoding:
        """Tokenize ``text`` and / or preprocess ``images`` into one ``BatchEncoding``, as transformers 4.57's
        ``CLIPProcessor`` does.

        Args:
            images: anything :meth:`CLIPImageProcessor.preprocess` takes (``pixel_values``); lists may be nested
                (``[[image], [], [image]]``), as transformers flattens them.
            text: a string or a list of strings (``input_ids``, ``attention_mask``). Text first and images second
                (the order of older transformers and of triclip before) is recognised and swapped.
            videos, audio: accepted and ignored with a warning, as transformers' CLIPProcessor ignores them (CLIP
                has no video processor or feature extractor).
            **kwargs: see :func:`merge_kwargs`: flat keywords (``padding``, ``max_length``, ``do_rescale``,
                ``return_tensors``, ...) or ``text_kwargs`` / ``images_kwargs`` / ``common_kwargs`` dicts.
                One default differs from transformers': when tensors are asked for and no padding is set anywhere
                (nor ``pad_to_multiple_of``), the texts are padded to the longest (transformers fails on texts of
                different lengths; for equal lengths the two are the same).

        Raises:
            ValueError: when no input is given, a keyword is given twice (flat and in a dict), text is given without
                a tokenizer, or ``images`` holds strings that are no image files or URLs (captions go in ``text``).
        """
        if _is_text(images) and (text is None and not _names_image_files(images) or _is_images(text)):
            if text is None:
                raise ValueError(
                    f"images={images!r:.60} is text naming no image file or URL; pass captions as text=... "
                    "(CLIPProcessor takes images first, as transformers 4.57's does)")
            images, text = text, images  # processor("a caption", image): the text-first order
        if images is None and text is None and videos is None and audio is None:
            raise ValueError("You have to specify either text or images. Both cannot be None.")
        for name, value in (("videos", videos), ("audio", audio)):
            if value is not None:
                _warn_once(f"CLIPProcessor has no processor for {name}: `{name}` is ignored, as in transformers.")
        kwargs = merge_kwargs(self.valid_processor_kwargs, self.tokenizer, dict(kwargs))
        check_return_tensors(kwargs["common_kwargs"].get("return_tensors"))
        output = BatchEncoding()
        if text is not None:
            if self.tokenizer is None:
                raise ValueError("this CLIPProcessor has no tokenizer: give tokenizer= to process text")
            text_kwargs = kwargs["text_kwargs"]
            if (text_kwargs.get("return_tensors") is not None and "padding" not in text_kwargs
                    and text_kwargs.get("pad_to_multiple_of") is None):
                text_kwargs["padding"] = True
            output.update(self.tokenizer(text, **text_kwargs))
        if images is not None:
            output.update(self.image_processor(images, **kwargs["images_kwargs"]))
        return output

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ValueError("this CLIPProcessor has no tokenizer")
        return self.tokenizer

    def decode(self, *args: Any, **kwargs: Any) -> str:
        """The tokenizer's ``decode``: ids -> text."""
        return self._require_tokenizer().decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        """The tokenizer's ``batch_decode``: a batch of ids -> texts."""
        return self._require_tokenizer().batch_decode(*args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "CLIPProcessor":
        """Load from a directory (or Hub repo id) holding ``preprocessor_config.json`` and tokenizer files.

        The tokenizer is a ``CLIPTokenizerFast``. Hub arguments (``revision``, ``cache_dir``, ``token``) are used
        for the image processor's file; image-processor settings in ``kwargs`` override the loaded ones, the other
        ``kwargs`` go to the tokenizer's ``from_pretrained``.
        """
        from .tokenizer import CLIPTokenizer, CLIPTokenizerFast  # imported only when needed

        tokenizer_class = CLIPTokenizerFast if kwargs.pop("use_fast", True) else CLIPTokenizer
        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        image_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _IMAGE_KWARGS}
        shared = {k: v for k, v in kwargs.items() if not _is_tokenizer_key(k)}  # unknown: both, as transformers
        image_processor = CLIPImageProcessor.from_pretrained(pretrained_model_name_or_path, **hub, **image_kwargs,
                                                             **shared)
        tokenizer = tokenizer_class.from_pretrained(pretrained_model_name_or_path, **hub, **kwargs)
        return cls(image_processor=image_processor, tokenizer=tokenizer)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        """Write ``preprocessor_config.json`` (with ``"processor_class": "CLIPProcessor"``) and the tokenizer files,
        as transformers' ``CLIPProcessor.save_pretrained`` does; both libraries load the result. Returns the paths.
        """
        directory = Path(save_directory)
        if directory.is_file():
            raise ValueError(f"save_directory {directory} is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        image_processor = copy.copy(self.image_processor)
        image_processor._processor_class = type(self).__name__
        files = list(image_processor.save_pretrained(directory))
        if self.tokenizer is not None:
            files.extend(str(path) for path in self.tokenizer.save_pretrained(str(directory)))
        return files

    def __repr__(self) -> str:
        return (f"{type(self).__name__}:\n- image_processor: {self.image_processor!r}\n"
                f"- tokenizer: {self.tokenizer!r}")
