"""verify-equivalence accepts every true fold made by doconv-fold and rejects tampered ones:
one kernel value nudged, an unrelated op or attribute changed, two layers' kernels swapped.
Tampered models are built with the onnx package (and h5py for Keras files) from doconv-fold's
own outputs."""
import zipfile

import h5py
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import FIXTURES, manifest, run_fold
from verify_support import run_verify

ENTRIES = manifest()
DO_ENTRIES = [e for e in ENTRIES if e["do_layers"]]
KERAS = FIXTURES / "keras_h5"
KERAS_ENTRIES = manifest(KERAS / "MANIFEST.json")


def fold(source, out, *extra):
    result = run_fold(source, out, *extra)
    assert result.returncode == 0, result.stderr
    return out


def folded_fixture(name, tmp_path, *extra):
    return fold(FIXTURES / name, tmp_path / ("folded-" + name), *extra)


def load(path):
    return onnx.load(str(path))  # external data is read in, and saved inline


def save(model, path):
    onnx.save(model, str(path))
    return path


def new_kernels(original_path, model):
    """FOLDED's Conv weights that are new initializers (the folded kernels), in node order."""
    before = {t.name for t in onnx.load(str(original_path), load_external_data=False).graph.initializer}
    inits = {t.name: t for t in model.graph.initializer}
    return [n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits and n.input[1] not in before]


def replace_initializer(model, name, array):
    for k, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(array.astype(numpy_helper.to_array(t).dtype), name))
            return
    raise KeyError(name)


def initializer(model, name):
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def assert_equivalent(result):
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout
    assert "structure: ok" in result.stdout


def assert_rejected(result, *phrases):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: NOT EQUIVALENT" in result.stdout
    for phrase in phrases:
        assert phrase in result.stdout, result.stdout


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_true_fold_is_equivalent(entry, tmp_path):
    out = folded_fixture(entry["file"], tmp_path)
    result = run_verify(FIXTURES / entry["file"], out)
    assert_equivalent(result)
    assert result.stdout.count("  ok   ") >= len(entry["do_layers"])  # each layer and each output
    assert "FAIL" not in result.stdout


@pytest.mark.parametrize("name", ["g1_basic.ts.onnx", "g1_basic.dynamo.onnx", "g1_basic.ts_nofold.onnx", "plain_cnn.onnx"])
def test_true_fold_with_fused_batchnorm_is_equivalent(name, tmp_path):
    out = folded_fixture(name, tmp_path, "--fuse-bn")
    result = run_verify(FIXTURES / name, out)
    assert_equivalent(result)
    if "g1_basic" in name:
        assert "BatchNormalization" in result.stdout and "fused" in result.stdout


@pytest.mark.parametrize("entry", DO_ENTRIES, ids=[e["file"] for e in DO_ENTRIES])
def test_nudged_kernel_value_is_rejected(entry, tmp_path):
    out = folded_fixture(entry["file"], tmp_path)
    model = load(out)
    name = new_kernels(FIXTURES / entry["file"], model)[-1]
    kernel = initializer(model, name).astype(np.float64)
    flat = kernel.reshape(-1)
    k = flat.size // 2
    flat[k] += (0.02 if entry["dtype"] == "float16" else 1e-3) * np.abs(flat).max()
    replace_initializer(model, name, kernel)
    result = run_verify(FIXTURES / entry["file"], save(model, tmp_path / "nudged.onnx"))
    assert_rejected(result, "FAIL", "first disagreement: kernel")
    index = ", ".join(map(str, np.unravel_index(k, kernel.shape)))
    assert f"kernel[{index}]" in result.stdout, result.stdout


@pytest.mark.parametrize("name", ["g1_basic.ts.onnx", "g1_basic.dynamo.onnx", "keras_g1.keras3.onnx"])
def test_changed_unrelated_op_is_rejected(name, tmp_path):
    model = load(folded_fixture(name, tmp_path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    result = run_verify(FIXTURES / name, save(model, tmp_path / "op.onnx"))
    assert_rejected(result, "changed from Relu to Sigmoid")


def set_attribute(node, name, value):
    for k, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[k]
            break
    node.attribute.append(helper.make_attribute(name, value))


@pytest.mark.parametrize("name, op, attribute, value", [
    ("g1_basic.ts.onnx", "BatchNormalization", "epsilon", 1e-3),
    ("plain_cnn.onnx", "Gemm", "alpha", 0.5),
    ("keras_misc.keras3.onnx", "Conv", "dilations", [1, 2]),   # a folded Conv's own attribute
    ("grouped.ts.onnx", "Conv", "pads", [1, 1, 0, 0]),
])
def test_changed_attribute_is_rejected(name, op, attribute, value, tmp_path):
    model = load(folded_fixture(name, tmp_path))
    node = [n for n in model.graph.node if n.op_type == op][-1]
    set_attribute(node, attribute, value)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "attr.onnx"))
    assert_rejected(result, f"attribute {attribute} changed")


