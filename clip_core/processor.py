"""CLIPProcessor: CLIP's image processor and tokenizer behind one call, as transformers' ``CLIPProcessor``."""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

from .image_processing import _HUB_KWARGS, _PREPROCESS_ARGS, CLIPImageProcessor
from .images.convert import is_image_like
from .tensors import BatchEncoding, check_return_tensors

__all__ = ["CLIPProcessor"]

# Arguments of ``__call__`` that belong to the image processor; every other keyword goes to the tokenizer.
_IMAGE_KWARGS = frozenset(_PREPROCESS_ARGS) | {"data_format", "input_data_format"}


def _is_tokenizer_key(key: str) -> bool:
    """A keyword that only the tokenizer takes (special tokens, padding and truncation settings, ...)."""
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
        text: Any = None,
        images: Any = None,
        return_tensors: str | None = None,
        padding: bool | str | None = None,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize ``text`` and / or preprocess ``images`` into one ``BatchEncoding``.

        Args:
            text: a string or a list of strings (``input_ids``, ``attention_mask``).
            images: anything :meth:`CLIPImageProcessor.preprocess` takes (``pixel_values``).
                transformers 4.57 puts ``images`` first; images given first positionally are recognised and swapped.
            return_tensors: ``None``, "np", "pt", "tf" or "jax", for every output.
            padding: as the tokenizer's; when not given, ``True`` (pad to the longest text of the batch), so a batch
                of texts makes a rectangular array.
            truncation, max_length: as the tokenizer's.
            **kwargs: image-processor arguments (``do_resize``, ``size``, ``data_format``, ...) go to the image
                processor, the rest to the tokenizer; ``images_kwargs`` / ``text_kwargs`` dicts are accepted too.

        Raises:
            ValueError: when both ``text`` and ``images`` are ``None``, or text is given without a tokenizer.
        """
        if text is not None and not _is_text(text) and _is_images(text) and (images is None or _is_text(images)):
            text, images = images, text  # processor(image) or processor(image, "a caption"): transformers' order
        if text is None and images is None:
            raise ValueError("You have to specify either text or images. Both cannot be None.")
        check_return_tensors(return_tensors)
        image_kwargs = dict(kwargs.pop("images_kwargs", None) or {})
        text_kwargs = dict(kwargs.pop("text_kwargs", None) or {})
        common = dict(kwargs.pop("common_kwargs", None) or {})
        return_tensors = common.pop("return_tensors", return_tensors)
        for key, value in kwargs.items():
            (image_kwargs if key in _IMAGE_KWARGS else text_kwargs)[key] = value

        output = BatchEncoding()
        if text is not None:
            if self.tokenizer is None:
                raise ValueError("this CLIPProcessor has no tokenizer: give tokenizer= to process text")
            text_kwargs.setdefault("padding", True if padding is None else padding)
            if truncation is not None:
                text_kwargs.setdefault("truncation", truncation)
            if max_length is not None:
                text_kwargs.setdefault("max_length", max_length)
            output.update(self.tokenizer(text, return_tensors=return_tensors, **text_kwargs))
        if images is not None:
            output.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
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
