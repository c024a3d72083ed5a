"""One reader and writer per checkpoint family over the canonical state, and the registry that names them.

``safetensors`` (+ ``sharding``), ``pytorch`` (``torch.save`` files, TorchScript archives), ``keras_h5``
(``tf_model.h5``), ``flax_msgpack`` (``flax_model.msgpack``), ``openai`` (OpenAI / open_clip state dicts -> the
canonical names and a config), ``_common`` (errors, :func:`~clip_core.formats._common.reading`, progress bars,
bfloat16 helpers), ``registry`` (format name -> files, detection, reader, writer) and ``commit`` (a save as one
commit for the whole folder: lock, staging folder, journal). Use them through
:mod:`clip_core.checkpoints` (``load_checkpoint``, ``save_checkpoint``, ``convert_checkpoint``).
"""
