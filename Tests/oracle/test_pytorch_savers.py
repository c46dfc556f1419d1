"""doconv on checkpoints written by the real training libraries' own savers
(fixtures/torch_savers, made by fixtures/make_saver_fixtures.py with timm, Lightning,
mmengine, transformers, huggingface_hub, accelerate and torch itself), checked without
torch: the oracle reader (CPython's pickle; globals outside the weights-only allowlist
become recording stubs) reads input and output, the folded kernels must be the ones the
DO-Conv modules computed (.expected.npz), every other object must come through as it was,
the carried globals must be the ones the pickles name, and the refusals must be one line."""
import json
import re

import numpy as np
import pytest

import torch_checkpoint as tc
from conftest import FIXTURES, manifest, run_fold, run_inspect, run_verify
from test_pytorch_oracles import assert_kernel, assert_same_value

SAVERS = FIXTURES / "torch_savers"
ENTRIES = manifest(SAVERS / "MANIFEST.json")
FOLDED = [e for e in ENTRIES if e["outcome"] == "fold"]
REFUSED = [e for e in ENTRIES if e["outcome"] == "refused"]
# One fixture per checkpoint kind the PyTorch adapter claims to handle.
REQUIRED = {"timm_checkpoint.pth.tar", "lightning_trainer.ckpt", "mmengine_runner.pth", "mmengine_save_checkpoint.pth",
            "custom_numpy.pth", "legacy_p4.pth", "legacy_p5.pth", "hf_sharded", "hf_sharded_bin", "accelerate_sharded",
            "conv1d_lookalike.pth", "key_collision.pth", "cuda_tagged.pth", "yolov5_style.pt", "teacher_module.pth",
            "torchscript.pt"}


def ident(entry):
    return entry["file"] + "".join(entry["args"])


def python3_name(name):
    """A global as Python 3 spells it (pickle maps protocol 2's `__builtin__` to `builtins`)."""
    return "builtins." + name[len("__builtin__."):] if name.startswith("__builtin__.") else name


def is_optimizer_state(value):
    if isinstance(value, dict):
        return "state" in value and "param_groups" in value
    return isinstance(value, list) and bool(value) and all(is_optimizer_state(v) for v in value)


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    cache = {}

    def run(entry):
        key = ident(entry)
        if key not in cache:
            out = tmp_path_factory.mktemp("saver") / entry["file"]
            cache[key] = (run_fold(SAVERS / entry["file"], out, *entry["args"]), out)
        return cache[key]
    return run


def load_tree(path, entry):
    """The checkpoint's object tree; a sharded one as one dict of all shards' tensors, in
    shard order, after checking the index against what the shards hold."""
    if "index" not in entry:
        return tc.load(path, permissive=True)
    index = json.loads((path / entry["index"]).read_text())
    merged, held, size = {}, {}, 0
    for shard in entry["shards"]:
        ckpt = tc.load(path / shard)
        for key, value in ckpt.obj.items():
            assert key not in held, f"{key} in two shards"
            merged[key], held[key] = value, shard
            size += value.numpy().nbytes
    assert index["weight_map"] == held, f"{path}: the index does not say where each tensor is"
    ckpt.obj, ckpt.total_size = merged, size
    ckpt.metadata = index["metadata"]
    return ckpt


