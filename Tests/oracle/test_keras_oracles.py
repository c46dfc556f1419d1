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

from conftest import FIXTURES, manifest, run_fold  # noqa: E402
from verify_support import float16_copy  # noqa: E402

FOLDER = FIXTURES / "keras_h5"
ENTRIES = manifest(FOLDER / "MANIFEST.json")


def plain_twin(net):
    """The net with Conv2D in place of every DOConv2D, and DepthwiseConv2D in place of every
    DO-DConv (groups = Cin, by the fixture manifest), built by Keras from its Keras 3 JSON
    (the test's own rewrite of the config, independent of doconv's)."""
    config = json.loads((FOLDER / f"k3_{net}.json").read_text())
    config.pop("compile_config", None)
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "DOConv2D" or layer.get("registered_name") == "doconv>DOConv2D":
            layer.update(class_name="Conv2D", module="keras.layers", registered_name=None)
            layer["config"].pop("D_mul")
            as_depthwise_if_dodconv(layer)
        elif layer["class_name"] == "SeparableConv2D":
            c = layer["config"]
            if c["depth_multiplier"] >= c["kernel_size"][0] * c["kernel_size"][1]:
                layer["class_name"] = "Conv2D"
                for key in [k for k in c if k == "depth_multiplier" or k.startswith(("depthwise_", "pointwise_"))]:
                    del c[key]
    return keras.models.model_from_json(json.dumps(config))


# The fixtures' DO-Conv layers' input channels (layer names are unique across the nets).
IN_CHANNELS = {layer["name"]: layer["in_channels"] for e in ENTRIES for layer in e["do_layers"]}


def as_depthwise_if_dodconv(layer):
    """A plain Conv2D entry of a folded DO-DConv (groups = Cin) made the DepthwiseConv2D
    doconv writes by default."""
    c = layer["config"]
    if c.get("groups", 1) > 1 and c["groups"] == IN_CHANNELS.get(c["name"]):
        layer["class_name"] = "DepthwiseConv2D"
        c["depth_multiplier"] = c.pop("filters") // c.pop("groups")
        for part in ("initializer", "regularizer", "constraint"):
            c["depthwise_" + part] = c.pop("kernel_" + part, None)


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
    # Every folded layer's kernel is 4-D: (M, N, Cin/g, Cout), or a DO-DConv's
    # DepthwiseConv2D kernel (M, N, Cin, Cout/Cin).
    for layer in entry["do_layers"]:
        depthwise = layer["groups"] == layer["in_channels"] > 1
        last = layer["filters"] // layer["in_channels"] if depthwise else layer["filters"]
        third = layer["in_channels"] if depthwise else layer["in_channels"] // layer["groups"]
        matches = [shape for name, shape in kernels.items() if len(shape) == 4 and list(shape) == layer["kernel"] + [third, last]]
        assert matches, layer["name"]


