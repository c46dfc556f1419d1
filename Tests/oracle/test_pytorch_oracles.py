"""doconv on PyTorch checkpoints (torch.save zip and legacy files, safetensors), checked
without torch: every fixture of fixtures/torch/MANIFEST.json (made by
fixtures/make_torch_fixtures.py with real torch) is folded by doconv-fold, and both files
are read by the independent reader in torch_checkpoint.py (CPython's pickle with the
weights_only allowlist, zipfile, numpy). Folded kernels are compared with the composite
kernels torch's own DOConv2d computed (the .expected.npz files); everything else must be
untouched. doconv-inspect's JSON and verify-equivalence are checked on the same files."""
import json
import re
import zipfile

import jsonschema
import numpy as np
import pytest

import torch_checkpoint as tc
from conftest import FIXTURES, ROOT, manifest, run_fold, run_inspect, run_verify

TORCH = FIXTURES / "torch"
MANIFEST = TORCH / "MANIFEST.json"
ENTRIES = manifest(MANIFEST)
FOLDABLE = [e for e in ENTRIES if not e["refused"]]
SCHEMA = json.loads((ROOT / "schemas" / "inspect-report.schema.json").read_text())
# Tolerance on folded kernels, relative to the kernel's largest magnitude, compared in
# float32 (float64 for float64 files, which fold in float64).
TOLERANCE = {"float32": 1e-5, "float64": 1e-12, "float16": 1e-2, "bfloat16": 5e-2}
# Files the manifest must list: one per checkpoint shape the adapter claims to handle.
REQUIRED = {"plain_sd.pth", "legacy_sd.pth", "imagenet_ckpt.pth.tar", "lightning.ckpt", "yolo_ema.pt", "half.pth",
            "bf16.pth", "double.pth", "views.pth", "nonsquare.pth", "nonsquare_dp.pth", "d_diag_fork.pth",
            "model.safetensors", "whole_model.pth", "resnet_tiny_do.pth"}
SUMMARY_FOLDED = re.compile(r"folded (\d+) layers?")


def ids(entries):
    return [e["file"] for e in entries]


def entry_named(name):
    return next(e for e in ENTRIES if e["file"] == name)


def folded_name(entry):
    return "folded-" + entry["file"]


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """fold(entry, *extra) -> (CompletedProcess, output path), each fold run once."""
    cache = {}

    def run(entry, *extra, args=None):
        args = entry["args"] if args is None else args
        key = (entry["file"], tuple(args), extra)
        if key not in cache:
            out = tmp_path_factory.mktemp("fold") / folded_name(entry)
            cache[key] = (run_fold(TORCH / entry["file"], out, *args, *extra), out)
        return cache[key]
    return run


def folded_ok(fold, entry, *extra, **kw):
    result, out = fold(entry, *extra, **kw)
    assert result.returncode == 0, f"{entry['file']}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert out.exists()
    return result, out


# ---------------------------------------------------------------------------------------
# Oracles


def expected_keys(keys, layers, keep_names=False):
    """Keys after folding: P.W -> P.weight in place, P.D and P.d_diag/P.D_diag gone."""
    by_w = {l["prefix"] + ".W": l for l in layers}
    gone = {l["prefix"] + "." + name for l in layers if l["has_d"] for name in ("D", l["identity"])}
    return [key if keep_names or key not in by_w else by_w[key]["prefix"] + ".weight" for key in keys if key not in gone]


