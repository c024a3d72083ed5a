"""Token / word / character alignment of a fast-tokenizer call, as transformers' ``BatchEncoding`` methods give it
(``tokens``, ``word_ids``, ``sequence_ids``, ``token_to_word``, ``word_to_tokens``, ``char_to_token``, ...).

transformers reads these from the Rust ``Encoding`` objects its fast tokenizers keep with every call. Here nothing
extra is computed while tokenizing (the tokenizer stays as fast): the first alignment question re-runs the same call
with offsets, where every token's offset carries its word and sequence index, and the answers come from that.

Words are transformers' (the Rust pre-tokenizer's): each piece of CLIP's split is one word (its last token ends with
``</w>``), an added token is a word of its own, and with ``is_split_into_words`` each given word is one word.
Word indices count from 0 in each sequence of a pair; special and padding tokens have no word and no sequence.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..tensors import BatchEncoding

END_OF_WORD = "</w>"
NOT_FAST = ("{} is not available when using non-fast tokenizers (e.g. instance of a `XxxTokenizerFast` class).")


class CharSpan(NamedTuple):
    """Characters ``start`` (included) to ``end`` (excluded) of the original string."""
    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens ``start`` (included) to ``end`` (excluded) of the encoded sequence."""
    start: int
    end: int


def word_ids_of(tokenizer: Any, items: list[Any], ids: list[list[int]], split_words: bool,
                split_special: bool) -> list[list[int | None]]:
    """The word index of every token of each example, before truncation (``None`` for examples given as ids)."""
    added = set(tokenizer.added_tokens_encoder.values())
    out = []
    for item, example in zip(items, ids):
        if isinstance(item, str):
            words, word, open_word = [], 0, False
            for index, token in zip(example, tokenizer.convert_ids_to_tokens(example)):
                if index in added:  # a word of its own
                    word += open_word
                    words.append(word)
                    word, open_word = word + 1, False
                    continue
                words.append(word)
                open_word = not token.endswith(END_OF_WORD)
                word += not open_word
            out.append(words)
        elif isinstance(item, (list, tuple)) and split_words:
            counts = [len(x) for x in tokenizer._text_ids(list(item), split_special)]
            out.append([k for k, n in enumerate(counts) for _ in range(n)])
        else:
            out.append([None] * len(example))
    return out


def annotate(offsets: list[list[tuple[int, int]]], words: list[list[int | None]], sequence: int) -> list[list[tuple]]:
    """Offsets ``(start, end)`` -> ``(start, end, word, sequence)``: what truncation and windows carry along."""
    return [[(a, b, w, sequence) for (a, b), w in zip(off, wrd)] for off, wrd in zip(offsets, words)]


class Row:
    """The alignment of one row: tokens, their character spans, words and sequences."""

    __slots__ = ("tokens", "spans", "words", "sequences", "paired")

    def __init__(self, tokens: list[str], offsets: list[tuple], paired: bool) -> None:
        self.tokens = tokens
        self.spans = [(o[0], o[1]) if len(o) == 4 else None for o in offsets]
        self.words = [o[2] if len(o) == 4 else None for o in offsets]
        self.sequences = [o[3] if len(o) == 4 else None for o in offsets]
        self.paired = paired  # a single sequence answers for any sequence_index, as the Rust Encoding does

    def _in(self, s: int | None, sequence: int) -> bool:
        return s is not None and (s == sequence or not self.paired)

    def token_range(self, word: int, sequence: int) -> TokenSpan | None:
        hits = [i for i, (w, s) in enumerate(zip(self.words, self.sequences)) if w == word and self._in(s, sequence)]
        return TokenSpan(hits[0], hits[-1] + 1) if hits else None

    def char_range(self, word: int, sequence: int) -> CharSpan | None:
        span = self.token_range(word, sequence)
        if span is None:
            return None
        return CharSpan(self.spans[span.start][0], self.spans[span.end - 1][1])

    def token_at(self, char: int, sequence: int) -> int | None:
        for i, (span, s) in enumerate(zip(self.spans, self.sequences)):
            if self._in(s, sequence) and span[0] <= char < span[1]:
                return i
        return None

    def word_at(self, char: int, sequence: int) -> int | None:
        for word in dict.fromkeys(w for w, s in zip(self.words, self.sequences) if self._in(s, sequence)
                                  and w is not None):
            span = self.char_range(word, sequence)
            if span is not None and span.start <= char < span.end:
                return word
        return None


