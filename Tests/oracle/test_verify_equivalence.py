"""verify-equivalence accepts every true fold made by doconv-fold and rejects tampered ones:
one kernel value nudged, an unrelated op or attribute changed, two layers' kernels swapped.
Tampered models are built with the onnx package (and h5py for Keras files) from doconv-fold's
own outputs."""
import json
import os
import shutil
import zipfile

import h5py
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import FIXTURES, manifest, run_fold
from verify_support import edit_keras_weights, float16_copy, run_verify

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


@pytest.mark.parametrize("tamper", [False, True], ids=["true_fold", "nudged_kernel"])
def test_report_does_not_depend_on_the_thread_count(tamper, tmp_path):
    """One thread runs the end-to-end runs one after another; two or three run them side by
    side: the report (every number, the first disagreement) must be the same."""
    entry = next(e for e in DO_ENTRIES if len(e["do_layers"]) >= 2)
    out = folded_fixture(entry["file"], tmp_path)
    if tamper:
        model = load(out)
        name = new_kernels(FIXTURES / entry["file"], model)[0]
        kernel = initializer(model, name).copy()
        kernel.flat[0] += 0.01 * max(float(np.abs(kernel).max()), 1e-3)
        replace_initializer(model, name, kernel)
        out = save(model, tmp_path / "nudged.onnx")
    reports = []
    for threads in ("1", "2", "3"):
        result = run_verify(FIXTURES / entry["file"], out, "--json", "--inputs", "3", env=os.environ | {"DOCONV_THREADS": threads})
        assert result.returncode == (1 if tamper else 0), result.stdout + result.stderr
        reports.append(result.stdout)
    assert reports[0] == reports[1] == reports[2]


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
    assert "end to end: not run" not in result.stdout  # run with the model config (test_keras_e2e.py)


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
    assert "cannot run ORIGINAL's Mystery (output 'mystery_out'): operator 'Mystery' of domain 'com.example'" in result.stdout, result.stdout


def test_an_unsupported_mode_is_named_before_anything_runs(tmp_path):
    """A mode the executor lacks is found from the attributes, node and reason named, and the
    end-to-end step skipped (not attempted)."""
    name = "grouped.ts.onnx"
    out = folded_fixture(name, tmp_path)
    paths = []
    for k, path in enumerate([FIXTURES / name, out]):
        model = load(path)
        last = model.graph.output[0].name
        model.graph.node.append(helper.make_node("Pad", [last], ["padded"], mode="mirror_twice", name="odd_pad"))
        model.graph.output[0].name = "padded"
        model.graph.output[0].type.tensor_type.ClearField("shape")
        paths.append(save(model, tmp_path / f"pad{k}.onnx"))
    result = run_verify(*paths)
    assert_equivalent(result)
    assert "ORIGINAL's Pad 'odd_pad': mode 'mirror_twice' is not implemented" in result.stdout, result.stdout


# --fuse-bn on Keras files: a BatchNormalization whose weights FOLDED no longer holds is
# checked as fused into the conv before it (kernel scaled per output channel, the bias
# (b - mean) * s + beta, a probe through the conv then the BatchNormalization).

def keras_config_args(entry):
    return ["--config", KERAS / entry["config"]] if entry["format"] in ("h5_weights", "weights_h5") else []


