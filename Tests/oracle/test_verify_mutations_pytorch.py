"""verify-equivalence against wrong folds of PyTorch checkpoints (zip and safetensors): each
mutation of a correct fold must give NOT EQUIVALENT (exit 1) naming what differs, and the
same file rewritten without a mutation must stay EQUIVALENT (so the rewrite itself is not
what the check sees). The files are rewritten by this test's own writers (pickle opcodes
and a safetensors header written here), from the correct fold read by the oracle reader."""
import json
import struct

import numpy as np
import pytest

import torch_checkpoint as tc
from conftest import run_fold, run_verify
from test_pytorch_hostile import state_dict_pickle, tensor
from verify_support import assert_mutation_named


def identity(cin, mn, d_mul):
    s = np.arange(d_mul)
    return np.tile(((s < mn * (d_mul // mn)) & (s % mn == np.arange(mn)[:, None])).astype(np.float32), (cin, 1, 1))


def original_arrays(seed=3):
    """Two DO-Conv layers of one geometry (a, b), a non-square 1x3 layer (r) and a plain
    tensor (head.weight)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for p in ("a", "b"):
        arrays[p + ".W"] = rng.standard_normal((6, 4, 9)).astype(np.float32) * 0.3
        arrays[p + ".D"] = rng.standard_normal((4, 9, 9)).astype(np.float32) * 0.3
        arrays[p + ".d_diag"] = identity(4, 9, 9)
        arrays[p + ".bias"] = rng.standard_normal(6).astype(np.float32)
    arrays["r.W"] = rng.standard_normal((5, 6, 3)).astype(np.float32) * 0.3
    arrays["r.D"] = rng.standard_normal((6, 3, 3)).astype(np.float32) * 0.3
    arrays["r.d_diag"] = identity(6, 3, 3)
    arrays["head.weight"] = rng.standard_normal((2, 5)).astype(np.float32)
    return list(arrays.items())


def write_zip(path, items):
    pickled = [(key, tensor(str(k), array.size, list(array.shape))) for k, (key, array) in enumerate(items)]
    tc.write_torch_zip(path, path.stem, state_dict_pickle(pickled), {str(k): a.tobytes() for k, (_, a) in enumerate(items)})
    return path


def write_safetensors(path, items):
    header, offset = [], 0
    for key, array in items:
        header.append(f'"{key}":{{"dtype":"F32","shape":{json.dumps(list(array.shape))},"data_offsets":[{offset},{offset + array.nbytes}]}}')
        offset += array.nbytes
    blob = ("{" + ",".join(header) + "}").encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"".join(a.tobytes() for _, a in items))
    return path


WRITERS = {"zip": (write_zip, ".pth"), "safetensors": (write_safetensors, ".safetensors")}


def replaced(items, key, array):
    return [(k, array if k == key else a) for k, a in items]


def one_ulp(array):
    changed = array.copy()
    changed.flat[0] = np.nextafter(changed.flat[0], np.float32(np.inf))
    return changed


MUTATIONS = {
    "duplicated key": (lambda items, orig: items + [("head.weight", items[-1][1])], "head.weight"),
    "missing key": (lambda items, orig: [i for i in items if i[0] != "head.weight"], "head.weight"),
    "extra key": (lambda items, orig: items + [("extra.weight", np.zeros(3, np.float32))], "extra.weight"),
    "untouched tensor off by one ulp": (lambda items, orig: replaced(items, "head.weight", one_ulp(dict(items)["head.weight"])), "head.weight"),
    "equal-shape kernels swapped": (lambda items, orig: [(k, dict(items)["b.weight"] if k == "a.weight" else dict(items)["a.weight"] if k == "b.weight" else a)
                                                           for k, a in items], "a.weight"),
    "non-square kernel transposed": (lambda items, orig: replaced(items, "r.weight", np.ascontiguousarray(dict(items)["r.weight"].transpose(0, 1, 3, 2))), "r.weight"),
    "kernel left under its old name": (lambda items, orig: [("a.W", dict(orig)["a.W"]) if k == "a.weight" else (k, a) for k, a in items], "a.W"),
    "kernel scaled by 1+1e-3": (lambda items, orig: replaced(items, "b.weight", dict(items)["b.weight"] * np.float32(1.001)), "b.weight"),
}


@pytest.fixture(scope="module", params=sorted(WRITERS))
def pair(request, tmp_path_factory):
    """(container, ORIGINAL, the correct fold's items as the oracle reader reads them)."""
    write, suffix = WRITERS[request.param]
    work = tmp_path_factory.mktemp(request.param)
    orig = original_arrays()
    src = write(work / ("original" + suffix), orig)
    out = work / ("folded" + suffix)
    result = run_fold(src, out, "--kernel-size", "r=1x3")
    assert result.returncode == 0, result.stderr
    items = [(k, t.numpy()) for k, t in tc.load(out).obj.items()]
    assert [k for k, _ in items] == ["a.weight", "a.bias", "b.weight", "b.bias", "r.weight", "head.weight"]
    return request.param, src, orig, items


def test_rewritten_fold_is_equivalent(pair, tmp_path):
    container, src, _, items = pair
    write, suffix = WRITERS[container]
    result = run_verify(src, write(tmp_path / ("same" + suffix), items), "--kernel-size", "r=1x3")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutated_fold_is_not_equivalent(pair, tmp_path, mutation):
    container, src, orig, items = pair
    if container == "safetensors" and mutation == "duplicated key":
        pytest.skip("a JSON header cannot hold a key twice")
    mutate, named = MUTATIONS[mutation]
    write, suffix = WRITERS[container]
    bad = write(tmp_path / ("bad" + suffix), mutate(items, orig))
    assert_mutation_named(run_verify(src, bad, "--kernel-size", "r=1x3"), mutation, named)


@pytest.mark.parametrize("container", sorted(WRITERS))
def test_a_fold_that_lost_a_key_to_a_collision_is_not_equivalent(tmp_path, container):
    """ORIGINAL holds a DO-Conv layer `attn` and an unrelated `attn.weight`: doconv-fold
    refuses it, and verify-equivalence must not accept what a careless fold writes (the
    folded kernel and the unrelated tensor both as `attn.weight`, or one of them lost)."""
    write, suffix = WRITERS[container]
    orig = [(k.replace("a.", "attn."), a) for k, a in original_arrays() if k.startswith("a.")]
    orig.append(("attn.weight", np.ones((6,), np.float32)))
    src = write(tmp_path / ("original" + suffix), orig)
    result = run_fold(src, tmp_path / ("folded" + suffix))
    assert result.returncode == 2 and "attn.weight" in result.stderr, result.stderr
    W, D, I = (dict(orig)[k].astype(np.float64) for k in ("attn.W", "attn.D", "attn.d_diag"))
    kernel = np.einsum("ims,ois->oim", D + I, W).reshape(6, 4, 3, 3).astype(np.float32)
    careless = [[("attn.weight", kernel), ("attn.bias", dict(orig)["attn.bias"]), ("attn.weight", dict(orig)["attn.weight"])],
                [("attn.weight", kernel), ("attn.bias", dict(orig)["attn.bias"])]]
    for k, items in enumerate(careless):
        if container == "safetensors" and k == 0:
            continue  # a JSON header cannot hold a key twice
        bad = write(tmp_path / (f"careless{k}" + suffix), items)
        verdict = run_verify(src, bad)
        assert verdict.returncode == 1 and "attn.weight" in verdict.stdout, verdict.stdout + verdict.stderr
