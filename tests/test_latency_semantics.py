"""Issue 16: calls that don't stall on new input shapes, with unchanged results.

Flax pads concrete inputs to shape buckets (``clip_core.buckets``) and slices the outputs back: checked against
transformers' Flax CLIP live at the caller's exact shapes, field by field, and by counting the traces of the jitted
apply per bucket. TensorFlow runs new shapes through one shape-polymorphic graph traced at construction and
compiles a shape that repeats in a background thread: checked by counting the traces and compiled functions (never
by timing), and against the same call run eagerly (whose values the other TF tests hold to transformers').
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from clip_core import buckets  # noqa: E402
from clip_core.config import CLIPConfig  # noqa: E402
from tests.conftest import ROOT, assert_close  # noqa: E402

EMBED_TOL, STATE_TOL = 1e-5, 1e-4
CONFIG = CLIPConfig.preset("tiny")
EOS = CONFIG.text_config.eos_token_id


def _text(batch, width, eos_at, seed=0):
    """Ids with each row's end-of-text token at ``eos_at[row]``, padding (id 0, mask 0) after it."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 1000, (batch, width)).astype(np.int32)
    mask = np.ones((batch, width), np.int32)
    for row, at in enumerate(eos_at):
        ids[row, at], ids[row, at + 1:], mask[row, at + 1:] = EOS, 0, 0
    return ids, mask


def _pixels(batch, seed=1):
    size = CONFIG.vision_config.image_size
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- the plan
def test_bucket_sizes():
    assert [buckets.text_bucket(n, 77) for n in (1, 7, 8, 9, 16, 17, 33, 64, 65, 77)] == \
        [8, 8, 8, 16, 16, 32, 64, 64, 77, 77]
    assert [buckets.text_bucket(n, 12) for n in (5, 9, 12)] == [8, 12, 12]  # never beyond the positions
    assert [buckets.batch_bucket(n) for n in (0, 1, 2, 3, 5, 8, 33, 64, 65, 130)] == [0, 1, 2, 4, 8, 8, 64, 64, 128,
                                                                                       192]
    assert buckets.text_padding_is_exact(None) and buckets.text_padding_is_exact(np.array([[1, 1, 0], [1, 0, 0]]))
    assert not buckets.text_padding_is_exact(np.array([[1, 1, 0], [0, 1, 1]]))  # a first token that sees nothing


def test_pad_text_never_pools_a_padded_column():
    ids = np.array([[5, 49407, 0], [7, 8, 9]])  # the second row has no end-of-text token: pooled at column 0
    padded, mask, positions = buckets.pad_text(ids, None, np.array([[0, 1, 2]] * 2), 8, 49407)
    assert padded.shape == mask.shape == positions.shape == (2, 8)
    assert (padded[:, 3:] == 0).all() and (mask[:, :3] == 1).all() and (mask[:, 3:] == 0).all()
    assert (np.argmax(padded == 49407, axis=1) == [1, 0]).all()
    assert buckets.pad_id(0) == 1 and (np.argmax(buckets.pad_text(ids, None, None, 8, 2)[0], axis=1) == [1, 2]).all()
    rows = buckets.pad_rows(np.arange(6).reshape(3, 2), 4)
    assert rows.tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]


# ---------------------------------------------------------------------------------------------- Flax
def _flax():
    pytest.importorskip("flax")
    import jax
    import transformers

    from clip_flax import FlaxCLIPModel
    from clip_flax.pretrained import _CompiledApply

    # compiled functions are shared by every model of one config: start from none, so that the trace counts below
    # do not depend on which tests ran before in this process
    _CompiledApply._cache.clear()
    model = FlaxCLIPModel(CONFIG, seed=3)
    theirs = transformers.FlaxCLIPModel(transformers.CLIPConfig.from_dict(CONFIG.to_dict()), _do_init=False)
    return jax, model, theirs


def _assert_same_tree(ours, ref, what):
    """Every field of ``ref`` (transformers) in ``ours``, same shape, within the DESIGN tolerances."""
    assert list(ours.keys()) == list(ref.keys()), what
    for key in ref.keys():
        a, b = ours[key], ref[key]
        if hasattr(b, "keys"):
            _assert_same_tree(a, b, f"{what}.{key}")
            continue
        a, b = (a, b) if isinstance(b, tuple) else ((a,), (b,))
        assert len(a) == len(b), f"{what}.{key}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert np.shape(x) == np.shape(y), (f"{what}.{key}[{i}]", np.shape(x), np.shape(y))
            tol = EMBED_TOL if key in ("text_embeds", "image_embeds", "pooler_output") else STATE_TOL
            assert_close(x, y, tol, f"{what}.{key}[{i}]")


