"""Output containers: tuple access nests like transformers' outputs (tuples all the way down), in every backend."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from transformers.modeling_outputs import BaseModelOutputWithPooling as HFPooling
from transformers.models.clip.modeling_clip import CLIPOutput as HFCLIPOutput

from clip_core.config import CLIPConfig
from clip_core.outputs import BaseModelOutputWithPooling, CLIPOutput

CONFIG = dict(
    projection_dim=8,
    text_config=dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=7, bos_token_id=48, eos_token_id=49, pad_token_id=0),
    vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                       image_size=16, patch_size=8),
)
IDS = np.array([[48, 5, 6, 49, 0], [48, 7, 49, 0, 0]], dtype=np.int64)
MASK = (IDS != 0).astype(np.int64)
MASK[:, 0] = 1
PIXELS = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)


def _structure(value):
    """The nesting of tuples with array shapes at the leaves."""
    if isinstance(value, tuple):
        return tuple(_structure(v) for v in value)
    return tuple(np.shape(np.asarray(value)))


def _leaves(value):
    if isinstance(value, tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield np.asarray(value)


def _fields():
    rng = np.random.default_rng(1)
    a = {name: rng.standard_normal(shape) for name, shape in
         [("lpi", (2, 3)), ("lpt", (3, 2)), ("te", (3, 4)), ("ie", (2, 4)), ("t_last", (3, 5, 6)),
          ("t_pool", (3, 6)), ("v_last", (2, 5, 6)), ("v_pool", (2, 6))]}
    states = (a["t_last"], a["t_last"] + 1)
    return a, states


def test_to_tuple_nests_like_transformers():
    a, states = _fields()
    ours = CLIPOutput(logits_per_image=a["lpi"], logits_per_text=a["lpt"], text_embeds=a["te"], image_embeds=a["ie"],
                      text_model_output=BaseModelOutputWithPooling(last_hidden_state=a["t_last"],
                                                                   pooler_output=a["t_pool"], hidden_states=states),
                      vision_model_output=BaseModelOutputWithPooling(last_hidden_state=a["v_last"],
                                                                     pooler_output=a["v_pool"]))
    theirs = HFCLIPOutput(logits_per_image=a["lpi"], logits_per_text=a["lpt"], text_embeds=a["te"],
                          image_embeds=a["ie"],
                          text_model_output=HFPooling(last_hidden_state=a["t_last"], pooler_output=a["t_pool"],
                                                      hidden_states=states),
                          vision_model_output=HFPooling(last_hidden_state=a["v_last"], pooler_output=a["v_pool"]))
    got, expected = ours.to_tuple(), theirs.to_tuple()
    assert _structure(got) == _structure(expected)
    assert isinstance(got[4], tuple) and isinstance(got[5], tuple) and isinstance(got[4][2], tuple)
    for x, y in zip(_leaves(got), _leaves(expected)):
        assert x is y or np.array_equal(x, y)
    # integer access goes through the tuple, key access gives the output object, as in transformers
    assert _structure(ours[4]) == _structure(theirs[4]) and isinstance(ours[4], tuple)
    assert isinstance(ours["text_model_output"], BaseModelOutputWithPooling)
    assert _structure(ours[-2:]) == _structure(theirs[-2:])
    assert list(ours.keys()) == list(theirs.keys())


def _transformers_pt_reference(tmp_path):
    """transformers' PyTorch CLIPModel holding the weights of our seeded PyTorch model, and our model."""
    torch = pytest.importorskip("torch")
    from clip_pt import CLIPModel

    ours = CLIPModel(CLIPConfig(**CONFIG), seed=3).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.CLIPModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        ref = theirs(input_ids=torch.tensor(IDS), pixel_values=torch.tensor(PIXELS), attention_mask=torch.tensor(MASK),
                     return_loss=True, output_hidden_states=True, return_dict=False)
    return ours, ref


def _check(got, ref, tol=1e-4):
    assert _structure(got) == _structure(ref)
    for x, y in zip(_leaves(got), _leaves(ref)):
        np.testing.assert_allclose(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32), atol=tol)


def test_pytorch_tuples_match_transformers(tmp_path):
    import torch

    ours, ref = _transformers_pt_reference(tmp_path)
    args = dict(input_ids=torch.tensor(IDS), pixel_values=torch.tensor(PIXELS), attention_mask=torch.tensor(MASK),
                return_loss=True, output_hidden_states=True)
    with torch.no_grad():
        _check(ours(**args).to_tuple(), ref)
        _check(ours(**args, return_dict=False), ref)


@pytest.mark.slow
def test_tensorflow_tuples_match_transformers(tmp_path):
    pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel

    _, ref = _transformers_pt_reference(tmp_path)
    ours = TFCLIPModel.from_pretrained(tmp_path)
    ref = (np.reshape(ref[0].numpy(), (1,)),) + ref[1:]  # transformers' TF CLIP gives the loss the shape (1,)
    args = dict(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK, return_loss=True, output_hidden_states=True)
    _check(ours(**args).to_tuple(), ref)
    _check(ours(**args, return_dict=False), ref)


@pytest.mark.slow
def test_flax_tuples_match_transformers(tmp_path):
    pytest.importorskip("flax")
    from clip_flax import FlaxCLIPModel

    _, ref = _transformers_pt_reference(tmp_path)
    ours = FlaxCLIPModel.from_pretrained(tmp_path)
    # transformers' Flax CLIPModel has no loss: compare everything after it
    args = dict(attention_mask=MASK, output_hidden_states=True)
    _check(ours(IDS, PIXELS, **args).to_tuple(), ref[1:])
    _check(ours(IDS, PIXELS, **args, return_dict=False), ref[1:])
