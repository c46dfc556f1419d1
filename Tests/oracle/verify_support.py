"""Helpers for the verify-equivalence tests: the built binary (DOCONV_VERIFY), tensors as the
JSON its hidden --input-json / --dump-outputs options read and write, onnxruntime sessions,
Keras weight files edited in place."""
import json
import pathlib
import shutil
import zipfile

import h5py
import numpy as np
import onnxruntime as ort

from conftest import run_verify  # noqa: F401 (the verify tests import it from here)

DTYPE_NAMES = {np.float32: "float32", np.float16: "float16", np.float64: "float64", np.int64: "int64",
               np.int32: "int32", np.bool_: "bool", np.uint8: "uint8", np.int8: "int8"}


def write_tensors(tensors, path):
    obj = {}
    for name, array in tensors.items():
        array = np.asarray(array)
        if array.dtype.kind == "f":
            data = [x if np.isfinite(x) else ("nan" if np.isnan(x) else ("inf" if x > 0 else "-inf"))
                    for x in array.astype(np.float64).ravel().tolist()]
        else:
            data = array.astype(np.int64).ravel().tolist()
        obj[name] = {"dtype": DTYPE_NAMES[array.dtype.type], "shape": list(array.shape), "data": data}
    pathlib.Path(path).write_text(json.dumps(obj))


def read_tensors(path):
    result = {}
    for name, entry in json.loads(pathlib.Path(path).read_text()).items():
        values = [float(x) if isinstance(x, str) else x for x in entry["data"]]
        dtype = np.float64 if entry["dtype"].startswith(("float", "bfloat")) else np.int64
        result[name] = np.array(values, dtype=dtype).reshape(entry["shape"])
    return result


def executor_outputs(model_path, feeds, tmp_path):
    """The reference executor's outputs for `feeds` (verify-equivalence's test hook)."""
    inputs = tmp_path / "inputs.json"
    outputs = tmp_path / "outputs.json"
    write_tensors(feeds, inputs)
    result = run_verify(model_path, "--input-json", inputs, "--dump-outputs", outputs)
    assert result.returncode == 0, result.stderr
    return read_tensors(outputs)


def session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def agreement(got, expected):
    """Worst |got - expected| relative to the largest |expected| (exact match for integers)."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    if expected.dtype.kind in "iub":
        return 0.0 if np.array_equal(got.astype(np.int64), expected.astype(np.int64)) else np.inf
    e = expected.astype(np.float64)
    g = got.astype(np.float64)
    finite = np.isfinite(e)
    if not np.array_equal(np.isnan(e), np.isnan(g)) or not np.array_equal(e[~finite & ~np.isnan(e)], g[~finite & ~np.isnan(e)]):
        return np.inf
    if not finite.any():
        return 0.0
    return float(np.abs(g[finite] - e[finite]).max() / max(np.abs(e[finite]).max(), 1e-30))


def edit_keras_weights(path, out, edit):
    """Copies the Keras file at `path` to `out` with `edit(h5py.File)` applied to its weights:
    the file itself, or the model.weights.h5 inside a .keras archive."""
    path, out = pathlib.Path(path), pathlib.Path(out)
    if path.suffix != ".keras":
        shutil.copyfile(path, out)
        with h5py.File(out, "r+") as f:
            edit(f)
        return out
    inner = out.with_name(out.name + ".weights.h5")
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    inner.write_bytes(entries["model.weights.h5"])
    with h5py.File(inner, "r+") as f:
        edit(f)
    entries["model.weights.h5"] = inner.read_bytes()
    inner.unlink()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out


def assert_mutation_named(result, mutation, named):
    """verify-equivalence said NOT EQUIVALENT (exit 1) and one of its failing lines (a
    structure difference or a failed check) names what the mutation changed."""
    assert result.returncode == 1, f"{mutation}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert "NOT EQUIVALENT" in result.stdout
    failing = [line for line in result.stdout.splitlines() if line.lstrip().startswith(("-", "FAIL")) or "differ" in line]
    assert any(named in line for line in failing), f"{mutation}: '{named}' not named in\n{result.stdout}"


def float16_copy(source, target, **dataset_options):
    """A copy of the Keras HDF5 file `source` at `target` whose model weights are float16
    (created with `dataset_options`, e.g. chunks and compression); attributes kept."""
    with h5py.File(source, "r") as original, h5py.File(target, "w") as f:
        for key, value in original.attrs.items():
            f.attrs[key] = value

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = f.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
            elif name.startswith("model_weights"):
                f.create_dataset(name, data=obj[()].astype(np.float16), **dataset_options)
        original.visititems(copy)
    return target
