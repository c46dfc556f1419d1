"""Folding graphs the exporter fixtures do not cover, judged by numpy and onnxruntime."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_fold, run_verify
from synthetic import do_conv_model


def fold(tmp_path, model, *flags):
    src = tmp_path / "in.onnx"
    dst = tmp_path / "out.onnx"
    onnx.save(model, src)
    result = run_fold(src, dst, *flags)
    return result, src, dst


def kernel_of(path):
    model = onnx.load(str(path))
    init = {t.name: t for t in model.graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return model, numpy_helper.to_array(init[conv.input[1]]).astype(np.float64)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def run(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


@pytest.mark.parametrize("layout", ["pytorch", "keras"])
@pytest.mark.parametrize("groups,cin,cout", [(1, 4, 6), (4, 4, 4), (2, 4, 6), (4, 4, 8)])
@pytest.mark.parametrize("m,n,dmul", [(3, 3, 9), (3, 3, 14), (1, 3, 3), (2, 3, 7), (1, 1, 1)])
def test_layouts_groups_and_kernels(tmp_path, layout, groups, cin, cout, m, n, dmul):
    model, kernel = do_conv_model(layout, cin, cout, groups, m, n, dmul, casts=True)
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded, weight = kernel_of(dst)
    onnx.checker.check_model(folded, full_check=True)
    assert relative(weight, kernel) < 1e-5
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    x = np.random.default_rng(1).normal(size=(1, cin, 7, 7)).astype(np.float32)
    assert relative(run(dst, x), run(src, x)) < 1e-5


@pytest.mark.parametrize("dtype,bf16,tolerance", [(np.float64, False, 1e-6), (np.float16, False, 1e-3), (np.float32, True, 1e-2)])
def test_element_types_are_kept(tmp_path, dtype, bf16, tolerance):
    # Conv takes bfloat16 from opset 22 on.
    model, kernel = do_conv_model(dtype=dtype, bfloat16=bf16, opset=22 if bf16 else 17)
    result, _, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded, weight = kernel_of(dst)
    onnx.checker.check_model(folded, full_check=True)
    conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    stored = next(t for t in folded.graph.initializer if t.name == conv.input[1])
    assert stored.data_type == (TensorProto.BFLOAT16 if bf16 else {np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16}[dtype])
    assert relative(weight, kernel) < tolerance


@pytest.mark.parametrize("layout", ["pytorch", "keras"])
@pytest.mark.parametrize("d_constant", [False, True])
def test_float64_layers_fold_in_float64(tmp_path, layout, d_constant):
    """A float64 layer's kernel is composed in float64 (float32 arithmetic leaves about
    1e-7), and verify-equivalence's float64 tolerance catches a kernel off by 1e-9."""
    model, kernel = do_conv_model(layout, 4, 6, 2, 3, 3, 9, dtype=np.float64, d_constant=d_constant)
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded, weight = kernel_of(dst)
    assert relative(weight, kernel) < 1e-12
    assert run_verify(src, dst).returncode == 0
    conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    stored = next(t for t in folded.graph.initializer if t.name == conv.input[1])
    stored.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(stored) * (1 + 1e-9), stored.name))
    onnx.save(folded, tmp_path / "bad.onnx")
    result = run_verify(src, tmp_path / "bad.onnx")
    assert result.returncode == 1, result.stdout + result.stderr


@pytest.mark.parametrize("layout", ["pytorch", "keras"])
def test_d_as_a_constant_node(tmp_path, layout):
    model, kernel = do_conv_model(layout, d_constant=True)
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded, weight = kernel_of(dst)
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    assert relative(weight, kernel) < 1e-5
    x = np.random.default_rng(5).normal(size=(1, 4, 7, 7)).astype(np.float32)
    assert relative(run(dst, x), run(src, x)) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_typed_data_fields(tmp_path, dtype):
    model, kernel = do_conv_model(dtype=dtype, typed_fields=True)
    assert not any(t.raw_data for t in model.graph.initializer)
    result, _, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    _, weight = kernel_of(dst)
    assert relative(weight, kernel) < (1e-3 if dtype == np.float16 else 1e-6)


def test_custom_domain_ops_survive(tmp_path):
    gelu = helper.make_node("Gelu", ["conv_out"], ["output"], domain="com.microsoft", name="custom_gelu")
    model, _ = do_conv_model(extra_nodes=[gelu])
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded = onnx.load(str(dst))
    assert [(n.op_type, n.domain) for n in folded.graph.node] == [("Conv", ""), ("Gelu", "com.microsoft")]
    x = np.random.default_rng(2).normal(size=(1, 4, 7, 7)).astype(np.float32)
    assert relative(run(dst, x), run(src, x)) < 1e-5


def test_near_misses_are_left_alone_and_reported(tmp_path):
    # The composed kernel is also a graph output: folding would change the model's outputs.
    model, _ = do_conv_model(extra_outputs=["e"])
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    assert "not folded" in result.stdout
    assert [n.op_type for n in onnx.load(str(dst)).graph.node] == [n.op_type for n in model.graph.node]

    # An einsum that is not a DO-Conv composition.
    model, _ = do_conv_model()
    next(n for n in model.graph.node if n.op_type == "Einsum").attribute[0].s = b"ims,ois->omi"
    result, _, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    assert "not a DO-Conv composition" in result.stdout
    assert "Einsum" in [n.op_type for n in onnx.load(str(dst)).graph.node]


def test_kernel_shared_by_two_convs(tmp_path):
    second = helper.make_node("Conv", ["conv_out_relu", "kernel"], ["output"], pads=[1, 1, 1, 1], name="conv2")
    relu = helper.make_node("Relu", ["conv_out"], ["conv_out_relu"])
    model, kernel = do_conv_model(cin=4, cout=4, extra_nodes=[relu, second])
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded = onnx.load(str(dst))
    convs = [n for n in folded.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and convs[0].input[1] == convs[1].input[1]
    x = np.random.default_rng(3).normal(size=(1, 4, 7, 7)).astype(np.float32)
    assert relative(run(dst, x), run(src, x)) < 1e-5


def test_large_models_use_external_data_when_the_input_did(tmp_path):
    model, _ = do_conv_model(cin=64, cout=64)
    src = tmp_path / "ext.onnx"
    onnx.save(model, src, save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    dst = tmp_path / "out.onnx"
    result = run_fold(src, dst)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.onnx.data").exists()
    folded = onnx.load(str(dst), load_external_data=False)
    conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    weight = next(t for t in folded.graph.initializer if t.name == conv.input[1])
    assert weight.data_location == TensorProto.EXTERNAL
    assert {e.value for t in folded.graph.initializer for e in t.external_data if e.key == "location"} == {"out.onnx.data"}
    x = np.random.default_rng(4).normal(size=(1, 64, 7, 7)).astype(np.float32)
    assert relative(run(dst, x), run(src, x)) < 1e-5


def test_reshape_shape_initializers_go_with_the_composition(tmp_path):
    """A kernel Reshape whose shape is an initializer (not a Constant node): after the fold
    nothing reads it, so it must not stay behind (onnxruntime warns about unused ones)."""
    model, _ = do_conv_model()
    const = next(n for n in model.graph.node if n.op_type == "Constant" and n.output[0] == "k_shape")
    model.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(const.attribute[0].t), "k_shape"))
    model.graph.node.remove(const)
    result, src, dst = fold(tmp_path, model)
    assert result.returncode == 0, result.stderr
    folded = onnx.load(str(dst))
    used = {i for n in folded.graph.node for i in n.input}
    assert {t.name for t in folded.graph.initializer} <= used
