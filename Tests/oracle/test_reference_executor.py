"""verify-equivalence's reference executor against onnxruntime: every fixture (original and
folded, on the input saved with it) and single-op models for every op it implements."""
import numpy as np
import onnx
import pytest

from conftest import FIXTURES, manifest, run_fold
from op_cases import cases
from verify_support import agreement, executor_outputs, session

ENTRIES = manifest()
CASES = cases()


def tolerance_for(dtype):
    return 2e-3 if dtype == "float16" else 1e-5


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
@pytest.mark.parametrize("which", ["original", "folded"])
def test_fixture_outputs_match_onnxruntime(entry, which, tmp_path):
    path = FIXTURES / entry["file"]
    if which == "folded":
        path = tmp_path / ("folded-" + entry["file"])
        result = run_fold(FIXTURES / entry["file"], path)
        assert result.returncode == 0, result.stderr
    expected = np.load(FIXTURES / entry["expected"])
    ort_session = session(path)
    feeds = {ort_session.get_inputs()[0].name: expected["input"]}
    reference = dict(zip([o.name for o in ort_session.get_outputs()], ort_session.run(None, feeds)))
    got = executor_outputs(path, feeds, tmp_path)
    for name, value in reference.items():
        assert agreement(got[name], value) <= tolerance_for(entry["dtype"]), name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_matches_onnxruntime(case, tmp_path):
    path = tmp_path / f"{case.name}.onnx"
    onnx.save(case.model, str(path))
    if case.skip:
        # Valid by the spec but refused by onnxruntime: no oracle. Check it still refuses
        # (when it stops refusing, the case should be compared) and that the executor runs it.
        with pytest.raises(Exception):
            session(path).run(None, case.feeds)
        executor_outputs(path, case.feeds, tmp_path)
        pytest.skip(case.skip)
    ort_session = session(path)
    reference = dict(zip([o.name for o in ort_session.get_outputs()], ort_session.run(None, case.feeds)))
    got = executor_outputs(path, case.feeds, tmp_path)
    for name, value in reference.items():
        tolerance = 2e-3 if np.asarray(value).dtype == np.float16 else 1e-5
        assert agreement(got[name], value) <= tolerance, f"{name}: executor {got[name]!r} onnxruntime {value!r}"


def test_every_executor_op_has_a_case():
    """Each op the executor implements appears in an op-level case (the list is the CLI's)."""
    covered = {c.model.graph.node[0].op_type for c in CASES}
    implemented = {"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
                   "HardSwish", "Tanh", "Mul", "Add", "Sub", "Div", "MaxPool", "AveragePool", "GlobalAveragePool",
                   "ReduceMean", "Flatten", "Reshape", "Gemm", "MatMul", "Concat", "Transpose", "Einsum", "Identity",
                   "Constant", "Squeeze", "Unsqueeze", "Shape", "Gather", "Slice", "Softmax", "Pad", "Resize", "Cast",
                   "CastLike", "Expand", "ConstantOfShape", "Range", "Upsample", "NonZero", "TopK", "RoiAlign",
                   "NonMaxSuppression", "ScatterElements", "Scatter", "ScatterND", "GatherElements", "GatherND", "CumSum",
                   "Mod", "Floor", "Ceil", "Round", "If", "Loop", "Scan"}
    assert implemented <= covered, implemented - covered


@pytest.mark.parametrize("largest", [1, 0])
def test_topk_unsorted_returns_the_same_elements(largest, tmp_path):
    """With sorted=0 the order is the implementation's (onnxruntime's follows its selection
    algorithm; the executor's is sorted): the same values and indices, as sets."""
    rng = np.random.default_rng(7)
    x = rng.permutation(40).astype(np.float32).reshape(2, 20)
    from op_cases import i64, single
    case = single("topk_unsorted", "TopK", {"x": x}, {"sorted": 0, "largest": largest}, consts=[("k", i64(6))], outputs=2)
    path = tmp_path / "topk_unsorted.onnx"
    onnx.save(case.model, str(path))
    values, indices = session(path).run(None, case.feeds)
    got = executor_outputs(path, case.feeds, tmp_path)
    for row in range(2):
        assert sorted(got["y0"][row].tolist()) == sorted(values[row].tolist())
        assert sorted(got["y1"][row].tolist()) == sorted(indices[row].tolist())


