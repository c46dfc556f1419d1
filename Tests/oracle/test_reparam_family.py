"""Issue 26: `--reparam` on graphs written the way the re-parameterization projects' own code
writes them (fixtures/make_reparam_family_fixtures.py: MobileOne's `out = 0; out += branch`,
YOLOv6's in-place ReLUs and `+ id_out`, FastViT's RepMixer, RepViT's RepVGG-DW after a 3x3
conv, RepGhost's re-param branch, DBB's padded BN), and the pieces that get them there:
identity arithmetic dropped before matching, in every fold."""
import json

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, ROOT, run_fold, run_inspect, run_verify

FAMILY = FIXTURES / "reparam_family"
ENTRIES = json.loads((FAMILY / "MANIFEST.json").read_text())
assert len(ENTRIES) >= 7, "fixtures/reparam_family/MANIFEST.json lists too few models: rerun fixtures/make_reparam_family_fixtures.py"
SCHEMA = json.loads((ROOT / "schemas" / "inspect-report.schema.json").read_text())
COUNTED = ("Conv", "Add", "BatchNormalization")


def op_counts(model):
    ops = [n.op_type for n in model.graph.node]
    return {op: ops.count(op) for op in COUNTED}


def run_ort(path, feeds):
    return ort.InferenceSession(str(path)).run(None, feeds)


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Each family fixture folded with --reparam once: name -> (output path, fold result)."""
    out = tmp_path_factory.mktemp("family")
    results = {}
    for name, entry in ENTRIES.items():
        target = out / f"{name}.onnx"
        results[name] = (target, run_fold(FAMILY / entry["train"], target, "--reparam"))
    return results


@pytest.mark.parametrize("name", list(ENTRIES))
def test_family_reaches_its_deploy_form(name, merged):
    entry = ENTRIES[name]
    path, result = merged[name]
    assert result.returncode == 0, result.stderr
    assert op_counts(onnx.load(str(FAMILY / entry["train"]))) == entry["train_ops"]  # the input is the training form
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    counts = op_counts(model)
    assert all(counts[op] <= entry["deploy_ops"][op] for op in COUNTED), (counts, entry["deploy_ops"], result.stdout)
    expected = np.load(FAMILY / entry["expected"])
    got = run_ort(path, {"input": expected["input"]})[0]
    scale = np.abs(expected["output"]).max()
    assert np.abs(got - expected["output"]).max() <= 1e-5 * scale


@pytest.mark.parametrize("name", list(ENTRIES))
def test_family_merges_verify(name, merged):
    path, fold = merged[name]
    assert fold.returncode == 0, fold.stderr
    result = run_verify(FAMILY / ENTRIES[name]["train"], path, "--inputs", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout and "structure: ok" in result.stdout
    assert "FAIL" not in result.stdout, result.stdout[-3000:]
    # Not only the verdict: the counts must also be the deploy form's for this to be the point.
    counts = op_counts(onnx.load(str(path)))
    assert all(counts[op] <= ENTRIES[name]["deploy_ops"][op] for op in COUNTED)


def test_inspect_reports_the_family_blocks():
    report = json.loads(run_inspect(FAMILY / ENTRIES["mobileone_s0"]["train"], "--reparam", "--json").stdout)
    jsonschema.validate(report, SCHEMA)
    assert len(report["reparam"]["blocks"]) == ENTRIES["mobileone_s0"]["deploy_ops"]["Conv"]
    text = run_inspect(FAMILY / ENTRIES["yolov6_efficientrep"]["train"], "--reparam").stdout
    assert "re-parameterizable blocks (--reparam): 19" in text, text


# MARK: identity arithmetic

X_SHAPE = [1, 4, 8, 8]
RNG = np.random.default_rng(26)


def weight(name, shape):
    return numpy_helper.from_array(RNG.normal(0, 0.5, shape).astype(np.float32), name)


def scalar(name, value, shape=()):
    return numpy_helper.from_array(np.full(shape, value, np.float32), name)


def constant_node(output, value, shape=()):
    return helper.make_node("Constant", [], [output], value=scalar(output + "_v", value, shape))


def two_branch(prefix, source):
    """A 3x3 conv and a 1x1 conv of `source`, summed: (nodes, initializers, sum)."""
    nodes = [helper.make_node("Conv", [source, f"{prefix}_w3", f"{prefix}_b3"], [f"{prefix}_c3"], pads=[1, 1, 1, 1], name=f"{prefix}_conv3"),
             helper.make_node("Conv", [source, f"{prefix}_w1"], [f"{prefix}_c1"], name=f"{prefix}_conv1"),
             helper.make_node("Add", [f"{prefix}_c3", f"{prefix}_c1"], [f"{prefix}_sum"], name=f"{prefix}_add")]
    inits = [weight(f"{prefix}_w3", [4, 4, 3, 3]), weight(f"{prefix}_b3", [4]), weight(f"{prefix}_w1", [4, 4, 1, 1])]
    return nodes, inits, f"{prefix}_sum"


def identity_zoo(value_info=True):
    """Blocks of two convs whose sum is followed by each kind of identity arithmetic (both
    sides where the op commutes, a chain of two, a one-element rank-4 zero, a [1, 4, 1, 1]
    zero with and without a declared shape) and by arithmetic that is not the identity."""
    nodes, inits, outputs, infos = [], [], [], []
    cases = {
        "add_right": lambda s, p: [constant_node(f"{p}_z", 0.0), helper.make_node("Add", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_id")],
        "add_left": lambda s, p: [constant_node(f"{p}_z", 0.0), helper.make_node("Add", [f"{p}_z", s], [f"{p}_y"], name=f"{p}_id")],
        "sub": lambda s, p: [constant_node(f"{p}_z", 0.0), helper.make_node("Sub", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_id")],
        "mul_left": lambda s, p: [constant_node(f"{p}_z", 1.0), helper.make_node("Mul", [f"{p}_z", s], [f"{p}_y"], name=f"{p}_id")],
        "div": lambda s, p: [constant_node(f"{p}_z", 1.0), helper.make_node("Div", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_id")],
        "chain": lambda s, p: [constant_node(f"{p}_z", 0.0), constant_node(f"{p}_o", 1.0, [1]),
                               helper.make_node("Add", [s, f"{p}_z"], [f"{p}_t"], name=f"{p}_id0"),
                               helper.make_node("Mul", [f"{p}_t", f"{p}_o"], [f"{p}_y"], name=f"{p}_id")],
        "rank4": lambda s, p: [constant_node(f"{p}_z", 0.0, [1, 1, 1, 1]), helper.make_node("Add", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_id")],
        "declared": lambda s, p: [constant_node(f"{p}_z", 0.0, [1, 4, 1, 1]), helper.make_node("Add", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_id")],
    }
    kept = {
        "sub_left": lambda s, p: [constant_node(f"{p}_z", 0.0), helper.make_node("Sub", [f"{p}_z", s], [f"{p}_y"], name=f"{p}_keep")],
        "div_left": lambda s, p: [constant_node(f"{p}_z", 1.0), helper.make_node("Div", [f"{p}_z", s], [f"{p}_y"], name=f"{p}_keep")],
        "half": lambda s, p: [constant_node(f"{p}_z", 0.5), helper.make_node("Add", [s, f"{p}_z"], [f"{p}_y"], name=f"{p}_keep")],
    }
    for prefix, make in list(cases.items()) + list(kept.items()):
        n, i, s = two_branch(prefix, "x")
        nodes += n + make(s, prefix) + [helper.make_node("Relu", [f"{prefix}_y"], [f"{prefix}_out"])]
        inits += i
        outputs.append(helper.make_tensor_value_info(f"{prefix}_out", TensorProto.FLOAT, X_SHAPE))
        if prefix == "declared" and value_info:
            infos.append(helper.make_tensor_value_info(s, TensorProto.FLOAT, X_SHAPE))
    graph = helper.make_graph(nodes, "zoo", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)], outputs, inits, value_info=infos)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def assert_same_outputs(original, folded):
    x = RNG.normal(size=X_SHAPE).astype(np.float32)
    for want, got in zip(run_ort(original, {"x": x}), run_ort(folded, {"x": x})):
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_identity_arithmetic_is_dropped_before_matching(tmp_path):
    src = save(identity_zoo(), tmp_path / "zoo.onnx")
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    names = {n.name for n in model.graph.node}
    # Every identity went and its block merged; what is not the identity stayed, after the sum
    # it reads, which merged (the Add of 0.5 holds the sum as a subtree with a constant leaf).
    assert not any(name.endswith(("_id", "_id0")) for name in names), names
    assert {"sub_left_keep", "div_left_keep", "half_keep"} <= names
    assert [n.op_type for n in model.graph.node].count("Conv") == 11
    assert "note: dropped 9 identity operations before matching (5 Add of a constant zero, 1 Sub of a constant zero, 2 Mul by a constant one, " \
           "1 Div by a constant one)" in result.stdout, result.stdout
    assert "re-parameterized 11 blocks" in result.stdout, result.stdout
    assert_same_outputs(src, out)
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0, verdict.stdout[-3000:]
    assert "verdict: EQUIVALENT" in verdict.stdout and "structure: ok" in verdict.stdout
    # The identities after each sum are checked one by one: each result equals its operand.
    assert "9 identity operations dropped by the fold (5 Add, 1 Div, 2 Mul, 1 Sub)" in verdict.stdout, verdict.stdout[-2000:]


def test_identity_arithmetic_left_when_dropping_could_change_the_shape_or_a_name(tmp_path):
    """A [1, 4, 1, 1] zero added to a value of undeclared shape could broadcast it; a result
    that is a graph output keeps its name. Both stay, listed with the reason."""
    model = identity_zoo(value_info=False)
    model.graph.output.append(helper.make_tensor_value_info("add_right_y", TensorProto.FLOAT, X_SHAPE))
    src = save(model, tmp_path / "zoo.onnx")
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    names = {n.name for n in onnx.load(str(out)).graph.node}
    assert {"declared_id", "add_right_id"} <= names
    assert "not folded: Add 'declared_id': Add of a constant zero left in place: the constant has shape [1, 4, 1, 1] and the shape of " \
           "'declared_sum' is not declared" in result.stdout, result.stdout
    assert "not folded: Add 'add_right_id': Add of a constant zero left in place: its result 'add_right_y' is a graph output" in result.stdout
    assert_same_outputs(src, out)
    assert run_verify(src, out, "--inputs", "1").returncode == 0


def conv_bn_with_zero(tmp_path):
    """Conv -> Add(0) -> BatchNormalization -> Relu: the zero keeps --fuse-bn from the BN."""
    c = 4
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"), constant_node("z", 0.0),
             helper.make_node("Add", ["c", "z"], ["y"], name="plus_zero"),
             helper.make_node("BatchNormalization", ["y", "g", "beta", "mean", "var"], ["n"], name="bn"), helper.make_node("Relu", ["n"], ["out"])]
    inits = [weight("w", [c, c, 3, 3]), weight("b", [c]), numpy_helper.from_array(RNG.uniform(0.5, 1.5, c).astype(np.float32), "g"),
             weight("beta", [c]), weight("mean", [c]), numpy_helper.from_array(RNG.uniform(0.5, 1.5, c).astype(np.float32), "var")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, X_SHAPE)], inits)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "conv_bn_zero.onnx")


def test_identity_arithmetic_is_dropped_for_fuse_bn_too(tmp_path):
    src = conv_bn_with_zero(tmp_path)
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--fuse-bn")
    assert result.returncode == 0, result.stderr
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops == ["Conv", "Relu"], ops
    assert "note: dropped 1 identity operation before matching (1 Add of a constant zero)" in result.stdout, result.stdout
    assert_same_outputs(src, out)
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0 and "verdict: EQUIVALENT" in verdict.stdout, verdict.stdout[-3000:]


def test_a_model_the_fold_leaves_alone_keeps_its_identity_arithmetic(tmp_path):
    """Nothing else to fold: the model is written back byte for byte, and nothing is noted."""
    src = conv_bn_with_zero(tmp_path)
    out = tmp_path / "out.onnx"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "model written unchanged" in result.stdout and "identity" not in result.stdout, result.stdout
    assert out.read_bytes() == src.read_bytes()


def test_verify_catches_a_dropped_operation_that_is_not_the_identity(tmp_path):
    """FOLDED reads the operand of an Add of 0.5 as if it were the identity: the numeric check
    of dropped operations names it."""
    src = conv_bn_with_zero(tmp_path)
    model = onnx.load(str(src))
    next(n for n in model.graph.node if n.op_type == "Constant").attribute[0].t.CopyFrom(scalar("z_v", 0.5))
    original = save(model, tmp_path / "half.onnx")
    bad = onnx.load(str(original))
    nodes = [n for n in bad.graph.node if n.name != "plus_zero" and n.op_type != "Constant"]
    next(n for n in nodes if n.name == "bn").input[0] = "c"
    del bad.graph.node[:]
    bad.graph.node.extend(nodes)
    folded = save(bad, tmp_path / "bad.onnx")
    result = run_verify(original, folded, "--inputs", "1")
    assert result.returncode == 1, result.stdout
    assert "Add 'plus_zero', dropped by the fold, is not the identity" in result.stdout, result.stdout
    assert "NOT EQUIVALENT" in result.stdout


# MARK: chains that do not compose as a whole

def bn_node(prefix, source, channels, inits):
    inits += [numpy_helper.from_array(RNG.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}_g"), weight(f"{prefix}_b", [channels]),
              weight(f"{prefix}_m", [channels]), numpy_helper.from_array(RNG.uniform(0.5, 1.5, channels).astype(np.float32), f"{prefix}_v")]
    return helper.make_node("BatchNormalization", [source] + [f"{prefix}_{p}" for p in "gbmv"], [f"{prefix}_out"], name=prefix)


def test_a_chain_splits_into_the_runs_that_compose(tmp_path):
    """3x3 -> depthwise 3x3 -> BN (RepViT's stem into its first RepVGG-DW block): the depthwise
    conv takes the BN, the 3x3 stays; 3x3 -> 3x3 -> 1x1 -> BN: the second 3x3 takes the 1x1 and
    the BN. Each conv that stays is listed with the reason."""
    inits = [weight("a_w", [4, 4, 3, 3]), weight("a_b", [4]), weight("dw_w", [4, 1, 3, 3]), weight("c_w", [4, 4, 3, 3]),
             weight("d_w", [4, 4, 3, 3]), weight("p_w", [4, 4, 1, 1]), weight("p_b", [4])]
    nodes = [helper.make_node("Conv", ["x", "a_w", "a_b"], ["a"], pads=[1, 1, 1, 1], strides=[2, 2], name="stem"),
             helper.make_node("Conv", ["a", "dw_w"], ["dw"], pads=[1, 1, 1, 1], group=4, name="depthwise"),
             bn_node("bn1", "dw", 4, inits),
             helper.make_node("Conv", ["x", "c_w"], ["c"], pads=[1, 1, 1, 1], name="first3"),
             helper.make_node("Conv", ["c", "d_w"], ["d"], pads=[1, 1, 1, 1], name="second3"),
             helper.make_node("Conv", ["d", "p_w", "p_b"], ["p"], name="pointwise"),
             bn_node("bn2", "p", 4, inits)]
    graph = helper.make_graph(nodes, "chains", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
                              [helper.make_tensor_value_info("bn1_out", TensorProto.FLOAT, [1, 4, 4, 4]),
                               helper.make_tensor_value_info("bn2_out", TensorProto.FLOAT, X_SHAPE)], inits)
    src = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "chains.onnx")
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    assert [n.name for n in model.graph.node] == ["stem", "depthwise", "first3", "second3"], [n.name for n in model.graph.node]
    assert "re-parameterized 2 blocks of 5 nodes into 2 Convs" in result.stdout, result.stdout
    for name in ("stem", "first3"):
        assert f"not folded: Conv '{name}': not merged with the Conv after it: two 3x3 and 3x3 convs in a row compose into a larger kernel" \
               in result.stdout, result.stdout
    assert_same_outputs(src, out)
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0 and "structure: ok" in verdict.stdout, verdict.stdout[-3000:]
    report = json.loads(run_inspect(src, "--reparam", "--json").stdout)
    assert sorted(b["branches"][0] for b in report["reparam"]["blocks"]) == ["Conv 3x3 -> BatchNormalization", "Conv 3x3 -> Conv 1x1 -> BatchNormalization"]


def test_a_sum_merges_inside_a_larger_one_that_does_not(tmp_path):
    """RepGhost's shape: x + (dwconv(y) + bn(y)) with y = conv1x1(x). The whole sum does not
    merge (the 1x1's bias would meet the depthwise conv's padding) and stays, listed; the inner
    re-param sum merges into one depthwise conv."""
    inits = [weight("p_w", [4, 4, 1, 1]), weight("p_b", [4]), weight("dw_w", [4, 1, 3, 3]), weight("dw_b", [4])]
    nodes = [helper.make_node("Conv", ["x", "p_w", "p_b"], ["y"], name="primary"),
             helper.make_node("Conv", ["y", "dw_w", "dw_b"], ["cheap"], pads=[1, 1, 1, 1], group=4, name="cheap"),
             bn_node("fusion", "y", 4, inits),
             helper.make_node("Add", ["cheap", "fusion_out"], ["ghost"], name="ghost_sum"),
             helper.make_node("Add", ["ghost", "x"], ["out"], name="residual")]
    graph = helper.make_graph(nodes, "ghost", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, X_SHAPE)], inits)
    src = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "ghost.onnx")
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    assert [(n.name, n.op_type) for n in onnx.load(str(out)).graph.node] == [("primary", "Conv"), ("cheap", "Conv"), ("residual", "Add")]
    assert "re-parameterized 1 block of 3 nodes into 1 Conv (1 3x3 g4)" in result.stdout, result.stdout
    assert "not folded: Add 'residual': the first conv's bias would reach the second conv's zero padding" in result.stdout, result.stdout
    assert_same_outputs(src, out)
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0 and "structure: ok" in verdict.stdout, verdict.stdout[-3000:]
    report = json.loads(run_inspect(src, "--reparam", "--json").stdout)
    assert [b["branches"] for b in report["reparam"]["blocks"]] == [["Conv 3x3", "BatchNormalization"]]


def repmixer(tmp_path, scale_shape):
    """FastViT's RepMixer as its exporter writes it: x + layer_scale * (mixer(x) - norm(x)),
    mixer a depthwise 3x3 conv plus a BN of x, norm a BN of x."""
    inits = [weight("dw_w", [4, 1, 3, 3]), weight("dw_b", [4]),
             numpy_helper.from_array(RNG.uniform(0.2, 1.2, scale_shape).astype(np.float32), "layer_scale")]
    nodes = [helper.make_node("Conv", ["x", "dw_w", "dw_b"], ["dw"], pads=[1, 1, 1, 1], group=4, name="mixer_conv"),
             bn_node("mixer_skip", "x", 4, inits),
             helper.make_node("Add", ["dw", "mixer_skip_out"], ["mixed"], name="mixer_sum"),
             bn_node("norm", "x", 4, inits),
             helper.make_node("Sub", ["mixed", "norm_out"], ["difference"], name="difference"),
             helper.make_node("Mul", ["layer_scale", "difference"], ["scaled"], name="scaled"),
             helper.make_node("Add", ["x", "scaled"], ["out"], name="residual")]
    graph = helper.make_graph(nodes, "repmixer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, X_SHAPE)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, X_SHAPE)], inits)
    return save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "repmixer.onnx")


def test_repmixer_merges_into_one_depthwise_conv(tmp_path):
    src = repmixer(tmp_path, [4, 1, 1])
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    assert [(n.name, n.op_type) for n in model.graph.node] == [("mixer_conv", "Conv")], result.stdout
    conv = model.graph.node[0]
    assert next(a.i for a in conv.attribute if a.name == "group") == 4
    assert {i.name for i in model.graph.initializer} == {conv.input[1], conv.input[2]}  # the layer scale went too
    assert "re-parameterized 1 block of 7 nodes into 1 Conv (1 3x3 g4)" in result.stdout, result.stdout
    assert_same_outputs(src, out)
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0 and "structure: ok" in verdict.stdout, verdict.stdout[-3000:]
    report = json.loads(run_inspect(src, "--reparam", "--json").stdout)
    assert report["reparam"]["blocks"][0]["branches"] == [
        "identity", "Conv 3x3 x per-channel scale", "BatchNormalization x per-channel scale", "BatchNormalization x -(per-channel scale)"]


def test_a_scale_along_another_axis_is_not_a_layer_scale(tmp_path):
    """A [1, 1, 1, 8] constant multiplies along the width: not a per-channel scale. The sum
    inside merges; the Mul stays and the residual is listed with it."""
    src = repmixer(tmp_path, [1, 1, 1, 8])
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops == ["Conv", "Mul", "Add"], (ops, result.stdout)
    assert "not folded: Add 'residual': a Mul ('scaled') stands between the block's input and the sum in one branch" in result.stdout, result.stdout
    assert_same_outputs(src, out)
    assert run_verify(src, out, "--inputs", "1").returncode == 0


# MARK: DBB's padding with a value

def expand_initializer_of(model, pad_name):
    """The [1, C, 1, 1] initializer a BNAndPad's border writes expand (its BN's shift)."""
    inits = {i.name for i in model.graph.initializer}
    prefix = pad_name.rsplit("/", 1)[0] + "/"
    return next(n.input[0] for n in model.graph.node if n.op_type == "Expand" and n.name.startswith(prefix) and n.input[0] in inits)


def test_a_padding_whose_value_is_not_the_bias_before_it_stays(tmp_path):
    """One BNAndPad's border value moved off its BN's shift: the 1x1 conv before it no longer
    computes the border, so that block stays (listed); the other blocks still merge."""
    model = onnx.load(str(FAMILY / ENTRIES["dbb"]["train"]))
    name = expand_initializer_of(model, "/features/features.1/avg/bn/Pad")
    tensor = next(i for i in model.graph.initializer if i.name == name)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + 0.5, name))
    src = tmp_path / "dbb_moved.onnx"
    onnx.save(model, str(src))
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    assert "re-parameterized 3 blocks" in result.stdout, result.stdout
    assert "not folded: Add '/features/features.1/Add_2': the second conv pads with values that differ from the first conv's bias" in result.stdout
    x = np.load(FAMILY / ENTRIES["dbb"]["expected"])["input"]
    want, got = run_ort(src, {"input": x})[0], run_ort(out, {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert run_verify(src, out, "--inputs", "1").returncode == 0


def test_a_wrong_dbb_merge_is_not_equivalent(merged, tmp_path):
    """The merged DBB kernel with one corner tap moved: the block check, run at the size the
    padding's index arithmetic was exported for, sees it at the border."""
    path, _ = merged["dbb"]
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    tensor = next(t for t in model.graph.initializer if t.name == conv.input[1])
    values = numpy_helper.to_array(tensor).copy()
    values[0, 0, 0, 0] += 0.25
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    result = run_verify(FAMILY / ENTRIES["dbb"]["train"], bad, "--inputs", "1")
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"FAIL {conv.name}" in result.stdout and "checked at its input's size 16x16" in result.stdout, result.stdout[-3000:]


def test_dbb_blocks_in_the_inspect_report():
    report = json.loads(run_inspect(FAMILY / ENTRIES["dbb"]["train"], "--reparam", "--json").stdout)
    jsonschema.validate(report, SCHEMA)
    blocks = report["reparam"]["blocks"]
    assert len(blocks) == 4 and report["reparam"]["refused"] == []
    assert all(any("Pad (per-channel value) -> Conv 3x3" in branch for branch in b["branches"]) for b in blocks)