def test_changed_unrelated_initializer_is_rejected(tmp_path):
    name = "g1_basic.ts_nofold.onnx"
    model = load(folded_fixture(name, tmp_path))
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    mean = initializer(model, bn.input[3]).copy()
    mean[2] += 0.25
    replace_initializer(model, bn.input[3], mean)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "init.onnx"))
    assert_rejected(result, f"initializer '{bn.input[3]}' changed", "output 'output'")


@pytest.mark.parametrize("name", ["wide_dmul.ts.onnx", "wide_dmul.ts_nofold.onnx", "odd_kernels.ts.onnx", "grouped.dynamo.onnx"])
def test_swapped_kernels_are_rejected(name, tmp_path):
    model = load(folded_fixture(name, tmp_path))
    kernels = new_kernels(FIXTURES / name, model)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in kernels]
    a, b = convs[0], convs[1]
    a.input[1], b.input[1] = b.input[1], a.input[1]
    result = run_verify(FIXTURES / name, save(model, tmp_path / "swapped.onnx"))
    assert_rejected(result, "FAIL")
    assert result.stdout.count("FAIL ") >= 2, result.stdout


def test_swapped_kernel_values_are_rejected(tmp_path):
    """Same names, the two same-shape kernels' values exchanged."""
    name = "wide_dmul.ts.onnx"
    model = load(folded_fixture(name, tmp_path))
    first, second = new_kernels(FIXTURES / name, model)[:2]
    a, b = initializer(model, first), initializer(model, second)
    replace_initializer(model, first, b)
    replace_initializer(model, second, a)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "swapped.onnx"))
    assert_rejected(result, "first disagreement: kernel", "first disagreement: output 'output'")


@pytest.mark.parametrize("name", ["pair_doconv.ts.onnx", "pair_dodconv.ts_nofold.onnx"])
def test_nudged_pair_bias_is_rejected(name, tmp_path):
    model = load(folded_fixture(name, tmp_path))
    before = {t.name for t in onnx.load(str(FIXTURES / name), load_external_data=False).graph.initializer}
    conv = next(n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] not in before)
    bias = initializer(model, conv.input[2]).copy()
    bias[0] += 0.01 * max(np.abs(bias).max(), 1)
    replace_initializer(model, conv.input[2], bias)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "bias.onnx"))
    assert_rejected(result, "first disagreement: bias")


def test_removed_node_is_rejected(tmp_path):
    """A node the fold had no business removing (the BatchNormalization), bypassed."""
    name = "g1_basic.ts.onnx"
    model = load(folded_fixture(name, tmp_path))
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    for n in model.graph.node:
        for k, value in enumerate(n.input):
            if value == bn.output[0]:
                n.input[k] = bn.input[0]
    model.graph.node.remove(bn)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "removed.onnx"))
    assert_rejected(result, "is missing from FOLDED")


def test_report_names_the_first_disagreement(tmp_path):
    name = "grouped.ts.onnx"
    model = load(folded_fixture(name, tmp_path))
    kernel_name = new_kernels(FIXTURES / name, model)[0]
    kernel = initializer(model, kernel_name).copy()
    kernel.reshape(-1)[0] += 0.5
    replace_initializer(model, kernel_name, kernel)
    result = run_verify(FIXTURES / name, save(model, tmp_path / "nudged.onnx"), "--inputs", "2", "--seed", "7")
    assert_rejected(result, "first disagreement: kernel[0, 0, 0, 0]", "first disagreement: output 'output'[", "(input ")
    assert "abs " in result.stdout and "rel " in result.stdout


@pytest.mark.parametrize("entry", KERAS_ENTRIES, ids=[e["file"] for e in KERAS_ENTRIES])
def test_true_keras_fold_is_equivalent(entry, tmp_path):
    config = ["--config", KERAS / entry["config"]] if entry["format"] in ("h5_weights", "weights_h5") else []
    out = fold(KERAS / entry["file"], tmp_path / entry["file"], *config)
    result = run_verify(KERAS / entry["file"], out, *config)
    assert_equivalent(result)
    assert "end to end: not run" in result.stdout


