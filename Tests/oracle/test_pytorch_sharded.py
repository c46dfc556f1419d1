"""Sharded checkpoints: shards (safetensors files written by the safetensors package, or
torch.save-style zips) beside an index `{"metadata": {"total_size"}, "weight_map"}`, given
by the index or its folder, with a DO-Conv layer whose W and D sit in different shards.

The oracles: the safetensors package and the torch-free checkpoint reader read every output
shard; the index is checked against what the shards hold; the folded kernel against numpy's
composition of the input's D and W; bad indexes must give the one-line refusal of
test_pytorch_hostile.py's contract."""
import json
import pathlib

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import torch_checkpoint as tc
from conftest import run_fold, run_inspect, run_verify
from test_pytorch_hostile import PHRASES, reject, state_dict_pickle, tensor

INDEX = "model.safetensors.index.json"


def arrays(seed=0, cin=4, cout=6, mn=9):
    rng = np.random.default_rng(seed)
    s = np.arange(mn)
    identity = (s % mn == np.arange(mn)[:, None]).astype(np.float32)
    return {
        "stem.W": rng.standard_normal((cout, cin, mn)).astype(np.float32) * 0.3,
        "stem.bias": rng.standard_normal(cout).astype(np.float32),
        "stem.D": rng.standard_normal((cin, mn, mn)).astype(np.float32) * 0.3,
        "stem.d_diag": np.tile(identity, (cin, 1, 1)),
        "pw.W": rng.standard_normal((3, cout, 1)).astype(np.float32),
        "head.weight": rng.standard_normal((2, 3)).astype(np.float32),
    }


# Shard 1 holds stem's W and bias, shard 2 its D and identity and the rest.
SHARDS = {"model-00001-of-00002.safetensors": ["stem.W", "stem.bias"],
          "model-00002-of-00002.safetensors": ["stem.D", "stem.d_diag", "pw.W", "head.weight"]}


def write_sharded(folder, values=None, shards=SHARDS, weight_map=None, extra_files=True):
    folder.mkdir(parents=True, exist_ok=True)
    values = values or arrays()
    for name, keys in shards.items():
        save_file({k: values[k] for k in keys}, str(folder / name), metadata={"format": "pt"})
    weight_map = weight_map or {k: name for name, keys in shards.items() for k in keys}
    total = sum(values[k].nbytes for k in weight_map if k in values)
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if extra_files:
        (folder / "config.json").write_text('{"model_type": "do_net"}\n')
    return values


def composed(values):
    W, D, I = (values[k].astype(np.float64) for k in ("stem.W", "stem.D", "stem.d_diag"))
    return np.einsum("ims,ois->oim", D + I, W).reshape(6, 4, 3, 3)


def check_output(folder, values, index_name=INDEX):
    index = json.loads((folder / index_name).read_text())
    shards = {name: load_file(str(folder / name)) for name in sorted(set(index["weight_map"].values()))}
    held = {key: name for name, tensors in shards.items() for key in tensors}
    assert index["weight_map"] == held, "the index does not say where each tensor is"
    assert set(held) == {"stem.weight", "stem.bias", "pw.weight", "head.weight"}
    assert held["stem.weight"] == "model-00001-of-00002.safetensors", "the kernel joins W's shard"
    assert index["metadata"]["total_size"] == sum(t.nbytes for s in shards.values() for t in s.values())
    kernel = shards[held["stem.weight"]]["stem.weight"]
    np.testing.assert_allclose(kernel, composed(values), rtol=1e-5, atol=1e-6 * np.abs(composed(values)).max())
    assert np.array_equal(shards[held["pw.weight"]]["pw.weight"], values["pw.W"].reshape(3, 6, 1, 1))
    assert np.array_equal(shards[held["head.weight"]]["head.weight"], values["head.weight"])


@pytest.mark.parametrize("given", ["folder", "index"])
def test_sharded_folds_across_shards(tmp_path, given):
    values = write_sharded(tmp_path / "in")
    src = tmp_path / "in" if given == "folder" else tmp_path / "in" / INDEX
    out = tmp_path / "out"
    result = run_fold(src, out)
    assert result.returncode == 0, result.stderr
    assert "config.json" in result.stdout
    check_output(out, values)
    assert (out / "config.json").read_text() == '{"model_type": "do_net"}\n'
    assert sorted(p.name for p in out.iterdir()) == sorted([*SHARDS, INDEX, "config.json"]), "stray files"
    # The input is untouched.
    assert load_file(str(tmp_path / "in" / "model-00002-of-00002.safetensors"))["stem.D"].shape == (4, 9, 9)
    verdict = run_verify(src, out)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    report = json.loads(run_inspect(src, "--json").stdout)
    assert [layer["name"] for layer in report["layers"]] == ["stem", "pw"]


def test_sharded_output_named_by_its_index_and_in_place(tmp_path):
    values = write_sharded(tmp_path / "in")
    (tmp_path / "elsewhere").mkdir()
    out_index = tmp_path / "elsewhere" / "plain.index.json"
    assert run_fold(tmp_path / "in" / INDEX, out_index).returncode == 0
    check_output(tmp_path / "elsewhere", values, "plain.index.json")
    # In place: the folder is its own output.
    result = run_fold(tmp_path / "in", tmp_path / "in")
    assert result.returncode == 0, result.stderr
    check_output(tmp_path / "in", values)
    assert not [p for p in (tmp_path / "in").iterdir() if p.name.startswith(".")], "temporary files left"


