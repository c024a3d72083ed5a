"""The parity suite: proofs that the backends agree with each other and with transformers, one module per concern.

Use it from your own tests::

    from conformance import run_conformance
    report = run_conformance(checkpoint="path/to/clip")       # or preset="tiny", config=..., state=...
    assert report.ok, report.table()

or from the shell: ``triclip conformance`` / ``python -m conformance``.

Modules: :mod:`conformance.forward` (forward parity: every output of every backend pair, and the fixtures' expected
outputs), :mod:`conformance.artifacts` (exported artifacts in their own runtimes against the source model),
:mod:`conformance.gradients` (every parameter's gradient against transformers' autograd), :mod:`conformance.training`
(K AdamW steps in every backend against transformers + torch.optim). Their
names are re-exported here.
"""

from __future__ import annotations

from conformance.forward import (BACKENDS, DEFAULT_BACKENDS, FIXTURE_KEYS, REDUCED_COSINE,  # noqa: F401
                                 REDUCED_OUTPUTS, REDUCED_TOLERANCE, RUNNERS, TOLERANCES, Report, Row,
                                 available_backends, make_inputs, run_conformance)
from conformance.artifacts import ArtifactReport, run_artifact_conformance  # noqa: F401  (exported artifacts)
from conformance.gradients import run_gradient_conformance  # noqa: F401  (gradients vs transformers' autograd)
from conformance.training import run_training_conformance  # noqa: F401  (K AdamW steps in every backend)

__all__ = ["run_conformance", "Report", "Row", "make_inputs", "available_backends", "TOLERANCES", "BACKENDS",
           "DEFAULT_BACKENDS", "REDUCED_TOLERANCE", "REDUCED_COSINE", "run_artifact_conformance", "ArtifactReport",
           "run_gradient_conformance", "run_training_conformance"]
