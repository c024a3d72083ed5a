"""Issue 20 class 5: the same bad input fails (or succeeds) alike in every backend, by one rule in the core.

conformance.bad_inputs feeds each case to each backend as numpy arrays and as the backend's own tensors (or Python
lists); each must end with the case's exception type (or run), and every message must name the offending input.
"""

from __future__ import annotations

import pytest

from conformance.bad_inputs import CASES, run_bad_inputs

_NAMES = ("input_ids", "attention_mask", "position_ids", "pixel_values", "labels")


@pytest.fixture(scope="module", params=["pt", "tf", "flax"])
def rows(request):
    pytest.importorskip({"pt": "torch", "tf": "tensorflow", "flax": "flax"}[request.param])
    return run_bad_inputs([request.param])


def test_every_case_ends_alike(rows):
    wrong = [(r.case, r.form, r.expected, r.got, r.message[:120]) for r in rows if not r.ok]
    assert not wrong
    assert {r.case for r in rows} == {c.name for c in CASES}


def test_messages_name_the_input(rows):
    for row in rows:
        if row.expected is not None:
            change = next(c for c in CASES if c.name == row.case).change
            named = [n for n in _NAMES if n in change]
            assert any(n in row.message for n in named), (row.case, row.message)


def test_raw_pixels_point_to_the_image_processor(rows):
    row = next(r for r in rows if r.case == "uint8 pixels")
    assert "image processor" in row.message and "uint8" in row.message


def test_mask_message_names_the_value(rows):
    assert "0.5" in next(r for r in rows if r.case == "mask 0.5").message
    assert "nan" in next(r for r in rows if r.case == "mask NaN").message.lower()