def test_verify_notices_a_stale_index(tmp_path):
    values = write_sharded(tmp_path / "in")
    out = tmp_path / "out"
    assert run_fold(tmp_path / "in", out).returncode == 0
    index = json.loads((out / INDEX).read_text())
    index["weight_map"]["stem.weight"] = "model-00002-of-00002.safetensors"
    (out / INDEX).write_text(json.dumps(index))
    result = run_verify(tmp_path / "in", out)
    assert result.returncode == 2 and "maps it to" in result.stderr, result.stderr


def test_torch_zip_shards(tmp_path):
    """pytorch_model-0000k-of-0000n.bin shards (torch.save zips) with their index."""
    values = arrays()
    folder = tmp_path / "in"
    folder.mkdir()
    weight_map = {}
    for k, (name, keys) in enumerate(SHARDS.items()):
        shard = name.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        items = [(key, tensor(str(j), values[key].size, list(values[key].shape))) for j, key in enumerate(keys)]
        tc.write_torch_zip(folder / shard, f"shard{k}", state_dict_pickle(items), {str(j): values[key].tobytes() for j, key in enumerate(keys)})
        weight_map.update({key: shard for key in keys})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    out = tmp_path / "out"
    result = run_fold(folder, out)
    assert result.returncode == 0, result.stderr
    index = json.loads((out / "pytorch_model.bin.index.json").read_text())
    assert index["weight_map"]["stem.weight"] == "pytorch_model-00001-of-00002.bin"
    folded = tc.load(out / "pytorch_model-00001-of-00002.bin").obj
    assert list(folded) == ["stem.weight", "stem.bias"]
    np.testing.assert_allclose(folded["stem.weight"].numpy(), composed(values), rtol=1e-5, atol=1e-6 * np.abs(composed(values)).max())
    assert list(tc.load(out / "pytorch_model-00002-of-00002.bin").obj) == ["pw.weight", "head.weight"]
    assert run_verify(folder, out).returncode == 0


# ---------------------------------------------------------------------------------------
# Bad indexes: exit 2, one line, nothing written, the input untouched


PHRASES.update({
    "missing_shard": "missing",
    "shard_outside": "not a file beside the index",
    "shard_twice": "is in both",
    "wrong_shard": "maps it to",
    "unheld_key": "does not hold it",
    "not_json": "not a JSON object",
    "two_indexes": "several indexes",
    "no_index": "without a sharded checkpoint",
})


def test_index_naming_a_missing_shard(tmp_path, clean_tmpdir):
    folder = tmp_path / "in"
    values = arrays()
    write_sharded(folder, values)
    (folder / "model-00002-of-00002.safetensors").unlink()
    reject(folder, "missing_shard", clean_tmpdir, tmp_path)


@pytest.mark.parametrize("name", ["../model-00002-of-00002.safetensors", "/etc/passwd", ".."])
def test_index_naming_a_shard_outside_its_folder(tmp_path, clean_tmpdir, name):
    folder = tmp_path / "in"
    weight_map = {k: s for s, keys in SHARDS.items() for k in keys}
    weight_map["head.weight"] = name
    write_sharded(folder, weight_map=weight_map)
    reject(folder / INDEX, "shard_outside", clean_tmpdir, tmp_path)


def test_shards_that_disagree_on_a_tensor(tmp_path, clean_tmpdir):
    shards = {"model-00001-of-00002.safetensors": ["stem.W", "stem.bias", "head.weight"],
              "model-00002-of-00002.safetensors": ["stem.D", "stem.d_diag", "pw.W", "head.weight"]}
    weight_map = {k: s for s, keys in SHARDS.items() for k in keys}
    write_sharded(tmp_path / "in", shards=shards, weight_map=weight_map)
    reject(tmp_path / "in", "shard_twice", clean_tmpdir, tmp_path)


def test_index_mapping_a_tensor_to_the_wrong_shard(tmp_path, clean_tmpdir):
    weight_map = {k: s for s, keys in SHARDS.items() for k in keys}
    weight_map["stem.D"] = "model-00001-of-00002.safetensors"
    write_sharded(tmp_path / "in", weight_map=weight_map)
    reject(tmp_path / "in", "wrong_shard", clean_tmpdir, tmp_path)


def test_index_naming_a_tensor_no_shard_holds(tmp_path, clean_tmpdir):
    weight_map = {k: s for s, keys in SHARDS.items() for k in keys}
    weight_map["ghost.W"] = "model-00001-of-00002.safetensors"
    write_sharded(tmp_path / "in", weight_map=weight_map)
    reject(tmp_path / "in", "unheld_key", clean_tmpdir, tmp_path)


def test_index_that_is_not_json(tmp_path, clean_tmpdir):
    write_sharded(tmp_path / "in")
    (tmp_path / "in" / INDEX).write_text('{"weight_map": {"a": ')
    reject(tmp_path / "in" / INDEX, "not_json", clean_tmpdir, tmp_path)


def test_folder_with_two_indexes_or_none(tmp_path, clean_tmpdir):
    write_sharded(tmp_path / "in")
    (tmp_path / "in" / "pytorch_model.bin.index.json").write_text((tmp_path / "in" / INDEX).read_text())
    reject(tmp_path / "in", "two_indexes", clean_tmpdir, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    reject(empty, "no_index", clean_tmpdir, tmp_path)
