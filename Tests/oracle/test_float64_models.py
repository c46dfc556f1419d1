"""float64 models keep float64 precision through every fold, not only DO-Conv kernels:
BatchNormalization fusion, depthwise + 1x1 pairs and re-parameterized blocks. Exporter
fixtures are turned into float64 models (every float tensor and value DOUBLE), folded, and
the folded model is judged against the original by onnx's reference evaluator (numpy, in
float64; onnxruntime has no float64 Conv); a float32 step anywhere leaves about 1e-7, far
above what float64 arithmetic leaves."""
import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator
import pytest
from onnx import TensorProto, numpy_helper

from conftest import FIXTURES, run_fold, run_verify


def to_float64(model):
    """The same graph in float64: float initializers, Constant values and typed values."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for k, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT:
            graph.initializer[k].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name))
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float64), attribute.t.name))
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    return model


def run(path, x):
    model = onnx.load(str(path))
    return ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})[0]


CASES = [
    ("g1_basic.ts_nofold.onnx", ["--fuse-bn"]),      # DO-Conv kernels and a fused BatchNormalization
    ("pair_doconv.ts.onnx", []),                     # a depthwise + 1x1 pair
    ("reparam/repvgg_a0.train.onnx", ["--reparam"]),  # RepVGG blocks with BatchNormalization
    ("reparam/acnet.train.onnx", ["--reparam"]),      # ACNet: 3x3 + 1x3 + 3x1 branches
]


@pytest.mark.parametrize("name,flags", CASES, ids=[c[0] for c in CASES])
def test_float64_model_folds_in_float64(tmp_path, name, flags):
    src = tmp_path / "double.onnx"
    onnx.save(to_float64(onnx.load(str(FIXTURES / name))), src)
    dst = tmp_path / "folded.onnx"
    result = run_fold(src, dst, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "folded" in result.stdout or "merged" in result.stdout or "fused" in result.stdout, result.stdout
    folded = onnx.load(str(dst))
    assert all(t.data_type != TensorProto.FLOAT for t in folded.graph.initializer)
    dims = [d.dim_value or 1 for d in folded.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(2).normal(size=dims)
    expected, actual = run(src, x), run(dst, x)
    assert expected.dtype == np.float64
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    assert error < 1e-12, f"relative error {error:.2e}: a step computed in float32"
    verdict = run_verify(src, dst)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