def one_node(op, inputs, consts, node_inputs, attrs=None, opset=18):
    """A one-node model built without shape inference (onnx's own refuses these sizes)."""
    from onnx import helper, numpy_helper
    node = helper.make_node(op, node_inputs, ["y"], name=op.lower(), **(attrs or {}))
    graph = helper.make_graph([node], op.lower(),
                              [helper.make_tensor_value_info(k, onnx.TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()],
                              [helper.make_value_info("y", onnx.TypeProto())],
                              [c if isinstance(c, onnx.TensorProto) else numpy_helper.from_array(c[1], c[0]) for c in consts])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def hostile_sizes():
    """Single-op models whose constant inputs ask for sizes that overflow."""
    x = np.ones((2, 3), np.float32)
    img = np.ones((1, 1, 4, 4), np.float32)
    roi = np.zeros(0, np.float32)
    return [
        ("tile-2^62", one_node("Tile", {"x": x}, [("r", np.array([2**62, 1], np.int64))], ["x", "r"])),
        ("tile-overflow", one_node("Tile", {"x": x}, [("r", np.array([2**62, 2**62], np.int64))], ["x", "r"])),
        ("reshape-overflow", one_node("Reshape", {"x": x}, [("s", np.array([2**40, 2**40, -1], np.int64))], ["x", "s"])),
        ("reshape-overflow-no-infer", one_node("Reshape", {"x": x}, [("s", np.array([2**40, 2**40, 8], np.int64))], ["x", "s"])),
        ("resize-huge-scale", one_node("Resize", {"x": img}, [("roi", roi), ("s", np.array([1, 1, 3e38, 1], np.float32))], ["x", "roi", "s"])),
        ("resize-huge-sizes", one_node("Resize", {"x": img}, [("roi", roi), ("sz", np.array([1, 1, 2**62, 2**62], np.int64))],
                                       ["x", "roi", "", "sz"], {"keep_aspect_ratio_policy": "not_smaller"})),
    ]


def empty(name, dims, dtype=onnx.TensorProto.FLOAT):
    """An initializer with no elements: a 0 dim lets its other dims be anything."""
    return onnx.helper.make_tensor(name, dtype, dims, [])


def hostile_dims():
    """Single-op models over empty constants whose other dims are huge, or whose attributes
    overflow the size arithmetic: each trapped (SIGILL or SIGSEGV) before every size went
    through one checked element count. Also Pad filling an empty axis from its own elements
    (reflect read past the data, wrap divided by 0; onnxruntime refuses these too)."""
    x = np.ones((2, 3), np.float32)
    img = np.ones((1, 1, 2, 2), np.float32)
    big, top = 2**40, 2**63 - 1
    return [
        ("flatten-empty-huge", one_node("Flatten", {"x": x}, [empty("e", [0, big, big])], ["e"])),
        ("transpose-empty-huge", one_node("Transpose", {"x": x}, [empty("e", [0, big, big])], ["e"], {"perm": [1, 2, 0]})),
        ("softmax-empty-huge", one_node("Softmax", {"x": x}, [empty("e", [0, big, big])], ["e"], {"axis": 0})),
        ("add-broadcast-huge", one_node("Add", {"x": x}, [empty("a", [big, 1, 0]), empty("b", [1, big, 0])], ["a", "b"])),
        ("matmul-huge-output", one_node("MatMul", {"x": x}, [empty("a", [big, 0]), empty("b", [0, big])], ["a", "b"])),
        ("einsum-huge-stride", one_node("Einsum", {"x": x}, [empty("a", [0, 1, 2]), empty("b", [0, 2**62, 2])], ["a", "b"],
                                        {"equation": "bik,bjk->bij"})),
        ("concat-axis-overflow", one_node("Concat", {"x": x}, [empty("e", [0, 2**62])], ["e", "e", "e"], {"axis": 1})),
        ("pad-dim-overflow", one_node("Pad", {"x": x}, [empty("e", [0, top]), ("p", np.array([0, 0, 0, 2**39], np.int64))], ["e", "p"])),
        ("convtranspose-groups-overflow", one_node("ConvTranspose", {"x": x}, [empty("e", [1, 0, 4]), empty("w", [0, 2, 3])], ["e", "w"],
                                                   {"group": 2**62})),
        ("roialign-sampling-overflow", one_node("RoiAlign", {"x": img}, [("r", np.array([[0, 0, 1, 1]], np.float32)),
                                                                          ("i", np.array([0], np.int64))],
                                                ["x", "r", "i"], {"sampling_ratio": 2**40}, opset=16)),
        ("maxpool-pads-overflow", one_node("MaxPool", {"x": img}, [], ["x"], {"kernel_shape": [1, 1], "pads": [2**62] * 4})),
        ("maxpool-dilations-overflow", one_node("MaxPool", {"x": img}, [], ["x"], {"kernel_shape": [3, 3], "dilations": [2**62] * 2})),
        ("conv-empty-huge-kernel", one_node("Conv", {"x": x}, [empty("e", [1, 0, 2**62]), empty("w", [1, 0, 2**62])], ["e", "w"])),
        ("resize-antialias-empty-axis", one_node("Resize", {"x": x}, [empty("e", [top, 0]), ("s", np.array([1, 1], np.int64))],
                                                 ["e", "", "", "s"],
                                                 {"mode": "cubic", "antialias": 1, "coordinate_transformation_mode": "align_corners"})),
        # Split divided by num_outputs 0, and summed split sizes with wrapping arithmetic.
        ("split-num-outputs-0", one_node("Split", {"x": x}, [], ["x"], {"axis": 1, "num_outputs": 0})),
        ("split-sizes-overflow", one_node("Split", {"x": x}, [("s", np.array([2**62] * 3 + [2**62 + 3], np.int64))], ["x", "s"], {"axis": 1})),
    ] + [(f"pad-{mode}-empty-axis", one_node("Pad", {"x": x}, [empty("e", [0, 2]), ("p", np.array([1, 0, 1, 0], np.int64))], ["e", "p"],
                                             {"mode": mode}))
         for mode in ("reflect", "wrap", "edge")]


def subgraph(nodes, inputs, outputs, initializers=()):
    """A control-flow body: untyped inputs and outputs (the executor takes any)."""
    from onnx import helper, numpy_helper
    return helper.make_graph(nodes, "body", [helper.make_value_info(n, onnx.TypeProto()) for n in inputs],
                             [helper.make_value_info(n, onnx.TypeProto()) for n in outputs],
                             [numpy_helper.from_array(a, n) for n, a in initializers])


def hostile_memory():
    """Single-op models whose sizes fit an Int but not memory: each aborted (SIGABRT on an
    allocation of 2^32 to 2^60 values), grew until memory ran out or (Scan) ran for hours,
    before every table and output was checked against ExecutorLimits.maxElements before its
    allocation."""
    from onnx import helper
    x = np.ones((2, 3), np.float32)
    img = np.ones((1, 1, 2, 2), np.float32)
    big = 2**30
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    # A Loop whose scan output grows by 2^24 values an iteration, for up to 65,536 iterations.
    grow = subgraph([helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("ConstantOfShape", ["shape"], ["slab"])],
                    ["i", "cond"], ["cond_out", "slab"], [("shape", i64(2**24))])
    return [
        # Slice built a table of each axis's positions: 2^33 of them for an empty input.
        ("slice-empty-huge-axis", one_node("Slice", {"x": x}, [empty("e", [0, 2**33]), ("s", i64(0)), ("n", i64(1)), ("a", i64(0))],
                                           ["e", "s", "n", "a"])),
        # Conv and pool window tables: 2^42 rows (pads of 2^20), 2^20 rows of 1,024 taps.
        ("maxpool-pads-huge-table", one_node("MaxPool", {"x": img}, [], ["x"], {"kernel_shape": [1, 1], "pads": [2**20] * 4})),
        ("conv1d-pads-huge-table", one_node("Conv", {"x": x}, [("c", np.ones((1, 1, 1), np.float32)), ("w", np.ones((1, 1, 1024), np.float32))],
                                            ["c", "w"], {"pads": [2**19, 2**19]})),
        # Outputs of 2^60 (or 2^32) values from operands holding none (or 2^16).
        ("matmul-2^60-output", one_node("MatMul", {"x": x}, [empty("a", [big, 0]), empty("b", [0, big])], ["a", "b"])),
        ("gemm-2^60-output", one_node("Gemm", {"x": x}, [empty("a", [big, 0]), empty("b", [0, big])], ["a", "b"])),
        ("einsum-2^60-output", one_node("Einsum", {"x": x}, [empty("a", [big, 0]), empty("b", [0, big])], ["a", "b"], {"equation": "ij,jk->ik"})),
        ("add-broadcast-2^32-output", one_node("Add", {"x": x}, [("a", np.ones((2**16, 1), np.float32)), ("b", np.ones((1, 2**16), np.float32))],
                                               ["a", "b"])),
        # Linear Resize, axis by axis: [1, 2^16] grew to [2^14, 2^16] before shrinking to [2^14, 1].
        ("resize-huge-intermediate", one_node("Resize", {"x": x}, [("r", np.ones((1, 2**16), np.float32)), ("z", i64(2**14, 1))],
                                              ["r", "", "", "z"], {"mode": "linear"})),
        ("reducesum-empty-huge-output", one_node("ReduceSum", {"x": x}, [empty("e", [0, 2**40]), ("a", i64(0))], ["e", "a"])),
        ("globalaveragepool-empty-huge-planes", one_node("GlobalAveragePool", {"x": x}, [empty("e", [2**40, 1, 0])], ["e"])),
        ("argmax-empty-axis-huge-output", one_node("ArgMax", {"x": x}, [empty("e", [2**40, 0])], ["e"], {"axis": 1})),
        # Loop's scan output grew by 2^24 values an iteration; Scan ran 2^40 steps over an empty input.
        ("loop-scan-output-huge", one_node("Loop", {"x": x}, [("m", i64(2**16))], ["m", ""], {"body": grow})),
        ("scan-empty-huge-axis", one_node("Scan", {"x": x}, [empty("e", [0, 2**40])], ["e"],
                                          {"body": subgraph([helper.make_node("Identity", ["s"], ["t"])], ["s"], ["t"]),
                                           "num_scan_inputs": 1, "scan_input_axes": [1]})),
    ]


HOSTILE = hostile_sizes() + hostile_dims() + hostile_memory()


@pytest.mark.parametrize("name, model", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_sizes_are_an_error_line_not_a_trap(name, model, tmp_path):
    from conftest import run_verify
    from verify_support import write_tensors
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    inputs = tmp_path / "inputs.json"
    write_tensors({model.graph.input[0].name: np.ones([d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim], np.float32)}, inputs)
    result = run_verify(path, "--input-json", inputs, "--dump-outputs", tmp_path / "out.json")
    assert result.returncode == 2, f"exit {result.returncode} (a signal is negative): {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and any(p in lines[0] for p in ("overflow", "output dim", "too large", "cannot reshape", "out of range",
                                                         "cannot resize", "cannot pad", "iterations")), result.stderr


