"""doconv-expand (issue 27): plain PyTorch weights become a checkpoint the DO-Conv model loads
strictly and that computes exactly the plain convs at initialization.

The fixtures (fixtures/expand, written by make_expand_fixtures.py, which also checks the
results with real torch: strict load, same predictions, every D column moves after one step)
are expanded here and read back without torch: CPython's pickle with a restricted find_class
(torch_checkpoint.py) and the safetensors package. The keys and shapes must be exactly those of
the freshly initialized DO-Conv twin's state dict (what load_state_dict(strict=True) checks),
the composite kernel computed here in numpy with the reference layer's formula (FORMATS.md)
must be the plain kernel bit for bit, and every other tensor must be unchanged. Then the round
trips: doconv-fold gives the plain weights back byte for byte, and verify-equivalence PLAIN
EXPANDED finds the pair EQUIVALENT and a tampered one not.
"""
import json
import pathlib
import struct

import numpy as np
import pytest

import torch_checkpoint as tc
from conftest import FIXTURES, run_fold, run_tool, run_verify

EXPAND = FIXTURES / "expand"
MANIFEST = json.loads((EXPAND / "MANIFEST.json").read_text())
FILES = MANIFEST["files"]
LAYERS = {layer["name"]: layer for layer in MANIFEST["layers"]}
GROUP_FLAGS = [a for name, g in MANIFEST["groups"].items() for a in ("--groups", f"{name}={g}")]
KERNEL_SIZES = [a for layer in LAYERS.values() if layer["kernel"][0] != layer["kernel"][1]
                for a in ("--kernel-size", f"{layer['name']}={layer['kernel'][0]}x{layer['kernel'][1]}")]


def run_expand(*args):
    return run_tool("DOCONV_EXPAND", "doconv-expand", *args)


def expand_variants(out, source, variants, suffix):
    """`source` expanded once per variant (name -> extra arguments) into `out`."""
    done = {}
    for variant, args in variants.items():
        target = out / f"{variant}{suffix}"
        result = run_expand(*args, source, target)
        assert result.returncode == 0, f"{source.name} ({variant}): {result.stderr}"
        done[variant] = target
    return done


def suffix(entry):
    return {"safetensors": ".safetensors", "sharded": ""}.get(entry["container"], ".pth")