def layer_datasets(f, layer):
    """The datasets of Keras layer `layer`: legacy files name its group after it, .weights.h5
    records the name in vars/@name."""
    found = []

    def visit(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        parts = name.split("/")
        recorded = obj.parent.attrs.get("name") if parts[-2] == "vars" else None
        if recorded == layer or (recorded is None and layer in parts[:-1]):
            found.append(name)
    f.visititems(visit)
    return found


def nudge_fused(f, layer, what):
    """Moves one value of the conv's fused kernel (what="kernel") or bias by 1% of its scale."""
    rank = 4 if what == "kernel" else 1
    name = next(n for n in layer_datasets(f, layer) if f[n].ndim == rank)
    data = f[name][...]
    data.reshape(-1)[1 % data.size] += 1e-2 * max(float(np.abs(data).max()), 1.0)
    f[name][...] = data


FUSING = {"net_sep": {"bn": "sep_do"}}  # only net_sep's BN fuses (net_a's conv has a relu first)


@pytest.mark.parametrize("entry", KERAS_ENTRIES, ids=[e["file"] for e in KERAS_ENTRIES])
def test_keras_fold_with_fused_batchnorm_is_equivalent(entry, tmp_path):
    config = keras_config_args(entry)
    out = fold(KERAS / entry["file"], tmp_path / entry["file"], "--fuse-bn", *config)
    result = run_verify(KERAS / entry["file"], out, *config)
    assert_equivalent(result)
    fusions = FUSING.get(entry["net"], {})
    if fusions:
        assert f"found {len(fusions)} BatchNormalization layer fused" in result.stdout, result.stdout
        for bn, conv in fusions.items():
            assert f"{bn} into {conv}" in result.stdout
            assert f"ok   {conv} [" in result.stdout and f"+ BatchNormalization '{bn}' fused" in result.stdout, result.stdout
            assert "BatchNormalization fused)" in result.stdout  # the structure summary
    else:
        assert "BatchNormalization" not in result.stdout, result.stdout


FUSED_ENTRIES = [e for e in KERAS_ENTRIES if e["net"] in FUSING]


@pytest.mark.parametrize("what", ["kernel", "bias"])
@pytest.mark.parametrize("entry", FUSED_ENTRIES, ids=[e["file"] for e in FUSED_ENTRIES])
def test_nudged_fused_keras_pair_is_rejected(entry, what, tmp_path):
    config = keras_config_args(entry)
    out = fold(KERAS / entry["file"], tmp_path / entry["file"], "--fuse-bn", *config)
    assert_equivalent(run_verify(KERAS / entry["file"], out, *config))
    for bn, conv in FUSING[entry["net"]].items():
        tampered = edit_keras_weights(out, tmp_path / ("tampered-" + entry["file"]), lambda f: nudge_fused(f, conv, what))
        result = run_verify(KERAS / entry["file"], tampered, *config)
        assert_rejected(result, f"FAIL {conv} [", f"first disagreement: {what}[", f"+ BatchNormalization '{bn}' fused")


def test_float16_fused_pair_uses_the_float16_tolerance(tmp_path):
    """A float16 copy of net_sep: the fused kernel and bias are off by float16 rounding, within
    the float16 default and beyond the float32 one; a nudge is still caught."""
    src = float16_copy(KERAS / "k3_net_sep.h5", tmp_path / "f16.h5")
    for extra in ([], ["--fuse-bn"]):
        out = fold(src, tmp_path / f"out{len(extra)}.h5", *extra)
        assert_equivalent(run_verify(src, out))
    assert_rejected(run_verify(src, out, "--tolerance", "1e-6"), "FAIL sep_do")
    tampered = edit_keras_weights(out, tmp_path / "tampered.h5", lambda f: nudge_fused(f, "sep_do", "kernel"))
    assert_rejected(run_verify(src, tampered), "first disagreement: kernel")


def linear_stem(config, bias):
    """net_a's config with do_stem (a DOConv2D followed by the BN) linear, so that the BN fuses
    into a folded DO-Conv; without `bias`, do_stem has use_bias False."""
    config = json.loads(json.dumps(config))
    for layer in config["config"]["layers"]:
        if layer["config"]["name"] == "do_stem":
            layer["config"]["activation"] = "linear"
            layer["config"]["use_bias"] = bias
    return config


def do_conv_with_batchnorm(kind, bias, tmp_path):
    """k3_net_a as a DO-Conv + BatchNormalization pair: the legacy .h5 with its stored config
    edited, or the .weights.h5 and an edited --config. Without `bias`, do_stem's bias dataset
    is removed (legacy: from weight_names too; .weights.h5: D moves from vars/2 to vars/1)."""
    config = linear_stem(json.loads((KERAS / "k3_net_a.json").read_text()), bias)
    src = tmp_path / f"stem.{kind}"
    shutil.copyfile(KERAS / f"k3_net_a.{kind}", src)
    with h5py.File(src, "r+") as f:
        if kind == "h5":
            stored = linear_stem(json.loads(f.attrs["model_config"]), bias)
            f.attrs["model_config"] = json.dumps(stored)
            if not bias:
                group = f["model_weights/do_stem"]
                names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
                del group[next(n for n in names if n.split("/")[-1].startswith("bias"))]
                group.attrs["weight_names"] = [n.encode() for n in names if not n.split("/")[-1].startswith("bias")]
        elif not bias:
            stem = next(g["vars"] for g in f["layers"].values() if "vars" in g and g["vars"].attrs.get("name") == "do_stem")
            del stem["1"]
            stem.move("2", "1")
    json_path = tmp_path / "stem.json"
    json_path.write_text(json.dumps(config))
    return src, (["--config", json_path] if kind == "weights.h5" else [])


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("kind", ["h5", "weights.h5"])
def test_batchnorm_fused_into_a_folded_doconv(kind, bias, tmp_path):
    """The DO-Conv branch: the expected kernel is the float64 recomputation from D and W,
    scaled; a conv without a bias gets one (in .weights.h5 at D's old vars/1)."""
    src, config = do_conv_with_batchnorm(kind, bias, tmp_path)
    out = fold(src, tmp_path / f"out.{kind}", "--fuse-bn", *config)
    result = run_verify(src, out, *config)
    assert_equivalent(result)
    assert "ok   do_stem [" in result.stdout and "DO-Conv 3x3, groups 1, Dmul 9 (keras) + BatchNormalization 'bn' fused" in result.stdout
    assert "bn into do_stem" in result.stdout
    for what in ("kernel", "bias"):
        tampered = edit_keras_weights(out, tmp_path / f"tampered-{what}.{kind}", lambda f: nudge_fused(f, "do_stem", what))
        assert_rejected(run_verify(src, tampered, *config), "FAIL do_stem [", f"first disagreement: {what}[")


def test_batchnorm_fused_across_an_activation_is_rejected(tmp_path):
    """FOLDED fused the BN into do_stem, but ORIGINAL's do_stem applies a relu before it: the
    numbers of the fused pair cannot make that right."""
    src, _ = do_conv_with_batchnorm("h5", True, tmp_path)
    out = fold(src, tmp_path / "out.h5", "--fuse-bn")
    assert_rejected(run_verify(KERAS / "k3_net_a.h5", out), "FAIL do_stem [", "applies its relu activation before BatchNormalization 'bn'")


def test_batchnorm_dropped_without_fusing_is_rejected(tmp_path):
    """A BatchNormalization dropped from FOLDED while its conv stayed as the plain fold made
    it (the BN group deleted by hand): the conv's kernel and bias show it was not fused."""
    out = fold(KERAS / "k3_net_sep.h5", tmp_path / "out.h5")
    tampered = edit_keras_weights(out, tmp_path / "no-bn.h5", lambda f: f.__delitem__("model_weights/bn"))
    assert_rejected(run_verify(KERAS / "k3_net_sep.h5", tampered), "FAIL sep_do [", "first disagreement: kernel", "first disagreement: bias")


@pytest.mark.parametrize("build, fused", [("functional_net", {"b1": "c1", "b3": "c3"}), ("sequential_net", {"b1": "c1", "b2": "c2"})],
                         ids=["functional", "sequential"])
@pytest.mark.parametrize("kind", ["keras", "h5", "weights.h5"])
def test_fuse_bn_on_plain_keras_models_is_equivalent(tmp_path, build, fused, kind):
    """The plain Keras 3 models of test_keras_oracles (convs with and without a bias, BNs
    without beta or gamma, a BN kept after a shared conv and one after a Dense, renumbered BN
    groups in .weights.h5): verify accepts the --fuse-bn fold and rejects a nudged new bias."""
    import test_keras_oracles as oracles  # keras is imported only by the tests that need it

    model = getattr(oracles, build)()
    oracles.batchnorm_weights(model, seed=1)
    src = tmp_path / f"model.{kind}"
    (model.save_weights if kind == "weights.h5" else model.save)(str(src))
    config = []
    if kind == "weights.h5":
        (tmp_path / "model.json").write_text(model.to_json())
        config = ["--config", tmp_path / "model.json"]
    out = fold(src, tmp_path / f"out.{kind}", "--fuse-bn", *config)
    result = run_verify(src, out, *config)
    assert_equivalent(result)
    assert f"found {len(fused)} BatchNormalization layers fused" in result.stdout, result.stdout
    for bn, conv in fused.items():
        assert f"{bn} into {conv}" in result.stdout
        assert f"ok   {conv} [" in result.stdout and f"Conv2D 3x3 + BatchNormalization '{bn}' fused" in result.stdout, result.stdout
    # c1 had no bias: the fold created one, and verify checks its values.
    tampered = edit_keras_weights(out, tmp_path / f"tampered.{kind}", lambda f: nudge_fused(f, "c1", "bias"))
    assert_rejected(run_verify(src, tampered, *config), "FAIL c1 [", "first disagreement: bias[")
