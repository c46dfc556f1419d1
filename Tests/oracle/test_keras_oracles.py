"""Folded Keras HDF5 files, loaded by plain Keras 3 (jax backend, no custom layer), must
predict what the DO-Conv models predicted (saved by fixtures/make_keras_h5_fixtures.py)."""
import json
import os
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import FIXTURES, run_fold  # noqa: E402

FOLDER = FIXTURES / "keras_h5"
ENTRIES = json.loads((FOLDER / "MANIFEST.json").read_text())


def plain_twin(net):
    """The net with Conv2D in place of every DOConv2D, built by Keras from its Keras 3 JSON
    (the test's own rewrite of the config, independent of doconv's)."""
    config = json.loads((FOLDER / f"k3_{net}.json").read_text())
    config.pop("compile_config", None)
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "DOConv2D" or layer.get("registered_name") == "doconv>DOConv2D":
            layer.update(class_name="Conv2D", module="keras.layers", registered_name=None)
            layer["config"].pop("D_mul")
        elif layer["class_name"] == "SeparableConv2D":
            c = layer["config"]
            if c["depth_multiplier"] >= c["kernel_size"][0] * c["kernel_size"][1]:
                layer["class_name"] = "Conv2D"
                for key in [k for k in c if k == "depth_multiplier" or k.startswith(("depthwise_", "pointwise_"))]:
                    del c[key]
    return keras.models.model_from_json(json.dumps(config))


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(params=ENTRIES, ids=[e["file"] for e in ENTRIES])
def folded(request, tmp_path):
    entry = request.param
    out = tmp_path / entry["file"]
    args = [FOLDER / entry["file"], out]
    if entry["format"] in ("h5_weights", "weights_h5"):
        args += ["--config", FOLDER / entry["config"]]
    result = run_fold(*args)
    assert result.returncode == 0, result.stderr
    return entry, out


def test_plain_model_loads_the_weights_and_predicts_the_same(folded):
    entry, out = folded
    if entry["format"] == "keras_zip":
        pytest.skip("an archive is loaded whole, below")
    expected = np.load(FOLDER / entry["expected"])
    model = plain_twin(entry["net"])
    model.load_weights(str(out))
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5


def test_full_models_load_without_custom_objects(folded):
    entry, out = folded
    if entry["format"] not in ("h5_full", "keras_zip"):
        pytest.skip("weights only: no config to load")
    if entry["keras"] == 2 and entry["net"] == "net_sep":
        pytest.skip("Keras 3 cannot read Keras 2's SeparableConv2D config (folded or not)")
    expected = np.load(FOLDER / entry["expected"])
    # compile=False: the fixtures were saved under the torch backend, whose optimizer class
    # the jax backend cannot rebuild (the same holds for the original files).
    model = keras.models.load_model(str(out), compile=False)
    assert "DOConv2D" not in {type(layer).__name__ for layer in model.layers}
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5


def test_no_d_is_left(folded, tmp_path):
    entry, out = folded
    if entry["format"] == "keras_zip":
        with zipfile.ZipFile(out) as archive:
            archive.extract("model.weights.h5", tmp_path)
            assert "DOConv2D" not in archive.read("config.json").decode()
            with zipfile.ZipFile(FOLDER / entry["file"]) as original:
                assert archive.read("metadata.json") == original.read("metadata.json")
                assert archive.namelist() == original.namelist()
        out = tmp_path / "model.weights.h5"
    names = []
    with h5py.File(out, "r") as f:
        f.visit(names.append)
        kernels = {}
        f.visititems(lambda name, obj: kernels.__setitem__(name, obj.shape) if isinstance(obj, h5py.Dataset) else None)
    assert not any(n.split("/")[-1] in ("D", "D:0") for n in names)
    assert not any("optimizer" in n for n in names)
    if entry["format"] in ("weights_h5", "keras_zip"):
        assert not any(n.startswith("layers/do_conv2d") for n in names)
    assert not any(n.split("/")[-1].startswith("pointwise_kernel") for n in names if "sep_do" in n)
    # Every folded layer's kernel is 4-D (M, N, Cin/g, Cout).
    for layer in entry["do_layers"]:
        matches = [shape for name, shape in kernels.items() if len(shape) == 4 and shape[-1] == layer["filters"]
                   and list(shape[:2]) == layer["kernel"]]
        assert matches, layer["name"]


