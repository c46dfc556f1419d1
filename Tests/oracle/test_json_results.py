"""`doconv-fold --json` and `verify-equivalence --json`: one JSON document on standard output,
valid against its committed schema, whose contents agree with what the tools do (the files
written, `doconv-inspect --json`'s layer counts, the text verdict); errors still one line on
standard error with the usual exit statuses. `--version` on all three tools prints the version
in Sources/CommandLineSupport/Version.swift."""
import json
import re
import shutil

import jsonschema
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, ROOT, manifest, run_fold, run_inspect, run_tool, run_verify

SCHEMAS = ROOT / "schemas"
FOLD_SCHEMA = json.loads((SCHEMAS / "fold-result.schema.json").read_text())
VERIFY_SCHEMA = json.loads((SCHEMAS / "verify-result.schema.json").read_text())
KERAS = FIXTURES / "keras_h5"
ONNX_FIXTURE = "grouped.ts.onnx"  # 2 DO-DConv and 1 DO-GConv, float32
KERAS_FIXTURE = "k2_net_a.h5"


def version():
    text = (ROOT / "Sources" / "CommandLineSupport" / "Version.swift").read_text()
    match = re.search(r'public static let string = "(\d+\.\d+\.\d+)"', text)
    assert match, "Version.swift must keep the line `public static let string = \"X.Y.Z\"`"
    return match.group(1)


def fold_document(result):
    """The whole of standard output as one document, valid against the fold schema."""
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(FOLD_SCHEMA).validate(document)
    assert document["tool"] == "doconv-fold" and document["version"] == version()
    return document


def verify_document(result):
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(VERIFY_SCHEMA).validate(document)
    assert document["tool"] == "verify-equivalence" and document["version"] == version()
    assert document["equivalent"] == (result.returncode == 0)
    return document


