"""What only :class:`~clip_core.tokenizer.CLIPTokenizerFast` offers, as transformers' fast tokenizers do:
character offsets of every token (``return_offsets_mapping=True``) and ``train_new_from_iterator``.

Offsets come from the Rust pipeline for strings it tokenizes whole; for strings cleaned in Python (ftfy, HTML
unescaping) each word is found again in the lowercased original text, and a token whose word cleanup changed
gets the empty span where the search stopped (``(i, i)``).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .bpe import END_OF_WORD


class FastExtras:
    """Mixin of the fast tokenizer: offsets and training. Needs the base class and the fast ``_setup``."""

    is_fast = True
    can_save_slow_tokenizer = True

    @property
    def backend_tokenizer(self):
        """The ``tokenizers.Tokenizer`` of whole strings (lowercase, CLIP split, byte-level BPE)."""
        return self._backend

    @backend_tokenizer.setter
    def backend_tokenizer(self, value) -> None:
        self._backend = value

    @property
    def _tokenizer(self):
        return self._backend

    def _offsets(self, items: list[Any], split_words: bool, split_special: bool) -> list[list[tuple[int, int]]]:
        """(start, end) in the original string of each id ``_example_ids`` gives for these examples."""
        out = []
        for item in items:
            if isinstance(item, str):
                out.append(self._string_offsets(item, split_special))
            elif isinstance(item, (list, tuple)) and split_words:
                spans: list[tuple[int, int]] = []
                for word in item:
                    spans.extend(self._string_offsets(word, split_special))
                out.append(spans)
            else:
                out.append([(0, 0)] * len(item))
        return out

    def _string_offsets(self, text: str, split_special: bool) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        cursor = 0
        for piece, added in self.split_on_added(text, split_special):
            start = text.find(piece, cursor)
            start = cursor if start < 0 else start
            if added:
                spans.append((start, start + len(piece)))
            else:
                spans.extend(self._piece_offsets(piece, start, split_special))
            cursor = start + len(piece)
        return spans

    def _piece_offsets(self, piece: str, base: int, split_special: bool) -> list[tuple[int, int]]:
        if self._router.fast_ok(piece):
            encoding = self._backend.encode(piece, add_special_tokens=False)
            return [(base + a, base + b) for a, b in encoding.offsets]
        lowered = piece.lower()
        spans = []
        cursor = 0
        tokenizer = self._plain_word_tokenizer if split_special else self._word_tokenizer
        for word in self._words(piece):
            found = lowered.find(word, cursor)
            encoding = tokenizer.encode([word], is_pretokenized=True, add_special_tokens=False)
            if found < 0 or len(lowered) != len(piece):
                spans.extend((base + cursor, base + cursor) for _ in encoding.ids)
                continue
            spans.extend((base + found + a, base + found + b) for a, b in encoding.offsets)
            cursor = found + len(word)
        return spans

    def train_new_from_iterator(self, text_iterator: Iterable[Any], vocab_size: int, length: int | None = None,
                                new_special_tokens: list[Any] | None = None,
                                special_tokens_map: dict[str, str] | None = None, **kwargs: Any):
        """A new tokenizer of this class, with this one's pipeline and settings and a BPE vocabulary of
        ``vocab_size`` trained on ``text_iterator`` (strings or lists of strings), as transformers' does.

        ``special_tokens_map`` renames special tokens (``{"<|endoftext|>": "<eos>"}``); ``new_special_tokens`` are
        added as additional special tokens.
        """
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        rename = dict(special_tokens_map or {})
        specials = {name: rename.get(token, token) for name, token in self.special_tokens_map.items()
                    if name != "additional_special_tokens"}
        extra = [rename.get(t, t) for t in self.additional_special_tokens]
        extra += [t if isinstance(t, str) else t.content for t in new_special_tokens or ()]
        order = list(dict.fromkeys([*specials.values(), *extra]))
        model = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix=END_OF_WORD, fuse_unk=False))
        model.normalizer = self._backend.normalizer
        model.pre_tokenizer = self._backend.pre_tokenizer
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=order, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      end_of_word_suffix=END_OF_WORD, continuing_subword_prefix="")

        def batches():
            for item in text_iterator:
                yield from ([item] if isinstance(item, str) else item)

        model.train_from_iterator(batches(), trainer=trainer, length=length)
        trained = json.loads(model.to_str())["model"]
        settings = {k: v for k, v in self.init_kwargs.items()
                    if k not in ("vocab_file", "merges_file", "tokenizer_file", "bpe_file", "vocab", "merges",
                                 "unk_token", "bos_token", "eos_token", "pad_token", "sep_token", "cls_token",
                                 "mask_token", "additional_special_tokens")}
        return type(self)(vocab=trained["vocab"], merges=trained["merges"], **specials,
                          additional_special_tokens=extra or None, **settings)