def load(path):
    """A checkpoint's object; a sharded one's shards in its index's order, as one dict."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return tc.load(path).obj
    weight_map = json.loads(next(path.glob("*.index.json")).read_text())["weight_map"]
    obj = {}
    for shard in sorted(set(weight_map.values())):
        obj.update(tc.load(path / shard).obj)
    return obj


def state_dict(path, entry):
    """The state dict of a checkpoint, as numpy arrays, its prefix stripped; and the whole object."""
    obj = load(path)
    state = obj[entry["dict"]] if entry["dict"] else obj
    return {k[len(entry["prefix"]):]: v.numpy() for k, v in state.items()}, obj


def identity(cin, mn, dmul):
    """The reference layer's d_diag: eye(MN) tiled along Dmul, zero columns for the remainder."""
    s = np.arange(dmul)
    on = (s[None, :] < mn * (dmul // mn)) & (s[None, :] % mn == np.arange(mn)[:, None])
    return np.broadcast_to(on.astype(np.float32), (cin, mn, dmul))


def composite(w, d, d_diag, layer):
    """The DO-Conv layer's kernel, in float64, as the reference layer computes it."""
    cin, cout, g = layer["in_channels"], layer["out_channels"], layer["groups"]
    m, n = layer["kernel"]
    if m * n == 1:
        return w.astype(np.float64).reshape(cout, cin // g, m, n)
    dt = d.astype(np.float64) + d_diag
    wr = w.astype(np.float64).reshape(cout // g, cin, w.shape[2])
    return np.einsum("ims,ois->oim", dt, wr).reshape(cout, cin // g, m, n)


@pytest.fixture(scope="module")
def template():
    return {k: v.numpy() for k, v in tc.load(EXPAND / MANIFEST["template"]).obj.items()}


@pytest.fixture(scope="module")
def expanded(tmp_path_factory):
    """Every fixture expanded with --like, with --groups, and with --dmul 20."""
    out = tmp_path_factory.mktemp("expand")
    variants = {"like": ["--like", EXPAND / MANIFEST["template"]], "groups": GROUP_FLAGS, "dmul20": GROUP_FLAGS + ["--dmul", "20"]}
    done = {}
    for entry in FILES:
        made = expand_variants(out, EXPAND / entry["file"], {f"{v}_{entry['file']}": a for v, a in variants.items()}, suffix(entry))
        done.update({(entry["file"], v): made[f"{v}_{entry['file']}"] for v in variants})
    return done


@pytest.mark.parametrize("variant", ["like", "groups"])
@pytest.mark.parametrize("entry", FILES, ids=lambda e: e["file"])
def test_keys_and_shapes_are_the_do_conv_models_own(expanded, template, entry, variant):
    """What load_state_dict(strict=True) checks: the same keys, each the same shape."""
    state, _ = state_dict(expanded[(entry["file"], variant)], entry)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in template.items()}


@pytest.mark.parametrize("variant", ["like", "groups", "dmul20"])
@pytest.mark.parametrize("entry", FILES, ids=lambda e: e["file"])
def test_the_expanded_layers_compute_the_plain_kernels_exactly(expanded, entry, variant):
    plain, plain_obj = state_dict(EXPAND / entry["file"], entry)
    state, obj = state_dict(expanded[(entry["file"], variant)], entry)
    for name, layer in LAYERS.items():
        m, n = layer["kernel"]
        mn = m * n
        w = state[f"{name}.W"]
        kernel = plain[f"{name}.weight"]
        assert f"{name}.weight" not in state
        # W's first M*N columns are the kernel's memory, whatever the groups.
        assert np.array_equal(w[:, :, :mn], kernel.reshape(w.shape[0], w.shape[1], mn))
        if mn == 1:
            assert w.shape[2] == 1 and f"{name}.D" not in state
            continue
        d, d_diag = state[f"{name}.D"], state[f"{name}.d_diag"]
        dmul = w.shape[2]
        assert dmul == (20 if variant == "dmul20" else mn)
        assert np.array_equal(d_diag, identity(layer["in_channels"], mn, dmul))
        assert np.array_equal(composite(w, d, d_diag, layer), kernel.astype(np.float64))
        # Beyond M*N: D + I exactly 0, W not 0 (so D gets a gradient: no dead column).
        assert not (d[:, :, :mn]).any()
        if dmul > mn:
            assert not (d[:, :, mn:] + d_diag[:, :, mn:]).any()
            assert (np.abs(w[:, :, mn:]).max(axis=(0, 1)) > 0).all()
    for key, value in plain.items():
        if not any(key == f"{name}.weight" for name in LAYERS):
            assert np.array_equal(state[key], value), key
    if entry["dict"]:
        assert "optimizer" in plain_obj and "optimizer" not in obj
        assert obj["epoch"] == plain_obj["epoch"] and obj["arch"] == plain_obj["arch"]


@pytest.mark.parametrize("entry", FILES, ids=lambda e: e["file"])
def test_folding_the_expansion_gives_the_plain_weights_back(expanded, tmp_path, entry):
    back = tmp_path / ("back" + suffix(entry))
    result = run_fold(*KERNEL_SIZES, expanded[(entry["file"], "dmul20")], back)
    assert result.returncode == 0, result.stderr
    plain, _ = state_dict(EXPAND / entry["file"], entry)
    state, _ = state_dict(back, entry)
    assert list(state) == list(plain)
    for key, value in plain.items():
        assert state[key].dtype == value.dtype and state[key].tobytes() == value.tobytes(), key


@pytest.mark.parametrize("entry", FILES, ids=lambda e: e["file"])
def test_verify_equivalence_takes_the_plain_and_expanded_pair(expanded, entry):
    result = run_verify(EXPAND / entry["file"], expanded[(entry["file"], "dmul20")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout and "doconv-expand's pair" in result.stdout


def test_a_tampered_expansion_is_not_equivalent(expanded, tmp_path):
    """D moved off zero in one place (the safetensors file, patched in its data section)."""
    entry = next(e for e in FILES if e["container"] == "safetensors")
    source = expanded[(entry["file"], "groups")]
    header, _, start = tc.safetensors_header(source)
    begin = dict(header)["dw.D"]["data_offsets"][0]
    data = bytearray(source.read_bytes())
    data[start + begin:start + begin + 4] = struct.pack("<f", 1e-3)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    result = run_verify(EXPAND / entry["file"], bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT EQUIVALENT" in result.stdout and "dw" in result.stdout


def test_groups_a_kernel_cannot_tell_are_one_error(tmp_path, clean_tmpdir):
    out = tmp_path / "out.pth"
    result = run_expand(EXPAND / "plain.pth", out)
    assert result.returncode == 2 and not out.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'dw'" not in lines[0] and "dw" in lines[0] and "--groups" in lines[0], result.stderr


@pytest.mark.parametrize("args, message", [
    (["--dmul", "4"], "below its M x N"),
    (["--like", EXPAND / "plain.pth"], "no DO-Conv layer"),
    (["--groups", "grouped=3"], "do not divide"),
])
def test_what_cannot_be_expanded_exactly_is_refused(tmp_path, clean_tmpdir, args, message):
    out = tmp_path / "out.pth"
    result = run_expand(*GROUP_FLAGS, *args, EXPAND / "plain.pth", out)
    assert result.returncode == 2 and not out.exists(), result.stdout + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_format_with_no_expansion_is_named(tmp_path, clean_tmpdir):
    out = tmp_path / "out.onnx"
    result = run_expand(FIXTURES / "g1_basic.ts.onnx", out)
    assert result.returncode == 2 and not out.exists()
    assert "not expanded" in result.stderr, result.stderr


def test_exclude_leaves_a_conv_and_says_so(tmp_path):
    out = tmp_path / "out.pth"
    result = run_expand(*GROUP_FLAGS, "--exclude", "wide", EXPAND / "plain.pth", out)
    assert result.returncode == 0, result.stderr
    assert "left: wide: left as it is: --exclude wide" in result.stdout
    state, _ = state_dict(out, FILES[0])
    assert "wide.weight" in state and "wide.W" not in state and "stem.W" in state


# ---------------------------------------------------------------------------------------
# Gluon .params (MXNet 1.9.1 reads them, in its own venv: test_mxnet_oracles.py's oracle)

GLUON = EXPAND / "gluon_seg.params"
GLUON_TEMPLATE = EXPAND / "gluon_seg_do_template.params"


@pytest.fixture(scope="module")
def gluon(tmp_path_factory):
    return expand_variants(tmp_path_factory.mktemp("gluon"), GLUON,
                           {"like": ["--like", GLUON_TEMPLATE], "groups": ["--groups", "3=2", "--groups", "5=4"]}, ".params")


@pytest.mark.parametrize("variant", ["like", "groups"])
def test_gluon_params_get_the_do_conv_nets_arrays(gluon, variant):
    """As MXNet's mx.nd.load reads them: exactly the DO-Conv net's names and shapes (what
    load_parameters checks), every weight and other array bit for bit the plain file's, and
    each D zeros (the Gluon layer's W is the weight itself)."""
    from test_mxnet_oracles import dump
    template = {a["name"]: a["shape"] for a in dump(GLUON_TEMPLATE)}
    plain = {a["name"]: a for a in dump(GLUON)}
    expanded = dump(gluon[variant])
    assert {a["name"]: a["shape"] for a in expanded} == template
    zeros = {a["name"]: a for a in expanded if a["name"].endswith(".D")}
    assert len(zeros) == 3
    for array in expanded:
        if array["name"] in zeros:
            import hashlib
            assert array["sha256"] == hashlib.sha256(bytes(4 * int(np.prod(array["shape"])))).hexdigest(), array["name"]
        else:
            assert array["sha256"] == plain[array["name"]]["sha256"], array["name"]


def test_gluon_expansion_folds_back_byte_for_byte_and_verifies(gluon, tmp_path):
    back = tmp_path / "back.params"
    assert run_fold(gluon["groups"], back).returncode == 0
    assert back.read_bytes() == GLUON.read_bytes()
    result = run_verify(GLUON, gluon["like"])
    assert result.returncode == 0 and "doconv-expand's pair" in result.stdout, result.stdout + result.stderr


def test_gluon_groups_taken_as_one_are_said(tmp_path):
    """Without --groups or --like, the grouped convs (Cin/g 4) are taken as groups 1: their
    D is then too narrow for the DO-Conv net, and the summary says why."""
    from test_mxnet_oracles import dump
    out = tmp_path / "out.params"
    result = run_expand(GLUON, out)
    assert result.returncode == 0, result.stderr
    assert "groups taken as 1 for 3 layers" in result.stdout, result.stdout
    shapes = {a["name"]: a["shape"] for a in dump(out)}
    assert shapes["3.D"] == [9, 9, 4] and {a["name"]: a["shape"] for a in dump(GLUON_TEMPLATE)}["3.D"] == [9, 9, 8]


def test_gluon_refuses_another_depth_multiplier(tmp_path, clean_tmpdir):
    out = tmp_path / "out.params"
    result = run_expand("--groups", "3=2", "--groups", "5=4", "--dmul", "12", GLUON, out)
    assert result.returncode == 2 and not out.exists() and "only Dmul = M*N" in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------
# Keras legacy .h5 (h5py here; tf_keras loads the result in its own venv)

KERAS = EXPAND / "keras_plain.h5"
KERAS_TEMPLATE = EXPAND / "keras_do_template.h5"


def h5_datasets(path):
    import h5py
    found = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("model_weights/"):
                found[name] = np.asarray(obj)
        f.visititems(visit)
        names = {k: [n.decode() if isinstance(n, bytes) else n for n in f["model_weights"][k].attrs["weight_names"]]
                 for k in f["model_weights"].attrs["layer_names"].astype(str)}
        config = json.loads(f.attrs["model_config"])
    return found, names, config


@pytest.fixture(scope="module")
def keras(tmp_path_factory):
    return expand_variants(tmp_path_factory.mktemp("keras"), KERAS, {"default": [], "dmul20": ["--dmul", "20"]}, ".h5")


def test_keras_expansion_holds_the_do_conv_models_weights(keras):
    """The same datasets, shapes and weight_names (kernel, bias, D) as the DO-Conv model's own
    model.save writes, DOConv2D layers in the config, the optimizer's weights gone."""
    data, names, config = h5_datasets(keras["default"])
    want, want_names, want_config = h5_datasets(KERAS_TEMPLATE)
    assert {k: v.shape for k, v in data.items()} == {k: v.shape for k, v in want.items()}
    assert names == want_names
    classes = {layer["config"]["name"]: layer["class_name"] for layer in config["config"]["layers"]}
    assert classes == {layer["config"]["name"]: layer["class_name"] for layer in want_config["config"]["layers"]}
    import h5py
    with h5py.File(keras["default"], "r") as f:
        assert "optimizer_weights" not in f
    with h5py.File(KERAS, "r") as f:
        assert "optimizer_weights" in f


@pytest.mark.parametrize("variant", ["default", "dmul20"])
def test_keras_expanded_layers_compute_the_plain_kernels_exactly(keras, variant):
    plain, _, config = h5_datasets(KERAS)
    data, _, _ = h5_datasets(keras[variant])
    for layer in config["config"]["layers"]:
        if layer["class_name"] != "Conv2D":
            continue
        name, groups = layer["config"]["name"], layer["config"].get("groups", 1)
        kernel = plain[f"model_weights/{name}/{name}/kernel:0"]
        m, n, cin_g, cout = kernel.shape
        mn, cin = m * n, cin_g * groups
        w = data[f"model_weights/{name}/{name}/kernel:0"]
        assert np.array_equal(w[:mn].reshape(kernel.shape), kernel)
        if mn == 1:
            assert f"model_weights/{name}/{name}/D:0" not in data
            continue
        d = data[f"model_weights/{name}/{name}/D:0"]
        dmul = w.shape[0]
        s = np.arange(dmul)
        eye = ((s[None, :] < mn * (dmul // mn)) & (s[None, :] % mn == np.arange(mn)[:, None])).astype(np.float64)
        dt = d.astype(np.float64) + eye[:, :, None]
        wr = w.astype(np.float64).reshape(dmul, cin, cout // groups)
        composite = np.einsum("msi,sio->mio", dt, wr).reshape(m, n, cin_g, cout)
        assert np.array_equal(composite, kernel.astype(np.float64)), name
    convs = {f"model_weights/{layer['config']['name']}/{layer['config']['name']}/kernel:0"
             for layer in config["config"]["layers"] if layer["class_name"] == "Conv2D"}
    for key, value in plain.items():
        assert key in data and (key in convs or np.array_equal(data[key], value)), key


def test_keras_expansion_folds_back_and_verifies(keras, tmp_path):
    back = tmp_path / "back.h5"
    assert run_fold(keras["dmul20"], back).returncode == 0
    plain, _, _ = h5_datasets(KERAS)
    data, _, _ = h5_datasets(back)
    assert set(data) == set(plain)
    for key, value in plain.items():
        assert data[key].tobytes() == value.tobytes(), key
    result = run_verify(KERAS, keras["dmul20"])
    assert result.returncode == 0 and "doconv-expand's pair" in result.stdout, result.stdout + result.stderr
    assert "end to end: not run" not in result.stdout


def test_tf_keras_loads_the_expansion_into_the_do_conv_model(keras, tmp_path):
    """tf_keras.models.load_model with the user's DOConv2D class: the DO-Conv model predicts
    what the plain model predicts."""
    import subprocess
    from test_tensorflow_oracles import ORACLE, tf_python
    jobs = [{"model": str(keras[v]), "expected": str(EXPAND / "keras_plain.expected.npz"), "do_layer": True} for v in ("default", "dmul20")]
    listing = tmp_path / "jobs.json"
    listing.write_text(json.dumps(jobs))
    done = subprocess.run([tf_python(), str(ORACLE), str(listing)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for verdict in json.loads(done.stdout.strip().splitlines()[-1]):
        assert "error" not in verdict, verdict.get("error")
        assert verdict["relative_error"] < 1e-5
        assert "DOConv2D" in verdict["classes"] and "Conv2D" not in verdict["classes"]


# ---------------------------------------------------------------------------------------
# Keras 3 .keras archives (Keras 3 with jax in this process, as test_keras_oracles.py)

KERAS3 = EXPAND / "keras3_plain.keras"
KERAS3_TEMPLATE = EXPAND / "keras3_do_template.keras"


def archive(path, tmp_path):
    """The archive's config and its weights file's datasets (name -> array)."""
    import zipfile

    import h5py
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = tmp_path / (path.stem + ".weights.h5")
        weights.write_bytes(z.read("model.weights.h5"))
    found = {}
    with h5py.File(weights, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return config, found


@pytest.fixture(scope="module")
def keras3(tmp_path_factory):
    return expand_variants(tmp_path_factory.mktemp("keras3"), KERAS3, {"default": [], "dmul20": ["--dmul", "20"]}, ".keras")


def test_keras3_archive_holds_the_do_conv_models_weights(keras3, tmp_path):
    """Group names (do_conv2d, do_conv2d_1, ...: Keras 3 names them by class), datasets and
    shapes as the DO-Conv model's own model.save writes them, the optimizer's variables gone."""
    config, data = archive(keras3["default"], tmp_path)
    want_config, want = archive(KERAS3_TEMPLATE, tmp_path)
    model_weights = {k: v.shape for k, v in data.items() if not k.startswith("optimizer")}
    assert model_weights == {k: v.shape for k, v in want.items() if not k.startswith("optimizer")}
    assert not any(k.startswith("optimizer") for k in data)
    classes = [layer["class_name"] for layer in config["config"]["layers"]]
    assert classes == [layer["class_name"] for layer in want_config["config"]["layers"]]


def test_keras3_loads_the_expansion_and_predicts_the_same(keras3):
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import sys

    import keras
    sys.path.insert(0, str(FIXTURES))
    import make_keras_h5_fixtures as kh  # the user's DOConv2D, written from the paper
    layer = kh.define_keras3_layer(keras)
    expected = np.load(EXPAND / "keras3_plain.expected.npz")
    for variant, path in keras3.items():
        model = keras.saving.load_model(str(path), custom_objects={"DOConv2D": layer}, compile=False)
        assert sum(type(l).__name__ == "DOConv2D" for l in model.layers) == 4
        out = np.asarray(model(expected["input"], training=False))
        assert np.abs(out - expected["output"]).max() <= 1e-5 * np.abs(expected["output"]).max(), variant


def test_keras3_expansion_folds_back_and_verifies(keras3, tmp_path):
    back = tmp_path / "back.keras"
    assert run_fold(keras3["dmul20"], back).returncode == 0
    _, plain = archive(KERAS3, tmp_path)
    _, data = archive(back, tmp_path)
    plain = {k: v for k, v in plain.items() if not k.startswith("optimizer")}
    assert set(data) == set(plain)
    for key, value in plain.items():
        assert data[key].tobytes() == value.tobytes(), key
    result = run_verify(KERAS3, keras3["dmul20"])
    assert result.returncode == 0 and "doconv-expand's pair" in result.stdout, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------
# Bad input: one error line, exit 2, nothing written, no temporary file, never a signal


@pytest.mark.parametrize("source, cut", [("plain.pth", 0.5), ("plain_legacy.pth", 0.6), ("plain.safetensors", 0.3),
                                         ("gluon_seg.params", 0.5), ("keras_plain.h5", 0.5), ("keras3_plain.keras", 0.7)])
def test_damaged_inputs_fail_cleanly(tmp_path, clean_tmpdir, source, cut):
    data = (EXPAND / source).read_bytes()
    damaged = tmp_path / ("damaged_" + source)
    damaged.write_bytes(data[:int(len(data) * cut)])
    out = tmp_path / ("out_" + source)
    result = run_expand(*GROUP_FLAGS if source.startswith("plain") else [], damaged, out)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "error" in result.stderr, result.stderr
    assert not out.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_hostile_sizes_are_refused(tmp_path, clean_tmpdir):
    """A safetensors header that claims a huge conv weight: checked arithmetic, no allocation."""
    header = json.dumps({"conv.weight": {"dtype": "F32", "shape": [1 << 20, 1 << 20, 3, 3], "data_offsets": [0, 36]}}).encode()
    hostile = tmp_path / "hostile.safetensors"
    hostile.write_bytes(struct.pack("<Q", len(header)) + header + bytes(36))
    out = tmp_path / "out.safetensors"
    result = run_expand(hostile, out)
    assert result.returncode == 2 and not out.exists(), result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_an_expansion_many_times_larger_than_its_input(tmp_path):
    """--dmul 2000: W and D made in memory hold more elements than the input file has bytes
    (a bound for storages read from a file, not for these)."""
    out = tmp_path / "out.pth"
    result = run_expand(*GROUP_FLAGS, "--dmul", "2000", EXPAND / "plain.pth", out)
    assert result.returncode == 0, result.stderr
    state, _ = state_dict(out, FILES[0])
    plain, _ = state_dict(EXPAND / "plain.pth", FILES[0])
    layer = LAYERS["stem"]
    assert state["stem.W"].shape == (8, 3, 2000) and out.stat().st_size > 100 * (EXPAND / "plain.pth").stat().st_size
    assert np.array_equal(composite(state["stem.W"], state["stem.D"], state["stem.d_diag"], layer), plain["stem.weight"].astype(np.float64))


def test_a_layer_too_large_to_hold_is_refused(tmp_path, clean_tmpdir):
    """A 1x20000 conv: its D would be (1, 20000, 20000), past the per-layer bound, refused
    before anything is allocated."""
    header = json.dumps({"conv.weight": {"dtype": "F32", "shape": [1, 1, 1, 20000], "data_offsets": [0, 80000]}}).encode()
    wide = tmp_path / "wide.safetensors"
    wide.write_bytes(struct.pack("<Q", len(header)) + header + bytes(80000))
    out = tmp_path / "out.safetensors"
    result = run_expand(wide, out)
    assert result.returncode == 2 and not out.exists(), result.stdout + result.stderr
    assert "would exceed" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_sharded_checkpoint_expands_shard_by_shard(expanded, template):
    """huggingface_hub's save_torch_state_dict shards (fixtures/expand/plain_sharded): the
    expansion keeps the shards, each layer's W, D and d_diag in its weight's shard, the index
    naming the new keys."""
    index = json.loads((EXPAND / "plain_sharded" / "model.safetensors.index.json").read_text())["weight_map"]
    out = expanded[("plain_sharded", "groups")]
    written = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    for name in sorted(set(written.values())):
        assert all(written[k] == name for k in tc.load(out / name).obj), name
    assert {k: v.shape for k, v in state_dict(out, {"dict": None, "prefix": ""})[0].items()} == {k: v.shape for k, v in template.items()}
    for key in written:
        if key.endswith((".W", ".D", ".d_diag")):
            assert written[key] == index[key.rsplit(".", 1)[0] + ".weight"], key


def test_convs_inside_pickled_modules_are_left_and_named(tmp_path):
    """A YOLOv5-style checkpoint pickles whole modules, whose own code reads `weight`:
    their convs are listed as left, by module path, not renamed."""
    out = tmp_path / "out.pt"
    result = run_expand(FIXTURES / "torch_savers" / "yolov5_style.pt", out)
    assert result.returncode == 0, result.stderr
    assert "left: model/model.3: inside a pickled" in result.stdout, result.stdout


def test_a_template_of_another_network_is_refused(tmp_path, clean_tmpdir):
    """--like with the same layer names but other shapes is not this network's twin."""
    from safetensors.numpy import save_file
    template = {k: v.numpy() for k, v in tc.load(EXPAND / MANIFEST["template"]).obj.items()}
    template["stem.W"] = np.zeros((8, 4, 9), np.float32)
    other = tmp_path / "other.safetensors"
    save_file(template, str(other))
    out = tmp_path / "out.pth"
    result = run_expand("--like", other, EXPAND / "plain.pth", out)
    assert result.returncode == 2 and not out.exists(), result.stdout + result.stderr
    assert "not this network's DO-Conv twin" in result.stderr, result.stderr


def test_a_keras_weights_only_file_expands_with_its_config(tmp_path):
    """save_weights('x.h5') holds no config (fixtures/expand/keras_plain_weights.h5, written by
    tf_keras): --config gives the plain model's JSON, to doconv-expand and to
    verify-equivalence, which derives the DO-Conv model's from it (Dmul from the expanded
    kernels) and runs both end to end."""
    weights, config = EXPAND / "keras_plain_weights.h5", EXPAND / "keras_plain.json"
    out = tmp_path / "weights_do.h5"
    assert run_expand(weights, out).returncode == 2
    result = run_expand("--config", config, weights, out)
    assert result.returncode == 0, result.stderr
    result = run_verify("--config", config, weights, out)
    assert result.returncode == 0 and "doconv-expand's pair" in result.stdout, result.stdout + result.stderr
    assert "end to end: not run" not in result.stdout


def test_keras_depthwise_and_separable_convs_are_listed_as_left(tmp_path):
    """Only Conv2D layers become DOConv2D; a DepthwiseConv2D (made here with Keras 3, saved
    as a legacy .h5) is listed, not skipped in silence."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    model = keras.Model(inputs, x)
    plain = tmp_path / "plain.h5"
    model.save(str(plain))
    out = tmp_path / "out.h5"
    result = run_expand(plain, out)
    assert result.returncode == 0, result.stderr
    assert "expanded 1 conv" in result.stdout and "left: dw: a DepthwiseConv2D" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------------
# --json (issue 28): one document per run, validated against the committed schema

EXPAND_SCHEMA = json.loads((FIXTURES.parent / "schemas" / "expand-result.schema.json").read_text())


def expand_json(*args):
    """doconv-expand --json: the exit status, the document (validated) and standard error."""
    import jsonschema

    result = run_expand("--json", *args)
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(EXPAND_SCHEMA).validate(document)
    return result.returncode, document, result.stderr


def test_expand_json_describes_every_expanded_layer(tmp_path):
    out = tmp_path / "out.pth"
    status, doc, stderr = expand_json(*GROUP_FLAGS, "--exclude", "wide", EXPAND / "plain.pth", out)
    assert status == 0 and doc["status"] == "expanded" and doc["exit_status"] == 0 and stderr == ""
    assert doc["tool"] == "doconv-expand" and doc["input"] == str(EXPAND / "plain.pth") and doc["output"] == str(out)
    state, _ = state_dict(out, FILES[0])
    expanded = {k[: -len(".W")] for k in state if k.endswith(".W")}
    assert {layer["name"] for layer in doc["layers"]} == expanded
    for layer in doc["layers"]:
        w = state[layer["name"] + ".W"]
        # W is (Cout, Cin/g, Dmul): the document's geometry must be the file's.
        assert (layer["out_channels"], layer["in_channels"] // layer["groups"], layer["d_mul"]) == w.shape, layer
        assert layer["verified"] and layer["relative_error"] == 0.0
    assert [n["name"] for n in doc["not_expanded"]] == ["wide"]
    assert doc["verified"] and doc["worst_relative_error"] == 0.0
    assert doc["parameters"]["after"] > doc["parameters"]["before"]


def test_expand_json_reports_a_refused_input(tmp_path, clean_tmpdir):
    out = tmp_path / "out.pth"
    status, doc, stderr = expand_json(EXPAND / "plain.pth", out)
    assert status == 2 and doc["status"] == "error" and doc["exit_status"] == 2 and not out.exists()
    assert stderr.strip() == f"doconv-expand: error: {doc['error']}"
    assert doc["layers"] == [] and doc["parameters"] is None and doc["format"] == "pytorch"


def test_expand_json_comes_back_from_the_keras_worker(tmp_path):
    """A Keras file is read in a child process: its document is the run's."""
    out = tmp_path / "out.h5"
    status, doc, stderr = expand_json(KERAS, out)
    assert status == 0 and doc["status"] == "expanded" and doc["format"] == "keras-h5", stderr
    _, _, config = h5_datasets(out)
    do_layers = {layer["config"]["name"] for layer in config["config"]["layers"] if layer["class_name"] == "DOConv2D"}
    assert do_layers and {layer["name"] for layer in doc["layers"]} == do_layers
