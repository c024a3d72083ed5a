"""The parts of CLIP's image preprocessing, one concern a module (the public class is in
:mod:`clip_core.image_processing`).

- :mod:`.options`: the processor's arguments normalised as transformers reads them (sizes, filter, layouts).
- :mod:`.convert`: input images checked and described (PIL, numpy, tensors, paths, batches), arrays made uint8.
- :mod:`.geometry`: resize planning: output sizes, the centre crop's window, source spans, Pillow's pass order.
- :mod:`.kernel`: the compiled resize kernel ``clip_core._resample``, its weights, and its one-time check.
- :mod:`.resize`: the window of PIL's resize that the crop keeps, by the kernel or by PIL.
- :mod:`.pipeline`: one call's plan: uint8 -> float32 tables and the work on one image.

Import the processor from :mod:`clip_core.image_processing` (or :mod:`clip_core`); these modules are internal.
"""