def with_outputs(model, *names):
    """`model` with more outputs of its one node (untyped, as one_node's "y")."""
    model.graph.node[0].output.extend(names)
    model.graph.output.extend(onnx.helper.make_value_info(n, onnx.TypeProto()) for n in names)
    return model


def empty_outputs():
    """Single-op models over empty tensors whose other dims are huge: each ran a loop over a
    2^40-long outer run (or axis) doing nothing, for hours, or (Slice, ConvTranspose) built a
    table of 2^33 or 2^40 entries and aborted. An empty result needs no iteration: each runs
    at once, with the empty output onnx's shapes give."""
    x = np.ones((2, 3), np.float32)
    big = 2**40
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    return [
        ("slice-empty-huge-axis-sliced", one_node("Slice", {"x": x}, [empty("e", [0, 2**33]), ("s", i64(0)), ("n", i64(4)), ("a", i64(1))],
                                                  ["e", "s", "n", "a"]), [0, 4]),
        ("concat-empty-long-outer", one_node("Concat", {"x": x}, [empty("e", [big, 0])], ["e", "e"], {"axis": 1}), [big, 0]),
        ("gather-empty-long-outer", one_node("Gather", {"x": x}, [empty("e", [big, 0]), ("i", i64())], ["e", "i"], {"axis": 1}), [big, 0]),
        ("split-empty-long-axis", one_node("Split", {"x": x}, [empty("e", [big, 0]), ("s", i64(big))], ["e", "s"]), [big, 0]),
        ("softmax-empty-long-outer", one_node("Softmax", {"x": x}, [empty("e", [big, 0])], ["e"]), [big, 0]),
        ("cumsum-empty-huge-axis", one_node("CumSum", {"x": x}, [empty("e", [0, big]), ("a", i64(1))], ["e", "a"]), [0, big]),
        ("cumsum-empty-long-outer", one_node("CumSum", {"x": x}, [empty("e", [big, 0]), ("a", i64(1))], ["e", "a"]), [big, 0]),
        ("topk-empty-long-outer", one_node("TopK", {"x": x}, [empty("e", [big, 0]), ("k", i64(0))], ["e", "k"]), [big, 0]),
        ("gathernd-empty-tuples", one_node("GatherND", {"x": x}, [empty("d", [0]), empty("i", [big, 0], onnx.TensorProto.INT64)],
                                           ["d", "i"]), [big, 0]),
        ("scatternd-empty-tuples", one_node("ScatterND", {"x": x}, [empty("d", [0]), empty("i", [big, 0], onnx.TensorProto.INT64),
                                                                     empty("u", [big, 0])], ["d", "i", "u"]), [0]),
        ("nonmaxsuppression-empty-batches", one_node("NonMaxSuppression", {"x": x}, [empty("b", [big, 0, 4]), empty("s", [big, 1, 0]),
                                                                                    ("m", i64(1))], ["b", "s", "m"]), [0, 3]),
        ("conv1d-empty-long-batch", one_node("Conv", {"x": x}, [empty("c", [big, 0, 2]), empty("w", [0, 0, 1])], ["c", "w"]), [big, 0, 2]),
        ("split-empty-top-dim-halves", with_outputs(one_node("Split", {"x": x}, [empty("e", [0, 2**63 - 1])], ["e"], {"axis": 1, "num_outputs": 2}),
                                                    "z"), [0, 2**62]),  # rounding up dim / 2 overflowed
        ("convtranspose-empty-huge-input", one_node("ConvTranspose", {"x": x}, [empty("c", [1, 0, 2**20, 2**20]), empty("w", [0, 0, 1, 1])],
                                                    ["c", "w"]), [1, 0, 2**20, 2**20]),
    ]


