"""Issue 17: DO-Conv kernel compositions inside ONNX local functions are folded per call
site (the call is inlined as a plain Conv, the function dropped once nothing calls it);
a call whose D and W are not constants there is left and reported. Compositions inside
control-flow subgraphs fold where their D and W are constants, and are reported where not,
never as "no DO-Conv layer". verify-equivalence accepts both kinds of result."""
import json

import numpy as np
import onnx
import pytest
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, run_fold, run_inspect, run_verify

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
    """A local function DOConv2d(x, D, W), called twice with different weights. Its Conv takes
    `pads` from the call and `dilations` from the function's default (attribute references)."""
    conv = helper.make_node("Conv", ["x", "k"], ["y"])
    pads = helper.make_attribute_ref("pads", onnx.AttributeProto.INTS)
    dilations = helper.make_attribute_ref("dilation", onnx.AttributeProto.INTS)
    dilations.name = "dilations"
    conv.attribute.extend([pads, dilations])
    body = kernel_nodes("", "D", "W", "k") + [conv]
    fn = helper.make_function("custom", "DOConv2d", ["x", "D", "W"], ["y"], body, opset_imports=[helper.make_opsetid("", 17)],
                              attributes=["pads"], attribute_protos=[helper.make_attribute("dilation", [1, 1])])
    nodes, inits = [], []
    for k in range(calls):
        inits += weights(str(k))
        nodes.append(helper.make_node("DOConv2d", ["x" if k == 0 else f"h{k - 1}", f"D{k}", f"W{k}"], [f"h{k}" if k < calls - 1 else "y"],
                                      domain="custom", name=f"call{k}", pads=[1, 1, 1, 1]))
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


def if_model(path, weights_as_inputs=False):
    """A DO-Conv layer in each branch of an If, weights from the outer scope (initializers,
    or with `weights_as_inputs` graph inputs)."""
    def branch(name):
        nodes = kernel_nodes(name + "_", "D", "W", name + "_k") + [helper.make_node("Conv", ["x", name + "_k"], [name + "_y"], pads=[1, 1, 1, 1])]
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(name + "_y", TensorProto.FLOAT, [1, 4, 8, 8])])
    inputs, outputs = io()
    inputs.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    node = helper.make_node("If", ["flag"], ["y"], then_branch=branch("then"), else_branch=branch("else"), name="choose")
    inits = weights()
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
        inits = []
    model = helper.make_model(helper.make_graph([node], "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def ops(model):
    """Op types of the main graph and of every function body."""
    return [n.op_type for n in model.graph.node] + [n.op_type for f in model.functions for n in f.node]


def outputs(path, feeds):
    return ort.InferenceSession(str(path)).run(None, feeds)[0]


def test_a_function_called_twice_folds_per_call(tmp_path):
    src, out = tmp_path / "functions.onnx", tmp_path / "out.onnx"
    function_model(src)
    original = src.read_bytes()
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 2 layers: 2 DO-Conv" in result.stdout and "not folded:" not in result.stdout, result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    assert not folded.functions and "Einsum" not in ops(folded) and "DOConv2d" not in ops(folded)
    convs = [n for n in folded.graph.node if n.op_type == "Conv" and n.name.startswith("call")]
    assert len(convs) == 2
    kernels = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
    assert not np.array_equal(kernels[convs[0].input[1]], kernels[convs[1].input[1]])  # one kernel per call site
    for conv in convs:  # attributes resolved: pads from the call, dilations from the function's default
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        assert attrs["pads"] == [1, 1, 1, 1] and attrs["dilations"] == [1, 1] and all(not a.ref_attr_name for a in conv.attribute)
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(outputs(out, {"x": x}), outputs(src, {"x": x}), rtol=1e-5, atol=1e-5)
    report = json.loads(run_inspect(src, "--json").stdout)
    assert len(report["layers"]) == 2 and report["rejected"] == []
    assert src.read_bytes() == original


def test_a_call_whose_composition_does_not_fold_is_put_back(tmp_path):
    """The function also returns its composed kernel, which the graph outputs: no DO-Conv
    layer folds there, so the call stays a call and the model is written unchanged."""
    src, out = tmp_path / "kernel_out.onnx", tmp_path / "out.onnx"
    body = kernel_nodes("", "D", "W", "k") + [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1])]
    fn = helper.make_function("custom", "DOConv2d", ["x", "D", "W"], ["y", "k"], body, opset_imports=[helper.make_opsetid("", 17)])
    inputs, outputs_ = io()
    outputs_.append(helper.make_tensor_value_info("kernel", TensorProto.FLOAT, [4, 3, 3, 3]))
    call = helper.make_node("DOConv2d", ["x", "D", "W"], ["y", "kernel"], domain="custom", name="call0")
    model = helper.make_model(helper.make_graph([call], "g", inputs, outputs_, weights()), functions=[fn],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, src)
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "no DO-Conv layer folded: 1 left unfolded" in result.stdout and result.stdout.count("not folded:") == 1, result.stdout
    assert "not folded: function DOConv2d, call node call0" in result.stdout and "also used by something other" in result.stdout
    assert out.read_bytes() == src.read_bytes()
    report = json.loads(run_inspect(src, "--json").stdout)
    assert report["layers"] == [] and [r.get("unreached") for r in report["rejected"]] == [True]


