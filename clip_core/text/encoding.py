"""A tokenizer call as transformers 4.57 shapes it: ``__call__``, ``encode_plus``, ``batch_encode_plus``,
``prepare_for_model`` and ``pad``.

:class:`EncodingAPI` is a mixin of the tokenizer base class. Every entry point comes down to one path: each example
(a string, a list of words with ``is_split_into_words``, or token ids) becomes ids (texts split on added tokens
first, then the subclass's ``_encode_texts``), each example is truncated and given its special tokens
(``prepare_for_model``, transformers' ``truncate_sequences`` with ``stride`` and overflowing tokens), and the batch is
padded (``pad``) and turned into tensors. The fast class returns overflowing windows as extra rows with
``overflow_to_sample_mapping`` and can return ``offset_mapping``, as transformers' fast tokenizers do; the slow class
returns ``overflowing_tokens`` / ``num_truncated_tokens`` per example, as transformers' slow tokenizers do.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ..tensors import BatchEncoding, check_return_tensors, estimate_bytes
from .alignment import AlignedEncoding, annotate, word_ids_of
from .batching import as_batch, check_side, is_int, resolve_strategies, to_python, truncate_pair

NO_PAD_TOKEN = (
    "Asking to pad but the tokenizer does not have a padding token. Please select a token to use as `pad_token` "
    "`(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad token via "
    "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`."
)
#: Largest batch a call may pad to (ids, mask, ... as int64): beyond it the call fails before allocating.
MAX_PADDED_BYTES = 8 * 1024**3


class NoTextError(TypeError, ValueError):
    """No text given: a ValueError as in transformers, and a TypeError (text=None is not a string)."""


class EncodingAPI:
    """transformers' encoding entry points over ``_text_ids`` (strings -> ids) of the tokenizer base class."""

    is_fast = False
    pad_token_type_id = 0

    # ---------------------------------------------------------------- entry points

    def __call__(self, text: Any = None, text_pair: Any = None, text_target: Any = None,
                 text_pair_target: Any = None, **kwargs: Any) -> BatchEncoding:
        """Tokenize one string or a batch (a list of strings; lists of words with ``is_split_into_words``),
        optionally with a second sequence per item; arguments as transformers 4.57's tokenizers take them
        (``padding``, ``truncation``, ``max_length``, ``stride``, ``pad_to_multiple_of``, ``padding_side``,
        ``return_tensors`` ("np", "pt", "tf", "jax"), ``return_attention_mask``, ``return_token_type_ids``,
        ``return_special_tokens_mask``, ``return_overflowing_tokens``, ``return_offsets_mapping`` (fast),
        ``return_length``, ``split_special_tokens``, ``verbose``). ``text_target`` adds ``labels``."""
        if text is None and text_target is None:
            raise NoTextError("You need to specify either `text` or `text_target` (got text=None).")
        out = None
        if text is not None:
            out = self._call_one(text, text_pair, **kwargs)
        if text_target is not None:
            target = self._call_one(text_target, text_pair_target, **kwargs)
            if out is None:
                return target
            out["labels"] = target["input_ids"]
        return out

    def _call_one(self, text: Any, text_pair: Any, is_split_into_words: bool = False, **kwargs: Any):
        batched = self._batched(text, is_split_into_words, "text")
        if text_pair is not None:
            pair_batched = self._batched(text_pair, is_split_into_words, "text_pair")
            if pair_batched != batched:
                raise TypeError("text and text_pair must both be strings or both be lists of strings")
            if batched and len(text_pair) != len(text):
                raise ValueError(f"text has {len(text)} items but text_pair has {len(text_pair)}")
        firsts = list(text) if batched else [text]
        pairs = (list(text_pair) if batched else [text_pair]) if text_pair is not None else None
        return self._encode(firsts, pairs, batched, is_split_into_words=is_split_into_words, **kwargs)

    @staticmethod
    def _batched(text: Any, split_words: bool, name: str) -> bool:
        if split_words:
            if not isinstance(text, (list, tuple)):
                raise TypeError(f"{name} must be a list of words (or a list of lists) with is_split_into_words=True")
            batched = len(text) > 0 and isinstance(text[0], (list, tuple))
            for i, item in enumerate(text if batched else [text]):
                as_batch(list(item), f"{name}[{i}]" if batched else name)
            return batched
        return as_batch(text, name)[0]

    def encode_plus(self, text: Any, text_pair: Any = None, **kwargs: Any) -> BatchEncoding:
        """One example (a string, a list of words with ``is_split_into_words``, or token ids) -> BatchEncoding."""
        pair = [text_pair] if text_pair is not None else None
        return self._encode([text], pair, False, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs: Sequence[Any], **kwargs: Any) -> BatchEncoding:
        """A batch of examples or (first, second) pairs -> BatchEncoding (transformers' ``batch_encode_plus``)."""
        if not isinstance(batch_text_or_text_pairs, (list, tuple)):
            raise TypeError("batch_text_or_text_pairs has to be a list or a tuple "
                            f"(got {type(batch_text_or_text_pairs).__name__})")
        split_words = kwargs.get("is_split_into_words", False)
        firsts, pairs = [], []
        for item in batch_text_or_text_pairs:
            is_pair = isinstance(item, (list, tuple)) and len(item) == 2 and not is_int(item[0]) and (
                not split_words or isinstance(item[0], (list, tuple)))
            firsts.append(item[0] if is_pair else item)
            pairs.append(item[1] if is_pair else None)
        has_pairs = any(p is not None for p in pairs)
        return self._encode(firsts, pairs if has_pairs else None, True, **kwargs)

    def encode(self, text: Any, text_pair: Any = None, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        """The ``input_ids`` of one example (a string, words with ``is_split_into_words``, or ids)."""
        if isinstance(text, (list, tuple)) and text and isinstance(text[0], (list, tuple)):
            raise TypeError("encode() takes one example, got a list of lists; call the tokenizer for batches")
        if isinstance(text, (list, tuple)) and not kwargs.get("is_split_into_words") and not all(
                is_int(t) for t in text):
            raise TypeError("encode() takes one string, got a list; call the tokenizer for batches")
        if text_pair is not None and not isinstance(text_pair, (str, list, tuple)):
            raise TypeError(f"encode() takes text_pair as a string, got {type(text_pair).__name__}")
        kwargs.setdefault("return_attention_mask", False)
        return self.encode_plus(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # ---------------------------------------------------------------- examples -> ids

    def _example_ids(self, items: list[Any], split_words: bool, split_special: bool, name: str) -> list[list[int]]:
        """Ids of each example: strings (split on added tokens), lists of words, lists of tokens or ids."""
        strings, where = [], []
        out: list[Any] = [None] * len(items)
        for i, item in enumerate(items):
            if isinstance(item, str):
                strings.append(item)
                where.append((i, None))
            elif isinstance(item, (list, tuple)) and split_words:
                for word in as_batch(list(item), f"{name}[{i}]")[1]:
                    strings.append(word)
                    where.append((i, True))
                out[i] = []
            elif isinstance(item, (list, tuple)) and all(is_int(t) for t in item):
                out[i] = [int(t) for t in item]
            elif isinstance(item, (list, tuple)) and all(isinstance(t, str) for t in item):
                out[i] = [self._token_to_id(t) for t in item]  # a list of tokens, as transformers' get_input_ids
            else:
                raise TypeError(f"{name} (index {i}) must be a string, a list of strings or a list of ints, "
                                f"got {type(item).__name__}")
        for (i, word), ids in zip(where, self._text_ids(strings, split_special)):
            if word:
                out[i].extend(ids)
            else:
                out[i] = ids
        return out

    # ---------------------------------------------------------------- the one path

    def _encode(self, firsts: list[Any], pairs: list[Any] | None, batched: bool, add_special_tokens: bool = True,
                padding: Any = False, truncation: Any = None, max_length: int | None = None, stride: int = 0,
                is_split_into_words: bool = False, pad_to_multiple_of: int | None = None,
                padding_side: str | None = None, return_tensors: Any = None,
                return_token_type_ids: bool | None = None, return_attention_mask: bool | None = None,
                return_overflowing_tokens: bool = False, return_special_tokens_mask: bool = False,
                return_offsets_mapping: bool = False, return_length: bool = False, verbose: bool = True,
                split_special_tokens: bool | None = None, prepend_batch_axis: bool = False,
                _alignment: bool = False, **kwargs: Any) -> BatchEncoding:
        if self.is_fast and not _alignment:  # what the alignment methods re-run on first use (alignment.py)
            call = dict(firsts=firsts, pairs=pairs, batched=batched, add_special_tokens=add_special_tokens,
                        padding=padding, truncation=truncation, max_length=max_length, stride=stride,
                        is_split_into_words=is_split_into_words, pad_to_multiple_of=pad_to_multiple_of,
                        padding_side=padding_side, return_overflowing_tokens=return_overflowing_tokens,
                        return_offsets_mapping=True, verbose=False, split_special_tokens=split_special_tokens)
        return_tensors = getattr(return_tensors, "value", return_tensors)
        check_return_tensors(return_tensors)
        if kwargs:
            self._warn_once("unknown-kwargs", f"Keyword arguments {kwargs} not recognized.")
        if return_offsets_mapping and not self.is_fast:
            raise NotImplementedError(
                "return_offset_mapping is not available when using Python tokenizers. To use this feature, change "
                "your tokenizer to one deriving from transformers.PreTrainedTokenizerFast.")
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, verbose)
        if padding_side is not None:
            check_side("padding_side", padding_side)
        if not is_int(stride) or stride < 0:
            raise ValueError(f"stride must be an int >= 0, got {stride!r}")
        split_special = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        ids = self._example_ids(firsts, is_split_into_words, split_special, "text")
        pair_ids = self._example_ids(pairs, is_split_into_words, split_special, "text_pair") if pairs else None
        offsets = pair_offsets = None
        if return_offsets_mapping:
            offsets = self._offsets(firsts, is_split_into_words, split_special)
            pair_offsets = self._offsets(pairs, is_split_into_words, split_special) if pairs else None
        if _alignment:  # offsets (start, end, word, sequence): truncation and windows carry them along
            offsets = annotate(offsets, word_ids_of(self, firsts, ids, is_split_into_words, split_special), 0)
            if pairs:
                pair_offsets = annotate(pair_offsets, word_ids_of(self, pairs, pair_ids, is_split_into_words,
                                                                  split_special), 1)
        options = dict(add_special_tokens=add_special_tokens, truncation=trunc, max_length=max_length, stride=stride,
                       return_token_type_ids=return_token_type_ids, return_special_tokens_mask=return_special_tokens_mask,
                       return_overflowing_tokens=return_overflowing_tokens, verbose=verbose)
        if self.is_fast and trunc != "do_not_truncate" and max_length is not None:
            self._check_stride(max_length, stride)
        rows: list[dict[str, Any]] = []
        main_lengths = []  # of each example's first row: the fast class pads to the longest of these
        for n in range(len(ids)):
            second = pair_ids[n] if pair_ids else None
            examples = [(ids[n], second, offsets[n] if offsets else None,
                         pair_offsets[n] if pair_offsets and second is not None else None)]
            row_options = options
            if self.is_fast and trunc != "do_not_truncate" and max_length is not None:  # the Rust rule
                examples = self._windows(*examples[0], trunc, max_length, stride, add_special_tokens)
                examples = examples if return_overflowing_tokens else examples[:1]
                row_options = dict(options, truncation="do_not_truncate")
            for first, pair, off, pair_off in examples:
                kept: list[tuple[int, int | None]] = []
                row = self._prepare(first, pair, **row_options, kept=kept)
                if self.is_fast and return_overflowing_tokens:
                    row.pop("overflowing_tokens", None)
                    row.pop("num_truncated_tokens", None)
                    row["overflow_to_sample_mapping"] = n
                if return_offsets_mapping:
                    row["offset_mapping"] = self._row_offsets(off, pair_off, *kept[0], add_special_tokens)
                rows.append(row)
            main_lengths.append(len(rows[-len(examples)]["input_ids"]))
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        lengths = [len(r["input_ids"]) for r in rows]
        target = None
        if pad == "longest":
            target = max(main_lengths if self.is_fast else lengths, default=0)
        elif pad == "max_length":
            target = max_length
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        if target is not None:
            columns = 2 + bool(return_special_tokens_mask) + bool(return_token_type_ids) + 2 * bool(
                return_offsets_mapping)
            estimate_bytes(len(rows) * max(target, max(lengths, default=0)) * columns * 8, MAX_PADDED_BYTES,
                           f"padding {len(rows)} sequence(s) to {target} tokens")
        single = not batched and not (self.is_fast and return_overflowing_tokens)  # the fast class: always a batch
        for row in rows:
            unpadded = len(row["input_ids"])
            self._pad_one(row, target, padding_side, return_attention_mask)
            if _alignment:
                continue
            if return_length:  # the fast class counts after padding (one sequence: in a list); the slow class
                padded = len(row["input_ids"])  # counts a batch before padding, one sequence after it
                row["length"] = ([padded] if single else padded) if self.is_fast else (padded if single else unpadded)
        if _alignment:
            return rows
        if single:
            out = AlignedEncoding(rows[0])
        else:
            keys = list(rows[0]) if rows else ["input_ids"] + (["attention_mask"] if return_attention_mask else [])
            out = AlignedEncoding({k: [r[k] for r in rows] for k in keys})
        if self.is_fast:
            out.__dict__["_alignment_source"] = (self, call)
        if return_tensors:
            out.convert_to_tensors(return_tensors, prepend_batch_axis=single)
        return out

    def _strategies(self, padding: Any, truncation: Any, max_length: Any, pad_to_multiple_of: Any, verbose: bool):
        pad, trunc, max_length = resolve_strategies(padding, truncation, max_length, verbose, self.model_max_length,
                                                    self._warn_once)
        if pad_to_multiple_of is not None and not (is_int(pad_to_multiple_of) and pad_to_multiple_of > 0):
            raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
        if pad != "do_not_pad" and (self.pad_token is None or self.pad_token_id is None or self.pad_token_id < 0):
            raise ValueError(NO_PAD_TOKEN)
        if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of is not None
                and max_length is not None and max_length % pad_to_multiple_of):
            raise ValueError("Truncation and padding are both activated but truncation length "
                             f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return pad, trunc, max_length

    def _check_stride(self, max_length: int, stride: int) -> None:
        """The fast tokenizers' check when truncation is set: the stride must fit in ``max_length`` less a single
        sequence's special tokens (whether or not they are added; no check below that, as the Rust library)."""
        room = max_length - self.num_special_tokens_to_add(False)
        if 0 <= room < stride:
            raise ValueError(
                f"tokenizer stride set to {stride}, which is greater than or equal to its effective max length of "
                f"{room} (= {max_length} original max length - {self.num_special_tokens_to_add(False)} added special "
                "tokens), ")

    def _windows(self, ids, pair, off, pair_off, trunc, max_length, stride, add_special):
        """The fast tokenizers' truncation (the Rust library's rule): the kept part of the example first, then,
        for ``return_overflowing_tokens``, every overflowing window (overlapping by ``stride``) of the truncated
        sequence(s); a pair truncated at both ends gives every combination of their windows, in the Rust order."""
        budget = max_length - (self.num_special_tokens_to_add(pair is not None) if add_special else 0)
        total = len(ids) + len(pair or [])
        if budget != 0 and (budget >= total or budget < 0):  # below the special tokens the Rust subtraction wraps
            return [(ids, pair, off, pair_off)]
        keep, keep_pair = len(ids), (len(pair) if pair is not None else None)
        if budget == 0:  # everything overflows
            keep, keep_pair = 0, (0 if pair is not None else None)
        elif pair is None and trunc == "only_second":
            raise ValueError("Truncation error: Second sequence not provided")
        elif pair is None:
            keep = budget
        elif trunc == "longest_first":
            keep, keep_pair = _longest_first_lengths(len(ids), len(pair), budget)
        else:
            target = len(pair) if trunc == "only_second" else len(ids)
            if target <= total - budget:
                raise ValueError("Truncation error: Sequence to truncate too short to respect the provided "
                                 "max_length")
            if trunc == "only_second":
                keep_pair = target - (total - budget)
            else:
                keep = target - (total - budget)
        left = self.truncation_side == "left"
        firsts = _rust_windows(len(ids), keep, stride, left)
        seconds = _rust_windows(len(pair), keep_pair, stride, left) if pair is not None else [None]

        def part(seq, seq_off, span):
            if span is None:
                return seq, seq_off
            return seq[span[0]:span[1]], (seq_off[span[0]:span[1]] if seq_off is not None else None)

        order = [(firsts[0], seconds[0])]
        for a in firsts[1:]:
            order += [(a, seconds[0])] + [(a, b) for b in seconds[1:]]
        order += [(firsts[0], b) for b in seconds[1:]]
        out = []
        for a, b in order:
            (first, first_off), (second, second_off) = part(ids, off, a), part(pair, pair_off, b)
            out.append((first, second, first_off, second_off))
        return out

    def prepare_for_model(self, ids: list[int], pair_ids: list[int] | None = None, add_special_tokens: bool = True,
                          padding: Any = False, truncation: Any = None, max_length: int | None = None,
                          stride: int = 0, pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                          return_tensors: Any = None, return_token_type_ids: bool | None = None,
                          return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                          return_special_tokens_mask: bool = False, return_length: bool = False,
                          verbose: bool = True, prepend_batch_axis: bool = False, **kwargs: Any) -> BatchEncoding:
        """Ids of one example (and its pair) -> model inputs: truncation, special tokens, padding, tensors."""
        check_return_tensors(getattr(return_tensors, "value", return_tensors))
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, verbose)
        row = self._prepare(list(ids), None if pair_ids is None else list(pair_ids), add_special_tokens, trunc,
                            max_length, stride, return_token_type_ids, return_special_tokens_mask,
                            return_overflowing_tokens, verbose)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        target = {"longest": len(row["input_ids"]), "max_length": max_length}.get(pad)
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        self._pad_one(row, target, padding_side, return_attention_mask)
        if return_length:
            row["length"] = len(row["input_ids"])
        out = BatchEncoding(row)
        return out.convert_to_tensors(return_tensors, prepend_batch_axis=prepend_batch_axis) if return_tensors else out

    def _prepare(self, ids, pair_ids, add_special_tokens, truncation, max_length, stride, return_token_type_ids,
                 return_special_tokens_mask, return_overflowing_tokens, verbose, kept=None):
        pair = pair_ids is not None
        if return_token_type_ids and not add_special_tokens:
            raise ValueError(
                "Asking to return token_type_ids while setting add_special_tokens to False results in an undefined "
                "behavior. Please set add_special_tokens to True or set return_token_type_ids to None.")
        if return_overflowing_tokens and truncation == "longest_first" and pair and not self.is_fast:
            raise ValueError(
                "Not possible to return overflowing tokens for pair of sequences with the `longest_first`. Please "
                "select another truncation strategy than `longest_first`, for instance `only_second` or `only_first`.")
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        total = len(ids) + (len(pair_ids) if pair else 0) + (self.num_special_tokens_to_add(pair) if add_special_tokens
                                                            else 0)
        overflow: list[int] = []
        if truncation != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids, overflow = truncate_pair(ids, pair_ids, total - max_length, truncation,
                                                    self.truncation_side == "right", stride)
        if kept is not None:  # the lengths kept by truncation (for the offsets)
            kept.append((len(ids), len(pair_ids) if pair else None))
        row: dict[str, Any] = {}
        if return_overflowing_tokens:
            row["overflowing_tokens"] = overflow
            row["num_truncated_tokens"] = total - (max_length or 0)
        if add_special_tokens:
            row["input_ids"] = self.build_inputs_with_special_tokens(ids, pair_ids)
            types = self.create_token_type_ids_from_sequences(ids, pair_ids)
        else:
            row["input_ids"] = list(ids) + (list(pair_ids) if pair else [])
            types = [0] * len(row["input_ids"])
        if return_token_type_ids:
            row["token_type_ids"] = types
        if return_special_tokens_mask:
            row["special_tokens_mask"] = (self.get_special_tokens_mask(ids, pair_ids) if add_special_tokens
                                          else [0] * len(row["input_ids"]))
        if max_length is None and verbose:
            self._warn_too_long(len(row["input_ids"]))
        return row

    def _row_offsets(self, off, pair_off, n_first, n_pair, add_special):
        """Character offsets of one row's tokens ((0, 0) for special tokens), after truncation kept ``n_first``
        tokens of the first sequence and ``n_pair`` of the pair."""
        first = off[:n_first] if self.truncation_side == "right" else off[len(off) - n_first:]
        second = None
        if n_pair is not None and pair_off is not None:
            second = pair_off[:n_pair] if self.truncation_side == "right" else pair_off[len(pair_off) - n_pair:]
        if not add_special:
            return list(first) + list(second or [])
        zero = [(0, 0)]
        if second is None:
            return zero + list(first) + zero
        return zero + list(first) + zero + zero + list(second) + zero

    # ---------------------------------------------------------------- padding

    def _pad_one(self, row: dict[str, Any], target: int | None, padding_side: str | None, attention: bool) -> None:
        """transformers' ``_pad`` on one example (lists), in place."""
        length = len(row["input_ids"])
        if attention and "attention_mask" not in row:
            row["attention_mask"] = [1] * length
        if not attention:
            row.pop("attention_mask", None)
        if target is None or length >= target:
            return
        n = target - length
        left = (padding_side or self.padding_side) == "left"
        fills = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": self.pad_token_type_id,
                 "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        for key, fill in fills.items():
            if key in row:
                row[key] = [fill] * n + list(row[key]) if left else list(row[key]) + [fill] * n

    def pad(self, encoded_inputs: Any, padding: Any = True, max_length: int | None = None,
            pad_to_multiple_of: int | None = None, padding_side: str | None = None,
            return_attention_mask: bool | None = None, return_tensors: Any = None, verbose: bool = True
            ) -> BatchEncoding:
        """Pad one encoding or a batch (a dict of lists, a list of dicts, or tensors) as transformers' ``pad``
        (the fast class says once that calling the tokenizer with ``padding`` is faster, as transformers' does;
        ``deprecation_warnings["Asking-to-pad-a-fast-tokenizer"] = True`` silences it, as there)."""
        if self.is_fast and not os.environ.get("TRANSFORMERS_NO_ADVISORY_WARNINGS"):
            self._warn_once(
                "Asking-to-pad-a-fast-tokenizer",
                f"You're using a {type(self).__name__} tokenizer. Please note that with a fast tokenizer, using the "
                "`__call__` method is faster than using a method to encode the text followed by a call to the `pad` "
                "method to get a padded encoding.")
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {k: [example[k] for example in encoded_inputs] for k in encoded_inputs[0]}
        if not isinstance(encoded_inputs, Mapping):
            raise TypeError(f"pad() takes an encoding or a list of encodings, got {type(encoded_inputs).__name__}")
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise ValueError("You should supply an encoding or a list of encodings to this method that includes "
                             f"{main}, but you provided {list(encoded_inputs.keys())}")
        if main != "input_ids":
            encoded_inputs = {("input_ids" if k == main else k): v for k, v in encoded_inputs.items()}
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        required = encoded_inputs["input_ids"]
        if required is None or (hasattr(required, "__len__") and len(required) == 0):
            out = BatchEncoding(encoded_inputs)
            if return_attention_mask:
                out["attention_mask"] = []
            return out
        if return_tensors is None:
            sample = required[0] if isinstance(required, (list, tuple)) else required
            if isinstance(sample, (list, tuple)) and sample:
                sample = sample[0]
            kind = type(sample).__module__.split(".")[0]
            return_tensors = {"torch": "pt", "tensorflow": "tf", "numpy": "np", "jax": "jax", "jaxlib": "jax"}.get(
                kind) if not isinstance(sample, (int, list, tuple)) else None
        data = {k: to_python(v) for k, v in encoded_inputs.items()}
        pad, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of, verbose)
        single = not (data["input_ids"] and isinstance(data["input_ids"][0], (list, tuple)))
        rows = [data] if single else [{k: v[i] for k, v in data.items()} for i in range(len(data["input_ids"]))]
        target = {"longest": max(len(r["input_ids"]) for r in rows), "max_length": max_length}.get(pad)
        if target is not None and pad_to_multiple_of and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        for row in rows:
            self._pad_one(row, target, padding_side, return_attention_mask)
        data = rows[0] if single else {k: [r[k] for r in rows] for k in rows[0]}
        out = BatchEncoding({(main if k == "input_ids" else k): v for k, v in data.items()})
        return out.convert_to_tensors(return_tensors) if return_tensors else out


def _longest_first_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """How many ids of each sequence of a pair the Rust "longest_first" rule keeps within ``budget``: the shorter
    whole if the longer can fill the rest, else half each (the extra one to the longer; to the second on a tie)."""
    short, long_ = min(n1, n2), max(n1, n2)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (long_, short) if n1 > n2 else (short, long_)


def _rust_windows(length: int, keep: int, stride: int, left: bool) -> list[tuple[int, int]]:
    """The (start, stop) spans the Rust ``Encoding.truncate`` makes of a sequence: the kept part, then the
    overflowing windows of ``keep`` ids, each overlapping the previous by ``stride``, from the truncated side."""
    if keep >= length:
        return [(0, length)]
    if keep == 0:
        return [(0, 0), (0, length)]
    if stride >= keep:
        raise ValueError(f"stride ({stride}) must be smaller than the number of ids truncation keeps ({keep})")
    step, spans = keep - stride, []
    if not left:
        for start in range(0, length, step):
            spans.append((start, min(start + keep, length)))
            if spans[-1][1] == length:
                break
    else:
        for last in range(length - 1, -1, -step):
            spans.append((max(0, last + 1 - keep), last + 1))
            if spans[-1][0] == 0:
                break
    return spans