EMPTY = empty_outputs()


@pytest.mark.parametrize("name, model, shape", EMPTY, ids=[c[0] for c in EMPTY])
def test_empty_outputs_with_huge_dims_run_at_once(name, model, shape, tmp_path):
    import json
    from conftest import run_verify
    from verify_support import write_tensors
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    inputs = tmp_path / "inputs.json"
    write_tensors({"x": np.ones((2, 3), np.float32)}, inputs)
    result = run_verify(path, "--input-json", inputs, "--dump-outputs", tmp_path / "out.json", timeout=60)
    assert result.returncode == 0, f"exit {result.returncode} (a signal is negative): {result.stderr}"
    y = json.loads((tmp_path / "out.json").read_text())["y"]
    assert y["shape"] == shape and y["data"] == [], y


@pytest.mark.parametrize("name, phrase", [
    ("executor-loop-trip-count.onnx", "trip count"),          # a Loop of 67,108,869 iterations ran for minutes
    ("executor-resize-empty-huge.onnx", "too large"),         # an empty Resize output with a 2^40 dim: a 8 TB per-axis table
    ("executor-resize-empty-long-axis.onnx", None),           # an empty output with a 215M-long axis: minutes of tables
    ("executor-roialign-empty-x.onnx", None),                 # RoiAlign over an X with no elements read past its data
    ("executor-split-scalar.onnx", "cannot be split"),        # Split of a scalar read a dim it lacks; its name holds newlines
    ("executor-compare-complex.onnx", "complex64 inputs"),    # LessOrEqual on complex64 read values it does not have
    ("executor-pad-int64-min.onnx", "do not fit"),            # abs(Int64.min) of a pad trapped
    ("executor-convtranspose-short-pads.onnx", "out of range"),  # ConvTranspose read pads it was not given
], ids=["loop-trip-count", "resize-empty-huge", "resize-empty-long-axis", "roialign-empty-x", "split-scalar", "compare-complex",
        "pad-int64-min", "convtranspose-short-pads"])
