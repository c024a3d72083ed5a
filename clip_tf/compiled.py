"""How an eager TensorFlow call runs when it does not run eagerly: the model's caches of compiled functions.

- :class:`_Compiled`: one XLA function per (method, flags, input shapes), compiled at its first call or in a
  background thread while the calls keep running;
- :class:`_Graph`: one shape-polymorphic graph (no XLA) per (method, flags, input dtypes), traced once;
- :class:`_CompiledCache`: both, by key, in a plain object TensorFlow does not track.

:meth:`clip_tf.pretrained.TFCLIPPreTrainedModel._dispatch` picks among them (``jit_compile``); the tape and
replica tests say where compiled functions must not be used. PyTorch runs eagerly and Flax jits ``apply`` per
bucket (``clip_flax.pretrained``), so this file has no counterpart in the other backends.
"""

from __future__ import annotations

import threading

import tensorflow as tf

try:  # whether a GradientTape records (no public API)
    from tensorflow.python.eager.record import could_possibly_record as _could_possibly_record
except ImportError:  # pragma: no cover - another TensorFlow layout: assume no tape
    _could_possibly_record = None


class _Compiled:
    """One XLA-compiled function for one (method, flags, input shapes and dtypes): traced once, never retraced.

    Compiled at its first call (``jit_compile=True``), or in a background thread (:meth:`start`, ``"auto"``) while
    the calls keep running eagerly until it is ready. A plain object, so that ``tf.saved_model.save`` and variable
    tracking ignore it.
    """

    def __init__(self, method, flags):
        def run(**tensors):  # outputs come back as they were built: tf.nest rebuilds them from (key, value) pairs
            return method(**tensors, **flags)

        self.function = tf.function(run, jit_compile=True, autograph=False, reduce_retracing=False)
        self.concrete = None
        self.thread = None
        self.error = None

    def __call__(self, tensors):
        if self.concrete is None:  # calling the traced function directly skips tf.function's per-call dispatch
            self.concrete = self.function.get_concrete_function(**tensors)
        return self.concrete(**tensors)

    def start(self, tensors) -> None:
        """Trace and compile in a background thread: XLA compiles at a function's first run, so the thread runs it
        once on ``tensors`` (a copy of the call that asked for it); :attr:`concrete` is set when that is done."""
        def work():
            try:
                concrete = self.function.get_concrete_function(**tensors)
                concrete(**tensors)
                self.concrete = concrete
            except Exception as error:  # noqa: BLE001 - the calls simply stay eager; kept for inspection
                self.error = error

        self.thread = threading.Thread(target=work, name="triclip-xla-compile")
        self.thread.start()

    @property
    def ready(self) -> bool:
        """Whether the compiled function can be called without compiling."""
        return self.concrete is not None

    @property
    def pending(self) -> bool:
        """Whether a background compile is running."""
        return self.thread is not None and self.thread.is_alive()


class _Graph:
    """One shape-polymorphic graph (no XLA) for one (method, flags, input dtypes): batch and text length unknown
    (``None``), so it is traced once and every new batch size or caption length runs it without tracing or
    compiling. TensorFlow's graph optimiser fuses what eager execution runs op by op, so a call through it is
    faster than the eager one; XLA's shape-specialised function stays faster for a shape that repeats."""

    def __init__(self, method, flags, specs: dict):
        def run(**tensors):
            return method(**tensors, **flags)

        self.function = tf.function(run, autograph=False)
        self.concrete = self.function.get_concrete_function(**specs)

    def __call__(self, tensors):
        return self.concrete(**tensors)

    @staticmethod
    def specs(tensors) -> dict[str, tf.TensorSpec]:
        """The relaxed specs of a call's tensors: every axis unknown but an image's channels and size."""
        return {name: tf.TensorSpec([None] + (t.shape.as_list()[1:] if name == "pixel_values" else
                                              [None] * (t.shape.rank - 1)), t.dtype)
                for name, t in tensors.items()}


class _CompiledCache:
    """Compiled functions by (method name, flags, input specs), in a plain object that TensorFlow won't track
    (also the Keras model of :meth:`TFCLIPPreTrainedModel.compile` and the layer of ``get_input_embeddings``, whose
    own variables are not the model's, or are the model's seen again).
    ``seen`` counts the eager calls of every key under ``jit_compile="auto"``; ``graphs`` holds the
    shape-polymorphic graphs (:class:`_Graph`) by (method name, flags, relaxed specs), traced where
    ``tracing`` is set (the construction's warm-up)."""

    def __init__(self):
        self.functions: dict = {}
        self.seen: dict = {}
        self.graphs: dict = {}
        self.tracing = False
        self.keras = None
        self.embeddings = None  # the Keras view get_input_embeddings returns

    def clear(self) -> None:
        """Forget every compiled function (after a change that alters what they would compute)."""
        self.wait()
        self.functions.clear()
        self.seen.clear()
        self.graphs.clear()

    def wait(self) -> None:
        """Wait for the background compiles to finish."""
        for compiled in list(self.functions.values()):
            if compiled.thread is not None:
                compiled.thread.join()

    def auto(self, key, method, flags, tensors, after: int):
        """``jit_compile="auto"``: the compiled function of ``key`` when it is ready, else ``None`` (run eagerly);
        the ``after``-th call of a key starts its background compile (one at a time, so a burst of new shapes
        never queues compiles behind each other: a later call of a waiting key starts it)."""
        compiled = self.functions.get(key)
        if compiled is not None and compiled.ready:
            return compiled
        count = self.seen[key] = self.seen.get(key, 0) + 1
        if compiled is None and count >= after and not any(c.pending for c in self.functions.values()):
            self.functions[key] = compiled = _Compiled(method, flags)
            compiled.start(dict(tensors))
        return None

    def graph(self, prefix, method, flags, tensors):
        """The shape-polymorphic graph of this call's method, flags and input dtypes, or ``None`` (run eagerly):
        traced now if :attr:`tracing`. ``prefix``: the call's (method name, flags) part of its XLA key."""
        specs = _Graph.specs(tensors)
        key = (*prefix, tuple(specs.items()))
        graph = self.graphs.get(key)
        if graph is None and self.tracing:
            graph = self.graphs[key] = _Graph(method, flags, specs)
        return graph


def _recording() -> bool:
    """Whether a gradient tape is recording: a compiled function called there would compile its gradient at the
    tape's first ``gradient`` call, so ``"auto"`` calls stay eager."""
    return _could_possibly_record is not None and bool(_could_possibly_record())


def _in_replica_context() -> bool:
    """Inside ``strategy.run`` of a ``tf.distribute`` strategy: each replica runs on its own device, where a
    function compiled for the first one cannot read the variables (XLA pins them to their device)."""
    return tf.distribute.has_strategy() and tf.distribute.get_replica_context() is not None
