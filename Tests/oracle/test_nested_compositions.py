"""Issue 17 (first part): DO-Conv kernel compositions inside ONNX local functions and
control-flow subgraphs are reported as DO-Conv layers that were not folded, never as
"no DO-Conv layer" (the model is written unchanged, and onnxruntime still runs it)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import run_fold, run_inspect

RNG = np.random.default_rng(0)


def kernel_nodes(prefix, d, w, out):
    """Einsum('ims,ois->oim') then a Reshape to a 3x3 Conv weight, as the TorchScript exporter writes it."""
    return [
        helper.make_node("Einsum", [d, w], [prefix + "k3"], equation="ims,ois->oim", name=prefix + "einsum"),
        helper.make_node("Constant", [], [prefix + "shape"], value=numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64))),
        helper.make_node("Reshape", [prefix + "k3", prefix + "shape"], [out]),
    ]


def weights(suffix=""):
    return [numpy_helper.from_array(RNG.standard_normal((3, 9, 9)).astype(np.float32), "D" + suffix),
            numpy_helper.from_array(RNG.standard_normal((4, 3, 9)).astype(np.float32), "W" + suffix)]


def io():
    return ([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])])


def function_model(path, calls=2):
    """A local function DOConv2d(x, D, W), called twice with different weights."""
    body = kernel_nodes("", "D", "W", "k") + [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1])]
    fn = helper.make_function("custom", "DOConv2d", ["x", "D", "W"], ["y"], body, opset_imports=[helper.make_opsetid("", 17)])
    nodes, inits = [], []
    for k in range(calls):
        inits += weights(str(k))
        nodes.append(helper.make_node("DOConv2d", ["x" if k == 0 else f"h{k - 1}", f"D{k}", f"W{k}"], [f"h{k}" if k < calls - 1 else "y"],
                                      domain="custom", name=f"call{k}"))
    # Each call maps 3 -> 4 channels; a 1x1 conv brings the first back to 3.
    inputs, outputs = io()
    if calls > 1:
        nodes.insert(1, helper.make_node("Conv", ["h0", "back"], ["h0b"]))
        nodes[2].input[0] = "h0b"
        inits.append(numpy_helper.from_array(RNG.standard_normal((3, 4, 1, 1)).astype(np.float32), "back"))
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def if_model(path):
    """A DO-Conv layer in each branch of an If, weights from the outer scope."""
    def branch(name):
        nodes = kernel_nodes(name + "_", "D", "W", name + "_k") + [helper.make_node("Conv", ["x", name + "_k"], [name + "_y"], pads=[1, 1, 1, 1])]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(name + "_y", TensorProto.FLOAT, [1, 4, 8, 8])])
    inputs, outputs = io()
    inputs.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    node = helper.make_node("If", ["flag"], ["y"], then_branch=branch("then"), else_branch=branch("else"), name="choose")
    model = helper.make_model(helper.make_graph([node], "g", inputs, outputs, weights()), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def check(tmp_path, src, expected):
    out = tmp_path / "out.onnx"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "no DO-Conv layer found" not in result.stdout, result.stdout
    assert f"no DO-Conv layer folded: {expected} sit" in result.stdout, result.stdout
    assert result.stdout.count("not folded:") == expected and "doconv does not fold there yet" in result.stdout
    assert out.read_bytes() == src.read_bytes()  # written back unchanged
    ort.InferenceSession(str(out))  # and still a model onnxruntime runs
    report = json.loads(run_inspect(src, "--json").stdout)
    assert report["layers"] == []
    assert [r.get("unreached") for r in report["rejected"]] == [True] * expected
    text = run_inspect(src).stdout
    assert "no DO-Conv layer found" not in text and f"{expected} DO-Conv layer" in text, text


def test_layers_inside_a_local_function_are_reported(tmp_path):
    src = tmp_path / "functions.onnx"
    function_model(src)
    check(tmp_path, src, 1)
    result = run_fold(src, tmp_path / "again.onnx")
    assert "local function 'DOConv2d' (2 calls)" in result.stdout, result.stdout


def test_layers_inside_if_branches_are_reported(tmp_path):
    src = tmp_path / "branches.onnx"
    if_model(src)
    check(tmp_path, src, 2)
    result = run_fold(src, tmp_path / "again.onnx")
    assert "'then_branch' subgraph of If node 'choose'" in result.stdout and "'else_branch'" in result.stdout, result.stdout