def test_fuzz_executor_findings_end_at_once(name, phrase, tmp_path):
    """Inputs fuzz-executor found: each ends in one error line (exit 2) or runs, at once."""
    from conftest import ROOT, run_verify
    result = run_verify(ROOT / "Tests" / "oracle" / "data" / name, "--dump-outputs", tmp_path / "out.json", timeout=120)
    if phrase is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2 and phrase in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("shape, data, phrase", [
    ([-1, -2], [1.0, 2.0], "non-negative integers"),  # was accepted: two negative dims multiply to 2
    ([1e30], [], "non-negative integers"),            # was read as a dim of Int.min
    ([2**62, 4, 0], [], "overflows"),                 # trapped (SIGILL) multiplying the dims
], ids=["negative-dims", "dim-past-int", "dims-overflow"])
def test_input_json_shapes_are_checked(shape, data, phrase, tmp_path):
    """--input-json's dims: non-negative integers whose product is checked, or one error line."""
    import json
    from conftest import run_verify
    path = tmp_path / "relu.onnx"
    onnx.save(one_node("Relu", {"x": np.ones((2, 3), np.float32)}, [], ["x"]), str(path))
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"x": {"dtype": "float32", "shape": shape, "data": data}}))
    result = run_verify(path, "--input-json", inputs, "--dump-outputs", tmp_path / "out.json")
    assert result.returncode == 2, f"exit {result.returncode} (a signal is negative): {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(inputs) in lines[0] and phrase in lines[0], result.stderr