def test_flax_buckets_give_transformers_outputs_at_the_callers_shapes():
    jax, model, theirs = _flax()
    ids, mask = _text(3, 11, eos_at=(10, 6, 3))  # batch 3 -> 4, length 11 -> 16
    pixels = _pixels(5)  # image batch 5 -> 8
    flags = dict(output_hidden_states=True, output_attentions=True)
    ref = jax.jit(lambda p: theirs(ids, pixels, attention_mask=mask, params=p, **flags))(model.params)
    traces = model._compiled.traces
    out = model(ids, pixels, attention_mask=mask, **flags)
    _assert_same_tree(out, ref, "CLIPOutput")
    assert out.logits_per_text.shape == (3, 5)
    features = model.get_text_features(ids, mask)  # trimmed to 11 columns, padded to 16, 3 rows -> 4
    ref_features = jax.jit(lambda p: theirs.get_text_features(ids, mask, params=p))(model.params)
    assert features.shape == (3, CONFIG.projection_dim)
    assert_close(features, ref_features, EMBED_TOL, "text features")
    assert_close(model.get_image_features(pixels),
                 jax.jit(lambda p: theirs.get_image_features(pixels, params=p))(model.params), EMBED_TOL, "image")
    model.bucketing = False  # the caller's exact shapes: the same results
    assert_close(model(ids, pixels, attention_mask=mask).logits_per_text, out.logits_per_text, 1e-5, "unbucketed")
    assert model._compiled.traces == traces + 4


def test_flax_new_caption_lengths_compile_nothing():
    """The first text call compiles the longest bucket (max_position_embeddings); later caption lengths run padded
    to the shortest compiled bucket that holds them (no compile, same features as transformers at the caller's
    exact shape); a bucket asked for a third time compiles in the background, and its calls then use it."""
    jax, model, theirs = _flax()
    longest = CONFIG.text_config.max_position_embeddings
    compiled = model._compiled

    def features(batch, width):
        ids, mask = _text(batch, width, eos_at=[width - 1] * batch, seed=width)
        ours = model.get_text_features(ids, mask)
        ref = jax.jit(lambda p: theirs.get_text_features(ids, mask, params=p))(model.params)
        assert ours.shape == (batch, CONFIG.projection_dim)
        assert_close(ours, ref, EMBED_TOL, f"text features {batch}x{width}")

    features(8, 9)  # bucket 16, nothing compiled: runs at the longest length
    assert compiled.traces == 1
    (key, _), = [(k, v) for k, v in compiled._ready.items()]
    assert compiled.ready_lengths(key) == {longest}
    for width in (3, 20, 40, 70):  # buckets 8, 32, 64 and the longest: all run at the longest
        features(8, width)
    assert compiled.traces == 1 and compiled.ready_lengths(key) == {longest}
    features(8, 12)  # bucket 16 asked for again (after 9): still padded to the longest
    compiled.wait()
    assert compiled.traces == 1 and compiled.ready_lengths(key) == {longest}
    features(8, 14)  # bucket 16 a third time: its own compile starts in the background
    compiled.wait()
    assert compiled.traces == 2 and compiled.ready_lengths(key) == {16, longest}
    for width in (11, 16):  # bucket 16 holds them
        features(6, width)  # a batch of 6 is in the batch bucket of 8
    compiled.wait()
    assert compiled.traces == 2
    features(6, 5)  # bucket 8, asked for the second time (after 3): runs at 16
    compiled.wait()
    assert compiled.traces == 2
    features(6, 7)  # bucket 8 a third time: runs at 16, compiles 8 in the background
    compiled.wait()
    assert compiled.traces == 3 and compiled.ready_lengths(key) == {8, 16, longest}
    features(3, 9)  # a new batch bucket (4) is a new shape: one compile, at the longest length
    assert compiled.traces == 4


