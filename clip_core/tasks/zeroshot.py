"""Zero-shot image classification: class names x prompt templates -> one classifier row per class.

The recipe is OpenAI's (``notebooks/Prompt_Engineering_for_ImageNet.ipynb``): each class's prompts are embedded and
L2-normalised, averaged over the templates, and the mean renormalised. An image's class probabilities are
``softmax(exp(logit_scale) * image_embed @ weights.T)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from clip_core.tasks.features import fixed_shapes, image_features, l2_normalize, logit_scale, text_features

# A few of OpenAI's ImageNet templates; pass your own (a list of strings, each with one ``{}``).
OPENAI_TEMPLATES = (
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a rendering of a {}.", "a cropped photo of the {}.", "a bright photo of a {}.", "a photo of the large {}.",
    "a photo of the small {}.", "a blurry photo of a {}.", "a close-up photo of a {}.", "a good photo of a {}.",
)


def _check_templates(templates) -> tuple[str, ...]:
    if isinstance(templates, str):
        templates = (templates,)
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates is empty: give at least one prompt template such as 'a photo of a {}.'")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"a prompt template must be a string with exactly one '{{}}', got {t!r}")
    return templates


def encode_texts(model, processor, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised text embeddings ``[len(texts), dim]``, in batches (truncated at the model's length)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    # TF and JAX compile one program per shape: pad to the model's length so every batch shares one
    fixed = fixed_shapes(model)
    length = int(model.config.text_config.max_position_embeddings) if fixed else None
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start:start + batch_size]), padding="max_length" if fixed else True,
                        truncation=True, max_length=length, return_tensors="np")
        out.append(text_features(model, enc["input_ids"], enc["attention_mask"]))
    dim = out[0].shape[1] if out else 0
    return l2_normalize(np.concatenate(out) if out else np.zeros((0, dim), np.float32))


def encode_images(model, processor, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
    """L2-normalised image embeddings ``[len(images), dim]`` (PIL images or arrays, through the image processor)."""
    image_processor = getattr(processor, "image_processor", processor)
    out = []
    for start in range(0, len(images), batch_size):
        pixels = image_processor(list(images[start:start + batch_size]), return_tensors="np")["pixel_values"]
        out.append(image_features(model, pixels))
    return l2_normalize(np.concatenate(out))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class ZeroShotClassifier:
    """A zero-shot classifier over ``class_names``, prompted with ``templates`` (each with one ``{}``).

    ``weights`` is ``[n_classes, dim]``, one L2-normalised row per class (its templates' normalised text embeddings
    averaged, then renormalised). Works with a model of any backend.
    """

    def __init__(self, model, processor, class_names: Sequence[str], templates=("a photo of a {}.",),
                 batch_size: int = 256):
        self.class_names = [str(c) for c in class_names]
        if not self.class_names:
            raise ValueError("class_names is empty")
        self.templates = _check_templates(templates)
        self.model, self.processor = model, processor
        prompts = [t.format(c) for c in self.class_names for t in self.templates]
        per_prompt = encode_texts(model, processor, prompts, batch_size)
        per_class = per_prompt.reshape(len(self.class_names), len(self.templates), -1).mean(axis=1)
        self.weights = l2_normalize(per_class)
        self.scale = float(np.exp(logit_scale(model)))

    def logits_from_embeddings(self, image_embeds: np.ndarray) -> np.ndarray:
        """``exp(logit_scale) * normalize(image_embeds) @ weights.T``: ``[n_images, n_classes]``."""
        return self.scale * l2_normalize(image_embeds) @ self.weights.T

    def logits(self, images, batch_size: int = 64) -> np.ndarray:
        """Scaled cosine similarities of ``images`` (a PIL image, an array, or a list of them) to each class."""
        return self.logits_from_embeddings(encode_images(self.model, self.processor, _as_list(images), batch_size))

    def predict(self, images, batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``[n_images, n_classes]`` (softmax of :meth:`logits`)."""
        return _softmax(self.logits(images, batch_size))

    def topk(self, images, k: int = 5, batch_size: int = 64) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable ``(class_name, probability)`` per image, best first."""
        probs = self.predict(images, batch_size)
        k = min(int(k), len(self.class_names))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [[(self.class_names[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def _as_list(images) -> list:
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    return [images]


def _load(image):
    if isinstance(image, str) or hasattr(image, "__fspath__"):
        from PIL import Image

        if str(image).startswith(("http://", "https://")):
            raise ValueError(f"image URLs are not fetched (no network); download it first: {image}")
        with Image.open(image) as img:
            return img.convert("RGB")
    return image


class ZeroShotImageClassification:
    """transformers' ``pipeline("zero-shot-image-classification")`` for a model of any backend.

    ``classifier(image, candidate_labels=[...], hypothesis_template="This is a photo of {}.")`` returns
    ``[{"score": float, "label": str}, ...]`` sorted by score (a list of such lists for a list of images), with
    transformers' numbers: softmax over the labels of the scaled image-text cosine similarities. The default
    template is transformers'.
    """

    def __init__(self, model, processor):
        self.model, self.processor = model, processor

    def __call__(self, image, candidate_labels: Sequence[str] | None = None,
                 hypothesis_template: str = "This is a photo of {}.", **kwargs):
        if "images" in kwargs:
            image = kwargs.pop("images")
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        if image is None:
            raise ValueError("no image given")
        if not candidate_labels:
            raise ValueError("candidate_labels must be a non-empty list of label strings")
        if isinstance(candidate_labels, str):
            candidate_labels = [candidate_labels]
        single = not isinstance(image, (list, tuple))
        images = [_load(i) for i in ([image] if single else image)]
        labels = list(candidate_labels)
        classifier = ZeroShotClassifier(self.model, self.processor, labels, (hypothesis_template,))
        probs = classifier.predict(images)
        results = [[{"score": float(s), "label": label} for s, label in sorted(zip(p.tolist(), labels),
                                                                               key=lambda x: -x[0])]
                   for p in probs]
        return results[0] if single else results