def compose(W, D, I, layer):
    """The composite kernel (FORMATS.md), in numpy: float32 arithmetic (float64 for float64)."""
    arithmetic = np.float64 if W.dtype == np.float64 else np.float32
    m, n = layer["kernel"]
    cin, cout, g = layer["in_channels"], layer["out_channels"], layer["groups"]
    W = W.astype(arithmetic)
    if D is None:
        return W.reshape(cout, cin // g, m, n)
    d_mul = W.shape[-1]
    Wr = W.reshape(cout // g, cin, d_mul)
    return np.einsum("ims,ois->oim", D.astype(arithmetic) + I.astype(arithmetic), Wr).reshape(cout, cin // g, m, n)


def assert_kernel(got, want, dtype, where):
    scale = float(np.abs(want).max())
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale, err_msg=where)


def assert_same_tensor(a, b, where):
    assert isinstance(b, tc.Tensor), f"{where}: {type(b).__name__}, not a tensor"
    assert (b.dtype, b.shape) == (a.dtype, a.shape), f"{where}: {b.dtype}{list(b.shape)} != {a.dtype}{list(a.shape)}"
    assert b.tobytes() == a.tobytes(), f"{where}: values changed"
    assert (b.requires_grad, b.is_parameter) == (a.requires_grad, a.is_parameter), f"{where}: tensor flags changed"


def assert_same_value(a, b, where):
    """Non-tensor values: same type, same value (NaN equal to NaN), recursively."""
    if isinstance(a, tc.Tensor):
        assert_same_tensor(a, b, where)
    elif isinstance(a, dict):
        assert type(b) is type(a), f"{where}: {type(b).__name__} != {type(a).__name__}"
        assert list(b) == list(a), f"{where}: keys {list(b)} != {list(a)}"
        assert getattr(b, "__dict__", {}) == getattr(a, "__dict__", {}), f"{where}: attributes changed"
        for key in a:
            assert_same_value(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(b) == len(a), f"{where}: {b!r} != {a!r}"
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same_value(x, y, f"{where}[{k}]")
    elif isinstance(a, tc.Carried):
        # A carried object: the same global, built the same way, with the same items and state.
        assert isinstance(b, tc.Carried) and b.global_name == a.global_name, f"{where}: {b!r} != {a!r}"
        assert (b.made[0], b.built) == (a.made[0], a.built), f"{where}: built differently"
        assert_same_value(list(a.made[1:]), list(b.made[1:]), f"{where}<{a.global_name}>")
        assert_same_value([a.items, a.dict_items, a.state], [b.items, b.dict_items, b.state], f"{where}<{a.global_name} contents>")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert type(b) is type(a) and b == a, f"{where}: {b!r} != {a!r}"


def get_path(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def check_state_dict(entry, path, before, after, keep_names, expected):
    layers = [l for l in entry["layers"] if l["path"] == path]
    where = f"{entry['file']}:{'/'.join(map(str, path)) or '<top>'}"
    assert isinstance(after, dict) and type(after) is type(before), where
    want_keys = expected_keys(list(before), layers, keep_names)
    if not keep_names:
        manifest_keys = next(s["keys"] for s in entry["state_dicts"] if s["path"] == path)
        assert want_keys == manifest_keys, f"{where}: the manifest disagrees with the input"
    assert list(after) == want_keys, f"{where}: keys after folding\n got  {list(after)}\n want {want_keys}"
    by_prefix = {l["prefix"]: l for l in layers}
    for key, value in before.items():
        base, _, leaf = key.rpartition(".")
        layer = by_prefix.get(base)
        if layer is not None and leaf in ("D", layer["identity"]):
            continue  # gone (checked by the key list)
        if layer is not None and leaf == "W":
            kernel = after[base + (".W" if keep_names else ".weight")]
            m, n = layer["kernel"]
            shape = (layer["out_channels"], layer["in_channels"] // layer["groups"], m, n)
            assert isinstance(kernel, tc.Tensor) and kernel.shape == shape, f"{where}: {base} folded to {kernel!r}, want {shape}"
            assert kernel.dtype == value.dtype == entry["dtype"], f"{where}: {base} folded to {kernel.dtype}"
            got = kernel.numpy() if kernel.dtype == "float64" else kernel.float32()
            assert_kernel(got, expected[layer["npz"]], entry["dtype"], f"{where}: {base}")
            continue
        assert_same_value(value, after[key], f"{where}/{key}")


def check_checkpoint(entry, before, after, keep_names=False):
    """The whole object tree: state dicts folded, optimizer state dropped, the rest as it was."""
    expected = np.load(TORCH / entry["expected"])
    sd_paths = [tuple(s["path"]) for s in entry["state_dicts"]]

    def walk(a, b, path):
        if path in sd_paths:
            check_state_dict(entry, list(path), a, b, keep_names, expected)
            return
        if isinstance(a, dict):
            assert type(b) is type(a), f"{path}: {type(b).__name__} != {type(a).__name__}"
            keys = [k for k in a if not (path == () and k in entry["dropped"])]
            assert list(b) == keys, f"{path}: keys {list(b)} != {keys}"
            if path == () and entry["top_level_keys"] is not None:
                assert list(b) == entry["top_level_keys"]
            for key in keys:
                walk(a[key], b[key], path + (key,))
        else:
            assert_same_value(a, b, f"{entry['file']}:{'/'.join(map(str, path))}")

    walk(before.obj, after.obj, ())
    for dropped in entry["dropped"]:
        assert dropped in before.obj and dropped not in after.obj


# ---------------------------------------------------------------------------------------
# The fixtures themselves (no tool needed)


def test_manifest_lists_every_fixture():
    assert MANIFEST.exists(), f"{MANIFEST} is missing: run fixtures/make_torch_fixtures.py"
    assert ENTRIES, "the manifest is empty"
    files = {e["file"] for e in ENTRIES}
    assert REQUIRED <= files, f"missing from the manifest: {sorted(REQUIRED - files)}"
    for entry in ENTRIES:
        assert (TORCH / entry["file"]).is_file(), entry["file"]
        assert (TORCH / entry["expected"]).is_file(), entry["expected"]
        assert entry["layers"], entry["file"]
        expected = np.load(TORCH / entry["expected"])
        for layer in entry["layers"]:
            assert layer["npz"] in expected.files, (entry["file"], layer["npz"])
    assert sum(p.stat().st_size for p in TORCH.iterdir()) < 1 << 20


@pytest.mark.parametrize("entry", FOLDABLE, ids=ids(FOLDABLE))
def test_fixture_tensors_compose_to_the_expected_kernels(entry):
    """The oracle reader on the inputs: the stored D, identity and W compose (in numpy) to
    the kernels torch's DOConv2d computed, and the manifest's keys and geometry agree."""
    ckpt = tc.load(TORCH / entry["file"])
    assert ckpt.container == entry["container"]
    if entry["container"] == "zip":
        assert ckpt.root == entry["root"]
    expected = np.load(TORCH / entry["expected"])
    for sd in entry["state_dicts"]:
        tensors = get_path(ckpt.obj, sd["path"])
        layers = [l for l in entry["layers"] if l["path"] == sd["path"]]
        assert expected_keys(list(tensors), layers) == sd["keys"]
        for layer in layers:
            p = layer["prefix"]
            W = tensors[p + ".W"]
            per_group = layer["in_channels"] // layer["groups"]
            assert W.shape == (layer["out_channels"], per_group, layer["d_mul"]) and W.dtype == entry["dtype"], p
            D = I = None
            if layer["has_d"]:
                m, n = layer["kernel"]
                D, I = tensors[p + ".D"], tensors[p + "." + layer["identity"]]
                assert D.shape == I.shape == (layer["in_channels"], m * n, layer["d_mul"]), p
                assert np.abs(D.values()).max() > 0.1, f"{p}: D is (nearly) zero: folding would not matter"
                D, I = D.values(), I.values()
            W = W.values()
            got = compose(W, D, I, layer)
            if entry["dtype"] in ("float16", "bfloat16"):
                # torch's kernel was rounded to the layer's type; compare at that precision.
                assert_kernel(got, expected[layer["npz"]], entry["dtype"], p)
            else:
                assert_kernel(got, expected[layer["npz"]], "float32", p)


def test_whole_model_pickle_is_not_a_state_dict_for_the_oracle_reader():
    with pytest.raises(tc.DisallowedGlobal):
        tc.load(TORCH / "whole_model.pth")


# ---------------------------------------------------------------------------------------
# doconv-fold


@pytest.mark.parametrize("entry", FOLDABLE, ids=ids(FOLDABLE))
def test_fold(entry, fold):
    result, out = folded_ok(fold, entry)
    lines = [line.strip() for line in result.stdout.splitlines()]
    counts = [int(m.group(1)) for line in lines if (m := SUMMARY_FOLDED.search(line))]
    assert counts == [len(entry["layers"])], result.stdout
    assert any(line.startswith("verified: worst relative error") for line in lines), result.stdout
    dropped_note = [line for line in lines if line.startswith("note: optimizer state dropped")]
    assert bool(dropped_note) == bool(entry["dropped"]), result.stdout

    before, after = tc.load(TORCH / entry["file"]), tc.load(out)
    if entry["container"] == "legacy":
        assert after.container in ("legacy", "zip")
        if after.container == "zip":
            assert any(line.startswith("note:") and re.search("zip|legacy", line, re.I) for line in lines), result.stdout
    else:
        assert after.container == entry["container"]
    if after.container == "zip" and before.container == "zip":
        assert after.root == before.root, f"archive root {after.root!r}, the input's is {before.root!r}"
    if entry["container"] == "safetensors":
        assert after.metadata == before.metadata, "safetensors __metadata__ changed"
    check_checkpoint(entry, before, after)


@pytest.mark.parametrize("name", ["plain_sd.pth", "imagenet_ckpt.pth.tar", "yolo_ema.pt", "model.safetensors", "legacy_sd.pth"])
def test_fold_keep_names(name, fold):
    entry = entry_named(name)
    _, out = folded_ok(fold, entry, "--keep-names")
    check_checkpoint(entry, tc.load(TORCH / entry["file"]), tc.load(out), keep_names=True)


def test_fold_onto_itself_is_the_same_fold(tmp_path, fold):
    entry = entry_named("imagenet_ckpt.pth.tar")
    copy = tmp_path / entry["file"]
    copy.write_bytes((TORCH / entry["file"]).read_bytes())
    result = run_fold(copy, copy)
    assert result.returncode == 0, result.stderr
    check_checkpoint(entry, tc.load(TORCH / entry["file"]), tc.load(copy))
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.name], "stray files"


def nonsquare_names(entry):
    return [l["name"] for l in entry["layers"] if l["kernel"][0] != l["kernel"][1]]


@pytest.mark.parametrize("name", ["nonsquare.pth", "nonsquare_dp.pth"])
def test_kernel_size_missing(name, tmp_path):
    entry = entry_named(name)
    out = tmp_path / folded_name(entry)
    result = run_fold(TORCH / entry["file"], out)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "--kernel-size" in lines[0] and any(n in lines[0] for n in nonsquare_names(entry)), lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []

    # Two of the three given: the line names the third.
    args = entry["args"][:-2]
    missing = entry["args"][-1].split("=")[0]
    result = run_fold(TORCH / entry["file"], out, *args)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result
    assert "--kernel-size" in result.stderr and missing in result.stderr, result.stderr
    assert not out.exists()


def test_kernel_size_with_the_container_prefix(fold):
    """`--kernel-size module.row=1x3` names the same layer as `row=1x3`."""
    entry = entry_named("nonsquare_dp.pth")
    args = [a if a == "--kernel-size" else "module." + a for a in entry["args"]]
    assert args != entry["args"]
    _, out_full = folded_ok(fold, entry, args=args)
    _, out_short = folded_ok(fold, entry)
    check_checkpoint(entry, tc.load(TORCH / entry["file"]), tc.load(out_full))
    a, b = tc.load(out_full).obj, tc.load(out_short).obj
    assert list(a) == list(b) and all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_kernel_size_that_disagrees_with_d(tmp_path):
    entry = entry_named("nonsquare.pth")
    out = tmp_path / "out.pth"
    result = run_fold(TORCH / entry["file"], out, *entry["args"][:-1], "rect=3x3")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result
    assert "rect" in result.stderr and not out.exists()


def test_whole_model_is_refused(tmp_path):
    src = TORCH / "whole_model.pth"
    out = tmp_path / "out.pth"
    for result in (run_fold(src, out), run_inspect(src, "--json"), run_verify(src, src)):
        assert result.returncode == 2, result
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and str(src) in lines[0] and "state_dict()" in lines[0], result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# The output zip's layout


ZIP_OUTPUTS = [e for e in FOLDABLE if e["container"] in ("zip", "legacy")]


@pytest.mark.parametrize("entry", ZIP_OUTPUTS, ids=ids(ZIP_OUTPUTS))
def test_output_zip_storages_are_stored_and_aligned(entry, fold):
    _, out = folded_ok(fold, entry)
    if tc.container_of(out) != "zip":
        pytest.skip("legacy written as legacy")
    ckpt = tc.load(out)
    offsets = tc.zip_data_offsets(out)
    storages = [name for name in offsets if name.startswith(f"{ckpt.root}/data/")]
    assert storages and len(storages) == len(ckpt.storages), storages
    for name in storages:
        method, offset = offsets[name]
        assert method == zipfile.ZIP_STORED, f"{name} is compressed (method {method})"
        assert offset % 64 == 0, f"{name}'s data starts at {offset}, not 64-byte aligned"


@pytest.mark.parametrize("entry", [e for e in ZIP_OUTPUTS if e["container"] == "zip"],
                         ids=ids([e for e in ZIP_OUTPUTS if e["container"] == "zip"]))
def test_output_zip_keeps_torch_records(entry, fold):
    """The records torch.load reads besides data.pkl and the storages stay as they were."""
    _, out = folded_ok(fold, entry)
    root = entry["root"]
    with zipfile.ZipFile(TORCH / entry["file"]) as a, zipfile.ZipFile(out) as b:
        for record in ("version", ".format_version", ".storage_alignment", "byteorder"):
            name = f"{root}/{record}"
            if name in a.namelist():
                assert b.read(name) == a.read(name), name
        assert f"{root}/data.pkl" in b.namelist()
        assert all(n.startswith(root + "/") for n in b.namelist())


# ---------------------------------------------------------------------------------------
# doconv-inspect


def kind_of(layer):
    if layer["groups"] == 1:
        return "DO-Conv"
    return "DO-DConv" if layer["groups"] == layer["in_channels"] else "DO-GConv"


def geometry(layer):
    return (kind_of(layer), layer["in_channels"], layer["out_channels"], tuple(layer["kernel"]), layer["groups"],
            layer["d_mul"], layer["has_d"])


@pytest.mark.parametrize("entry", FOLDABLE, ids=ids(FOLDABLE))
def test_inspect(entry):
    src = TORCH / entry["file"]
    result = run_inspect(src, *entry["args"], "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(report)
    assert report["format"] == ("safetensors" if entry["container"] == "safetensors" else "pytorch")
    assert report["rejected"] == []
    layers = report["layers"]
    assert len(layers) == len(entry["layers"]), [l["name"] for l in layers]
    # Each layer has its own name, also where a model and its EMA hold the same module paths.
    assert len({l["name"] for l in layers}) == len(layers), [l["name"] for l in layers]
    assert sorted(map(geometry, layers)) == sorted(map(geometry, entry["layers"]))
    for want in entry["layers"]:
        assert any(l["name"].endswith(want["name"]) for l in layers), (want["name"], [l["name"] for l in layers])
    ckpt = tc.load(src)
    tolerance = 1e-4 if entry["dtype"] in ("float32", "float64") else 2e-2
    unmatched = list(entry["layers"])
    for layer in layers:
        assert layer["kind"] == kind_of(layer) and layer["layout"] == "pytorch"
        assert layer["form"] == "kernel composition" and layer["element_type"] == entry["dtype"]
        m, n = layer["kernel"]
        per_group = layer["in_channels"] // layer["groups"]
        d = layer["in_channels"] * m * n * layer["d_mul"] if layer["has_d"] else 0
        assert layer["params_trained"] == d + layer["out_channels"] * per_group * layer["d_mul"]
        assert layer["params_folded"] == layer["out_channels"] * per_group * m * n
        # D's distance from the identity and the H map, from the stored tensors, of a
        # manifest layer of that name and geometry (yolo_ema.pt has each name twice).
        candidates = [l for l in unmatched if layer["name"].endswith(l["name"]) and geometry(l) == geometry(layer)]
        assert candidates, layer["name"]
        for want in candidates:
            if matches(layer, want, ckpt, tolerance):
                unmatched.remove(want)
                break
        else:
            raise AssertionError(f"{layer['name']}: d_deviation {layer['d_deviation']} / h_map {layer['h_map']} "
                                 f"fit none of {[c['prefix'] for c in candidates]}")
    assert not unmatched


def matches(layer, want, ckpt, tolerance):
    """The report's d_deviation and h_map agree with the manifest layer's stored tensors."""
    tensors = get_path(ckpt.obj, want["path"])
    W = tensors[want["prefix"] + ".W"].values().astype(np.float64)
    if not layer["has_d"]:
        return layer["d_deviation"] == 0 and not np.array(layer["h_map"], np.float64).any()
    D = tensors[want["prefix"] + ".D"].values().astype(np.float64)
    I = tensors[want["prefix"] + "." + want["identity"]].values().astype(np.float64)
    deviation = np.linalg.norm(D) / np.linalg.norm(I)
    h = np.abs(compose(W, D, I, want) - compose(W, np.zeros_like(D), I, want)).sum(axis=(0, 1))
    got = np.array(layer["h_map"], np.float64)
    return (layer["d_deviation"] is not None and abs(layer["d_deviation"] - deviation) <= tolerance * deviation
            and got.shape == h.shape and bool(np.all(np.abs(got - h) <= tolerance * h.max())))


# ---------------------------------------------------------------------------------------
# verify-equivalence


@pytest.mark.parametrize("entry", FOLDABLE, ids=ids(FOLDABLE))
def test_verify_accepts_the_fold(entry, fold):
    _, out = folded_ok(fold, entry)
    # verify-equivalence takes the kernel sizes from the user, as the fold does, never from FOLDED.
    result = run_verify(TORCH / entry["file"], out, *entry["args"])
    assert result.returncode == 0, result.stdout + result.stderr
    if entry["args"]:
        result = run_verify(TORCH / entry["file"], out)
        assert result.returncode == 2 and "--kernel-size" in result.stderr, result.stdout + result.stderr


def new_value(value, dtype):
    """A clearly different value of the same type (never NaN or infinite)."""
    widened = float(value)
    changed = -widened + 1.0 if abs(widened) < 4 else widened / 2
    if dtype == "bfloat16":
        bits = np.array([changed], np.float32).view(np.uint32)[0] >> 16
        return np.array([bits], np.uint16).tobytes()
    return np.array([changed], tc.DTYPES[dtype][0]).tobytes()


def tamper(folded, dst, entry):
    """A copy of `folded` with the first element of one folded kernel changed."""
    ckpt = tc.load(folded)
    layer = next(l for l in entry["layers"] if l["has_d"])
    kernel = get_path(ckpt.obj, layer["path"])[layer["prefix"] + ".weight"]
    storage = kernel.storage
    at = kernel.offset * storage.itemsize
    value = kernel.numpy().ravel()[0] if kernel.dtype != "bfloat16" else kernel.float32().ravel()[0]
    patch = new_value(value, kernel.dtype)
    if ckpt.container == "zip":
        with zipfile.ZipFile(folded) as archive:
            data = bytearray(archive.read(storage.source))
        data[at:at + len(patch)] = patch
        tc.rewrite_zip(folded, dst, {storage.source: bytes(data)})
    else:  # legacy and safetensors: storage.source is the storage's offset in the file
        data = bytearray(folded.read_bytes())
        data[storage.source + at:storage.source + at + len(patch)] = patch
        dst.write_bytes(bytes(data))
    changed = get_path(tc.load(dst).obj, layer["path"])[layer["prefix"] + ".weight"]
    assert changed.tobytes() != kernel.tobytes() and changed.shape == kernel.shape
    return dst


@pytest.mark.parametrize("entry", FOLDABLE, ids=ids(FOLDABLE))
def test_verify_rejects_a_tampered_kernel(entry, fold, tmp_path):
    _, out = folded_ok(fold, entry)
    # A copy rewritten without a change must still verify (the rewrite itself is harmless).
    if tc.container_of(out) == "zip":
        untouched = tc.rewrite_zip(out, tmp_path / ("rewritten-" + entry["file"]), {})
        result = run_verify(TORCH / entry["file"], untouched, *entry["args"])
        assert result.returncode == 0, result.stdout + result.stderr
    bad = tamper(out, tmp_path / ("tampered-" + entry["file"]), entry)
    result = run_verify(TORCH / entry["file"], bad, *entry["args"])
    assert result.returncode == 1, result.stdout + result.stderr
