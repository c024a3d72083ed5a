"""Hostile or huge inputs to the tokenizers and the image processor (issue 20, classes 4, 7, 8, 9).

References: transformers 4.57's slow ``CLIPTokenizer.bpe`` (OpenAI's own quadratic algorithm) for the ids of long
words, hand-built files for the bad vocabularies, PIL's own limit for decompression bombs.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import struct
import zlib

import numpy as np
import pytest

from clip_core import CLIPImageProcessor
from clip_core.tensors import TooLargeError
from clip_core.text.bpe import MAX_VOCAB_BYTES, merge_word
from clip_core.tokenizer import CLIPTokenizer, CLIPTokenizerFast

from tests.conftest import shared_path

CLASSES = (CLIPTokenizer, CLIPTokenizerFast)
VOCAB = ["l", "o", "w", "e", "r", "lo", "l</w>", "w</w>", "r</w>", "low</w>", "er</w>", "<|startoftext|>",
         "<|endoftext|>"]


@pytest.fixture(scope="module")
def vocab_dir():
    return shared_path("data", "clip-bpe")


@pytest.fixture(scope="module")
def slow(vocab_dir):
    return CLIPTokenizer.from_pretrained(vocab_dir)


def _folder(tmp_path, vocab, merges):
    (tmp_path / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return tmp_path


# ---------------------------------------------------------------------------------------------- class 8: slow paths


def test_long_words_give_openais_ids(slow):
    transformers = pytest.importorskip("transformers")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    ref = transformers.CLIPTokenizer.from_pretrained(shared_path("data", "clip-bpe"))
    rng = random.Random(0)
    words = ["".join(rng.choice("aaabcdeeelnorst") for _ in range(n)) for n in (1, 2, 3, 7, 40, 300) for _ in range(20)]
    words += ["a" * 600, "ab" * 300, "".join(rng.choice("abcdeeelnorst") for _ in range(1000))]
    for word in words:
        assert merge_word(word, slow.bpe_ranks) == ref.bpe(word).split(" "), word[:40]


def test_very_long_word_and_symbol_runs_same_ids_in_both_classes(vocab_dir):
    # 200,000 letters (minutes with OpenAI's quadratic BPE) and 200,000 copyright signs (the mojibake pre-check)
    fast = CLIPTokenizerFast.from_pretrained(vocab_dir, model_max_length=10**6)
    slow = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=10**6)
    text = "".join(random.Random(1).choice("abcdefghij") for _ in range(200_000))
    ids = fast(text, add_special_tokens=False)["input_ids"]
    assert ids == slow(text, add_special_tokens=False)["input_ids"]
    assert fast.decode(ids) == text
    signs = "©" * 200_000
    assert fast(signs)["input_ids"] == slow(signs)["input_ids"]


# ---------------------------------------------------------------------------------------------- classes 7 and 9


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_bad_vocabularies_fail_the_same_way_in_both_classes(cls, tmp_path):
    ids = {t: i for i, t in enumerate(VOCAB)}
    cases = {
        "duplicate": ({**ids, "w": ids["l"]}, ["l o"], r"'l' and 'w' have the same id 0"),
        "string id": ({**ids, "w": "2"}, ["l o"], r"id of token 'w' must be an int, got '2'"),
        "negative id": ({**ids, "w": -2}, ["l o"], r"id of token 'w' is negative \(-2\)"),
        "unknown symbol": (ids, ["l o", "x y"], r"merges.txt: merge 2 \(x y\) uses 'x'"),
        "unknown result": (ids, ["o w"], r"merge 1 \(o w\) uses 'ow'"),
        "not an object": ("[1, 2]", ["l o"], "must hold a JSON object"),
        "nested": ("[" * 100_000 + "]" * 100_000, ["l o"], "vocab.json is nested too deeply"),
        "not json": ("{'l': 0}", ["l o"], "vocab.json is not valid JSON"),
    }
    for name, (vocab, merges, message) in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        with pytest.raises(ValueError, match=message) as info:
            cls.from_pretrained(_folder(folder, vocab, merges))
        assert str(folder) in str(info.value), name  # the message names the file


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_gzip_bomb_is_refused_before_decompressing_it_all(cls, tmp_path):
    path = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "wb", compresslevel=9) as handle:  # ~65 KB on disk, 65 MiB decompressed
        chunk = b"a b\n" * (1 << 20)
        for _ in range(MAX_VOCAB_BYTES // len(chunk) + 1):
            handle.write(chunk)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ValueError, match=r"more than 64 MiB once decompressed"):
        cls(bpe_file=path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot be read as gzip"):
        cls(bpe_file=path)


# ---------------------------------------------------------------------------------------------- class 4: sizes


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_huge_padding_requests_fail_fast_saying_how_much_memory(cls, vocab_dir):
    tok = cls.from_pretrained(vocab_dir)
    with pytest.raises(TooLargeError, match=r"padding 1 sequence\(s\) to 1000000000 tokens would need 14.9 GiB"):
        tok("a cat", padding="max_length", max_length=10**9)
    with pytest.raises(TooLargeError, match=r"to 1000000000 tokens"):
        tok(["a cat", "a dog"], padding=True, pad_to_multiple_of=10**9)
    assert len(tok("a cat", padding="max_length", max_length=1000)["input_ids"]) == 1000  # a real size still works


def test_huge_image_outputs_fail_fast_saying_how_much_memory():
    processor = CLIPImageProcessor()
    with pytest.raises(TooLargeError, match=r"\(3, 100000, 100000\) \(float32\) would need 111.8 GiB"):
        processor(np.zeros((8, 8, 3), np.uint8), crop_size=10**5)
    with pytest.raises(TooLargeError, match=r"\(3, 22400000, 224\) \(float32\) would need 56.1 GiB"):
        processor(np.zeros((100_000, 1, 3), np.uint8), do_center_crop=False)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (PIL checks the size when opening, before decoding)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [12_000, 20_000], ids=["pil-warns", "pil-raises"])
def test_decompression_bombs_become_one_clear_error(tmp_path, side):
    import PIL.Image

    path = _png_header_only(tmp_path / f"bomb{side}.png", side, side)
    assert side * side > PIL.Image.MAX_IMAGE_PIXELS  # PIL only warns at 12000^2, raises at 20000^2
    with pytest.raises(ValueError, match=rf"image 0: .*bomb{side}.png' is too large to decode safely.*MAX_IMAGE_PIXELS"):
        CLIPImageProcessor()(str(path))
