"""A small image-caption dataset the project draws itself: coloured shapes of two sizes, captions naming them.

``make_shapes_dataset(out_dir)`` writes PNG images of one shape each (circle, square, triangle; red, green, blue,
yellow; small or large; at a random place on a grey background) with captions such as ``"a small red circle"``, and
two CSV files: ``train.csv`` and ``heldout.csv``. The held-out colour x shape combinations never occur in training
(every colour and every shape does), so a model classifying held-out images zero-shot must compose what it learned.
The same seed writes the same bytes.

``write_model_template(folder)`` writes what a from-scratch run starts from without any download: a small CLIP's
``config.json`` (no weights: ``triclip finetune`` initialises them from its seed) and processor files whose byte-level
BPE vocabulary holds the 256 byte symbols, their word-final forms, one merge chain per caption word and CLIP's two
special tokens (a valid CLIP tokenizer, a few hundred entries instead of 49408).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (235, 210, 40)}
SIZES = {"small": 0.3, "large": 0.65}  # side of the shape's bounding box, as a fraction of the image side
#: colour x shape combinations kept out of training: one per shape, each a different colour
HELDOUT = (("red", "circle"), ("green", "square"), ("blue", "triangle"))


def caption(size: str, colour: str, shape: str) -> str:
    """The caption of one image, e.g. ``"a small red circle"``."""
    return f"a {size} {colour} {shape}"


def class_captions() -> list[str]:
    """Every caption the dataset can hold (size x colour x shape), in a fixed order: the zero-shot classes."""
    return [caption(s, c, h) for s in SIZES for c in COLOURS for h in SHAPES]


def draw_shape(shape: str, colour: str, size: str, image_size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``image_size`` x ``image_size``: the shape on a grey background at a random place."""
    image = Image.new("RGB", (image_size, image_size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    side = max(3, int(round(SIZES[size] * image_size)))
    x0 = int(rng.integers(0, image_size - side + 1))
    y0 = int(rng.integers(0, image_size - side + 1))
    box = (x0, y0, x0 + side - 1, y0 + side - 1)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + (side - 1) / 2, y0), (x0, y0 + side - 1), (x0 + side - 1, y0 + side - 1)], fill=fill)
    return image


def caption_words() -> list[str]:
    """Every word a caption can hold, in a fixed order."""
    return ["a", *SIZES, *COLOURS, *SHAPES]


def _bpe_vocabulary(words) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary layout (byte symbols, their ``</w>`` forms, merges, the two special tokens) with merges that
    build each word left to right."""
    from clip_core.text.bpe import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    for word in sorted(words, key=len, reverse=True):  # longer words' chains first: "green" before "red"'s "re"
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        prefix = parts[0]
        for part in parts[1:]:
            if (prefix, part) not in merges:
                merges.append((prefix, part))
            prefix += part
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens = list(dict.fromkeys(tokens)) + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def write_model_template(folder, image_size: int = 32, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                         projection_dim: int = 64, max_length: int = 12) -> Path:
    """Write a from-scratch starting point into ``folder``: ``config.json`` of a small CLIP (both towers
    ``layers`` x ``hidden_size``, patch 8) and the processor files (the small vocabulary above; images resized and
    cropped to ``image_size``, CLIP's mean and std). Returns ``folder``."""
    from clip_core.config import CLIPConfig
    from clip_core.image_processing import CLIPImageProcessor
    from clip_core.processor import CLIPProcessor
    from clip_core.tokenizer import CLIPTokenizerFast

    folder = Path(folder)
    vocab, merges = _bpe_vocabulary(caption_words())
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=max_length)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=image_size)
    CLIPProcessor(image_processor, tokenizer).save_pretrained(folder)
    tower = dict(hidden_size=hidden_size, intermediate_size=4 * hidden_size, num_hidden_layers=layers,
                 num_attention_heads=heads)
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(projection_dim=projection_dim,
                        text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=max_length,
                                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
                        vision_config=dict(tower, image_size=image_size, patch_size=8))
    config.save_pretrained(folder)
    return folder


def _write_csv(path: Path, rows) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    os.replace(tmp, path)


def make_shapes_dataset(out_dir, n_train: int = 960, n_heldout: int = 120, image_size: int = 32,
                        seed: int = 0) -> dict[str, Path]:
    """Draw the dataset into ``out_dir`` (created if needed): ``images/*.png``, ``train.csv`` (``n_train`` rows of
    the training combinations, cycled so they are balanced) and ``heldout.csv`` (``n_heldout`` rows of the held-out
    combinations :data:`HELDOUT`, both sizes) and ``model/`` (:func:`write_model_template` at ``image_size``).
    Positions are drawn from ``numpy.random.default_rng(seed)``.
    Returns ``{"train": path, "heldout": path, "model": path, "root": out_dir}``."""
    for name, value in (("n_train", n_train), ("n_heldout", n_heldout), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = [(s, c, h) for s in SIZES for c in COLOURS for h in SHAPES]
    train_combos = [x for x in combos if (x[1], x[2]) not in HELDOUT]
    held_combos = [x for x in combos if (x[1], x[2]) in HELDOUT]
    paths = {}
    for split, combos_, n in (("train", train_combos, n_train), ("heldout", held_combos, n_heldout)):
        rows = []
        for i in range(n):
            size, colour, shape = combos_[i % len(combos_)]
            name = f"images/{split}-{i:05d}.png"
            image = draw_shape(shape, colour, size, image_size, rng)
            tmp = root / (name + ".tmp")
            image.save(tmp, format="PNG", optimize=False, compress_level=6)
            os.replace(tmp, root / name)
            rows.append((name, caption(size, colour, shape)))
        paths[split] = root / f"{split}.csv"
        _write_csv(paths[split], rows)
    paths["model"] = write_model_template(root / "model", image_size=image_size)
    paths["root"] = root
    return paths
