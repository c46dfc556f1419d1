"""Tensors large enough for doconv-fold's zero-copy paths: raw_data read in place from the
mapped model file, and bytes that pass through unchanged copied file to file by the kernel.
Folding into another file and folding in place (OUTPUT = INPUT, so the files being read are
replaced) must give the same model, and the model must compute what the original did."""
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from conftest import run_fold
from synthetic import do_conv_model

CHANNELS = 64  # W 147 KB, D 21 KB: both past the 16 KB / 64 KB thresholds


def big_model():
    """A DO-Conv layer, then a plain Conv whose 147 KB weight must pass through untouched."""
    second = helper.make_node("Conv", ["conv_out", "plain.weight"], ["output"], pads=[1, 1, 1, 1], name="plain")
    model, _ = do_conv_model(cin=CHANNELS, cout=CHANNELS, extra_nodes=[second])
    weight = np.random.default_rng(9).normal(0, 0.05, (CHANNELS, CHANNELS, 3, 3)).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(weight, "plain.weight"))
    return model, weight


def run(path, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def locations(path):
    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}


def normalized(path):
    """The model's bytes with every external data location spelled "m.onnx.data"."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "m.onnx.data"
    return model.SerializeToString()


@pytest.mark.parametrize("external", [False, True])
def test_large_tensors_fold_the_same_in_place(tmp_path, external):
    model, weight = big_model()
    src_dir, out_dir, in_place_dir = (tmp_path / name for name in ("src", "out", "in_place"))
    for folder in (src_dir, out_dir, in_place_dir):
        folder.mkdir()
    src = src_dir / "m.onnx"
    if external:
        onnx.save(model, src, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    else:
        onnx.save(model, src)
    for name in ("m.onnx", "m.onnx.data"):
        if (src_dir / name).exists():
            shutil.copy(src_dir / name, in_place_dir / name)

    result = run_fold(src, out_dir / "m.onnx")
    assert result.returncode == 0, result.stderr
    result = run_fold(in_place_dir / "m.onnx", in_place_dir / "m.onnx")
    assert result.returncode == 0, result.stderr

    assert (out_dir / "m.onnx.data").exists() == external
    # In place, the new data goes beside the old under a fresh name (the model's rename
    # switches both): the same bytes, and the same model but for that location.
    assert normalized(out_dir / "m.onnx") == normalized(in_place_dir / "m.onnx")
    if external:
        (location,) = locations(in_place_dir / "m.onnx")
        assert sorted(p.name for p in in_place_dir.iterdir()) == sorted(["m.onnx", location])
        assert (out_dir / "m.onnx.data").read_bytes() == (in_place_dir / location).read_bytes()
    folded = onnx.load(str(out_dir / "m.onnx"))
    assert "Einsum" not in [n.op_type for n in folded.graph.node]
    passed = next(t for t in folded.graph.initializer if t.name == "plain.weight")
    assert np.array_equal(numpy_helper.to_array(passed), weight)
    x = np.random.default_rng(4).normal(size=(1, CHANNELS, 7, 7)).astype(np.float32)
    want = run(src, x)
    got = run(in_place_dir / "m.onnx", x)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
