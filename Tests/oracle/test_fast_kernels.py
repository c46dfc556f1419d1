"""The reference executor's optimized Conv (im2col + tiled float64 GEMM, direct depthwise),
Einsum, Gemm and MatMul against onnxruntime on shapes that cross every tile edge (rows over 64,
columns over 192, K over 256), and its results byte for byte the same on 1, 2 and 3 threads."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import run_verify
from verify_support import agreement, executor_outputs, session, write_tensors

RNG = np.random.default_rng(3)

# name: (x shape, w shape, attributes, bias)
CASES = {
    "tiles_and_k_blocks": ((1, 40, 21, 19), (70, 40, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    "strided_dilated_asymmetric": ((2, 12, 17, 23), (20, 12, 3, 5), {"strides": [2, 3], "dilations": [2, 1], "pads": [2, 0, 1, 2]}, True),
    "plain_pointwise": ((2, 300, 5, 7), (65, 300, 1, 1), {}, False),
    "strided_pointwise": ((1, 16, 9, 9), (24, 16, 1, 1), {"strides": [2, 2]}, True),
    "grouped": ((1, 24, 13, 13), (36, 6, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True),
    "depthwise": ((2, 32, 15, 15), (32, 1, 3, 3), {"group": 32, "pads": [1, 1, 1, 1], "strides": [2, 2]}, True),
    "depthwise_multiplier": ((1, 8, 11, 11), (24, 1, 5, 5), {"group": 8, "pads": [2, 2, 2, 2]}, False),
    "large_kernel_stem": ((1, 3, 64, 64), (64, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}, True),
    # Padding wider than the kernel reaches: whole rows and columns of the im2col matrix are
    # padding, with strides and dilations on both axes.
    "padding_beyond_the_kernel": ((1, 5, 4, 6), (7, 5, 3, 3), {"pads": [4, 5, 3, 4], "strides": [2, 3], "dilations": [1, 2]}, True),
    # K x positions over 2^21: the im2col matrix is built in bands of output positions.
    "banded_im2col": ((1, 128, 64, 61), (3, 128, 3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, True),
}


def conv_model(path, x_shape, w_shape, attributes, bias):
    w = numpy_helper.from_array(RNG.standard_normal(w_shape).astype(np.float32), "w")
    inits = [w]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(w_shape[0]).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], **attributes)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


@pytest.mark.parametrize("name", sorted(CASES))
def test_conv_matches_onnxruntime(name, tmp_path):
    x_shape, w_shape, attributes, bias = CASES[name]
    path = tmp_path / f"{name}.onnx"
    conv_model(path, x_shape, w_shape, attributes, bias)
    feeds = {"x": RNG.standard_normal(x_shape).astype(np.float32)}
    want = session(path).run(None, feeds)[0]
    got = executor_outputs(path, feeds, tmp_path)["y"]
    assert agreement(got, want) <= 1e-5


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    x_shape, w_shape, attributes, bias = CASES["tiles_and_k_blocks"]
    path = tmp_path / "conv.onnx"
    conv_model(path, x_shape, w_shape, attributes, bias)
    inputs = tmp_path / "inputs.json"
    write_tensors({"x": RNG.standard_normal(x_shape).astype(np.float32)}, inputs)
    dumps = []
    for threads in ("1", "2", "3"):
        out = tmp_path / f"out{threads}.json"
        result = run_verify(path, "--input-json", inputs, "--dump-outputs", out, env=os.environ | {"DOCONV_THREADS": threads})
        assert result.returncode == 0, result.stderr
        dumps.append(out.read_bytes())
    assert dumps[0] == dumps[1] == dumps[2]


EINSUMS = {
    "doconv_pytorch": ("ims,ois->oim", [(6, 9, 12), (5, 6, 12)]),
    "doconv_keras": ("msi,sio->mio", [(9, 12, 6), (12, 6, 5)]),
    # A summed label over 64 long: the GEMM path (shorter ones are summed in place).
    "doconv_pytorch_long_sum": ("ims,ois->oim", [(6, 9, 80), (5, 6, 80)]),
    # Permutes crossing the 16 x 16 copy tiles, with the input's contiguous axis moved first.
    "permuted_tiles": ("bji,bkj->ibk", [(3, 40, 37), (3, 29, 40)]),
    "matrix": ("ij,jk->ik", [(70, 300), (300, 201)]),
    "batched_transposed": ("bji,bkj->bik", [(3, 40, 7), (3, 9, 40)]),
    "outer": ("i,j->ij", [(5,), (7,)]),
    "two_contracted": ("abc,cbd->ad", [(4, 5, 6), (6, 5, 3)]),
}


@pytest.mark.parametrize("name", sorted(EINSUMS))
def test_einsum_contractions_match_onnxruntime(name, tmp_path):
    equation, shapes = EINSUMS[name]
    names = [f"x{k}" for k in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=equation)
    graph = helper.make_graph([node], "einsum", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in zip(names, shapes)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = {n: RNG.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes)}
    want = session(path).run(None, feeds)[0]
    assert agreement(executor_outputs(path, feeds, tmp_path)["y"], want) <= 1e-5


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_on_the_fast_kernels(trans_a, trans_b, tmp_path):
    m, k, n = 70, 300, 201
    a_shape = (k, m) if trans_a else (m, k)
    b_shape = (n, k) if trans_b else (k, n)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=trans_a, transB=trans_b, alpha=0.5, beta=2.0)
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a_shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(RNG.standard_normal(b_shape).astype(np.float32), "b"),
                               numpy_helper.from_array(RNG.standard_normal((n,)).astype(np.float32), "c")])
    path = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = {"a": RNG.standard_normal(a_shape).astype(np.float32)}
    assert agreement(executor_outputs(path, feeds, tmp_path)["y"], session(path).run(None, feeds)[0]) <= 1e-5


def test_batched_matmul_with_broadcast(tmp_path):
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "matmul", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 65, 70]),
                                                 helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 70, 200])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "matmul.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    feeds = {"a": RNG.standard_normal((2, 3, 65, 70)).astype(np.float32), "b": RNG.standard_normal((3, 70, 200)).astype(np.float32)}
    assert agreement(executor_outputs(path, feeds, tmp_path)["y"], session(path).run(None, feeds)[0]) <= 1e-5
