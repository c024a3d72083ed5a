"""Texts per second of triclip's CLIP tokenizers against transformers' on OpenAI's tokenizer corpus.

Run as ``python -m bench.bench_tokenizer [--repeats N]``. Contenders: triclip ``CLIPTokenizerFast`` and
``CLIPTokenizer``, transformers 4.57 ``CLIPTokenizerFast`` and ``CLIPTokenizer`` (when installed), all in one process,
alternating, after a warm-up; the median over repeats is reported. The workload is the usual CLIP call on the whole
corpus (~2,000 strings in one batch): ``padding="max_length", truncation=True, max_length=77, return_tensors="np"``.
``exact`` counts the corpus strings whose ids (without special tokens) equal OpenAI's. ``run(repeats)`` returns the
rows for a harness to reuse; ``ratio_vs_hf_fast`` above 1 means faster than transformers' fast tokenizer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

CALL = dict(padding="max_length", truncation=True, max_length=77, return_tensors="np")


def _shared_dir() -> Path:
    return Path(os.environ.get("TRICLIP_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def corpus() -> list[dict]:
    """OpenAI's tokenizer corpus: ``[{"text": ..., "ids": [...]}, ...]``."""
    with open(_shared_dir() / "fixtures" / "tokenizer_corpus_openai.json", encoding="utf-8") as handle:
        return json.load(handle)


def contenders(vocab_dir: Path) -> dict:
    """Name -> tokenizer, ours first, then transformers' when it is installed."""
    from clip_core.tokenizer import CLIPTokenizer, CLIPTokenizerFast

    found = {
        "triclip CLIPTokenizerFast": CLIPTokenizerFast.from_pretrained(vocab_dir),
        "triclip CLIPTokenizer": CLIPTokenizer.from_pretrained(vocab_dir),
    }
    try:
        import transformers
    except ImportError:
        return found
    for cls in (transformers.CLIPTokenizerFast, transformers.CLIPTokenizer):
        found[f"transformers {cls.__name__}"] = cls.from_pretrained(vocab_dir, model_max_length=77)
    return found


def run(repeats: int = 5) -> list[dict]:
    """Time every contender; one row per contender: name, texts, exact, median_s, texts_per_s, ratio_vs_hf_fast."""
    entries = corpus()
    texts = [e["text"] for e in entries]
    expected = [e["ids"] for e in entries]
    tokenizers = contenders(_shared_dir() / "data" / "clip-bpe")
    exact = {}
    for name, tok in tokenizers.items():  # warm-up, and agreement with OpenAI
        tok(texts, **CALL)
        ids = tok(texts, add_special_tokens=False, verbose=False)["input_ids"]
        exact[name] = sum(a == b for a, b in zip(ids, expected))
    times: dict[str, list[float]] = {name: [] for name in tokenizers}
    for _ in range(repeats):
        for name, tok in tokenizers.items():
            start = time.perf_counter()
            tok(texts, **CALL)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    reference = medians.get("transformers CLIPTokenizerFast")
    return [
        {
            "name": name,
            "texts": len(texts),
            "exact": f"{exact[name]}/{len(texts)}",
            "median_s": medians[name],
            "texts_per_s": len(texts) / medians[name],
            "ratio_vs_hf_fast": (reference / medians[name]) if reference else None,
        }
        for name in tokenizers
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(args.repeats)
    print(f"{'tokenizer':<32}{'exact':>12}{'texts/s':>12}{'median ms':>12}{'vs HF fast':>12}")
    for row in rows:
        ratio = "" if row["ratio_vs_hf_fast"] is None else f"{row['ratio_vs_hf_fast']:.2f}x"
        print(f"{row['name']:<32}{row['exact']:>12}{row['texts_per_s']:>12.0f}{row['median_s'] * 1e3:>12.1f}"
              f"{ratio:>12}")


if __name__ == "__main__":
    main()