def export_fixture():
    """fixtures/functions.ts.onnx: three DOConv2d layers exported as local functions."""
    src = FIXTURES / "functions.ts.onnx"
    assert src.stat().st_size < 50_000
    expected = np.load(FIXTURES / "functions.expected.npz")
    return src, expected


def test_functions_fixture_folds(tmp_path):
    src, expected = export_fixture()
    out = tmp_path / "out.onnx"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 3 layers: 1 DO-Conv, 1 DO-DConv, 1 DO-GConv" in result.stdout and "not folded:" not in result.stdout, result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    assert not folded.functions, [f.name for f in folded.functions]
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu", "Conv", "Relu", "Conv"]
    assert "Einsum" not in ops(folded)
    got = outputs(out, {"input": expected["input"]})
    np.testing.assert_allclose(got, expected["output"], rtol=1e-5, atol=1e-5 * np.abs(expected["output"]).max())
    # The strides and groups the function took from its call sites.
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in folded.graph.node if n.op_type == "Conv"]
    assert [a["strides"] for a in attrs] == [[1, 1], [2, 2], [1, 1]] and [a["group"] for a in attrs] == [1, 8, 2]
    report = json.loads(run_inspect(src, "--json").stdout)
    assert [layer["kind"] for layer in report["layers"]] == ["DO-Conv", "DO-DConv", "DO-GConv"]
    assert [layer["location"] for layer in report["layers"]] == [
        "function DOConv2d, call node /conv1/DOConv2d", "function DOConv2d, call node /conv2/DOConv2d",
        "function DOConv2d.1, call node /conv3/DOConv2d.1"]
    text = run_inspect(src).stdout
    assert "3 DO-Conv layers" in text and "  2  function DOConv2d, call node /conv2/DOConv2d" in text, text