def identity_tiled(mn, dmul, channels):
    eye = np.zeros((mn, dmul, channels), np.float32)
    for s in range(mn * (dmul // mn)):
        eye[s % mn, s, :] = 1
    return eye


def test_float16_chunked_gzip_weights_keep_their_storage(tmp_path):
    """Weights stored as float16 in gzip-compressed chunks stay so; the kernel equals numpy's
    composition of the stored D and W."""
    src = tmp_path / "f16.h5"
    with h5py.File(FOLDER / "k2_net_a.h5", "r") as original, h5py.File(src, "w") as f:
        for key, value in original.attrs.items():
            f.attrs[key] = value
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = f.require_group(name)
                for key, value in obj.attrs.items():
                    group.attrs[key] = value
            elif name.startswith("model_weights"):
                f.create_dataset(name, data=obj[()].astype(np.float16), chunks=True, compression="gzip")
        original.visititems(copy)
    out = tmp_path / "out.h5"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    with h5py.File(src, "r") as f, h5py.File(out, "r") as g:
        w = f["model_weights/do_group/do_group/kernel:0"][()].astype(np.float64)
        d = f["model_weights/do_group/do_group/D:0"][()].astype(np.float64) + identity_tiled(9, 12, 8)
        expected = np.einsum("msi,sio->mio", d, w.reshape(12, 8, 4)).reshape(3, 3, 2, 16)
        kernel = g["model_weights/do_group/do_group/kernel:0"]
        assert kernel.dtype == np.float16 and kernel.compression == "gzip" and kernel.chunks is not None
        assert float(np.abs(kernel[()] - expected).max() / np.abs(expected).max()) < 2e-3
        bn = g["model_weights/bn/bn/gamma:0"]
        assert bn.dtype == np.float16 and bn.compression == "gzip"


@pytest.mark.parametrize("name", ["k3_net_dw.keras", "k2_net_dw.h5"])
def test_output_may_be_the_input(tmp_path, name):
    path = tmp_path / name
    path.write_bytes((FOLDER / name).read_bytes())
    result = run_fold(path, path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file is left behind"
    again = run_fold(path, path)
    assert again.returncode == 0 and "no DO-Conv layer found" in again.stdout


def test_an_explicit_1x1_kernel_size_folds_a_1x1_layer_without_a_config(tmp_path):
    """Issue 14, item 2: in a Keras 2 weights-only file (no config), a 3-D kernel without D
    is a 1x1 DOConv2D or a Conv1D; `--kernel-size do_point=1x1` settles it, and plain Keras
    then loads the weights (with the model's own config, given to Keras, not to doconv)."""
    src = FOLDER / "k2_net_a_weights.h5"
    out = tmp_path / "out.h5"
    result = run_fold(src, out, "--kernel-size", "do_wide=1x3")
    assert result.returncode == 0, result.stderr
    assert "not folded: do_point" in result.stdout
    assert "--config MODEL.json or --kernel-size do_point=1x1" in result.stdout
    result = run_fold(src, out, "--kernel-size", "do_wide=1x3", "--kernel-size", "do_point=1x1")
    assert result.returncode == 0, result.stderr
    assert "folded 4 layers" in result.stdout and "not folded" not in result.stdout, result.stdout
    expected = np.load(FOLDER / "k2_net_a.expected.npz")
    model = plain_twin("net_a")
    model.load_weights(str(out))
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5