class AlignedEncoding(BatchEncoding):
    """A tokenizer's output; from the fast class it also answers transformers' alignment questions (from the slow
    class they raise ``ValueError``, as in transformers)."""

    def _rows(self) -> list[Row]:
        rows = self.__dict__.get("_alignment_rows")
        if rows is None:
            source = self.__dict__.get("_alignment_source")
            if source is None:
                raise ValueError(NOT_FAST)
            tokenizer, call = source
            encoded = tokenizer._encode(**call, _alignment=True)
            paired = call.get("pairs") is not None
            rows = [Row(tokenizer.convert_ids_to_tokens(r["input_ids"]), r["offset_mapping"], paired)
                    for r in encoded]
            self.__dict__["_alignment_rows"] = rows
        return rows

    def _row(self, what: str, batch_index: int = 0) -> Row:
        try:
            rows = self._rows()
        except ValueError:
            raise ValueError(NOT_FAST.format(what)) from None
        return rows[batch_index]

    def _split(self, what: str, first: int, second: int | None) -> tuple[Row, int]:
        """transformers' ``(batch_or_index, index=None)`` convention: one number is an index in row 0."""
        batch_index, index = (0, first) if second is None else (first, second)
        row = self._row(what, batch_index)
        return row, (index + len(row.tokens) if index < 0 else index)

    @property
    def is_fast(self) -> bool:
        """Whether this came from a fast tokenizer (and so answers the alignment methods)."""
        return self.__dict__.get("_alignment_source") is not None

    @property
    def n_sequences(self) -> int | None:
        """1 or 2: the sequences in each row (``None`` from the slow tokenizer)."""
        if not self.is_fast:
            return None
        return 2 if self.__dict__["_alignment_source"][1].get("pairs") is not None else 1

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index`` (special and padding tokens included)."""
        return list(self._row("tokens()", batch_index).tokens)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token: 0 (first sequence), 1 (pair) or ``None`` (special and padding tokens)."""
        return list(self._row("sequence_ids()", batch_index).sequences)

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token: its word index in its sequence, ``None`` for special and padding tokens."""
        return list(self._row("word_ids()", batch_index).words)

    def words(self, batch_index: int = 0) -> list[int | None]:
        """Same as :meth:`word_ids` (transformers' older name)."""
        return list(self._row("words()", batch_index).words)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The sequence (0 or 1) of a token; ``None`` for special tokens."""
        row, index = self._split("token_to_sequence()", batch_or_token_index, token_index)
        return row.sequences[index]

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        """The word of a token; ``None`` for special tokens."""
        row, index = self._split("token_to_word()", batch_or_token_index, token_index)
        return row.words[index]

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        """The characters of a token in its string; ``None`` for special tokens."""
        row, index = self._split("token_to_chars()", batch_or_token_index, token_index)
        span = row.spans[index]
        return None if span is None else CharSpan(*span)

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None,
                       sequence_index: int = 0) -> TokenSpan | None:
        """The tokens of a word of sequence ``sequence_index``; ``None`` when there is no such word."""
        row, word = self._split("word_to_tokens()", batch_or_word_index, word_index)
        return row.token_range(word, sequence_index)

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None,
                      sequence_index: int = 0) -> CharSpan | None:
        """The characters of a word of sequence ``sequence_index``; ``None`` when there is no such word."""
        row, word = self._split("word_to_chars()", batch_or_word_index, word_index)
        return row.char_range(word, sequence_index)

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None,
                      sequence_index: int = 0) -> int | None:
        """The token holding a character of sequence ``sequence_index``'s string; ``None`` for spaces."""
        batch_index, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        return self._row("char_to_token()", batch_index).token_at(char, sequence_index)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None,
                     sequence_index: int = 0) -> int | None:
        """The word holding a character of sequence ``sequence_index``'s string; ``None`` for spaces."""
        batch_index, char = (0, batch_or_char_index) if char_index is None else (batch_or_char_index, char_index)
        return self._row("char_to_word()", batch_index).word_at(char, sequence_index)
