"""verify-equivalence against wrong folds of an ONNX model (the rest of the matrix, beside
test_verify_equivalence.py's nudged, swapped and removed cases): each mutation of a correct
fold, made with the onnx package, must give NOT EQUIVALENT (exit 1) naming what differs."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import FIXTURES, run_fold, run_verify

SOURCE = FIXTURES / "odd_kernels.ts.onnx"  # 1x3, 3x1 and 5x5 DO-Conv layers, a plain 1x1 Conv


def initializer(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def set_array(model, name, array):
    initializer(model, name).CopyFrom(numpy_helper.from_array(array, name))


def kernel_of(model, index):
    """The name of the weight the index-th Conv reads."""
    return [n for n in model.graph.node if n.op_type == "Conv"][index].input[1]


def one_ulp(model, name):
    array = numpy_helper.to_array(initializer(model, name)).copy()
    array.flat[0] = np.nextafter(array.flat[0], np.float32(np.inf))
    set_array(model, name, array)


def transpose_kernel(model):
    name = kernel_of(model, 0)  # (6, 4, 1, 3)
    array = numpy_helper.to_array(initializer(model, name))
    set_array(model, name, np.ascontiguousarray(array.transpose(0, 1, 3, 2)))
    return "/0/Conv"  # the report names the layer's Conv


def scale_kernel(model):
    name = kernel_of(model, 2)
    set_array(model, name, numpy_helper.to_array(initializer(model, name)) * np.float32(1.001))
    return "/2/Conv"


def duplicate(model):
    copy = onnx.TensorProto()
    copy.CopyFrom(initializer(model, "2.bias"))
    model.graph.initializer.append(copy)
    return "2.bias"


def extra(model):
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "extra.weight"))
    return "extra.weight"


MUTATIONS = {
    "duplicated initializer": duplicate,
    "extra initializer": extra,
    "untouched initializer off by one ulp": lambda m: (one_ulp(m, "onnx::Conv_45"), "onnx::Conv_45")[1],
    "non-square kernel transposed": transpose_kernel,
    "kernel scaled by 1+1e-3": scale_kernel,
}


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "folded.onnx"
    result = run_fold(SOURCE, out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_fold_is_not_equivalent(folded, tmp_path, mutation):
    model = onnx.load(str(folded))
    named = MUTATIONS[mutation](model)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    result = run_verify(SOURCE, bad)
    assert result.returncode in (1, 2), f"{mutation}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    text = result.stdout + result.stderr
    assert named in text, f"{mutation}: '{named}' not named in\n{text}"
    if result.returncode == 1:
        assert "NOT EQUIVALENT" in result.stdout
