"""Issue 15, TensorFlow models: transformers' TF model API (v4.52's TF classes) on triclip's, against transformers
live where transformers has the item."""

from __future__ import annotations

import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
transformers = pytest.importorskip("transformers")

from clip_tf import TFCLIPModel, TFCLIPVisionModel  # noqa: E402
from conformance.bad_inputs import CONFIG, IDS, MASK, PIXELS  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfclip")
    ours = TFCLIPModel(CONFIG, seed=0)
    ours.save_pretrained(folder)
    return folder, ours, transformers.TFCLIPModel.from_pretrained(folder, from_pt=True)


def test_config_flags_and_numpy_booleans(pair):
    _, ours, theirs = pair
    for model in (ours, theirs):
        model.config.output_hidden_states, model.config.return_dict = True, False
    try:
        a = ours(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK, return_loss=np.array(True))
        b = theirs(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK, return_loss=True)
    finally:
        for model in (ours, theirs):
            model.config.output_hidden_states, model.config.return_dict = False, True
    assert isinstance(a, tuple) and len(a) == len(b)
    np.testing.assert_allclose(np.asarray(a[0]).reshape(-1), np.asarray(b[0]).reshape(-1), atol=1e-4)
    assert len(a[5][2]) == len(b[5][2])  # text hidden states
    with pytest.raises(ValueError, match="return_loss"):
        ours(input_ids=IDS, pixel_values=PIXELS, return_loss=np.array([True, False]))


def test_get_config_summary_and_names(pair):
    _, ours, theirs = pair
    assert ours.get_config()["projection_dim"] == theirs.get_config()["projection_dim"] == 8
    assert ours.main_input_name == theirs.main_input_name
    assert TFCLIPVisionModel.main_input_name == transformers.TFCLIPVisionModel.main_input_name
    lines = []
    ours.summary(print_fn=lines.append)
    total = sum(int(np.prod(v.shape)) for v in theirs.trainable_weights)
    assert f"Total params: {total:,}" in lines


def test_saved_model_on_save(tmp_path, pair):
    _, ours, _ = pair
    ours.save_pretrained(tmp_path, saved_model=True)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model" / "1"))
    out = loaded.signatures["serving_default"](input_ids=tf.constant(IDS, tf.int32),
                                               attention_mask=tf.constant(MASK, tf.int32),
                                               pixel_values=tf.constant(PIXELS))
    np.testing.assert_allclose(out["logits_per_image"].numpy(),
                               ours(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK).logits_per_image.numpy(),
                               atol=1e-5)


def test_prepare_tf_dataset(pair):
    datasets = pytest.importorskip("datasets")
    _, ours, theirs = pair
    data = datasets.Dataset.from_dict({"input_ids": IDS.tolist() * 2, "attention_mask": MASK.tolist() * 2,
                                       "pixel_values": PIXELS.tolist() * 2, "id": [0, 1, 2, 3]})
    a = next(iter(ours.prepare_tf_dataset(data, batch_size=2, shuffle=False)))
    b = next(iter(theirs.prepare_tf_dataset(data, batch_size=2, shuffle=False)))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))
    assert ours(a).logits_per_image.shape == (2, 2)


def test_from_config_weights_and_generation(pair):
    _, ours, theirs = pair
    assert TFCLIPModel.can_generate() == theirs.can_generate() is False
    assert TFCLIPModel.config_class.model_type == type(theirs).config_class.model_type
    assert TFCLIPVisionModel.config_class.model_type == transformers.TFCLIPVisionModel.config_class.model_type
    weights, their_weights = ours.get_weights(), theirs.get_weights()
    assert len(weights) == len(their_weights)
    assert sum(w.size for w in weights) == sum(w.size for w in their_weights)
    for source in (ours.get_config(), ours.config):
        fresh = TFCLIPModel.from_config(source)
        type(theirs).from_config(source if isinstance(source, dict) else theirs.config)  # transformers takes both
        fresh.set_weights(weights)
        a = fresh(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK).logits_per_image
        b = theirs(input_ids=IDS, pixel_values=PIXELS, attention_mask=MASK).logits_per_image
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4)
    with pytest.raises(ValueError, match="set_weights"):
        fresh.set_weights(weights[:-1])
    with pytest.raises(ValueError, match="shape"):
        fresh.set_weights([w.T if w.ndim == 2 and w.shape[0] != w.shape[1] else w for w in weights])


