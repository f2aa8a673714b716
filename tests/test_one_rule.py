"""One copy of each rule (issue 24): a rule that two places enforced differently now lives in one place, and
each test here holds both callers to the same, hand-written expectations."""

from __future__ import annotations

import pytest

from spade_rt.errors import ConfigError


# ---- Triton model names: `spade-rt triton --name` and TritonOptions.validate --------------------------------
GOOD_NAMES = ("coco", "_x", "a.b-c_1", "Model.2", "a" * 128)
BAD_NAMES = ("", ".hidden", "-x", "a b", "a/b", "ü", "a" * 129, 5)


@pytest.mark.parametrize("name", GOOD_NAMES + BAD_NAMES)
def test_triton_model_names_follow_one_rule(name, tmp_path):
    from spade_rt.serve.triton import TritonOptions
    from spade_rt.validation import CLI, check_triton_destination

    refused = []
    for check in (
        lambda: TritonOptions(name=name, device="cpu").validate("onnx"),
        lambda: check_triton_destination(tmp_path / "models", name, voice=CLI),
    ):
        try:
            check()
            refused.append(False)
        except ConfigError as exc:
            assert "letters, digits" in str(exc) and "128" in str(exc)
            refused.append(True)
    assert refused == [name in BAD_NAMES] * 2, (name, refused)


def test_a_default_triton_name_from_a_long_file_name_keeps_the_rule(tmp_path):
    from spade_rt.serve.triton import PNG_SUFFIX, TritonOptions, default_name

    name = default_name(tmp_path / ("x" * 200 + ".onnx"))
    TritonOptions(name=name, device="cpu").validate("onnx")
    TritonOptions(name=name + PNG_SUFFIX, device="cpu").validate("onnx")
