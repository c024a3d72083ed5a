"""OpenAI's text cleanup and pre-tokenisation, as ``simple_tokenizer.py`` does them.

1. clean: ``ftfy.fix_text``, ``html.unescape`` twice, strip, collapse whitespace runs (``\\s+``), lowercase
   (:func:`openai_clean`; :func:`finish_clean` for text that ftfy and unescaping provably leave unchanged);
2. split with OpenAI's regex (:data:`CLIP_PATTERN`: the two special tokens, the English contractions, letter runs,
   single digits, runs of anything else; whitespace separates and is dropped).

Whether ftfy can be skipped for a given string is decided in :mod:`clip_core.text.fast_path`.
"""

from __future__ import annotations

import html

import regex

# OpenAI's split pattern, used with re.IGNORECASE on already lowercased text.
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
# The same without the special tokens, for the Rust pipeline (strings containing "<|" never reach it).
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

SPLIT = regex.compile(CLIP_PATTERN, regex.IGNORECASE)
SPLIT_PLAIN = regex.compile(WORD_PATTERN, regex.IGNORECASE)  # split_special_tokens: "<|endoftext|>" as plain text
WHITESPACE = regex.compile(r"\s+")


def load_ftfy():
    """The ``ftfy`` module, or an ImportError that says why CLIP needs it."""
    try:
        import ftfy
    except ImportError as err:  # pragma: no cover - ftfy is a hard dependency
        raise ImportError("CLIP tokenization needs ftfy (pip install ftfy): OpenAI's tokenizer uses it") from err
    return ftfy


def openai_clean(text: str) -> str:
    """OpenAI's cleanup: ``ftfy.fix_text``, HTML-unescape twice, strip, collapse whitespace, lowercase."""
    text = html.unescape(html.unescape(load_ftfy().fix_text(text))).strip()
    return WHITESPACE.sub(" ", text).strip().lower()


def finish_clean(text: str) -> str:
    """The steps of :func:`openai_clean` after ftfy and unescaping, for text those leave unchanged."""
    return WHITESPACE.sub(" ", text.strip()).strip().lower()