def test_flax_no_padding_where_it_would_change_results():
    """A first token masked (it sees no unmasked token, so its attention spreads over every column: padding would
    change it) keeps its length; ``return_loss`` mixes rows, so it keeps its batch."""
    jax, model, theirs = _flax()
    ids, mask = _text(3, 11, eos_at=(10, 6, 3))
    mask[1, 0] = 0
    pixels = _pixels(3)
    ref = jax.jit(lambda p: theirs(ids, pixels, attention_mask=mask, params=p, output_hidden_states=True))(
        model.params)
    out = model(ids, pixels, attention_mask=mask, output_hidden_states=True, return_loss=True)
    loss = out.pop("loss")
    _assert_same_tree(out, ref, "CLIPOutput")
    logits = np.asarray(ref.logits_per_text, np.float64)  # CLIP's loss on transformers' logits, by the formula

    def xent(x):
        return np.mean(np.log(np.exp(x).sum(axis=1)) - np.diag(x))
    assert abs(float(loss) - (xent(logits) + xent(logits.T)) / 2) < 1e-5
    padded = buckets.pad_text(ids, mask, None, 16, EOS)  # what padding would have fed: not the same states
    moved = model(padded[0], pixels, attention_mask=padded[1], output_hidden_states=True)
    assert np.abs(np.asarray(moved.text_model_output.last_hidden_state[1, :11])
                  - np.asarray(ref.text_model_output.last_hidden_state[1])).max() > 1e-3


def test_flax_towers_slice_every_field():
    pytest.importorskip("flax")
    import jax
    import transformers

    from clip_flax import FlaxCLIPTextModel, FlaxCLIPVisionModel
    text_cfg, vision_cfg = CONFIG.text_config, CONFIG.vision_config
    flags = dict(output_hidden_states=True, output_attentions=True)
    ids, mask = _text(3, 11, eos_at=(10, 6, 3))
    ours = FlaxCLIPTextModel(text_cfg, seed=4)
    theirs = transformers.FlaxCLIPTextModel(transformers.CLIPTextConfig.from_dict(text_cfg.to_dict()), _do_init=False)
    ref = jax.jit(lambda p: theirs(ids, mask, params=p, **flags))(ours.params)
    _assert_same_tree(ours(ids, mask, **flags), ref, "text")
    positions = np.tile(np.arange(11), (3, 1))
    ref = jax.jit(lambda p: theirs(ids, mask, positions, params=p))(ours.params)
    _assert_same_tree(ours(ids, mask, positions), ref, "text with position_ids")
    pixels = _pixels(3)
    ours = FlaxCLIPVisionModel(vision_cfg, seed=5)
    theirs = transformers.FlaxCLIPVisionModel(
        transformers.CLIPVisionConfig.from_dict(vision_cfg.to_dict()), _do_init=False)
    ref = jax.jit(lambda p: theirs(pixels, params=p, **flags))(ours.params)
    _assert_same_tree(ours(pixels, **flags), ref, "vision")


# ---------------------------------------------------------------------------------------------- TensorFlow
def _tf_model():
    tf = pytest.importorskip("tensorflow")
    from clip_tf import TFCLIPModel
    return tf, TFCLIPModel(CONFIG, seed=3)


def test_tf_auto_runs_new_shapes_in_one_graph_and_compiles_repeated_ones():
    tf, model = _tf_model()
    assert model.jit_compile == "auto" and model.xla_after == 2
    (graph,) = model._compiled.graphs.values()  # traced by the construction's warm-up, unknown batch and length
    assert graph.function.experimental_get_tracing_count() == 1
    ids, mask = _text(3, 11, eos_at=(10, 6, 3))
    pixels = _pixels(3)
    first = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    assert model._compiled.functions == {}, "the first call of a shape compiles nothing"
    short = model(input_ids=ids[:2, :6], pixel_values=pixels[:2], attention_mask=mask[:2, :6])  # a new shape
    assert model._compiled.functions == {} and len(model._compiled.graphs) == 1
    assert graph.function.experimental_get_tracing_count() == 1, "new shapes run the same graph, never retraced"
    model.get_image_features(pixels)  # another method: eagerly (no graph of its own)
    assert len(model._compiled.graphs) == 1
    second = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)  # the second call starts a compile
    assert len(model._compiled.functions) == 1
    model._compiled.wait()
    (compiled,) = model._compiled.functions.values()
    assert compiled.ready and compiled.error is None
    third = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)  # ...which the next calls run
    assert len(model._compiled.functions) == 1 and compiled.function.experimental_get_tracing_count() == 1
    model.jit_compile = False
    eager = model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
    for out in (first, second, third):
        assert_close(out.logits_per_text.numpy(), eager.logits_per_text.numpy(), STATE_TOL, "logits")
        assert_close(out.text_embeds.numpy(), eager.text_embeds.numpy(), EMBED_TOL, "text_embeds")
    eager_short = model(input_ids=ids[:2, :6], pixel_values=pixels[:2], attention_mask=mask[:2, :6])
    for key in ("logits_per_text", "text_embeds", "image_embeds"):
        assert_close(short[key].numpy(), eager_short[key].numpy(), STATE_TOL, f"{key} at a new shape")
    assert short.text_model_output.last_hidden_state.shape == (2, 6, CONFIG.text_config.hidden_size)
    with pytest.raises(ValueError, match="jit_compile"):
        model.jit_compile = "xla"


