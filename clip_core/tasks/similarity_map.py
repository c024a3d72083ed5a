"""Which image patches match a caption: a patch-text similarity map and its heat-map rendering.

Each patch token's final state goes through the same head as the class token (``post_layernorm`` then
``visual_projection``), is L2-normalised, and is compared with the caption's normalised text embedding by cosine
similarity. The result is a ``[grid_h, grid_w]`` map over the processor's centre crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clip_core.tasks.features import backend_of, forward, l2_normalize, to_numpy


def _head_params(model) -> dict[str, np.ndarray]:
    names = ("vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias", "visual_projection.weight")
    if hasattr(model, "export_state"):
        state = model.export_state()
    elif backend_of(model) == "pt":  # transformers' PyTorch CLIPModel
        state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items() if k in names}
    else:
        raise TypeError(f"patch_similarity needs a triclip model or transformers' PyTorch CLIPModel, got "
                        f"{type(model).__name__}")
    return {k: np.asarray(state[k], dtype=np.float32) for k in names}


def patch_similarity(model, processor, image, text: str) -> np.ndarray:
    """Cosine similarity of every image patch to ``text``: ``[grid_h, grid_w]`` float32 in [-1, 1]."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    enc = processor.tokenizer([text], padding=True, truncation=True, return_tensors="np")
    pixels = processor.image_processor([image], return_tensors="np")["pixel_values"]
    out = forward(model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixels)
    states = to_numpy(out.vision_model_output.last_hidden_state)[0, 1:]  # [patches, hidden]
    text_embed = to_numpy(out.text_embeds)[0]
    params = _head_params(model)
    eps = float(model.config.vision_config.layer_norm_eps)
    mean = states.mean(-1, keepdims=True)
    var = ((states - mean) ** 2).mean(-1, keepdims=True)
    normed = (states - mean) / np.sqrt(var + eps) * params["vision_model.post_layernorm.weight"] \
        + params["vision_model.post_layernorm.bias"]
    patches = l2_normalize(normed @ params["visual_projection.weight"].T)
    sims = patches @ l2_normalize(text_embed)
    patch = int(model.config.vision_config.patch_size)
    h, w = pixels.shape[2] // patch, pixels.shape[3] // patch
    return sims.reshape(h, w).astype(np.float32)


def _colormap(values: np.ndarray) -> np.ndarray:
    """A blue -> cyan -> yellow -> red ramp for values in [0, 1]: ``[..., 3]`` uint8."""
    stops = np.array([[0, 0, 128], [0, 128, 255], [0, 255, 255], [255, 255, 0], [255, 128, 0], [160, 0, 0]],
                     dtype=np.float32)
    pos = np.clip(values, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).round().astype(np.uint8)


def _crop_view(image, processor):
    """The processor's resize + centre crop of ``image`` (what the model saw), as an RGB PIL image."""
    from PIL import Image

    ip = processor.image_processor
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    img = img.convert("RGB")
    size = ip.size.get("shortest_edge", min(ip.size.get("height", 224), ip.size.get("width", 224)))
    crop_h, crop_w = ip.crop_size.get("height", size), ip.crop_size.get("width", size)
    scale = size / min(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    left, top = (img.width - crop_w) // 2, (img.height - crop_h) // 2
    return img.crop((left, top, left + crop_w, top + crop_h))


def render_heatmap(image, similarity: np.ndarray, path: str | os.PathLike, processor=None, alpha: float = 0.5):
    """Write a PNG of ``similarity`` (min-max scaled, upsampled) blended over ``image`` (its centre crop when a
    ``processor`` is given); written to a temporary and renamed. Returns the path."""
    from PIL import Image

    sim = np.asarray(similarity, dtype=np.float32)
    if sim.ndim != 2 or not np.isfinite(sim).all():
        raise ValueError(f"similarity must be a finite [h, w] map, got shape {sim.shape}")
    base = _crop_view(image, processor) if processor is not None else (
        image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8)))
    base = base.convert("RGB")
    span = float(sim.max() - sim.min())
    scaled = (sim - sim.min()) / span if span > 0 else np.zeros_like(sim)
    small = Image.fromarray((scaled * 255).round().astype(np.uint8), mode="L")
    heat = np.asarray(small.resize(base.size, Image.BICUBIC), dtype=np.float32) / 255.0
    colored = Image.fromarray(_colormap(heat), mode="RGB")
    blended = Image.blend(base, colored, float(alpha))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    blended.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
