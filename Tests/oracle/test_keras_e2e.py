"""Issue 13, "Keras pairs end to end": verify-equivalence turns the Keras model config and the
file's weights into a graph and runs ORIGINAL against FOLDED on seeded random inputs in
float64, comparing every model output, as it does for ONNX pairs.

The executor's ORIGINAL is checked against the outputs Keras itself computed for the fixtures
(`*.expected.npz`, inputs included), so the converter (NHWC -> NCHW, TF 'same' padding, the
DOConv2D kernel composed from D and W, SeparableConv2D, BatchNormalization, Dense...) is
checked by an oracle outside doconv."""
import json
import os
import shutil

os.environ.setdefault("KERAS_BACKEND", "jax")  # before anything imports keras (the layer zoo below)

import h5py
import numpy as np
import pytest

from conftest import FIXTURES, manifest, run_fold
from verify_support import edit_keras_weights, read_tensors, run_verify, write_tensors

KERAS = FIXTURES / "keras_h5"
ENTRIES = manifest(KERAS / "MANIFEST.json")
IDS = [e["file"] for e in ENTRIES]
# Fold variants the Keras tests use: plain, --fuse-bn, and --fold-separable on the net with
# separable layers (it then also folds the MobileNet-style one, depth_multiplier 1).
VARIANTS = [(e, []) for e in ENTRIES] + [(e, ["--fuse-bn"]) for e in ENTRIES] \
    + [(e, ["--fold-separable"]) for e in ENTRIES if e["net"] == "net_sep"] \
    + [(e, ["--fuse-bn", "--fold-separable"]) for e in ENTRIES if e["net"] == "net_sep"]
VARIANT_IDS = [e["file"] + ("[" + " ".join(extra) + "]" if extra else "") for e, extra in VARIANTS]


def config_args(entry):
    return ["--config", KERAS / entry["config"]] if entry["format"] in ("h5_weights", "weights_h5") else []


def fold(entry, tmp_path, *extra):
    out = tmp_path / entry["file"]
    result = run_fold(KERAS / entry["file"], out, *extra, *config_args(entry))
    assert result.returncode == 0, result.stderr
    return out


def end_to_end_lines(stdout):
    """The report's end-to-end section: its first line and the lines under it."""
    lines = stdout.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("end to end:"))
    rest = [line for line in lines[start + 1:] if line.startswith("  ")]
    return lines[start], rest


@pytest.mark.parametrize("entry,extra", VARIANTS, ids=VARIANT_IDS)
def test_keras_pair_runs_end_to_end(entry, extra, tmp_path):
    out = fold(entry, tmp_path, *extra)
    result = run_verify(KERAS / entry["file"], out, *config_args(entry))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout
    head, rest = end_to_end_lines(result.stdout)
    assert "not run" not in head, result.stdout
    assert "3 seeded random inputs (seed 0): 'image' float32 [1, 10, 10, " in head, head
    assert len(rest) == 1 and rest[0].startswith("  ok   output 'head': abs "), result.stdout


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_executor_runs_original_as_keras_does(entry, tmp_path):
    """ORIGINAL through the converter and the reference executor against Keras' own outputs."""
    expected = np.load(KERAS / entry["expected"])
    inputs = tmp_path / "inputs.json"
    outputs = tmp_path / "outputs.json"
    write_tensors({"image": expected["input"]}, inputs)
    result = run_verify(KERAS / entry["file"], "--input-json", inputs, "--dump-outputs", outputs, *config_args(entry))
    assert result.returncode == 0, result.stderr
    got = read_tensors(outputs)["head"]
    want = expected["output"].astype(np.float64)
    assert got.shape == want.shape
    relative = float(np.abs(got - want).max() / np.abs(want).max())
    assert relative < 1e-4, relative


def nudge_kernel(path, out):
    """`path` copied to `out` with one value of a folded k x k kernel changed by 1% of its scale
    (the weights inside a .keras archive for archives)."""
    def edit(f):
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        name = next(n for n in names if f[n].ndim == 4 and f[n].shape[0] * f[n].shape[1] > 1 and not n.startswith("optimizer"))
        data = f[name][...]
        data.reshape(-1)[3] += 1e-2 * float(np.abs(data).max())
        f[name][...] = data

    return edit_keras_weights(path, out, edit)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_tampered_folded_kernel_fails_end_to_end(entry, tmp_path):
    folded = fold(entry, tmp_path)
    tampered = nudge_kernel(folded, tmp_path / ("tampered-" + entry["file"]))
    result = run_verify(KERAS / entry["file"], tampered, *config_args(entry))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: NOT EQUIVALENT" in result.stdout
    assert "1 output off" in result.stdout, result.stdout
    head, rest = end_to_end_lines(result.stdout)
    assert "not run" not in head
    assert rest[0].startswith("  FAIL output 'head'"), result.stdout
    assert "first disagreement: output 'head'[" in result.stdout


