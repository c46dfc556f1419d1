"""verify-equivalence against wrong folds of MXNet/Gluon `.params` files: each mutation of a
correct fold must give NOT EQUIVALENT (exit 1) naming what differs; the fold rewritten
without a mutation stays EQUIVALENT. Files are written by this test's own NDArray-list
writer (mxnet_params.py), from the correct fold as that reader reads it."""
import numpy as np
import pytest

import mxnet_params as mp
from conftest import run_fold, run_verify
from verify_support import assert_mutation_named


def original_arrays(seed=5):
    """Two Gluon DO-Conv layers of one geometry (a, b), a non-square 1x3 one (r), a plain array."""
    rng = np.random.default_rng(seed)
    arrays = []
    for p in ("a", "b"):
        arrays += [(p + ".weight", rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3),
                   (p + ".bias", rng.standard_normal(6).astype(np.float32)),
                   (p + ".D", rng.standard_normal((9, 9, 4)).astype(np.float32) * 0.3)]
    arrays += [("r.weight", rng.standard_normal((5, 6, 1, 3)).astype(np.float32) * 0.3),
               ("r.D", rng.standard_normal((3, 3, 6)).astype(np.float32) * 0.3),
               ("head.weight", rng.standard_normal((2, 5)).astype(np.float32))]
    return arrays


def write(path, items):
    path.write_bytes(mp.list_bytes([mp.array_bytes(a) for _, a in items], [k for k, _ in items]))
    return path


def one_ulp(array):
    changed = array.copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.float32(np.inf))
    return changed


def swap(items, x, y):
    d = dict(items)
    return [(k, d[y] if k == x else d[x] if k == y else a) for k, a in items]


def replaced(items, key, array):
    return [(k, array if k == key else a) for k, a in items]


MUTATIONS = {
    "missing array": (lambda items, orig: [i for i in items if i[0] != "head.weight"], "head.weight"),
    "extra array": (lambda items, orig: items + [("extra.weight", np.zeros(3, np.float32))], "extra.weight"),
    "untouched array off by one ulp": (lambda items, orig: replaced(items, "head.weight", one_ulp(dict(items)["head.weight"])), "head.weight"),
    "equal-shape kernels swapped": (lambda items, orig: swap(items, "a.weight", "b.weight"), "a.weight"),
    "non-square kernel transposed": (lambda items, orig: replaced(items, "r.weight", np.ascontiguousarray(dict(items)["r.weight"].transpose(0, 1, 3, 2))), "r.weight"),
    "kernel left unfolded, D kept": (lambda items, orig: orig, "a.D"),
    "kernel left unfolded": (lambda items, orig: replaced(items, "b.weight", dict(orig)["b.weight"]), "b.weight"),
    "kernel scaled by 1+1e-3": (lambda items, orig: replaced(items, "a.weight", dict(items)["a.weight"] * np.float32(1.001)), "a.weight"),
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    work = tmp_path_factory.mktemp("mxnet")
    orig = original_arrays()
    src = write(work / "original.params", orig)
    out = work / "folded.params"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    blob, parsed = mp.load(out)
    items = [(name, record.values(blob).copy()) for name, record in zip(parsed.names, parsed.records)]
    assert [k for k, _ in items] == ["a.weight", "a.bias", "b.weight", "b.bias", "r.weight", "head.weight"]
    return src, orig, items


def test_rewritten_fold_is_equivalent(pair, tmp_path):
    src, _, items = pair
    result = run_verify(src, write(tmp_path / "same.params", items))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_fold_is_not_equivalent(pair, tmp_path, mutation):
    src, orig, items = pair
    mutate, named = MUTATIONS[mutation]
    assert_mutation_named(run_verify(src, write(tmp_path / "bad.params", mutate(items, orig))), mutation, named)


def test_duplicated_array_name_is_refused(pair, tmp_path):
    """A list naming one array twice cannot be read by name: refused, exit 2, one line."""
    src, _, items = pair
    bad = write(tmp_path / "bad.params", items + [("head.weight", dict(items)["head.weight"])])
    result = run_verify(src, bad)
    assert result.returncode == 2 and "appears twice" in result.stderr, result.stdout + result.stderr


def test_float64_layers_fold_in_float64(tmp_path):
    """A float64 .params file: its kernels are computed in float64 (not rounded through
    float32), so they match numpy's float64 composition to 1e-12."""
    orig = [(k, a.astype(np.float64)) for k, a in original_arrays()]
    src = write(tmp_path / "double.params", orig)
    out = tmp_path / "folded.params"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    blob, parsed = mp.load(out)
    folded = {name: record.values(blob) for name, record in zip(parsed.names, parsed.records)}
    arrays = dict(orig)
    for p, (m, n) in (("a", (3, 3)), ("b", (3, 3)), ("r", (1, 3))):
        W, D = arrays[p + ".weight"], arrays[p + ".D"]
        cout, per_group = W.shape[:2]
        mn, cin = m * n, D.shape[2]
        Wp = W.transpose(2, 3, 1, 0).reshape(mn, cin, cout * per_group // cin)
        K = np.einsum("msi,sio->mio", D + np.eye(mn)[:, :, None], Wp).reshape(m, n, per_group, cout).transpose(3, 2, 0, 1)
        assert folded[p + ".weight"].dtype == np.float64
        np.testing.assert_allclose(folded[p + ".weight"], K, rtol=0, atol=1e-12 * np.abs(K).max(), err_msg=p)
    assert run_verify(src, out).returncode == 0