def check_state_dict(entry, path, before, after, expected):
    layers = {l["prefix"]: l for l in entry["layers"] if l["path"] == list(path)}
    lookalike_folded = "attn" in entry.get("lookalikes", []) and "--exclude" not in entry["args"]
    want = []
    for key in before:
        base, _, leaf = key.rpartition(".")
        if base in layers and leaf in ("D", layers[base]["identity"]):
            continue
        want.append(base + ".weight" if (base in layers or (lookalike_folded and base == "attn")) and leaf == "W" else key)
    where = f"{entry['file']}:{'/'.join(path) or '<top>'}"
    assert list(after) == want, f"{where}: keys\n got  {list(after)}\n want {want}"
    for key, value in before.items():
        base, _, leaf = key.rpartition(".")
        if base in layers and leaf == "W":
            layer = layers[base]
            kernel = after[base + ".weight"]
            m, n = layer["kernel"]
            assert kernel.shape == (layer["out_channels"], layer["in_channels"] // layer["groups"], m, n), where
            assert kernel.dtype == value.dtype, where
            assert_kernel(kernel.float32(), expected[layer["npz"]], entry["dtype"], f"{where}: {base}")
        elif lookalike_folded and key == "attn.W":
            assert np.array_equal(after["attn.weight"].numpy(), value.numpy().reshape(*value.shape, 1)), where
        elif key in after:
            assert_same_value(value, after[key], f"{where}/{key}")


def check_tree(entry, before, after):
    expected = np.load(SAVERS / entry["expected"])
    paths = {tuple(l["path"]) for l in entry["layers"]}

    def walk(a, b, path):
        if path in paths:
            check_state_dict(entry, path, a, b, expected)
        elif isinstance(a, dict) and not isinstance(a, tc.Carried):
            keys = [k for k in a if not is_optimizer_state(a[k])]
            assert list(b) == keys, f"{path}: keys {list(b)} != {keys}"
            for key in keys:
                walk(a[key], b[key], path + (key,))
        else:
            assert_same_value(a, b, f"{entry['file']}:{'/'.join(map(str, path))}")

    walk(before.obj, after.obj, ())


def test_manifest_lists_every_saver():
    assert REQUIRED <= {e["file"] for e in ENTRIES}, sorted(REQUIRED - {e["file"] for e in ENTRIES})
    size = sum(p.stat().st_size for p in SAVERS.rglob("*") if p.is_file())
    assert size < 2 << 20, f"fixtures/torch_savers holds {size} bytes"


@pytest.mark.parametrize("entry", FOLDED, ids=[ident(e) for e in FOLDED])
def test_saver_checkpoint_folds(entry, folded):
    result, out = folded(entry)
    assert result.returncode == 0, f"{entry['file']}: {result.stderr}"
    before, after = load_tree(SAVERS / entry["file"], entry), load_tree(out, entry)
    check_tree(entry, before, after)
    if "index" in entry:
        delta = after.total_size - before.total_size
        assert after.metadata["total_size"] == before.metadata["total_size"] + delta
        return
    # The carried objects are the ones the pickle names, and the summary names them (as
    # the pickle spells them: protocol 2 names builtins `__builtin__`).
    assert before.carried == after.carried, entry["file"]
    assert {python3_name(n) for n in after.carried} == set(entry["carried_globals"]), entry["file"]
    for name in after.carried:
        assert name in result.stdout, f"{name} not named in the summary"
    if entry["carried_globals"]:
        assert "weights_only=False" in result.stdout
    if "location" in entry:
        assert {s.location for s in after.storages.values()} == {entry["location"]}, "device tags"


@pytest.mark.parametrize("entry", [e for e in FOLDED if not e["args"]], ids=[ident(e) for e in FOLDED if not e["args"]])
def test_saver_checkpoint_verifies(entry, folded):
    _, out = folded(entry)
    verdict = run_verify(SAVERS / entry["file"], out)
    assert verdict.returncode == 0 and "verdict: EQUIVALENT" in verdict.stdout, verdict.stdout + verdict.stderr
    report = json.loads(run_inspect(SAVERS / entry["file"], "--json").stdout)
    assert len(report["layers"]) >= len(entry["layers"])


def test_lookalike_is_named_and_excluded(folded):
    default, excluded = (next(e for e in FOLDED if e["file"] == "conv1d_lookalike.pth" and bool(e["args"]) == flag) for flag in (False, True))
    result, _ = folded(default)
    assert re.search(r"1x1 layers taken by name and shape alone[^\n]*\battn\b", result.stdout), result.stdout
    result, out = folded(excluded)
    assert "not folded: attn: left as it is: --exclude attn" in result.stdout, result.stdout
    after = tc.load(out).obj
    assert "attn.W" in after and "attn.weight" not in after
    verdict = run_verify(SAVERS / excluded["file"], out, *excluded["args"])
    assert verdict.returncode == 0, verdict.stdout
    # Told the wrong picks, verify-equivalence sees attn.W where a folded kernel belongs.
    assert run_verify(SAVERS / excluded["file"], out).returncode == 1


@pytest.mark.parametrize("entry", REFUSED, ids=[ident(e) for e in REFUSED])
def test_saver_checkpoint_refused_in_one_line(entry, tmp_path):
    out = tmp_path / entry["file"]
    result = run_fold(SAVERS / entry["file"], out, *entry["args"])
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert entry["error"].lower() in lines[0].lower(), lines[0]
    assert not out.exists()
    if entry["file"] != "key_collision.pth":  # a collision is the fold's; inspect lists the layers
        assert run_inspect(SAVERS / entry["file"]).returncode == 2


def test_pickled_module_refusal_names_class_and_layer(tmp_path):
    result = run_fold(SAVERS / "yolov5_style.pt", tmp_path / "out.pt")
    assert re.search(r"DO-Conv layer 'model/model\.\d+\.\w+' sits inside a pickled \S*DetectionModel object", result.stderr), result.stderr
    assert "save model.state_dict()" in result.stderr


def test_key_collision_ways_out(tmp_path):
    """The two ways the refusal names both work: --keep-names, and --exclude attn."""
    src = SAVERS / "key_collision.pth"
    for args in (["--keep-names"], ["--exclude", "attn"]):
        out = tmp_path / f"out{len(args)}.pth"
        result = run_fold(src, out, *args)
        assert result.returncode == 0, result.stderr
        after = tc.load(out).obj
        assert after["attn.weight"].tobytes() == tc.load(src).obj["attn.weight"].tobytes(), "the unrelated attn.weight is kept"


@pytest.mark.parametrize("entry", [e for e in FOLDED if "index" not in e], ids=[ident(e) for e in FOLDED if "index" not in e])
def test_storages_laid_out_as_torch_computes_them(entry, folded):
    """torch.load(mmap=True) and loading to the meta device do not read each storage's
    header: they expect the storage the pickle names first to be data/0 and each next one's
    header right after the previous one's data and its 16-byte data descriptor."""
    _, out = folded(entry)
    if tc.container_of(out) != "zip":
        return
    ckpt = tc.load(out, permissive=True)
    keys = list(ckpt.storages)  # in the order the pickle first names them
    assert keys == [str(k) for k in range(len(keys))], keys
    import zipfile
    with zipfile.ZipFile(out) as archive:
        headers = {info.filename: info.header_offset for info in archive.infolist()}
    data = tc.zip_data_offsets(out)
    names = [f"{ckpt.root}/data/{key}" for key in keys]
    for name, next_name in zip(names, names[1:]):
        end = data[name][1] + ckpt.storages[name.rsplit("/", 1)[1]].numel * ckpt.storages[name.rsplit("/", 1)[1]].itemsize
        assert headers[next_name] == end + 16, f"{next_name} does not follow {name}"
        assert data[next_name][1] % 64 == 0
