"""Output containers shared by the three backends.

They behave like transformers' ``ModelOutput``: attribute access, key access, and tuple access
(``out[0]``, ``out.to_tuple()``) over the fields that are not ``None``, in declaration order; in tuples a nested
output is a tuple as well (tuples all the way down, as ``return_dict=False`` gives them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ModelOutput(OrderedDict):
    """An ordered mapping of output fields; ``None`` fields are left out of keys and tuples."""

    _fields: tuple = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if len(args) > 1:
            raise TypeError(f"{type(self).__name__} takes at most one positional argument (a mapping or an "
                            f"iterable of (key, value) pairs), got {len(args)}")
        if args:  # as dict(...): frameworks (tf.nest, pytree flattening) rebuild outputs this way
            kwargs = {**dict(args[0]), **kwargs}
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected fields {sorted(unknown)}")
        for name in self._fields:
            value = kwargs.get(name)
            if value is not None:
                super().__setitem__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name in type(self)._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._fields:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        if value is None:
            self.pop(key, None)
            return
        # keep declaration order even when a field is set late
        super().__setitem__(key, value)
        order = [k for k in self._fields if k in self]
        for k in order:
            self.move_to_end(k)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def __iter__(self):
        return super().__iter__()

    def __reduce__(self):
        return (_rebuild, (type(self), dict(self)))

    def to_tuple(self) -> tuple:
        """The non-``None`` fields, in declaration order; nested outputs (``CLIPOutput``'s ``text_model_output`` and
        ``vision_model_output``) become tuples too, as transformers' ``CLIPOutput.to_tuple`` gives them."""
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


def _rebuild(cls, data):
    return cls(**data)


def _output(name: str, fields: str, doc: str) -> type:
    return type(name, (ModelOutput,), {"_fields": tuple(fields.split()), "__doc__": doc})


BaseModelOutput = _output(
    "BaseModelOutput", "last_hidden_state hidden_states attentions", "Encoder output.")
BaseModelOutputWithPooling = _output(
    "BaseModelOutputWithPooling", "last_hidden_state pooler_output hidden_states attentions",
    "A tower's output: every token's final state, the pooled state, and optional per-layer states.")
CLIPTextModelOutput = _output(
    "CLIPTextModelOutput", "text_embeds last_hidden_state hidden_states attentions",
    "Text tower with projection: the projected (unnormalised) pooled output and the tower's states.")
CLIPVisionModelOutput = _output(
    "CLIPVisionModelOutput", "image_embeds last_hidden_state hidden_states attentions",
    "Vision tower with projection: the projected (unnormalised) pooled output and the tower's states.")
CLIPOutput = _output(
    "CLIPOutput",
    "loss logits_per_image logits_per_text text_embeds image_embeds text_model_output vision_model_output",
    "The contrastive model's output: similarity logits, normalised embeddings and both towers' outputs.")
ImageClassifierOutput = _output(
    "ImageClassifierOutput", "loss logits hidden_states attentions", "Image classification output.")

__all__ = [
    "ModelOutput", "BaseModelOutput", "BaseModelOutputWithPooling", "CLIPTextModelOutput",
    "CLIPVisionModelOutput", "CLIPOutput", "ImageClassifierOutput",
]
