"""Issue 13: the paper's segmentation and detection tasks end to end. A small DeepLabv3 and a
small Faster R-CNN with DO-Conv backbones (fixtures/make_task_fixtures.py) are folded, and
verify-equivalence must run both models end to end (bilinear Resize, If with outer-scope reads,
NonZero, TopK, RoiAlign, NonMaxSuppression, ScatterElements, ...) and find them equivalent. The
reference executor's outputs must also agree with onnxruntime's on the fixture's input.

Detection outputs pass score thresholds, sorts and NMS. The fixture script checks that its
input keeps every box away from those edges (float64 torch finds the same detections as float32
onnxruntime, no kept score within 1e-3 of the threshold, fewer detections than the cap), so the
float64 executor and float32 onnxruntime must return the same boxes in the same order: they are
compared as they come, labels exactly, boxes and scores within 1e-4 relative."""
import re

import numpy as np
import onnx
import pytest

from conftest import FIXTURES, run_fold, run_verify
from verify_support import agreement, executor_outputs, session

# name -> (DO-Conv layers doconv-fold must fold, graph outputs)
MODELS = {
    "deeplabv3_do": (4, ["out"]),
    "fasterrcnn_do": (3, ["boxes", "labels", "scores"]),
}
TOLERANCE = 1e-4  # float64 executor against float32 onnxruntime


def ops(path):
    """Op counts of a model, subgraphs included."""
    counts = {}

    def visit(graph):
        for node in graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)

    visit(onnx.load(str(path)).graph)
    return counts


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """Each task model folded once: name -> (path, doconv-fold's stdout)."""
    folder = tmp_path_factory.mktemp("task-models")
    result = {}
    for name in MODELS:
        path = folder / f"{name}.folded.onnx"
        run = run_fold(FIXTURES / f"{name}.ts.onnx", path)
        assert run.returncode == 0, run.stderr
        result[name] = (path, run.stdout)
    return result


@pytest.mark.parametrize("name", MODELS)
def test_fold_replaces_every_do_conv_layer(name, folded):
    path, stdout = folded[name]
    layers, _ = MODELS[name]
    assert f"folded {layers} layers" in stdout, stdout
    before, after = ops(FIXTURES / f"{name}.ts.onnx"), ops(path)
    assert before.get("Einsum") == layers and "Einsum" not in after, (before, after)
    assert after["Conv"] == before["Conv"]


@pytest.mark.parametrize("name", MODELS)
def test_verify_equivalence_runs_end_to_end(name, folded):
    path, _ = folded[name]
    result = run_verify(FIXTURES / f"{name}.ts.onnx", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout
    assert "end to end: not run" not in result.stdout and "end to end: 3 seeded random inputs" in result.stdout, result.stdout
    for output in MODELS[name][1]:
        assert re.search(rf"^  ok   output '{output}'", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.parametrize("which", ["original", "folded"])
@pytest.mark.parametrize("name", MODELS)
def test_executor_matches_onnxruntime(name, which, folded, tmp_path):
    path = FIXTURES / f"{name}.ts.onnx" if which == "original" else folded[name][0]
    expected = np.load(FIXTURES / f"{name}.expected.npz")
    feeds = {"input": expected["input"]}
    ort_session = session(path)
    reference = dict(zip([o.name for o in ort_session.get_outputs()], ort_session.run(None, feeds)))
    if which == "original":
        # The fixture's stored outputs are this onnxruntime's on the same file.
        for output in MODELS[name][1]:
            assert agreement(reference[output], expected[output]) <= 1e-6, output
    got = executor_outputs(path, feeds, tmp_path)
    for output in MODELS[name][1]:
        assert agreement(got[output], reference[output]) <= TOLERANCE, f"{output}: executor {got[output]!r} onnxruntime {reference[output]!r}"
    if name == "fasterrcnn_do":
        assert len(reference["labels"]) > 0 and len(set(reference["labels"].tolist())) > 1
