"""verify-equivalence against wrong folds of Keras HDF5 weights: each mutation of a correct
fold must give NOT EQUIVALENT (exit 1) naming what differs; the fold rewritten without a
mutation stays EQUIVALENT. Files are written by h5py in the legacy `save_weights` layout
(FORMATS.md: root `layer_names`, per-layer groups with `weight_names`), and the folded
kernels are checked against numpy's composition of the DOConv2D layer first, so the matrix
starts from a fold known to be right. A `.weights.h5` fixture written by Keras 3 gets the
mutations that apply to it."""
import shutil

import h5py
import numpy as np
import pytest

from conftest import FIXTURES, run_fold, run_verify
from verify_support import assert_mutation_named

# name -> (M, N, Cin, Cout, groups, Dmul): two layers of one geometry (a, b), a non-square
# one whose Dmul exceeds M*N (r), a grouped one (g).
LAYERS = {"a": (3, 3, 4, 6, 1, 9), "b": (3, 3, 4, 6, 1, 9), "r": (1, 3, 4, 6, 1, 4), "g": (3, 3, 4, 6, 2, 9)}


def original_layers(dtype=np.float32, seed=7):
    """{layer: [(weight name, array)]} in Keras' order: kernel, bias, D (DOConv2D), then a Dense."""
    rng = np.random.default_rng(seed)
    layers = {}
    for name, (m, n, cin, cout, groups, dmul) in LAYERS.items():
        layers[name] = [("kernel:0", (rng.standard_normal((dmul, cin // groups, cout)) * 0.3).astype(dtype)),
                        ("bias:0", rng.standard_normal(cout).astype(dtype)),
                        ("D:0", (rng.standard_normal((m * n, dmul, cin)) * 0.3).astype(dtype))]
    layers["head"] = [("kernel:0", rng.standard_normal((6, 5)).astype(dtype)), ("bias:0", rng.standard_normal(5).astype(dtype))]
    return layers


def write(path, layers):
    """A legacy weights-only file as `model.save_weights('x.h5')` lays it out."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([name.encode() for name in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for name, weights in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}/{w}".encode() for w, _ in weights])
            for w, array in weights:
                group.create_dataset(f"{name}/{w}", data=array)
    return path


def read(path):
    with h5py.File(path, "r") as f:
        return {name.decode(): [(w.decode().split("/", 1)[1], f[name.decode()][w.decode()][()])
                                for w in f[name.decode()].attrs["weight_names"]] for name in f.attrs["layer_names"]}


def composed(kernel, d, m, n, cin, cout, groups, dmul):
    """DOConv2D's kernel (M, N, Cin/g, Cout) from FORMATS.md, in float64."""
    mn = m * n
    identity = np.zeros((mn, dmul, cin))
    for s in range(mn * (dmul // mn)):
        identity[s % mn, s, :] = 1
    wr = kernel.astype(np.float64).reshape(dmul, cin, cout // groups)
    return np.einsum("msi,sio->mio", d.astype(np.float64) + identity, wr).reshape(m, n, cin // groups, cout)


def replaced(layers, layer, weight, array):
    return {name: [(w, array if (name, w) == (layer, weight) else a) for w, a in ws] for name, ws in layers.items()}


def one_ulp(array):
    changed = array.copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.inf)
    return changed


def kernel(layers, layer):
    return dict(layers[layer])["kernel:0"]


MUTATIONS = {
    "missing dataset": (lambda f, o: {k: v for k, v in f.items() if k != "head"}, "head"),
    "extra dataset": (lambda f, o: {**f, "head": f["head"] + [("extra:0", np.zeros(3, np.float32))]}, "extra:0"),
    "D kept beside the folded kernel": (lambda f, o: {**f, "a": f["a"] + [o["a"][2]]}, "a/D:0"),
    "untouched dataset off by one ulp": (lambda f, o: replaced(f, "head", "kernel:0", one_ulp(kernel(f, "head"))), "head/kernel:0"),
    "equal-shape kernels swapped": (lambda f, o: replaced(replaced(f, "a", "kernel:0", kernel(f, "b")), "b", "kernel:0", kernel(f, "a")), "a/a/kernel:0"),
    "non-square kernel transposed": (lambda f, o: replaced(f, "r", "kernel:0", np.ascontiguousarray(kernel(f, "r").transpose(1, 0, 2, 3))), "r/r/kernel:0"),
    "kernel left unfolded, D kept": (lambda f, o: o, "D:0"),
    "kernel left unfolded": (lambda f, o: replaced(f, "b", "kernel:0", kernel(o, "b")), "b/b/kernel:0"),
    "kernel scaled by 1+1e-3": (lambda f, o: replaced(f, "g", "kernel:0", kernel(f, "g") * np.float32(1.001)), "g/g/kernel:0"),
    "bias changed": (lambda f, o: replaced(f, "a", "bias:0", dict(f["a"])["bias:0"] + np.float32(1e-3)), "a/bias:0"),
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    work = tmp_path_factory.mktemp("keras")
    orig = original_layers()
    src = write(work / "original.h5", orig)
    out = work / "folded.h5"
    result = run_fold(src, out, "--kernel-size", "r=1x3")
    assert result.returncode == 0, result.stderr
    folded = read(out)
    assert list(folded) == list(orig) and [w for w, _ in folded["a"]] == ["kernel:0", "bias:0"]
    for name, (m, n, cin, cout, groups, dmul) in LAYERS.items():
        expected = composed(kernel(orig, name), dict(orig[name])["D:0"], m, n, cin, cout, groups, dmul)
        np.testing.assert_allclose(kernel(folded, name), expected, rtol=0, atol=1e-6 * np.abs(expected).max(), err_msg=name)
    return src, orig, folded


def verify(src, folded):
    return run_verify(src, folded, "--kernel-size", "r=1x3")


def test_rewritten_fold_is_equivalent(pair, tmp_path):
    src, _, folded = pair
    result = verify(src, write(tmp_path / "same.h5", folded))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_fold_is_not_equivalent(pair, tmp_path, mutation):
    src, orig, folded = pair
    mutate, named = MUTATIONS[mutation]
    assert_mutation_named(verify(src, write(tmp_path / "bad.h5", mutate(folded, orig))), mutation, named)


def test_verify_does_not_take_the_layers_from_folded(pair, tmp_path):
    """ORIGINAL read without the kernel size of its non-square layer: verify-equivalence
    must refuse (it cannot know M x N), not take the size from FOLDED's kernel."""
    src, _, folded = pair
    result = run_verify(src, write(tmp_path / "same.h5", folded))
    assert result.returncode == 2 and "'r'" in result.stderr and "--kernel-size" in result.stderr, result.stdout + result.stderr


def test_float64_layers_fold_in_float64(tmp_path):
    """A float64 weights file: kernels composed in float64 (not rounded through float32),
    stored as float64, within 1e-12 of numpy's float64 composition."""
    orig = original_layers(np.float64)
    src = write(tmp_path / "double.h5", orig)
    out = tmp_path / "folded.h5"
    result = run_fold(src, out, "--kernel-size", "r=1x3")
    assert result.returncode == 0, result.stderr
    folded = read(out)
    for name, (m, n, cin, cout, groups, dmul) in LAYERS.items():
        expected = composed(kernel(orig, name), dict(orig[name])["D:0"], m, n, cin, cout, groups, dmul)
        assert kernel(folded, name).dtype == np.float64
        np.testing.assert_allclose(kernel(folded, name), expected, rtol=0, atol=1e-12 * np.abs(expected).max(), err_msg=name)
    assert verify(src, out).returncode == 0
    # A float64 kernel off by one part in 1e9 is a float32-sized error: float64's tolerance catches it.
    bad = replaced(folded, "a", "kernel:0", kernel(folded, "a") * (1 + 1e-9))
    assert verify(src, write(tmp_path / "bad.h5", bad)).returncode == 1


K3 = FIXTURES / "keras_h5"


@pytest.fixture(scope="module")
def keras3_pair(tmp_path_factory):
    """Keras 3's own `.weights.h5` (fixture) with its config, folded."""
    work = tmp_path_factory.mktemp("keras3")
    out = work / "folded.weights.h5"
    result = run_fold(K3 / "k3_net_a.weights.h5", out, "--config", K3 / "k3_net_a.json")
    assert result.returncode == 0, result.stderr
    return out


def mutate_dataset(path, target, layer, change):
    """Changes the kernel (vars/0) of the layer whose `vars` records the name `layer` (the
    fold renames the class-named groups)."""
    shutil.copy(path, target)
    with h5py.File(target, "r+") as f:
        groups = [g for g in f["layers"] if f["layers"][g]["vars"].attrs.get("name") == layer]
        assert len(groups) == 1, (layer, list(f["layers"]))
        dataset = f"layers/{groups[0]}/vars/0"
        values = f[dataset][()]
        del f[dataset]
        f.create_dataset(dataset, data=change(values))
    return target


KERAS3_MUTATIONS = {
    "untouched dataset off by one ulp": ("head", one_ulp, "/layers/dense/vars/0"),
    "kernel scaled by 1+1e-3": ("do_stem", lambda v: v * np.float32(1.001), "FAIL do_stem"),
    "non-square kernel transposed": ("do_wide", lambda v: np.ascontiguousarray(v.transpose(1, 0, 2, 3)), "FAIL do_wide"),
    "grouped kernel's groups swapped": ("do_group", lambda v: np.concatenate([v[..., 8:], v[..., :8]], axis=-1), "FAIL do_group"),
}


def test_keras3_rewritten_fold_is_equivalent(keras3_pair, tmp_path):
    result = run_verify(K3 / "k3_net_a.weights.h5", keras3_pair, "--config", K3 / "k3_net_a.json")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mutation", sorted(KERAS3_MUTATIONS))
def test_keras3_mutated_fold_is_not_equivalent(keras3_pair, tmp_path, mutation):
    layer, change, named = KERAS3_MUTATIONS[mutation]
    bad = mutate_dataset(keras3_pair, tmp_path / "bad.weights.h5", layer, change)
    result = run_verify(K3 / "k3_net_a.weights.h5", bad, "--config", K3 / "k3_net_a.json", "--inputs", "0")
    assert result.returncode == 1, f"{mutation}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    failing = [line for line in result.stdout.splitlines() if line.lstrip().startswith(("-", "FAIL"))]
    assert any(named in line for line in failing), f"{mutation}: {named} not named in\n{result.stdout}"


def test_float64_separable_and_batchnorm_fold_in_float64(tmp_path):
    """tf_keras's k2_net_sep.h5 with every float dataset made float64, folded with --fuse-bn:
    sep_do (a SeparableConv2D) with bn fused in is numpy's float64 composition within 1e-12,
    and verify-equivalence (float64 tolerance 1e-10) finds the pair EQUIVALENT."""
    src = tmp_path / "double.h5"
    shutil.copy(K3 / "k2_net_sep.h5", src)
    with h5py.File(src, "r+") as f:
        paths = []
        f.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) and obj.dtype == np.float32 else None)
        for name in paths:
            values = f[name][()].astype(np.float64)
            del f[name]
            f.create_dataset(name, data=values)
    out = tmp_path / "folded.h5"
    result = run_fold(src, out, "--fuse-bn")
    assert result.returncode == 0 and "bn into sep_do" in result.stdout, result.stdout + result.stderr
    with h5py.File(src, "r") as f:
        layer = {k: f["model_weights/sep_do/sep_do"][k][()] for k in ("depthwise_kernel:0", "pointwise_kernel:0", "bias:0")}
        bn = {k: f["model_weights/bn/bn"][k][()] for k in ("gamma:0", "beta:0", "moving_mean:0", "moving_variance:0")}
    with h5py.File(out, "r") as f:
        kernel, bias = f["model_weights/sep_do/sep_do/kernel:0"][()], f["model_weights/sep_do/sep_do/bias:0"][()]
    dw, pw = layer["depthwise_kernel:0"], layer["pointwise_kernel:0"]
    m, n, cin, dmul = dw.shape
    s = bn["gamma:0"] / np.sqrt(bn["moving_variance:0"] + 0.001)
    expected = np.einsum("mncs,cso->mnco", dw, pw[0, 0].reshape(cin, dmul, -1)) * s
    assert kernel.dtype == np.float64 and bias.dtype == np.float64
    np.testing.assert_allclose(kernel, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(bias, (layer["bias:0"] - bn["moving_mean:0"]) * s + bn["beta:0"], rtol=1e-12)
    verdict = run_verify(src, out)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