def identity_tiled(mn, dmul, channels):
    eye = np.zeros((mn, dmul, channels), np.float32)
    for s in range(mn * (dmul // mn)):
        eye[s % mn, s, :] = 1
    return eye


def test_float16_chunked_gzip_weights_keep_their_storage(tmp_path):
    """Weights stored as float16 in gzip-compressed chunks stay so; the kernel equals numpy's
    composition of the stored D and W."""
    src = float16_copy(FOLDER / "k2_net_a.h5", tmp_path / "f16.h5", chunks=True, compression="gzip")
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


def test_an_explicit_1x1_kernel_size_folds_a_1x1_layer_without_a_config(tmp_path, clean_tmpdir):
    """Issue 14, item 2: in a Keras 2 weights-only file (no config), a 3-D kernel without D
    is a 1x1 DOConv2D or a Conv1D; `--kernel-size do_point=1x1` settles it, and plain Keras
    then loads the weights (with the model's own config, given to Keras, not to doconv).
    Issue 24, item 5: unsettled, the fold is refused (a file with that layer left unfolded
    fits neither model), unless --allow-partial asks for it."""
    src = FOLDER / "k2_net_a_weights.h5"
    out = tmp_path / "out.h5"
    result = run_fold(src, out, "--kernel-size", "do_wide=1x3")
    assert result.returncode == 2 and not out.exists(), result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "layer 'do_point'" in result.stderr and "--config MODEL.json or --kernel-size do_point=1x1" in result.stderr
    assert "--allow-partial" in result.stderr
    result = run_fold(src, out, "--kernel-size", "do_wide=1x3", "--allow-partial")
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


# --fuse-bn: each BatchNormalization right after a Conv2D (or a layer this run folds into
# one) becomes part of that Conv2D; plain Keras loads the result and predicts the same.

def keras_histories(value):
    """Every (layer, node, tensor) a Keras 3 inbound node or output list refers to."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [tuple(value["config"]["keras_history"])]
        return [h for v in value.values() for h in keras_histories(v)]
    if isinstance(value, list):
        if len(value) == 3 and isinstance(value[0], str) and all(isinstance(v, int) for v in value[1:]):
            return [tuple(value)]
        return [h for v in value for h in keras_histories(v)]
    return []


def becomes_conv2d(layer):
    """True for the layers a plain fold turns into (or leaves as) a Conv2D."""
    c = layer["config"]
    if layer["class_name"] == "SeparableConv2D":
        return c["depth_multiplier"] >= c["kernel_size"][0] * c["kernel_size"][1]
    return layer["class_name"] in ("Conv2D", "DOConv2D") or layer.get("registered_name") == "doconv>DOConv2D"


def expected_fusions(config):
    """BatchNormalization name -> the conv it folds into, by the test's own reading of a
    Keras 3 config: the BN's only input is a linear, channels-last Conv2D (after the fold)
    whose output nothing else reads."""
    layers = config["config"]["layers"]
    sequential = config["class_name"] == "Sequential"
    by_name = {layer["config"]["name"]: layer for layer in layers}
    readers = {}
    for layer in layers:
        for name, _, _ in keras_histories(layer.get("inbound_nodes", [])):
            readers[name] = readers.get(name, 0) + 1
    for name, _, _ in keras_histories(config["config"].get("output_layers", [])):
        readers[name] = readers.get(name, 0) + 1
    fusions = {}
    for k, layer in enumerate(layers):
        if layer["class_name"] != "BatchNormalization" or layer["config"]["axis"] not in (-1, 3, [-1], [3]):
            continue
        if sequential:
            conv = layers[k - 1]
        else:
            inputs = keras_histories(layer["inbound_nodes"])
            if len(inputs) != 1:
                continue
            conv = by_name[inputs[0][0]]
            if readers.get(conv["config"]["name"]) != 1:
                continue
        if becomes_conv2d(conv) and conv["config"].get("activation", "linear") == "linear":
            fusions[layer["config"]["name"]] = conv["config"]["name"]
    return fusions


def plain_config(config):
    """A Keras 3 config with Conv2D in place of every layer the fold turns into one (the
    test's own rewrite, as in `plain_twin`)."""
    config = json.loads(json.dumps(config))
    config.pop("compile_config", None)
    for layer in config["config"]["layers"]:
        if not becomes_conv2d(layer) or layer["class_name"] == "Conv2D":
            continue
        c = layer["config"]
        layer.update(class_name="Conv2D", module="keras.layers", registered_name=None)
        for key in [k for k in c if k in ("D_mul", "depth_multiplier") or k.startswith(("depthwise_", "pointwise_"))]:
            del c[key]
        as_depthwise_if_dodconv(layer)
    return config


def fused_config(config):
    """`plain_config` without the BatchNormalization layers `expected_fusions` names: each
    conv takes `use_bias`, and whatever read a BN reads its conv."""
    fusions = expected_fusions(config)
    config = plain_config(config)

    def rewire(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__" and value["config"]["keras_history"][0] in fusions:
                value["config"]["keras_history"][0] = fusions[value["config"]["keras_history"][0]]
            for v in value.values():
                rewire(v)
        elif isinstance(value, list):
            if len(value) == 3 and isinstance(value[0], str) and value[0] in fusions:
                value[0] = fusions[value[0]]
            for v in value:
                rewire(v)

    layers = [layer for layer in config["config"]["layers"] if layer["config"]["name"] not in fusions]
    for layer in layers:
        if layer["config"]["name"] in fusions.values():
            layer["config"]["use_bias"] = True
        rewire(layer.get("inbound_nodes", []))
    config["config"]["layers"] = layers
    rewire(config["config"].get("output_layers", []))
    return config


def assert_no_batchnorm_after_a_fused_conv(model, fusions):
    config = model.get_config()
    names = [layer["config"]["name"] for layer in config["layers"]]
    assert not set(fusions) & set(names), names
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            assert not {h[0] for h in keras_histories(layer.get("inbound_nodes", []))} & set(fusions.values())
    for conv in set(fusions.values()):
        assert model.get_layer(conv).use_bias


def strings_in(value):
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        value = list(value.values())
    return set().union(*map(strings_in, value)) if isinstance(value, list) else set()


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_fuse_bn_plain_keras_loads_the_result_and_predicts_the_same(tmp_path, entry):
    """Every fixture format with a config (full .h5 of Keras 2 and 3, .keras, weight files
    with --config): after `--fuse-bn`, plain Keras (no custom objects) loads the result, no
    BatchNormalization is left after a fused conv, and it predicts what the DO-Conv model
    predicted."""
    config = json.loads((FOLDER / f"k3_{entry['net']}.json").read_text())
    fusions = expected_fusions(config)
    out = tmp_path / entry["file"]
    args = [FOLDER / entry["file"], out, "--fuse-bn"]
    if entry["format"] in ("h5_weights", "weights_h5"):
        args += ["--config", FOLDER / entry["config"]]
    result = run_fold(*args)
    assert result.returncode == 0, result.stderr
    for bn, conv in fusions.items():
        assert f"{bn} into {conv}" in result.stdout, result.stdout
    if not fusions:
        assert "note: fused" not in result.stdout, result.stdout
    expected = np.load(FOLDER / entry["expected"])
    if entry["format"] in ("h5_full", "keras_zip") and not (entry["keras"] == 2 and entry["net"] == "net_sep"):
        model = keras.models.load_model(str(out), compile=False)
    else:
        # Weights only, or a Keras 2 SeparableConv2D config that Keras 3 cannot read: the
        # plain model from the test's own rewrite of the config takes the weights.
        model = keras.models.model_from_json(json.dumps(fused_config(config)))
        model.load_weights(str(out))
    if entry["format"] == "h5_full":
        with h5py.File(out, "r") as f:
            stored = json.loads(f.attrs["model_config"])
        # Neither a layer nor a reference to one (Keras 2 or 3 inbound nodes) names a fused BN.
        assert not set(fusions) & strings_in(stored["config"]["layers"]), stored
    assert {type(layer).__name__ for layer in model.layers}.isdisjoint({"DOConv2D"})
    assert_no_batchnorm_after_a_fused_conv(model, fusions)
    assert relative_error(model.predict(expected["input"], verbose=0), expected["output"]) <= 1e-5


def test_fuse_bn_fixtures_fuse_and_skip_as_expected():
    """The fixtures hold both cases: net_sep's BN follows a linear SeparableConv2D that folds
    into a Conv2D (fused); net_a's follows a DOConv2D with a relu (kept)."""
    assert expected_fusions(json.loads((FOLDER / "k3_net_sep.json").read_text())) == {"bn": "sep_do"}
    assert expected_fusions(json.loads((FOLDER / "k3_net_a.json").read_text())) == {}


def test_fuse_bn_summary_reports_the_fusions(tmp_path):
    result = run_fold(FOLDER / "k3_net_sep.h5", tmp_path / "out.h5", "--fuse-bn")
    assert result.returncode == 0, result.stderr
    assert "note: fused 1 BatchNormalization into the Conv2D before it: bn into sep_do" in result.stdout
    assert "verified: worst relative error" in result.stdout
    # The BN's 4 x 8 parameters are gone (sep_do already had a bias).
    plain = run_fold(FOLDER / "k3_net_sep.h5", tmp_path / "plain.h5")
    after = lambda text: int(text.split("parameters ")[1].split(" -> ")[1].split(" ")[0].replace(",", ""))  # noqa: E731
    assert after(plain.stdout) - after(result.stdout) == 32, (plain.stdout, result.stdout)
    kept = run_fold(FOLDER / "k3_net_a.h5", tmp_path / "a.h5", "--fuse-bn")
    assert kept.returncode == 0, kept.stderr
    assert "BatchNormalization 'bn' not fused: 'do_stem' applies its relu activation before it" in kept.stdout


def test_fuse_bn_without_a_config_fuses_nothing_and_says_so(tmp_path):
    out = tmp_path / "out.h5"
    result = run_fold(FOLDER / "k2_net_a_weights.h5", out, "--fuse-bn", "--kernel-size", "do_wide=1x3",
                      "--kernel-size", "do_point=1x1")
    assert result.returncode == 0, result.stderr
    assert "no BatchNormalization fused" in result.stdout and "--config" in result.stdout, result.stdout
    with h5py.File(out, "r") as f:
        assert "bn" in [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert "bn/bn/gamma:0" in f


def batchnorm_weights(model, seed):
    """Moving statistics and affine parameters far from their initial values, so that a
    fusion that ignored any of them would change the predictions."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = []
            for variable in layer.weights:
                shape = tuple(variable.shape)
                if variable.path.endswith("moving_variance"):
                    values.append(rng.uniform(0.5, 2.0, shape).astype(np.float32))
                else:
                    values.append(rng.normal(0, 1, shape).astype(np.float32))
            layer.set_weights(values)


def functional_net():
    """A conv without bias into a BN without beta (fused: the conv gets a new bias), a conv
    whose output a BN and an Add both read (kept), and a model output that is a BN after a
    conv without bias (fused, scale=False)."""
    x = keras.Input((8, 8, 3), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(x)
    a = keras.layers.BatchNormalization(center=False, name="b1")(a)
    a = keras.layers.ReLU(name="r1")(a)
    b = keras.layers.Conv2D(4, 1, name="c2")(a)
    b2 = keras.layers.BatchNormalization(name="b2")(b)
    s = keras.layers.Add(name="add")([b, b2])
    c = keras.layers.Conv2D(5, 3, use_bias=False, name="c3")(s)
    out = keras.layers.BatchNormalization(scale=False, epsilon=0.01, name="b3")(c)
    return keras.Model(x, out, name="fuse_functional")


def sequential_net():
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, use_bias=False, name="c1"),
        keras.layers.BatchNormalization(center=False, scale=False, name="b1"),
        keras.layers.ReLU(name="r1"),
        keras.layers.Conv2D(6, 3, padding="same", name="c2"),
        keras.layers.BatchNormalization(name="b2"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(3, name="head"),
        keras.layers.BatchNormalization(name="b3"),
    ], name="fuse_sequential")


@pytest.mark.parametrize("build, fused", [
    (functional_net, {"b1": "c1", "b3": "c3"}),
    (sequential_net, {"b1": "c1", "b2": "c2"}),
], ids=["functional", "sequential"])
@pytest.mark.parametrize("kind", ["keras", "h5", "weights.h5"])
def test_fuse_bn_on_plain_keras_models(tmp_path, build, fused, kind):
    """Models saved here by Keras 3 (no DO-Conv layer; fusing alone): convs without a bias
    get one (weight_names / vars/1 as a plain Conv2D with use_bias expects), BNs without
    beta or gamma fuse, a conv read by two layers and a BN after a Dense stay, the
    remaining BN groups of a .weights.h5 are renumbered, and plain Keras predicts what the
    original predicted."""
    model = build()
    batchnorm_weights(model, seed=1)
    config = json.loads(model.to_json())
    assert expected_fusions(config) == fused
    src = tmp_path / f"model.{kind}"
    (model.save_weights if kind == "weights.h5" else model.save)(str(src))
    (tmp_path / "model.json").write_text(model.to_json())
    x = np.random.default_rng(2).normal(0, 1, (4, 8, 8, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)

    out = tmp_path / f"out.{kind}"
    args = ["--config", tmp_path / "model.json"] if kind == "weights.h5" else []
    result = run_fold(src, out, "--fuse-bn", *args)
    assert result.returncode == 0, result.stderr
    assert f"fused {len(fused)} BatchNormalization" in result.stdout, result.stdout
    if kind == "weights.h5":
        plain = keras.models.model_from_json(json.dumps(fused_config(config)))
        plain.load_weights(str(out))
        with h5py.File(out, "r") as f:
            groups = sorted(f["layers"])
        assert [g for g in groups if g.startswith("batch_normalization")] == ["batch_normalization"], groups
    else:
        plain = keras.models.load_model(str(out), compile=False)
    assert_no_batchnorm_after_a_fused_conv(plain, fused)
    assert len([l for l in plain.layers if isinstance(l, keras.layers.BatchNormalization)]) == 1
    assert relative_error(plain.predict(x, verbose=0), expected) <= 1e-5