def inspected_layers(path):
    """The DO-Conv layers doconv-inspect --json finds, and its format name."""
    result = run_inspect("--json", path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    return report["totals"]["layers"], report["totals"]["layers_by_kind"], report["format"]


def one_error_line(result, message):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == f"doconv-fold: error: {message}"


def op_types(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def replace_value(model, name, index, change):
    """Applies `change` to one element of initializer `name`."""
    for t in model.graph.initializer:
        if t.name == name:
            array = numpy_helper.to_array(t).copy()
            array.flat[index] = change(array.flat[index])
            t.CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def folded_conv_weights(path):
    model = onnx.load(str(path))
    return model, [(n.name, n.input[1]) for n in model.graph.node if n.op_type == "Conv"]


@pytest.fixture(scope="module")
def folded_onnx(tmp_path_factory):
    """ONNX_FIXTURE folded once (text mode), for the verify tests."""
    out = tmp_path_factory.mktemp("folded") / ONNX_FIXTURE
    result = run_fold(FIXTURES / ONNX_FIXTURE, out)
    assert result.returncode == 0, result.stderr
    return out


def test_schemas_are_valid_draft_2020_12():
    for schema, name in [(FOLD_SCHEMA, "fold-result"), (VERIFY_SCHEMA, "verify-result")]:
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:doconv:schema:{name}:1"


@pytest.mark.parametrize("variable, tool", [("DOCONV_FOLD", "doconv-fold"), ("DOCONV_INSPECT", "doconv-inspect"),
                                            ("DOCONV_VERIFY", "verify-equivalence")])
def test_version(variable, tool):
    result = run_tool(variable, tool, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == version() and result.stderr == ""


# doconv-fold --json

def test_fold_onnx(tmp_path, clean_tmpdir):
    src, out = FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx"
    result = run_fold("--json", src, out)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = fold_document(result)
    assert document["format_version"] == 1
    [r] = document["results"]
    total, by_kind, format_name = inspected_layers(src)
    assert (r["input"], r["output"], r["format"]) == (str(src), str(out), format_name) == (str(src), str(out), "onnx")
    assert (r["status"], r["exit_status"], r["error"]) == ("folded", 0, None)
    assert r["layers_folded"]["total"] == total == len(r["layers"]) == 3
    assert r["layers_folded"]["by_kind"] == by_kind
    assert r["layers_folded"]["from_depthwise_pairs"] == 0
    assert r["verified"] is True
    assert all(layer["verified"] and 0 <= layer["relative_error"] <= layer["tolerance"] == 1e-5 for layer in r["layers"])
    assert r["worst_relative_error"] == max(layer["relative_error"] for layer in r["layers"])
    assert r["parameters"]["after"] < r["parameters"]["before"] and r["bytes"]["after"] < r["bytes"]["before"]
    assert r["time_ms"] > 0
    # What the document says was written, was.
    ops = op_types(out)
    assert "Einsum" not in ops and ops.count("Conv") == total


def test_fold_json_agrees_with_the_manifest(tmp_path):
    entry = next(e for e in manifest() if e["file"] == ONNX_FIXTURE)
    document = fold_document(run_fold("--json", FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx"))
    layers = document["results"][0]["layers"]
    assert [(l["kind"], l["in_channels"], l["out_channels"], l["kernel"], l["groups"], l["d_mul"], l["stride"], l["dilation"])
            for l in layers] == [(e["kind"], e["in_channels"], e["out_channels"], e["kernel"], e["groups"], e["d_mul"], e["stride"], e["dilation"])
                                 for e in entry["do_layers"]]


def test_fold_no_verify(tmp_path):
    document = fold_document(run_fold("--json", "--no-verify", FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx"))
    [r] = document["results"]
    assert r["status"] == "folded" and r["verified"] is False and r["worst_relative_error"] is None
    assert all(layer["relative_error"] is None for layer in r["layers"])


def test_fold_without_do_conv_layers_is_unchanged(tmp_path):
    src, out = FIXTURES / "plain_cnn.onnx", tmp_path / "out.onnx"
    result = run_fold("--json", src, out)
    assert result.returncode == 0, result.stderr
    [r] = fold_document(result)["results"]
    assert r["status"] == "unchanged" and r["layers_folded"]["total"] == 0 and r["layers"] == []
    assert out.read_bytes() == src.read_bytes()


def test_fold_verification_failure(tmp_path, clean_tmpdir):
    # Every probe error is above 0, so tolerance 0 fails every layer.
    out = tmp_path / "out.onnx"
    result = run_fold("--json", "--tolerance", "0", FIXTURES / ONNX_FIXTURE, out)
    assert result.returncode == 1
    [r] = fold_document(result)["results"]
    assert (r["status"], r["exit_status"], r["verified"]) == ("verification_failed", 1, False)
    one_error_line(result, r["error"])
    assert "verification failed for 3 layer(s)" in r["error"] and "nothing written" in r["error"]
    assert all(not layer["verified"] and layer["relative_error"] > 0 == layer["tolerance"] for layer in r["layers"])
    assert r["worst_relative_error"] > 0
    assert not out.exists()


def test_fold_verification_failure_leaves_existing_output_and_input(tmp_path, clean_tmpdir):
    # The probes end while the model is being written (the kernels are computed as the
    # unchanged tensors are copied): a failure found then must still commit nothing, over an
    # existing output as over the input itself, and leave no temporary file in either folder.
    src = tmp_path / "model.onnx"
    shutil.copy(FIXTURES / ONNX_FIXTURE, src)
    old = tmp_path / "old.onnx"
    old.write_bytes(b"the previous output\n")
    for out in (old, src):
        result = run_fold("--json", "--tolerance", "0", src, out)
        assert result.returncode == 1, result.stderr
        [r] = fold_document(result)["results"]
        assert r["status"] == "verification_failed" and "nothing written" in r["error"]
        assert len(r["layers"]) == 3 and all(layer["relative_error"] > 0 for layer in r["layers"])
    assert old.read_bytes() == b"the previous output\n"
    assert src.read_bytes() == (FIXTURES / ONNX_FIXTURE).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "old.onnx"]


def test_fold_nan_weights_are_strings_not_broken_json(tmp_path):
    model = onnx.load(str(FIXTURES / ONNX_FIXTURE))
    replace_value(model, "onnx::Einsum_37", 0, lambda _: np.nan)  # W of the second layer
    src, out = tmp_path / "nan.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(src))
    result = run_fold("--json", src, out)
    assert result.returncode == 1
    [r] = fold_document(result)["results"]
    assert r["status"] == "verification_failed" and r["worst_relative_error"] == "nan"
    assert [layer["relative_error"] == "nan" for layer in r["layers"]] == [False, True, False]
    assert not out.exists()


@pytest.mark.parametrize("content, format_name", [
    ("not a model\n", "onnx"),  # ONNX has no signature: bytes no other format claims are read as ONNX
    (None, None),              # a missing file: no format
])
def test_fold_bad_input(tmp_path, clean_tmpdir, content, format_name):
    src, out = tmp_path / "notes.onnx", tmp_path / "out.onnx"
    if content is not None:
        src.write_text(content)
    result = run_fold("--json", src, out)
    assert result.returncode == 2
    [r] = fold_document(result)["results"]
    assert (r["status"], r["exit_status"], r["format"]) == ("error", 2, format_name)
    assert r["layers_folded"] is None and r["parameters"] is None and r["bytes"] is None
    assert r["layers"] == [] and r["verified"] is False and r["worst_relative_error"] is None
    one_error_line(result, r["error"])
    assert str(src) in r["error"]
    assert not out.exists()


def test_fold_output_folder_onnx_and_keras(tmp_path, clean_tmpdir):
    """The Keras file is folded by a child process; its result still lands in the one document."""
    inputs = [FIXTURES / ONNX_FIXTURE, KERAS / KERAS_FIXTURE]
    result = run_fold("--json", *inputs, "-o", tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    results = fold_document(result)["results"]
    assert [r["input"] for r in results] == [str(p) for p in inputs]
    for r, src in zip(results, inputs):
        total, by_kind, format_name = inspected_layers(src)
        assert r["format"] == format_name and r["status"] == "folded" and r["verified"]
        assert r["layers_folded"]["total"] == total > 0 and r["layers_folded"]["by_kind"] == by_kind
        assert r["output"] == str(tmp_path / src.name) and (tmp_path / src.name).exists()
    assert [r["format"] for r in results] == ["onnx", "keras-h5"]
    assert results[1]["layers"][0]["layout"] == "keras"


def test_fold_output_folder_with_a_crashing_worker(tmp_path, clean_tmpdir):
    """A Keras file on which libhdf5 segfaults: its worker dies, and it becomes an error result
    beside the other input's; one error line, exit 2."""
    crash = tmp_path / "crash.h5"
    shutil.copy(ROOT / "Tests/oracle/data/libhdf5-crash.h5", crash)
    out = tmp_path / "out"
    out.mkdir()
    result = run_fold("--json", crash, FIXTURES / ONNX_FIXTURE, "-o", out)
    assert result.returncode == 2
    crashed, folded = fold_document(result)["results"]
    assert (crashed["status"], crashed["exit_status"], crashed["format"]) == ("error", 2, "keras-h5")
    assert "HDF5 library crashed" in crashed["error"]
    one_error_line(result, crashed["error"])
    assert folded["status"] == "folded" and folded["exit_status"] == 0
    assert sorted(p.name for p in out.iterdir()) == [ONNX_FIXTURE]


def test_fold_missing_output_folder_gives_every_input_a_result(tmp_path):
    inputs = [FIXTURES / ONNX_FIXTURE, KERAS / KERAS_FIXTURE]
    result = run_fold("--json", *inputs, "-o", tmp_path / "missing")
    assert result.returncode == 2
    results = fold_document(result)["results"]
    assert [r["status"] for r in results] == ["error", "error"]
    assert results[0]["error"] == results[1]["error"]
    one_error_line(result, results[0]["error"])
    assert "does not exist" in results[0]["error"]


def test_fold_text_output_is_unchanged_without_json(tmp_path):
    result = run_fold(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx")
    assert result.returncode == 0
    assert result.stdout.startswith(f"{FIXTURES / ONNX_FIXTURE} -> ") and "folded 3 layers" in result.stdout


# verify-equivalence --json

def test_verify_good_pair(folded_onnx):
    src = FIXTURES / ONNX_FIXTURE
    result = run_verify("--json", src, folded_onnx)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    document = verify_document(result)
    assert (document["original"], document["folded"], document["format"]) == (str(src), str(folded_onnx), "onnx")
    assert document["equivalent"] is True and document["first_disagreement"] is None
    assert document["structure"] == {"ok": True, "summary": document["structure"]["summary"], "differences": []}
    assert len(document["layers"]) == inspected_layers(src)[0] == 3
    for layer in document["layers"]:
        assert layer["passed"] and layer["problems"] == []
        for check in ["kernel", "graph_kernel", "probe"]:
            assert layer[check]["passed"] and layer[check]["first_disagreement"] is None
            assert 0 <= layer[check]["worst_relative"] <= layer[check]["tolerance"]
    e2e = document["end_to_end"]
    assert e2e["ran"] is True and e2e["skipped_reason"] is None and e2e["inputs"].startswith("3 seeded random inputs")
    assert [o["name"] for o in e2e["outputs"]] == ["output"] and e2e["outputs"][0]["passed"]
    # The same verdict as the text report's last line.
    text = run_verify(src, folded_onnx)
    assert text.returncode == 0
    assert document["verdict"] == text.stdout.strip().splitlines()[-1] == "verdict: EQUIVALENT"


def test_verify_tampered_weight(folded_onnx, tmp_path):
    model, convs = folded_conv_weights(folded_onnx)
    conv_name, weight = convs[1]
    replace_value(model, weight, 5, lambda v: v + 0.5)
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    result = run_verify("--json", FIXTURES / ONNX_FIXTURE, tampered)
    assert result.returncode == 1, result.stderr
    document = verify_document(result)
    assert document["equivalent"] is False
    first = document["first_disagreement"]
    assert (first["where"], first["name"], first["check"]) == ("layer", conv_name, "kernel")
    assert abs((first["actual"] - first["expected"]) - 0.5) < 1e-6
    assert first["index"] == [0, 0, 1, 2] and first["tolerance"] == 1e-5  # element 5 of a [.., .., 3, 3] kernel
    failed = [layer["name"] for layer in document["layers"] if not layer["passed"]]
    assert failed == [conv_name]
    assert not document["end_to_end"]["outputs"][0]["passed"]
    text = run_verify(FIXTURES / ONNX_FIXTURE, tampered)
    assert document["verdict"] == text.stdout.strip().splitlines()[-1] == "verdict: NOT EQUIVALENT (1 layer off, 1 output off)"


def test_verify_non_finite_values_are_strings(folded_onnx, tmp_path):
    model, convs = folded_conv_weights(folded_onnx)
    replace_value(model, convs[1][1], 3, lambda _: np.nan)
    tampered = tmp_path / "nan.onnx"
    onnx.save(model, str(tampered))
    result = run_verify("--json", FIXTURES / ONNX_FIXTURE, tampered)
    assert result.returncode == 1
    document = verify_document(result)
    assert document["first_disagreement"]["actual"] == "nan"
    assert document["layers"][1]["kernel"]["worst_absolute"] == "inf"
    assert document["end_to_end"]["outputs"][0]["worst_absolute"] == "inf"


def test_verify_structural_difference_comes_first(folded_onnx, tmp_path):
    model = onnx.load(str(folded_onnx))
    conv = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    pads = next(a for a in conv.attribute if a.name == "pads")
    pads.ints[:] = [1, 1, 0, 0]
    tampered = tmp_path / "pads.onnx"
    onnx.save(model, str(tampered))
    result = run_verify("--json", FIXTURES / ONNX_FIXTURE, tampered)
    assert result.returncode == 1, result.stderr
    document = verify_document(result)
    differences = document["structure"]["differences"]
    assert document["structure"]["ok"] is False and any("attribute pads changed" in d for d in differences)
    first = document["first_disagreement"]
    assert (first["where"], first["message"], first["name"], first["expected"]) == ("structure", differences[0], None, None)
    assert document["verdict"].startswith("verdict: NOT EQUIVALENT (1 structural difference")


def test_verify_keras_runs_in_a_child_and_passes_json_through(tmp_path):
    src, out = KERAS / KERAS_FIXTURE, tmp_path / KERAS_FIXTURE
    assert run_fold(src, out).returncode == 0
    result = run_verify("--json", src, out)
    assert result.returncode == 0, result.stderr
    document = verify_document(result)
    assert document["format"] == "keras-h5" and document["equivalent"] is True
    assert len(document["layers"]) == inspected_layers(src)[0]
    # The model config is in the file: both models run end to end (test_keras_e2e.py).
    assert document["end_to_end"]["ran"] is True and document["end_to_end"]["skipped_reason"] is None
    assert [o["name"] for o in document["end_to_end"]["outputs"]] == ["head"] and document["end_to_end"]["inputs"]


def test_verify_bad_input_prints_no_document(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model\n")
    result = run_verify("--json", bad, FIXTURES / ONNX_FIXTURE)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("verify-equivalence: error: ")