def test_tf_auto_under_a_tape_and_on_request():
    tf, model = _tf_model()
    ids, mask = _text(2, 9, eos_at=(8, 4))
    pixels = _pixels(2)
    for _ in range(3):  # a training step in eager mode: no compile, gradients as usual
        with tf.GradientTape() as tape:
            loss = model(input_ids=ids, pixel_values=pixels, attention_mask=mask, return_loss=True).loss
        grads = tape.gradient(loss, model.trainable_variables)
    assert model._compiled.functions == {} and all(g is not None for g in grads)
    model.jit_compile = True  # XLA on request: compiled at the first call of a shape
    model.get_image_features(pixels)
    assert [key[0] for key in model._compiled.functions] == ["_image_features"]
    assert model._compiled.functions[next(iter(model._compiled.functions))].ready
    model.gradient_checkpointing_enable()  # forgets the compiled functions (and the counts)
    assert model._compiled.functions == {} and model._compiled.seen == {}


STRATEGY_STEP = textwrap.dedent('''
    import sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from clip_tf.distributed import setup
    setup(2)
    import tensorflow as tf
    from clip_core.config import CLIPConfig
    from clip_tf import TFCLIPModel
    CONFIG = CLIPConfig.preset("tiny")
    rng = np.random.default_rng(0)
    ids = tf.constant(rng.integers(1, 1000, (2, 6)).astype(np.int32))
    pixels = tf.constant(rng.standard_normal((2, 3, 32, 32)).astype(np.float32))
    reference = TFCLIPModel(CONFIG, seed=0)
    names = sorted(reference.params)
    with tf.GradientTape() as tape:
        loss = reference(input_ids=ids, pixel_values=pixels, return_loss=True).loss
    stepped = {{n: reference.params[n].numpy() - 0.1 * tf.convert_to_tensor(g).numpy()
               for n, g in zip(names, tape.gradient(loss, [reference.params[n] for n in names]))}}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = TFCLIPModel(CONFIG, seed=0)

    def replica_step(i, p):
        with tf.GradientTape() as tape:
            loss = model(input_ids=i, pixel_values=p, return_loss=True).loss
        grads = tape.gradient(loss, [model.params[n] for n in names])
        context = tf.distribute.get_replica_context()
        grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, [tf.convert_to_tensor(g) for g in grads])
        for name, grad in zip(names, grads):
            model.params[name].assign_sub(0.1 * grad)
        return loss

    @tf.function
    def step(i, p):  # the training step inside tf.function, each replica on the same global batch
        return strategy.run(replica_step, args=(i, p))

    losses = strategy.experimental_local_results(step(ids, pixels))
    assert all(abs(float(x[0]) - float(loss[0])) < 1e-5 for x in losses), losses
    for name in names:
        for value in strategy.experimental_local_results(model.params[name]):
            assert np.abs(value.numpy() - stepped[name]).max() < 1e-5, name
    print("ok")
''')


@pytest.mark.slow
def test_tf_strategy_run_training_step_inside_tf_function(tmp_path):
    """MirroredStrategy over two logical CPU devices: a training step in ``tf.function(strategy.run)`` (the eager
    form and inference are in tests/test_distributed.py) gives the step of a plain model."""
    pytest.importorskip("tensorflow")
    script = tmp_path / "step.py"
    script.write_text(STRATEGY_STEP.format(root=str(ROOT)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-4000:]
