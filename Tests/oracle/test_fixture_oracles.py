"""Every real-exporter fixture, folded by doconv-fold, checked by independent oracles:
onnx's checker, onnxruntime running both models, and the framework's own composite kernels
saved by the fixture scripts."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, manifest, run_fold

ENTRIES = manifest()


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def relative_error(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.fixture(params=ENTRIES, ids=[e["file"] for e in ENTRIES])
def folded(request, tmp_path):
    entry = request.param
    out = tmp_path / ("folded-" + entry["file"])
    result = run_fold(FIXTURES / entry["file"], out)
    assert result.returncode == 0, result.stderr
    return entry, out


def test_checker_accepts_output(folded):
    _, out = folded
    onnx.checker.check_model(str(out), full_check=True)


def test_onnxruntime_agrees(folded):
    entry, out = folded
    expected = np.load(FIXTURES / entry["expected"])
    feed = {session(FIXTURES / entry["file"]).get_inputs()[0].name: expected["input"]}
    original = session(FIXTURES / entry["file"]).run(None, feed)[0]
    result = session(out).run(None, feed)[0]
    tolerance = 1e-5 if entry["dtype"] == "float32" else 2e-3
    assert relative_error(result, original) <= tolerance
    assert relative_error(result, expected["output"]) <= (1e-4 if entry["dtype"] == "float32" else 1e-2)


def test_kernels_equal_the_frameworks_own(folded):
    entry, out = folded
    expected = np.load(FIXTURES / entry["expected"])
    model = onnx.load(str(out))
    initializers = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    kernels = [k for k in expected.files if k.startswith("kernel_")]
    if not entry["do_layers"]:
        pytest.skip("no DO-Conv layer: nothing to compare")
    if not entry.get("kernels_as_composed", True):
        pytest.skip("the exporter fused a BatchNormalization into these kernels")
    assert len(convs) == len(kernels)
    tolerance = 1e-4 if entry["dtype"] == "float32" else 2e-3
    for k, conv in enumerate(convs):
        weight = numpy_helper.to_array(initializers[conv.input[1]]).astype(np.float32)
        assert weight.shape == expected[f"kernel_{k}"].shape
        assert relative_error(weight, expected[f"kernel_{k}"]) <= tolerance, conv.name


def test_no_composition_left(folded):
    entry, out = folded
    model = onnx.load(str(out), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    assert "Einsum" not in ops
    names = {t.name for t in model.graph.initializer}
    assert not any(n.endswith((".D", ".W", ".d_diag")) for n in names)
    folded_meta = [p for p in model.metadata_props if p.key == "doconv.folded"]
    assert bool(folded_meta) == bool(entry["do_layers"])


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["dtype"] == "float32"], ids=lambda e: e["file"])
def test_fuse_bn_leaves_no_batchnorm_after_a_conv(tmp_path, entry):
    out = tmp_path / "fused.onnx"
    result = run_fold(FIXTURES / entry["file"], out, "--fuse-bn")
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(str(out), load_external_data=False)
    producers = {o: n for n in model.graph.node for o in n.output}
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"
                and producers.get(n.input[0]) is not None and producers[n.input[0]].op_type == "Conv"]
    expected = np.load(FIXTURES / entry["expected"])
    feed = {session(FIXTURES / entry["file"]).get_inputs()[0].name: expected["input"]}
    original = session(FIXTURES / entry["file"]).run(None, feed)[0]
    assert relative_error(session(out).run(None, feed)[0], original) <= 1e-5


def test_fold_separable_folds_the_separable_pair_only_on_request(tmp_path):
    src = FIXTURES / "pair_negatives.ts_nofold.onnx"
    out = tmp_path / "separable.onnx"
    result = run_fold(src, out, "--fold-separable")
    assert result.returncode == 0, result.stderr
    assert "folded 1 layer" in result.stdout and "Relu stands between" in result.stdout
    model = onnx.load(str(out))
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 5  # 6 convs, one pair folded
    expected = np.load(FIXTURES / "pair_negatives.expected.npz")
    original = session(src).run(None, {"input": expected["input"]})[0]
    assert relative_error(session(out).run(None, {"input": expected["input"]})[0], original) <= 1e-5
