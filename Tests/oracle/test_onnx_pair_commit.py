"""An ONNX model and its external data file are one result: overwriting a pair must switch
both at once (no reader, and no crash, may pair the old model with the new data), and a
failure before the switch leaves the old pair as it was. Judged by onnxruntime."""
import os
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import FIXTURES, run_tool

SOURCE = FIXTURES / "g1_basic.dynamo.onnx"


def fold(src, dst, env=None):
    return run_tool("DOCONV_FOLD", "doconv-fold", src, dst, env=env)


def run(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def locations(path):
    model = onnx.load(str(path), load_external_data=False)
    return {entry.value for t in model.graph.initializer for entry in t.external_data if entry.key == "location"}


def old_pair(folder):
    """The unfolded exporter pair, under the destination's names."""
    model = onnx.load(str(SOURCE), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "out.onnx.data"
    onnx.save(model, folder / "out.onnx")
    shutil.copy(SOURCE.with_name(SOURCE.name + ".data"), folder / "out.onnx.data")
    return folder / "out.onnx"


@pytest.fixture
def x():
    model = onnx.load(str(SOURCE), load_external_data=False)
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(3).normal(size=dims).astype(np.float32)


def test_overwriting_a_pair_switches_at_once(tmp_path, x):
    out = old_pair(tmp_path)
    expected = run(SOURCE, x)
    result = fold(SOURCE, out)
    assert result.returncode == 0, result.stderr
    # The new data went to a name the old model did not read; the old data file is gone.
    (location,) = locations(out)
    assert re.fullmatch(r"out\.onnx\.[0-9a-f]{8}\.data", location), location
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.onnx", location])
    np.testing.assert_allclose(run(out, x), expected, rtol=1e-4, atol=1e-5)
    # Overwritten again: back to the usual name, the previous data file removed.
    result = fold(SOURCE, out)
    assert result.returncode == 0, result.stderr
    assert locations(out) == {"out.onnx.data"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "out.onnx.data"]
    np.testing.assert_allclose(run(out, x), expected, rtol=1e-4, atol=1e-5)


def test_failure_before_the_switch_keeps_the_old_pair(tmp_path, x):
    out = old_pair(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = fold(SOURCE, out, env=os.environ | {"DOCONV_TEST_FAIL_BEFORE_MODEL_COMMIT": "1"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # Nothing new (no temporary file, no orphaned data), the old pair byte for byte, and it runs.
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    np.testing.assert_allclose(run(out, x), run(SOURCE, x), rtol=1e-6)


def test_in_place_fold_of_a_pair(tmp_path, x):
    out = old_pair(tmp_path)
    expected = run(out, x)
    result = fold(out, out)
    assert result.returncode == 0, result.stderr
    (location,) = locations(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.onnx", location])
    np.testing.assert_allclose(run(out, x), expected, rtol=1e-4, atol=1e-5)
