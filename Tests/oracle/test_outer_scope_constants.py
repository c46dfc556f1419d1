"""Issue 26: a DO-Conv layer inside an `If` branch whose d_diag the TorchScript exporter
deduplicated into an `Identity` of another layer's in the main graph
(fixtures/make_subgraph_fixtures.py). Constant resolution inside subgraphs follows the outer
scope's Identity/Cast/Constant chains as the main graph's does, and says what a value that is
not a constant really is."""
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, run_fold, run_inspect, run_verify

SOURCE = FIXTURES / "if_shared_diag.ts.onnx"
EXPECTED = np.load(FIXTURES / "if_shared_diag.expected.npz")


def all_ops(graph):
    """Op types of a graph and every subgraph in it."""
    ops = []
    for node in graph.node:
        ops.append(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                ops += all_ops(attribute.g)
    return ops


def shared_identity(model):
    return next(n for n in model.graph.node if n.op_type == "Identity" and n.output[0].endswith("d_diag"))


def test_the_fixture_reads_a_d_diag_through_a_main_graph_identity():
    model = onnx.load(str(SOURCE))
    identity = shared_identity(model)
    branch_reads = {name for node in model.graph.node if node.op_type == "If" for a in node.attribute for n in a.g.node for name in n.input}
    assert identity.output[0] in branch_reads and identity.input[0] in branch_reads


def test_a_layer_reading_an_outer_identity_folds(tmp_path):
    out = tmp_path / "out.onnx"
    result = run_fold(SOURCE, out)
    assert result.returncode == 0, result.stderr
    assert "folded 3 layers" in result.stdout and "not folded" not in result.stdout, result.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    ops = all_ops(model.graph)
    assert "Einsum" not in ops and ops.count("Conv") == 3, ops
    # The Identity only the folded branch read is gone, and with it the shared d_diag.
    assert "Identity" not in [n.op_type for n in model.graph.node]
    assert not any(i.name.endswith("d_diag") for i in model.graph.initializer)
    session = ort.InferenceSession(str(out))
    for branch in ("then", "else"):
        want = EXPECTED[f"output_{branch}"]
        got = session.run(None, {"input": EXPECTED[f"input_{branch}"]})[0]
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), branch
    verdict = run_verify(SOURCE, out, "--inputs", "2")
    assert verdict.returncode == 0 and "verdict: EQUIVALENT" in verdict.stdout, verdict.stdout[-3000:]
    report = run_inspect(SOURCE).stdout
    assert "3 DO-Conv layers" in report and "If /If/else_branch/else_conv" in report, report


def test_an_outer_value_that_is_not_constant_is_named_for_what_it_is(tmp_path):
    """The shared d_diag computed from the input (Mul by a ReduceMax of it), then a graph input:
    each left, with the reason that fits."""
    model = onnx.load(str(SOURCE))
    identity = shared_identity(model)
    source, target = identity.input[0], identity.output[0]
    position = list(model.graph.node).index(identity)
    model.graph.node.remove(identity)
    model.graph.node.insert(position, helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0, name="peak"))
    model.graph.node.insert(position + 1, helper.make_node("Mul", [source, "peak"], [target], name="scaled_diag"))
    computed = tmp_path / "computed.onnx"
    onnx.save(model, str(computed))
    result = run_fold(computed, tmp_path / "out.onnx")
    assert result.returncode == 0, result.stderr
    assert f"not folded: If /If/else_branch//else_conv/Conv: '{target}' is computed by Mul, not from constants" in result.stdout, result.stdout
    assert "graph input" not in result.stdout

    model = onnx.load(str(SOURCE))
    model.graph.node.remove(shared_identity(model))
    model.graph.input.append(helper.make_tensor_value_info(target, TensorProto.FLOAT, [8, 9, 9]))
    fed = tmp_path / "fed.onnx"
    onnx.save(model, str(fed))
    result = run_fold(fed, tmp_path / "out2.onnx")
    assert result.returncode == 0, result.stderr
    assert f"not folded: If /If/else_branch//else_conv/Conv: '{target}' is a graph input, not a constant" in result.stdout, result.stdout


def test_an_outer_chain_that_cannot_run_is_bad_input(tmp_path):
    """The shared d_diag as a Reshape the values cannot take: the model is broken, not a
    near-miss. One error line, exit 2, nothing written."""
    model = onnx.load(str(SOURCE))
    identity = shared_identity(model)
    source, target = identity.input[0], identity.output[0]
    position = list(model.graph.node).index(identity)
    model.graph.node.remove(identity)
    model.graph.initializer.append(numpy_helper.from_array(np.array([5, -1, 7], np.int64), "bad_shape"))
    model.graph.node.insert(position, helper.make_node("Reshape", [source, "bad_shape"], [target], name="bad_reshape"))
    src = tmp_path / "bad.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "out.onnx"
    result = run_fold(src, out)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and "bad_reshape" in lines[0], result.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]