def test_weights_only_pair_without_config_is_not_run(tmp_path):
    """Without a config there is no model to run: said, not an error (the other checks stand)."""
    entry = next(e for e in ENTRIES if e["file"] == "k2_net_sep_weights.h5")  # folds (to a copy) without a config
    out = tmp_path / entry["file"]
    assert run_fold(KERAS / entry["file"], out).returncode == 0
    result = run_verify(KERAS / entry["file"], out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "end to end: not run: ORIGINAL holds no model config" in result.stdout, result.stdout


def test_unsupported_layer_skips_end_to_end_with_its_name(tmp_path):
    """A layer class the converter does not implement: the step is skipped, naming the layer."""
    entry = next(e for e in ENTRIES if e["file"] == "k3_net_a.weights.h5")
    config = (KERAS / entry["config"]).read_text().replace('"GlobalAveragePooling2D"', '"GlobalAveragePooling2DX"')
    custom = tmp_path / "model.json"
    custom.write_text(config)
    out = tmp_path / entry["file"]
    assert run_fold(KERAS / entry["file"], out, "--config", KERAS / entry["config"]).returncode == 0
    result = run_verify(KERAS / entry["file"], out, "--config", custom)
    assert "end to end: not run: the Keras model cannot be run: layer 'gap' (GlobalAveragePooling2DX)" in result.stdout, result.stdout


# The converter's other layers, against Keras itself: plain Keras 3 models (jax backend) with
# every layer class and activation the converter implements that the DO-Conv fixtures lack,
# saved as .keras, legacy .h5 and .weights.h5 + config, run by the executor on Keras' inputs.

def layer_zoo_models():
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    image = keras.Input((9, 11, 3), name="image")
    a = layers.ZeroPadding2D(((1, 2), (0, 1)), name="zpad")(image)
    a = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu6", name="conv_s2")(a)
    b = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="swish", name="dw")(a)
    b = layers.BatchNormalization(center=False, epsilon=1e-2, name="bn")(b)
    c = layers.Conv2D(12, 1, use_bias=False, activation="tanh", name="pw")(a)
    merged = layers.Add(name="add")([b, c])
    merged = layers.ReLU(max_value=2.5, name="relu_max")(merged)
    pooled = layers.MaxPooling2D(2, padding="same", name="maxpool")(merged)
    averaged = layers.AveragePooling2D(3, strides=1, padding="same", name="avgpool")(merged)
    averaged = layers.MaxPooling2D(2, padding="same", name="maxpool2")(averaged)
    joined = layers.Concatenate(name="concat")([pooled, averaged])
    joined = layers.SeparableConv2D(5, 3, depth_multiplier=2, padding="valid", activation="sigmoid", name="sep")(joined)
    flat = layers.Reshape((-1,), name="reshape")(joined)
    flat = layers.Dropout(0.5, name="drop")(flat)
    probabilities = layers.Dense(4, activation="softmax", name="probs")(flat)
    features = layers.GlobalMaxPooling2D(name="gmp")(merged)
    features = layers.Activation("hard_swish", name="hswish")(features)
    functional = keras.Model(image, [probabilities, features], name="zoo")
    for layer in functional.layers:
        # Non-trivial statistics for the BatchNormalization.
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, layer.moving_mean.shape[0]).astype("float32"))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]).astype("float32"))

    sequential = keras.Sequential([
        keras.Input((8, 8, 2), name="image"),
        layers.Conv2D(4, (3, 2), dilation_rate=(2, 1), padding="same", activation="elu", name="c1"),
        layers.AveragePooling2D(2, name="pool"),
        layers.Flatten(name="flat"),
        layers.Dense(3, activation="sigmoid", name="out"),
    ], name="seq")
    return {"zoo": functional, "seq": sequential}


@pytest.fixture(scope="module")
def layer_zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    import keras
    saved = []
    rng = np.random.default_rng(3)
    for name, model in layer_zoo_models().items():
        x = rng.uniform(-1, 1, (2,) + tuple(model.input_shape[1:])).astype("float32")
        outputs = model.predict(x, verbose=0)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        model.save(folder / f"{name}.keras")
        model.save(folder / f"{name}.h5")
        model.save_weights(folder / f"{name}.weights.h5")
        (folder / f"{name}.json").write_text(model.to_json())
        for file in [f"{name}.keras", f"{name}.h5", f"{name}.weights.h5"]:
            saved.append((folder / file, folder / f"{name}.json", x, outputs))
    assert keras.__version__.startswith("3")
    return saved


