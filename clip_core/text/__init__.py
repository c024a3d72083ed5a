"""The parts of CLIP's tokenizers, one concern a module (the public classes live in :mod:`clip_core.tokenizer`).

- :mod:`.cleaning`: OpenAI's text cleanup (ftfy, HTML unescaping, whitespace, lowercase) and its regex split.
- :mod:`.fast_path`: which strings may skip Python cleanup and go whole to the Rust pipeline, decided per string.
- :mod:`.bpe`: byte-level BPE with ``</w>``, the bytes <-> printable characters table, the vocabulary formats.
- :mod:`.files`: transformers' tokenizer folder: finding the vocabulary and settings, writing them back.
- :mod:`.batching`: a call's inputs and outputs: argument checks, truncation and padding as transformers does them.
- :mod:`.tokenizer_base`: the base class the two tokenizers share (everything but turning strings into BPE ids).

Import the tokenizers from :mod:`clip_core.tokenizer` (or :mod:`clip_core`); these modules are internal.
"""