def keras_folded_datasets(path):
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("file", ["k2_net_a.h5", "k3_net_a.weights.h5", "k2_net_dw_weights.h5"])
def test_nudged_keras_kernel_is_rejected(file, tmp_path):
    entry = next(e for e in KERAS_ENTRIES if e["file"] == file)
    config = ["--config", KERAS / entry["config"]] if entry["format"] in ("h5_weights", "weights_h5") else []
    out = fold(KERAS / file, tmp_path / file, *config)
    with h5py.File(out, "r+") as f:
        name = next(n for n in keras_folded_datasets(out) if f[n].ndim == 4 and f[n].shape[0] * f[n].shape[1] > 1)
        data = f[name][...]
        data.reshape(-1)[3] += 1e-2 * np.abs(data).max()
        f[name][...] = data
    result = run_verify(KERAS / file, out, *config)
    assert_rejected(result, "first disagreement: kernel")


def test_nudged_kernel_in_keras_archive_is_rejected(tmp_path):
    file = "k3_net_a.keras"
    out = fold(KERAS / file, tmp_path / file)
    inner = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(out) as archive:
        inner.write_bytes(archive.read("model.weights.h5"))
        entries = {name: archive.read(name) for name in archive.namelist()}
    with h5py.File(inner, "r+") as f:
        name = next(n for n in keras_folded_datasets(inner) if f[n].ndim == 4 and f[n].shape[0] * f[n].shape[1] > 1)
        data = f[name][...]
        data.reshape(-1)[0] += 1e-2 * np.abs(data).max()
        f[name][...] = data
    entries["model.weights.h5"] = inner.read_bytes()
    tampered = tmp_path / "tampered.keras"
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    result = run_verify(KERAS / file, tampered)
    assert_rejected(result, "first disagreement: kernel")


def test_changed_keras_bias_is_rejected(tmp_path):
    file = "k2_net_a.h5"
    out = fold(KERAS / file, tmp_path / file)
    with h5py.File(out, "r+") as f:
        name = next(n for n in keras_folded_datasets(out) if n.endswith("bias:0") and "head" in n)
        data = f[name][...]
        data[0] += 0.5
        f[name][...] = data
    result = run_verify(KERAS / file, out)
    assert_rejected(result, "changed: value at [0]")


def test_usage_and_bad_input_exit_2(tmp_path):
    original = FIXTURES / "g1_basic.ts.onnx"
    assert run_verify(original).returncode == 2
    assert run_verify(original, tmp_path / "missing.onnx").returncode == 2
    assert run_verify(original, original, "--dim", "nonsense").returncode == 2
    assert run_verify(original, original, "--tolerance", "-1").returncode == 2
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01not a model at all")
    result = run_verify(original, garbage)
    assert result.returncode == 2 and "error" in result.stderr
    assert run_verify(original, KERAS / "k2_net_a.h5").returncode == 2


def test_symbolic_dims_need_a_size(tmp_path):
    """A non-batch symbolic dim is an error naming it, unless --dim gives it."""
    w = np.random.default_rng(0).normal(size=(2, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, "height", 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[numpy_helper.from_array(w, "w")])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "sym.onnx")
    result = run_verify(path, path)
    assert result.returncode == 2 and "'height'" in result.stderr and "--dim height=" in result.stderr
    result = run_verify(path, path, "--dim", "height=6", "--dim", "batch=2")
    assert_equivalent(result)
    assert "[2, 3, 6, 5]" in result.stdout


def test_unsupported_op_relies_on_structure_and_layers(tmp_path):
    name = "grouped.ts.onnx"
    out = folded_fixture(name, tmp_path)
    # Both models end in a custom-domain op the executor cannot run.
    paths = []
    for k, path in enumerate([FIXTURES / name, out]):
        model = load(path)
        last = model.graph.output[0].name
        model.graph.node.append(helper.make_node("Mystery", [last], ["mystery_out"], domain="com.example"))
        model.graph.output[0].name = "mystery_out"
        model.opset_import.append(helper.make_opsetid("com.example", 1))
        paths.append(save(model, tmp_path / f"custom{k}.onnx"))
    result = run_verify(*paths)
    assert_equivalent(result)
    assert "does not implement com.example:Mystery" in result.stdout
