"""Shared by the task tests (zero-shot, retrieval, embed, index, Ray): a tiny CLIP saved with the real CLIP
vocabulary, and small images drawn with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clip_core.config import CLIPConfig

from tests.conftest import SHARED, shared_path

# Real vocabulary (49408), tiny towers: fast on two CPU cores, yet a transformers checkpoint like any other.
TINY = dict(projection_dim=8,
            text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
            vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                               image_size=32, patch_size=8))


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny random CLIP (safetensors + config) with the CLIP tokenizer and a 32-pixel image processor."""
    shared_path("data", "clip-bpe", "vocab.json")
    from clip_core import CLIPImageProcessor, CLIPProcessor, CLIPTokenizerFast
    from clip_pt import CLIPModel

    CLIPModel(CLIPConfig(**TINY), seed=seed).save_pretrained(folder, overwrite=True)
    processor = CLIPProcessor(CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              CLIPTokenizerFast.from_pretrained(SHARED / "data" / "clip-bpe"))
    processor.save_pretrained(folder)
    return folder


def random_image(rng: np.random.Generator, height: int = 40, width: int = 50) -> Image.Image:
    """A smooth random RGB image (blocks of colour, so JPEG keeps it recognisable)."""
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def write_images(folder: Path, n: int, seed: int = 0, fmt: str = "JPEG") -> list[Path]:
    """``n`` images of varied sizes, half of them in a sub-folder; returns their paths in sorted order."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sub = folder / "sub" if i % 2 else folder
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        random_image(rng, 36 + i % 7, 44 + i % 5).save(path, format=fmt)
        paths.append(path)
    return sorted(paths, key=lambda p: p.relative_to(folder).as_posix())
