"""Issue 15, TensorFlow models: transformers' TF model API (v4.52's TF classes) on triclip's, against transformers
live where transformers has the item."""

from __future__ import annotations

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
