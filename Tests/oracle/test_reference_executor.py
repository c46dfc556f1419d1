"""verify-equivalence's reference executor against onnxruntime: every fixture (original and
folded, on the input saved with it) and single-op models for every op it implements."""
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, manifest, run_fold
from op_cases import cases
from verify_support import agreement, executor_outputs, session

ENTRIES = manifest()
CASES = cases()


def tolerance_for(dtype):
    return 2e-3 if dtype == "float16" else 1e-5


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
@pytest.mark.parametrize("which", ["original", "folded"])
def test_fixture_outputs_match_onnxruntime(entry, which, tmp_path):
    path = FIXTURES / entry["file"]
    if which == "folded":
        path = tmp_path / ("folded-" + entry["file"])
        result = run_fold(FIXTURES / entry["file"], path)
        assert result.returncode == 0, result.stderr
    expected = np.load(FIXTURES / entry["expected"])
    ort_session = session(path)
    feeds = {ort_session.get_inputs()[0].name: expected["input"]}
    reference = dict(zip([o.name for o in ort_session.get_outputs()], ort_session.run(None, feeds)))
    got = executor_outputs(path, feeds, tmp_path)
    for name, value in reference.items():
        assert agreement(got[name], value) <= tolerance_for(entry["dtype"]), name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_matches_onnxruntime(case, tmp_path):
    path = tmp_path / f"{case.name}.onnx"
    onnx.save(case.model, str(path))
    ort_session = session(path)
    reference = dict(zip([o.name for o in ort_session.get_outputs()], ort_session.run(None, case.feeds)))
    got = executor_outputs(path, case.feeds, tmp_path)
    for name, value in reference.items():
        tolerance = 2e-3 if np.asarray(value).dtype == np.float16 else 1e-5
        assert agreement(got[name], value) <= tolerance, f"{name}: executor {got[name]!r} onnxruntime {value!r}"


def test_every_executor_op_has_a_case():
    """Each op the executor implements appears in an op-level case (the list is the CLI's)."""
    covered = {c.model.graph.node[0].op_type for c in CASES}
    implemented = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
                   "HardSwish", "Tanh", "Mul", "Add", "Sub", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
                   "ReduceMean", "Flatten", "Reshape", "Gemm", "MatMul", "Concat", "Transpose", "Einsum", "Identity",
                   "Constant", "Squeeze", "Unsqueeze", "Shape", "Gather", "Slice", "Softmax", "Pad", "Resize", "Cast",
                   "CastLike", "Expand", "ConstantOfShape", "Range"}
    assert implemented <= covered, implemented - covered