# ---------------------------------------------------------------------------------------------- the Keras 2 API
@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """(ours, theirs) for the text and the vision model, from the same weights."""
    from clip_tf import TFCLIPTextModel
    out = {}
    for key, ours_cls, their_cls, config in (
            ("text", TFCLIPTextModel, transformers.TFCLIPTextModel, CONFIG.text_config),
            ("vision", TFCLIPVisionModel, transformers.TFCLIPVisionModel, CONFIG.vision_config)):
        folder = tmp_path_factory.mktemp(key)
        ours = ours_cls(config, seed=1)
        ours.save_pretrained(folder)
        out[key] = ours, their_cls.from_pretrained(folder, from_pt=True), folder
    return out


def _same(a, b, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=atol)


def test_input_signature_and_dummy_inputs(pair, towers):
    for ours, theirs in [pair[1:], towers["text"][:2], towers["vision"][:2]]:
        assert ours.input_signature == theirs.input_signature
        a, b = ours.dummy_inputs, theirs.dummy_inputs
        assert list(a) == list(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        _same(ours(**ours.dummy_inputs)[0], theirs(**theirs.dummy_inputs)[0])


def test_int32_and_int64_ids(towers):
    ours, theirs, _ = towers["text"]
    want = theirs(input_ids=tf.constant(IDS, tf.int64), attention_mask=tf.constant(MASK, tf.int64)).pooler_output
    for dtype in (tf.int32, tf.int64):
        got = ours(input_ids=tf.constant(IDS, dtype), attention_mask=tf.constant(MASK, dtype)).pooler_output
        _same(got, want)


def test_input_embeddings_layers(pair, towers):
    tf_keras = pytest.importorskip("tf_keras")
    text, their_text, _ = towers["text"]
    vision, their_vision, _ = towers["vision"]
    for ours, theirs in ((text, their_text), (vision, their_vision)):
        layer = ours.get_input_embeddings()
        assert isinstance(layer, tf_keras.layers.Layer) and type(layer).__name__ == \
            type(theirs.get_input_embeddings()).__name__
        assert ours.get_input_embeddings() is layer
        assert sorted(int(np.prod(w.shape)) for w in layer.weights) == \
            sorted(int(np.prod(w.shape)) for w in theirs.get_input_embeddings().weights)
        for method in ("get_output_embeddings", "get_bias", "get_lm_head"):
            assert getattr(ours, method)() is None and getattr(theirs, method)() is None
    assert text.get_input_embeddings().weight is text.params["text_model.embeddings.token_embedding.weight"]
    _same(text.get_input_embeddings().weight, their_text.get_input_embeddings().weight)
    ids = tf.constant(IDS, tf.int32)
    _same(text.get_input_embeddings()(input_ids=ids), their_text.get_input_embeddings()(input_ids=ids))
    _same(vision.get_input_embeddings()(tf.constant(PIXELS)), their_vision.get_input_embeddings()(tf.constant(PIXELS)))
    for model in (pair[1], pair[2]):  # transformers' TFCLIPModel: an AttributeError; PyTorch: NotImplementedError
        with pytest.raises(AttributeError):
            model.get_input_embeddings()
    with pytest.raises(NotImplementedError):
        pair[1].get_input_embeddings()
    for model in (vision, their_vision):
        with pytest.raises(AttributeError):
            model.set_input_embeddings(tf.zeros((4, 16)))


def test_resize_token_embeddings(towers, tmp_path):
    from clip_tf import TFCLIPTextModel
    _, _, folder = towers["text"]
    ours, theirs = TFCLIPTextModel.from_pretrained(folder), transformers.TFCLIPTextModel.from_pretrained(
        folder, from_pt=True)
    old, count = ours.get_input_embeddings().weight.numpy(), len(theirs.trainable_weights)
    a, b = ours.resize_token_embeddings(None), theirs.resize_token_embeddings(None)
    assert isinstance(a, tf.Variable) and isinstance(b, tf.Variable)
    _same(a, b)
    tf.random.set_seed(0)
    a, b = ours.resize_token_embeddings(60), theirs.resize_token_embeddings(60)
    assert type(a).__name__ == type(b).__name__ and a.weight.shape == b.weight.shape == (60, 16)
    assert ours.config.vocab_size == theirs.config.vocab_size == 60
    for table in (a.weight.numpy(), b.weight.numpy()):
        np.testing.assert_array_equal(table[:50], old)  # old rows kept exactly
        new = table[50:]  # normal(0, initializer_range) truncated at two std
        assert np.abs(new).max() <= 2 * 0.02 and 0.012 < new.std() < 0.023
    ours.set_input_embeddings(b.weight)  # the same new rows: the same outputs for the new ids
    ids = tf.constant([[48, 55, 59, 49]], tf.int32)
    want = theirs(input_ids=ids).last_hidden_state
    for mode in (False, True):
        ours.jit_compile = mode
        _same(ours(input_ids=ids).last_hidden_state, want)
    _same(ours.serving({"input_ids": ids, "attention_mask": tf.ones_like(ids)})["last_hidden_state"], want)
    ours.save_pretrained(tmp_path)
    _same(TFCLIPTextModel.from_pretrained(tmp_path)(input_ids=ids).last_hidden_state, want)
    a, b = ours.resize_token_embeddings(45), theirs.resize_token_embeddings(45)
    _same(a.weight, b.weight)
    # the old tables are gone (transformers' layer keeps tracking them: one more weight per resize)
    assert ours.config.vocab_size == 45 and len(ours.trainable_variables) == count
    with pytest.raises(ValueError, match="vocabulary"):
        ours(input_ids=ids)
    with pytest.raises(ValueError, match="shape"):
        ours.set_input_embeddings(tf.zeros((45, 8)))
    with pytest.raises(ValueError, match="positive"):
        ours.resize_token_embeddings(0)


@pytest.mark.parametrize("flag", [False, True])
def test_serving_output(towers, pair, flag):
    for key in ("text", "vision"):
        ours, theirs, _ = towers[key]
        inputs = {"input_ids": IDS, "attention_mask": MASK} if key == "text" else {"pixel_values": PIXELS}
        for model in (ours, theirs):
            model.config.output_hidden_states = model.config.output_attentions = flag
        try:
            a = ours.serving_output(ours(**inputs, output_hidden_states=True, output_attentions=True))
            b = theirs.serving_output(theirs(**inputs, output_hidden_states=True, output_attentions=True))
        finally:
            for model in (ours, theirs):
                model.config.output_hidden_states = model.config.output_attentions = False
        assert [k for k, v in a.items() if v is not None] == [k for k, v in b.items() if v is not None]
        for k, v in a.items():
            assert isinstance(v, tf.Tensor)
            _same(v, b[k], atol=1e-4)
    out = pair[1](input_ids=IDS, pixel_values=PIXELS)
    assert pair[1].serving_output(out) is out  # TFCLIPModel's as transformers': unchanged


def test_input_embeddings_without_tf_keras(monkeypatch, towers):
    from clip_tf import TFCLIPTextModel
    ours, theirs, folder = towers["text"]
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # not installed: `import tf_keras` raises ImportError
    fresh = TFCLIPTextModel.from_pretrained(folder)
    layer = fresh.get_input_embeddings()
    assert isinstance(layer, tf.Module) and layer is fresh.text_model.embeddings
    _same(layer.weight, theirs.get_input_embeddings().weight)
    ids = tf.constant(IDS, tf.int32)
    _same(layer(ids), theirs.get_input_embeddings()(input_ids=ids))
    assert fresh.resize_token_embeddings(52) is layer and layer.weight.shape == (52, 16)
