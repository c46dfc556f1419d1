"""Folded Keras HDF5 files, loaded by plain Keras 3 (jax backend, no custom layer), must
predict what the DO-Conv models predicted (saved by fixtures/make_keras_h5_fixtures.py)."""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from conftest import FIXTURES, run_fold  # noqa: E402

FOLDER = FIXTURES / "keras_h5"
ENTRIES = [e for e in json.loads((FOLDER / "MANIFEST.json").read_text()) if e["format"] != "keras_zip"]


def plain_twin(net):
    """The net with Conv2D in place of every DOConv2D, built by Keras from its Keras 3 JSON
    (the test's own rewrite of the config, independent of doconv's)."""
    config = json.loads((FOLDER / f"k3_{net}.json").read_text())
    config.pop("compile_config", None)
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "DOConv2D" or layer.get("registered_name") == "doconv>DOConv2D":
            layer.update(class_name="Conv2D", module="keras.layers", registered_name=None)
            layer["config"].pop("D_mul")
    return keras.models.model_from_json(json.dumps(config))


def relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(params=ENTRIES, ids=[e["file"] for e in ENTRIES])
def folded(request, tmp_path):
    entry = request.param
    out = tmp_path / entry["file"]
    args = [FOLDER / entry["file"], out]
    if entry["format"] != "h5_full":
        args += ["--config", FOLDER / entry["config"]]
    result = run_fold(*args)
    assert result.returncode == 0, result.stderr
    return entry, out


def test_plain_model_loads_the_weights_and_predicts_the_same(folded):
    entry, out = folded
    expected = np.load(FOLDER / entry["expected"])
    model = plain_twin(entry["net"])
    model.load_weights(str(out))
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5


def test_full_models_load_without_custom_objects(folded):
    entry, out = folded
    if entry["format"] != "h5_full":
        pytest.skip("weights only: no config to load")
    expected = np.load(FOLDER / entry["expected"])
    model = keras.models.load_model(str(out), compile=False)
    assert "DOConv2D" not in {type(layer).__name__ for layer in model.layers}
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5


def test_no_d_is_left(folded):
    entry, out = folded
    names = []
    with h5py.File(out, "r") as f:
        f.visit(names.append)
        kernels = {}
        f.visititems(lambda name, obj: kernels.__setitem__(name, obj.shape) if isinstance(obj, h5py.Dataset) else None)
    assert not any(n.split("/")[-1] in ("D", "D:0") for n in names)
    assert not any("optimizer" in n for n in names)
    if entry["format"] == "weights_h5":
        assert not any(n.startswith("layers/do_conv2d") for n in names)
    # Every folded layer's kernel is 4-D (M, N, Cin/g, Cout).
    for layer in entry["do_layers"]:
        matches = [shape for name, shape in kernels.items() if len(shape) == 4 and shape[-1] == layer["filters"]
                   and list(shape[:2]) == layer["kernel"]]
        assert matches, layer["name"]
