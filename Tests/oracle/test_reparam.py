"""Issue 15: `doconv-fold --reparam` merges linear over-parameterizations (RepVGG, ACNet,
MobileOne, ExpandNets) in training-form TorchScript exports into the deploy form's op counts,
with outputs onnxruntime agrees on; negatives stay and are reported; verify-equivalence
accepts the merged models and catches a tampered one. The fixtures and their deploy-form
counts come from fixtures/make_reparam_fixtures.py (blocks written from the papers, deploy
forms from the script's own `switch_to_deploy` equivalent)."""
import json

import jsonschema
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, ROOT, run_fold, run_inspect, run_verify

REPARAM = FIXTURES / "reparam"
ENTRIES = json.loads((REPARAM / "MANIFEST.json").read_text())
assert len(ENTRIES) >= 5, "fixtures/reparam/MANIFEST.json lists too few models: rerun fixtures/make_reparam_fixtures.py"
MERGING = [name for name in ENTRIES if name != "negatives"]
SCHEMA = json.loads((ROOT / "schemas" / "inspect-report.schema.json").read_text())


def op_counts(model):
    ops = [n.op_type for n in model.graph.node]
    return {op: ops.count(op) for op in ("Conv", "Add", "BatchNormalization", "Relu")}


def run_ort(path, x):
    return ort.InferenceSession(str(path)).run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Each fixture folded with --reparam once: name -> (output path, fold result)."""
    out = tmp_path_factory.mktemp("reparam")
    results = {}
    for name, entry in ENTRIES.items():
        target = out / f"{name}.onnx"
        results[name] = (target, run_fold(REPARAM / entry["train"], target, "--reparam"))
    return results


@pytest.mark.parametrize("name", MERGING)
def test_reparam_reaches_the_deploy_form(name, merged):
    entry = ENTRIES[name]
    path, result = merged[name]
    assert result.returncode == 0, result.stderr
    assert "re-parameterized" in result.stdout and "not folded" not in result.stdout, result.stdout
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert op_counts(model) == entry["deploy_ops"], (op_counts(model), entry["deploy_ops"])
    assert op_counts(model)["BatchNormalization"] == 0
    assert op_counts(onnx.load(str(REPARAM / entry["train"]))) == entry["train_ops"]  # the input is the training form
    expected = np.load(REPARAM / entry["expected"])
    got = run_ort(path, expected["input"])
    scale = np.abs(expected["output"]).max()
    np.testing.assert_allclose(got, expected["output"], rtol=1e-4, atol=1e-4 * scale)
    # Every merged kernel is a plain initializer; nothing of the branches is left.
    names = {i.name for i in model.graph.initializer}
    assert all(n.input[1] in names for n in model.graph.node if n.op_type == "Conv")


@pytest.mark.parametrize("name", MERGING)
def test_merged_models_verify(name, merged):
    path, _ = merged[name]
    result = run_verify(REPARAM / ENTRIES[name]["train"], path, "--inputs", "1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout and "structure: ok" in result.stdout
    assert "linear nodes" in result.stdout and "FAIL" not in result.stdout, result.stdout[-3000:]


def test_a_tampered_merge_is_not_equivalent(merged, tmp_path):
    path, _ = merged["acnet"]
    model = onnx.load(str(path))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    tensor = next(t for t in model.graph.initializer if t.name == conv.input[1])
    values = numpy_helper.to_array(tensor).copy()
    values[0, 0, 0, 0] += 0.25  # a corner tap: only border outputs and interiors both see it
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    result = run_verify(REPARAM / ENTRIES["acnet"]["train"], bad, "--inputs", "1")
    assert result.returncode == 1, result.stdout
    assert f"FAIL {conv.name}" in result.stdout and "NOT EQUIVALENT" in result.stdout


def test_negatives_stay_and_are_reported(merged):
    path, result = merged["negatives"]
    assert result.returncode == 0, result.stderr
    entry = ENTRIES["negatives"]
    # Everything stays but the biased ExpandNets chain's tail: its first 1x1 cannot join (its
    # bias would meet the kxk conv's zero padding), the kxk and last 1x1 merge (issue 26).
    assert op_counts(onnx.load(str(path))) == entry["train_ops"] | {"Conv": entry["train_ops"]["Conv"] - 1}
    assert "re-parameterized 1 block of 2 nodes into 1 Conv (1 3x3)" in result.stdout, result.stdout
    assert "not folded: Conv '/biased/expand/Conv': not merged with the Conv after it" in result.stdout
    reasons = result.stdout
    for phrase in ("a Relu ('/Relu') stands between", "is also read by", "branch strides differ", "branch dilations differ",
                   "bias would reach the second conv's zero padding"):
        assert phrase in reasons, reasons
    expected = np.load(REPARAM / entry["expected"])
    np.testing.assert_allclose(run_ort(path, expected["input"]), expected["output"], rtol=1e-4, atol=1e-4 * np.abs(expected["output"]).max())


def test_reparam_is_off_by_default(tmp_path):
    out = tmp_path / "out.onnx"
    result = run_fold(REPARAM / ENTRIES["repvgg_a0"]["train"], out)
    assert result.returncode == 0, result.stderr
    assert op_counts(onnx.load(str(out))) == ENTRIES["repvgg_a0"]["train_ops"]


def test_inspect_lists_blocks_and_refusals():
    report = json.loads(run_inspect(REPARAM / ENTRIES["repvgg_a0"]["train"], "--reparam", "--json").stdout)
    jsonschema.validate(report, SCHEMA)
    blocks = report["reparam"]["blocks"]
    assert len(blocks) == 22 and report["reparam"]["refused"] == []
    with_identity = [b for b in blocks if b["branches"] == ["Conv 3x3", "Conv 1x1", "BatchNormalization"]]
    assert len(with_identity) == 17 and all(b["kernel"] == [3, 3] and b["groups"] == 1 for b in blocks)
    assert all(b["relative_error"] < 1e-5 for b in blocks)
    negatives = json.loads(run_inspect(REPARAM / ENTRIES["negatives"]["train"], "--reparam", "--json").stdout)
    jsonschema.validate(negatives, SCHEMA)
    assert [b["branches"] for b in negatives["reparam"]["blocks"]] == [["Conv 3x3 -> Conv 1x1"]]  # the biased chain's tail
    assert len(negatives["reparam"]["refused"]) >= 5
    text = run_inspect(REPARAM / ENTRIES["mobileone_s0"]["train"], "--reparam").stdout
    assert "re-parameterizable blocks (--reparam): 43" in text, text
    # Without the flag the report has no reparam section.
    assert "reparam" not in json.loads(run_inspect(REPARAM / ENTRIES["acnet"]["train"], "--json").stdout)


def test_reparam_does_not_apply_to_other_formats(tmp_path):
    keras = next(p for p in (FIXTURES / "keras_h5").glob("*.h5"))
    out = tmp_path / "out.h5"
    result = run_fold(keras, out, "--reparam")
    assert result.returncode == 2 and "--reparam does not apply" in result.stderr, result.stderr
    assert not out.exists()


def test_reparam_with_doconv_layers(tmp_path):
    """DO-Conv folding runs first; --reparam then merges what is left (here Conv + BN chains)."""
    src = FIXTURES / "g1_basic.ts.onnx"
    out = tmp_path / "out.onnx"
    result = run_fold(src, out, "--reparam")
    assert result.returncode == 0, result.stderr
    assert "folded" in result.stdout
    model = onnx.load(str(out))
    assert "Einsum" not in [n.op_type for n in model.graph.node]
    verdict = run_verify(src, out, "--inputs", "1")
    assert verdict.returncode == 0, verdict.stdout[-3000:]