def test_functions_fixture_verifies(tmp_path):
    """verify-equivalence expands ORIGINAL's calls into their bodies: each folded Conv then
    stands for its body's Conv, and the reference executor runs both models end to end."""
    src, _ = export_fixture()
    out = tmp_path / "out.onnx"
    assert run_fold(src, out).returncode == 0
    result = run_verify(src, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "structure: ok" in result.stdout and "layers: 3 replaced, 3 verified" in result.stdout, result.stdout
    assert "output '43'" in result.stdout and "end to end: not run" not in result.stdout, result.stdout
    assert "3 in ORIGINAL, 0 in FOLDED" in result.stdout


def tamper(path, out, name, index=0, delta=0.5):
    """A copy of the model at `path` with one value of initializer `name` changed."""
    model = onnx.load(str(path))
    tensor = next(t for t in model.graph.initializer if t.name == name)
    values = numpy_helper.to_array(tensor).copy()
    values.flat[index] += delta
    tensor.CopyFrom(numpy_helper.from_array(values, name))
    onnx.save(model, str(out))


def test_a_tampered_inlined_call_is_not_equivalent(tmp_path):
    src, _ = export_fixture()
    out, bad = tmp_path / "out.onnx", tmp_path / "bad.onnx"
    assert run_fold(src, out).returncode == 0
    kernel = next(n for n in onnx.load(str(out)).graph.node if n.name.startswith("/conv2/")).input[1]
    tamper(out, bad, kernel)
    result = run_verify(src, bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL /conv2/DOConv2d" in result.stdout and "NOT EQUIVALENT" in result.stdout, result.stdout


def test_a_call_renamed_by_the_fold_is_a_difference(tmp_path):
    """An inlined call must keep the call's outputs: a Conv that writes another value is not
    the call it replaced."""
    src, _ = export_fixture()
    out, bad = tmp_path / "out.onnx", tmp_path / "bad.onnx"
    assert run_fold(src, out).returncode == 0
    model = onnx.load(str(out))
    first, relu = model.graph.node[0], model.graph.node[1]
    first.output[0] = relu.input[0] = "renamed"
    onnx.save(model, str(bad))
    result = run_verify(src, bad)
    assert result.returncode == 1 and "structure: ok" not in result.stdout, result.stdout


def test_a_call_whose_weights_are_graph_inputs_is_left(tmp_path):
    """conv2's D and W arrive as graph inputs: that call stays (and its function with it),
    reported as not folded; the other two fold."""
    src, expected = export_fixture()
    model = onnx.load(str(src))
    call = next(n for n in model.graph.node if n.name == "/conv2/DOConv2d")
    moved = {name: i for i in model.graph.initializer for name in call.input[1:3] if i.name == name}
    assert len(moved) == 2
    for name, tensor in moved.items():
        model.graph.initializer.remove(tensor)
        model.graph.input.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
    onnx.checker.check_model(model, full_check=True)
    inputs_src, out = tmp_path / "inputs.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(inputs_src))
    result = run_fold(inputs_src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 2 layers" in result.stdout and result.stdout.count("not folded:") == 1, result.stdout
    assert "not folded: function DOConv2d, call node /conv2/DOConv2d" in result.stdout and "a graph input, not a constant" in result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    assert [f.name for f in folded.functions] == ["DOConv2d"]  # still called; DOConv2d.1 is gone
    assert [n.op_type for n in folded.graph.node] == ["Conv", "Relu", "DOConv2d", "Relu", "Conv"]
    assert folded.functions[0] == model.functions[[f.name for f in model.functions].index("DOConv2d")]  # untouched
    feeds = {"input": expected["input"]} | {name: numpy_helper.to_array(t) for name, t in moved.items()}
    got = outputs(out, feeds)
    np.testing.assert_allclose(got, expected["output"], rtol=1e-5, atol=1e-5 * np.abs(expected["output"]).max())
    report = json.loads(run_inspect(inputs_src, "--json").stdout)
    assert len(report["layers"]) == 2 and [r.get("unreached") for r in report["rejected"]] == [True]
    # The call left in FOLDED is expanded there as in ORIGINAL.
    result = run_verify(inputs_src, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers: 2 replaced, 2 verified" in result.stdout and "3 in ORIGINAL, 1 in FOLDED" in result.stdout, result.stdout


def loop_model(path):
    """A Loop whose body holds a DO-Conv layer (3 -> 3 channels) with its own D and W."""
    rng = np.random.default_rng(1)
    d = numpy_helper.from_array(rng.standard_normal((3, 9, 9)).astype(np.float32), "body_D")
    w = numpy_helper.from_array((0.1 * rng.standard_normal((3, 3, 9))).astype(np.float32), "body_W")
    nodes = [
        helper.make_node("Einsum", ["body_D", "body_W"], ["body_k3"], equation="ims,ois->oim", name="body_einsum"),
        helper.make_node("Constant", [], ["body_shape"], value=numpy_helper.from_array(np.array([3, 3, 3, 3], np.int64))),
        helper.make_node("Reshape", ["body_k3", "body_shape"], ["body_k"]),
        helper.make_node("Conv", ["h_in", "body_k"], ["h_out"], pads=[1, 1, 1, 1], name="body_conv"),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ]
    value = lambda name, t, shape: helper.make_tensor_value_info(name, t, shape)  # noqa: E731
    body = helper.make_graph(nodes, "body", [value("i", TensorProto.INT64, []), value("cond_in", TensorProto.BOOL, []),
                                             value("h_in", TensorProto.FLOAT, [1, 3, 8, 8])],
                             [value("cond_out", TensorProto.BOOL, []), value("h_out", TensorProto.FLOAT, [1, 3, 8, 8])], [d, w])
    inits = [numpy_helper.from_array(np.array(2, np.int64), "trips"), numpy_helper.from_array(np.array(True), "go")]
    loop = helper.make_node("Loop", ["trips", "go", "x"], ["y"], body=body, name="repeat")
    graph = helper.make_graph([loop], "g", [value("x", TensorProto.FLOAT, [1, 3, 8, 8])], [value("y", TensorProto.FLOAT, [1, 3, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def all_nodes(graph):
    """Nodes of `graph` and of every subgraph below it."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from all_nodes(sub)


def test_layers_inside_if_branches_fold(tmp_path):
    src, out = tmp_path / "branches.onnx", tmp_path / "out.onnx"
    if_model(src)
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 2 layers: 2 DO-Conv" in result.stdout and "not folded:" not in result.stdout, result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    assert "Einsum" not in [n.op_type for n in all_nodes(folded.graph)]
    assert {"D", "W"}.isdisjoint(i.name for i in folded.graph.initializer)  # nothing reads them any more
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    for flag in (True, False):
        feeds = {"x": x, "flag": np.array(flag)}
        want = outputs(src, feeds)
        np.testing.assert_allclose(outputs(out, feeds), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    report = json.loads(run_inspect(src, "--json").stdout)
    assert len(report["layers"]) == 2 and report["rejected"] == []
    assert sorted(layer["location"] for layer in report["layers"]) == ["If choose/else_branch", "If choose/then_branch"]
    assert "If choose/then_branch" in run_inspect(src).stdout
    # The branches' nodes are compared in line; If itself is not executed yet (issue 13).
    result = run_verify(src, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers: 2 replaced, 2 verified" in result.stdout and "2 control-flow subgraphs" in result.stdout, result.stdout
    assert "ok   If choose/then_branch/then_k [Conv (output 'then_y')]" in result.stdout, result.stdout
    bad = tmp_path / "bad.onnx"
    tamper(out, bad, "then_k.weight", index=4)
    result = run_verify(src, bad)
    assert result.returncode == 1 and "FAIL If choose/then_branch/then_k" in result.stdout, result.stdout


def test_layer_inside_a_loop_body_with_its_own_weights_folds(tmp_path):
    src, out = tmp_path / "loop.onnx", tmp_path / "out.onnx"
    loop_model(src)
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 1 layer: 1 DO-Conv" in result.stdout and "not folded:" not in result.stdout, result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    body = folded.graph.node[0].attribute[0].g
    assert [n.op_type for n in body.node] == ["Conv", "Identity"] and not body.initializer
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = outputs(src, {"x": x})
    np.testing.assert_allclose(outputs(out, {"x": x}), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    result = run_verify(src, out)
    assert result.returncode == 0 and "ok   Loop repeat/body/body_conv" in result.stdout, result.stdout + result.stderr


def test_layers_inside_if_branches_with_input_weights_are_reported(tmp_path):
    """D and W arrive as graph inputs: nothing folds, both layers are listed as not folded."""
    src, out = tmp_path / "branches.onnx", tmp_path / "out.onnx"
    if_model(src, weights_as_inputs=True)
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("not folded:") == 2 and "is a graph input, not a constant" in result.stdout, result.stdout
    assert "not folded: If choose/then_branch/" in result.stdout and "not folded: If choose/else_branch/" in result.stdout
    assert out.read_bytes() == src.read_bytes()  # written back unchanged
    report = json.loads(run_inspect(src, "--json").stdout)
    assert report["layers"] == [] and len(report["rejected"]) == 2


def test_a_function_also_called_from_a_branch_is_kept(tmp_path):
    """The main graph's call is inlined and folded; the If branches' calls keep the function
    (and D and W, which they read), and their composition is reported as not folded."""
    src, out = tmp_path / "mixed.onnx", tmp_path / "out.onnx"
    body = kernel_nodes("", "D", "W", "k") + [helper.make_node("Conv", ["x", "k"], ["y"], pads=[1, 1, 1, 1])]
    fn = helper.make_function("custom", "DOConv2d", ["x", "D", "W"], ["y"], body, opset_imports=[helper.make_opsetid("", 17)])

    def branch(name):
        return helper.make_graph([helper.make_node("DOConv2d", ["x", "D", "W"], [name + "_y"], domain="custom")], name, [],
                                 [helper.make_tensor_value_info(name + "_y", TensorProto.FLOAT, [1, 4, 8, 8])])
    inputs, outputs_ = io()
    inputs.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    outputs_.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8]))
    nodes = [helper.make_node("DOConv2d", ["x", "D", "W"], ["y"], domain="custom", name="c"),
             helper.make_node("If", ["flag"], ["z"], then_branch=branch("then"), else_branch=branch("else"), name="choose")]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs_, weights()), functions=[fn],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, src)
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "folded 1 layer" in result.stdout and result.stdout.count("not folded:") == 1, result.stdout
    assert "inside local function 'DOConv2d' (2 calls)" in result.stdout
    folded = onnx.load(str(out))
    onnx.checker.check_model(folded, full_check=True)
    assert [n.op_type for n in folded.graph.node] == ["Conv", "If"] and [f.name for f in folded.functions] == ["DOConv2d"]
    assert {"D", "W"} <= {i.name for i in folded.graph.initializer}
    feeds = {"x": RNG.standard_normal((1, 3, 8, 8)).astype(np.float32), "flag": np.array(True)}
    for got, want in zip(ort.InferenceSession(str(out)).run(None, feeds), ort.InferenceSession(str(src)).run(None, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_a_function_calling_itself_ends(tmp_path):
    """Recursion is invalid ONNX; doconv inlines one level and ends (no loop, no crash)."""
    src, out = tmp_path / "recursive.onnx", tmp_path / "out.onnx"
    body = kernel_nodes("", "D", "W", "k") + [helper.make_node("Conv", ["x", "k"], ["y0"], pads=[1, 1, 1, 1]),
                                              helper.make_node("DOConv2d", ["y0", "D", "W"], ["y"], domain="custom")]
    fn = helper.make_function("custom", "DOConv2d", ["x", "D", "W"], ["y"], body, opset_imports=[helper.make_opsetid("", 17)])
    inputs, outputs_ = io()
    graph = helper.make_graph([helper.make_node("DOConv2d", ["x", "D", "W"], ["y"], domain="custom", name="c")], "g", inputs, outputs_, weights())
    onnx.save(helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)]), src)
    result = run_fold(src, out)
    assert result.returncode in (0, 2), result.stderr
    assert run_inspect(src).returncode in (0, 2)