def test_layer_zoo_runs_as_keras_does(layer_zoo, tmp_path):
    for path, config, x, expected in layer_zoo:
        inputs = tmp_path / "inputs.json"
        outputs = tmp_path / "outputs.json"
        write_tensors({"image": x}, inputs)
        extra = ["--config", config] if path.name.endswith(".weights.h5") else []
        result = run_verify(path, "--input-json", inputs, "--dump-outputs", outputs, *extra)
        assert result.returncode == 0, (path.name, result.stderr)
        got = read_tensors(outputs)
        # One output is named after its layer; several "layer:node:tensor".
        assert len(got) == len(expected), (path.name, sorted(got))
        for want in expected:
            match = [n for n in got if got[n].shape == want.shape and
                     float(np.abs(got[n] - want).max() / max(np.abs(want).max(), 1e-12)) < 1e-4]
            assert match, (path.name, {n: got[n].shape for n in got}, want.shape)


def test_layer_zoo_pair_is_equivalent_end_to_end(layer_zoo):
    """A model without DO-Conv layers against itself: every output compared, no skip."""
    for path, config, _, expected in layer_zoo:
        extra = ["--config", config] if path.name.endswith(".weights.h5") else []
        result = run_verify(path, path, *extra)
        assert result.returncode == 0, (path.name, result.stdout + result.stderr)
        head, rest = end_to_end_lines(result.stdout)
        assert "not run" not in head, result.stdout
        assert len(rest) == len(expected) and all(line.startswith("  ok   output '") for line in rest), result.stdout


def test_a_grouped_kernel_whose_cin_per_group_equals_its_groups_is_not_read_as_depthwise(tmp_path):
    """A weights-only DO-GConv with Cin/g = g (Cin 4, groups 2) folds to a Conv2D kernel
    (M, N, 2, Cout) whose third dim equals its groups, like a DepthwiseConv2D kernel's: the
    end-to-end check must still read it as the grouped Conv2D it is (its last dim is Cout)."""
    import h5py
    config = json.loads((KERAS / "k2_net_dw.json").read_text())
    layers = config["config"]["layers"]
    layers[0]["config"]["batch_input_shape"][-1] = 4
    layers[1]["config"]["groups"] = 2
    config_path = tmp_path / "model.json"
    config_path.write_text(json.dumps(config))
    src = tmp_path / "weights.h5"
    shutil.copy(KERAS / "k2_net_dw_weights.h5", src)
    rng = np.random.default_rng(3)
    with h5py.File(src, "r+") as f:
        group = f["do_dw/do_dw"]
        for name, shape in [("kernel:0", (9, 2, 8)), ("D:0", (9, 9, 4))]:
            del group[name]
            group.create_dataset(name, data=(rng.standard_normal(shape) * 0.1).astype(np.float32))
    out = tmp_path / "folded.h5"
    result = run_fold(src, out, "--config", config_path)
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as f:
        assert f["do_dw/do_dw/kernel:0"].shape == (3, 3, 2, 8)
    verdict = run_verify(src, out, "--config", config_path)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert "end to end: 3 seeded random inputs" in verdict.stdout


def _h5_datasets(data):
    import io

    found = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return found


def test_a_deflated_keras_archive_folds_as_the_stored_one(tmp_path):
    """Keras writes .keras archives stored, but a user's may be deflated (repacked, or by
    another writer): Python's zipfile deflates this one; the fold inflates it and gives the
    same config and weights as from the stored archive, in an archive zipfile reads back
    with every CRC right."""
    import zipfile

    source = KERAS / "k3_net_a.keras"
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(source) as stored, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in stored.infolist():
            out.writestr(info.filename, stored.read(info.filename))
    with zipfile.ZipFile(deflated) as check:
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in check.infolist())
    from_stored = run_fold(source, tmp_path / "a.keras")
    from_deflated = run_fold(deflated, tmp_path / "b.keras")
    assert from_stored.returncode == 0 and from_deflated.returncode == 0, from_deflated.stderr
    with zipfile.ZipFile(tmp_path / "a.keras") as a, zipfile.ZipFile(tmp_path / "b.keras") as b:
        assert b.testzip() is None
        assert a.namelist() == b.namelist()
        assert a.read("config.json") == b.read("config.json")
        wa, wb = _h5_datasets(a.read("model.weights.h5")), _h5_datasets(b.read("model.weights.h5"))
        assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    verdict = run_verify(deflated, tmp_path / "b.keras")
    assert verdict.returncode == 0 and "EQUIVALENT" in verdict.stdout, verdict.stdout + verdict.stderr


def test_a_corrupt_deflated_entry_is_one_error_line(tmp_path, clean_tmpdir):
    import zipfile

    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(KERAS / "k3_net_a.keras") as stored, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in stored.infolist():
            out.writestr(info.filename, stored.read(info.filename))
    data = bytearray(deflated.read_bytes())
    with zipfile.ZipFile(deflated) as z:
        info = z.getinfo("model.weights.h5")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 100:start + 400] = bytes(300)  # inside the deflated stream of the weights
    deflated.write_bytes(bytes(data))
    result = run_fold(deflated, tmp_path / "out.keras")
    assert result.returncode == 2 and not (tmp_path / "out.keras").exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.weights.h5" in lines[0], result.stderr
