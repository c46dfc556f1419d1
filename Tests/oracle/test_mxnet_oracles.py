"""doconv on MXNet/Gluon files: `.params` weight files (save_parameters' structural names,
collect_params().save's prefixed names) and export() pairs (NAME-symbol.json +
NAME-0000.params, arg:/aux: names). Every fixture of fixtures/mxnet/MANIFEST.json (made by
fixtures/make_mxnet_fixtures.py with real MXNet 1.9.1 from a Gluon DOConv2D) is folded by
doconv-fold, and the result is checked by MXNet itself: the plain twin of the net
(nn.Conv2D where DOConv2D was, Tests/oracle/mxnet_oracle.py) must load it strictly
(load_parameters, collect_params().load, SymbolBlock.imports) and predict what the DO net
predicted, with the kernels MXNet's own DOConv2D composed. At the byte level
(mxnet_params.py, no MXNet) D must be gone and every other array record unchanged, in
order; the folded symbol must read each weight variable directly. doconv-inspect's JSON
and verify-equivalence are checked on the same files.

MXNet runs in its own venv (Python 3.8), as a subprocess: DOCONV_MXNET_PYTHON, or the
python of the venv scripts/install-mxnet makes (DOCONV_MXNET_VENV, default
~/.cache/doconv-mxnet). Without it these tests fail: CI installs it.
"""
import atexit
import functools
import json
import os
import pathlib
import re
import select
import shutil
import subprocess
import time

import jsonschema
import numpy as np
import pytest

import mxnet_params as mp
from conftest import FIXTURES, ROOT, manifest, run_fold, run_inspect, run_verify

MXNET = FIXTURES / "mxnet"
MANIFEST = MXNET / "MANIFEST.json"
ENTRIES = manifest(MANIFEST)
EXPORTS_FLOAT32 = [e for e in ENTRIES if e["kind"] == "export" and e["dtype"] == "float32"]
ORACLE = pathlib.Path(__file__).resolve().parent / "mxnet_oracle.py"
SCHEMA = json.loads((ROOT / "schemas" / "inspect-report.schema.json").read_text())
# Relative tolerance of outputs and folded kernels (kernels: relative to their largest
# magnitude), by the layers' element type.
TOLERANCE = {"float32": 1e-5, "float16": 1e-2}
# Every net the manifest must list, each in the three namings.
REQUIRED_NETS = {"basic", "mobile", "seg", "half"}
# Ops the Gluon DOConv2D adds to an exported symbol to compose its kernel. None of the
# fixture nets uses them elsewhere, so none may be left after folding.
COMPOSITION_OPS = {"_eye", "elemwise_mul", "sum", "elemwise_add", "tile", "expand_dims", "transpose", "Reshape"}
SUMMARY_FOLDED = re.compile(r"folded (\d+) layers?")


def ids(entries):
    return [e["file"] for e in entries]


# ---------------------------------------------------------------------------------------
# MXNet, in its venv


@functools.lru_cache(maxsize=None)
def mxnet_python():
    """The venv python that imports mxnet 1.9.1, or a failed test saying how to get it."""
    configured = os.environ.get("DOCONV_MXNET_PYTHON")
    if configured:
        python = pathlib.Path(configured)
    else:
        venv = pathlib.Path(os.environ.get("DOCONV_MXNET_VENV", pathlib.Path.home() / ".cache" / "doconv-mxnet"))
        python = venv / "bin" / "python"
    how = "run scripts/install-mxnet (CI does) or set DOCONV_MXNET_PYTHON to a python with mxnet 1.9.1"
    if not python.exists():
        pytest.fail(f"MXNet is not installed: {python} does not exist; {how}", pytrace=False)
    probe = subprocess.run([str(python), "-c", "import mxnet; print(mxnet.__version__)"], capture_output=True, text=True,
                           timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "1.9.1":
        pytest.fail(f"{python} cannot import mxnet 1.9.1 ({(probe.stderr.strip().splitlines() or [probe.stdout.strip()])[-1]}); "
                    f"{how}", pytrace=False)
    return str(python)


class Oracle:
    """mxnet_oracle.py serve, started once: MXNet takes seconds to import."""
    TIMEOUT_S = 300

    def __init__(self):
        self.process, self.pending = None, b""

    def start(self):
        self.process = subprocess.Popen([mxnet_python(), str(ORACLE), "serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
        self.pending = b""

    def line(self, deadline, what):
        """The next stdout line (read unbuffered, so select never waits on buffered data)."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                self.close()
                pytest.fail(f"mxnet_oracle.py {what}: no reply in {self.TIMEOUT_S} s")
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                self.close()
                pytest.fail(f"mxnet_oracle.py serve ended during {what}")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def __call__(self, *args):
        what = " ".join(map(str, args))
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.process.stdin.write((json.dumps(list(map(str, args))) + "\n").encode())
        deadline = time.monotonic() + self.TIMEOUT_S
        while not (line := self.line(deadline, what)).startswith(REPLY):
            pass  # a line MXNet printed itself
        reply = json.loads(line[len(REPLY):])
        assert reply["ok"], f"mxnet_oracle.py {what} failed:\n{reply['error'][-4000:]}"
        return reply["result"]

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


REPLY = "@@mxnet-oracle "
oracle = Oracle()
atexit.register(oracle.close)


@functools.lru_cache(maxsize=None)
def _dump(path, mtime):
    return oracle("dump", path)


def dump(path):
    """MXNet's view of a .params file: [{name, dtype, shape, sha256}] in file order."""
    path = pathlib.Path(path)
    return _dump(str(path), path.stat().st_mtime_ns)


# ---------------------------------------------------------------------------------------
# Files


def stem_of(pair_file):
    """NAME of NAME-0000.params / NAME-symbol.json."""
    name = pathlib.Path(pair_file).name
    for suffix in ("-0000.params", "-symbol.json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(name)


def load_graph(path):
    return json.loads(pathlib.Path(path).read_text())


def bare(name):
    """A weight's name without the arg:/aux: prefix of export files."""
    return name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name


class Folded:
    """What one doconv-fold run wrote: params (and symbol, for export pairs)."""

    def __init__(self, result, params, symbol=None):
        self.result, self.params, self.symbol = result, params, symbol


@pytest.fixture(scope="module")
def fold(tmp_path_factory):
    """fold(entry, source="params"|"symbol") -> Folded, each fold run once. An export pair
    is given by its symbol (OUT = folded-symbol.json) or by its params file (OUT =
    folded-0000.params); both must write the whole pair."""
    cache = {}

    def run(entry, source=None):
        source = source or ("symbol" if entry["kind"] == "export" else "params")
        key = (entry["file"], source)
        if key not in cache:
            out = tmp_path_factory.mktemp("fold")
            if entry["kind"] == "export":
                src = MXNET / (entry["symbol"] if source == "symbol" else entry["file"])
                target = out / ("folded-symbol.json" if source == "symbol" else "folded-0000.params")
                cache[key] = Folded(run_fold(src, target), out / "folded-0000.params", out / "folded-symbol.json")
            else:
                target = out / ("folded-" + entry["file"])
                cache[key] = Folded(run_fold(MXNET / entry["file"], target), target)
        return cache[key]
    return run


def folded_ok(fold, entry, source=None):
    f = fold(entry, source)
    where = f"{entry['file']}"
    assert f.result.returncode == 0, f"{where}: exit {f.result.returncode}\n{f.result.stdout}\n{f.result.stderr}"
    assert f.params.exists(), f"{where}: {f.params.name} was not written"
    if f.symbol is not None:
        assert f.symbol.exists(), f"{where}: {f.symbol.name} was not written"
    return f


def expected_names(entry):
    """The names after folding: the input's, in order, without the D arrays."""
    _, parsed = mp.load(MXNET / entry["file"])
    gone = {l["d"] for l in entry["layers"]}
    return [r.name for r in parsed.records if r.name not in gone]


def assert_kernel(got, want, dtype, where):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * float(np.abs(want).max()), err_msg=where)


# ---------------------------------------------------------------------------------------
# The fixtures themselves (no tool, no MXNet)


def test_manifest_lists_every_fixture():
    assert ENTRIES, "the manifest is empty"
    assert {(e["plain_net"], e["naming"]) for e in ENTRIES} >= {(n, k) for n in REQUIRED_NETS
                                                                for k in ("structural", "legacy", "export")}
    kinds = {l["kind"] for e in ENTRIES for l in e["layers"]}
    assert kinds == {"DO-Conv", "DO-DConv", "DO-GConv"}, kinds
    kernels = {tuple(l["kernel"]) for e in ENTRIES for l in e["layers"]}
    assert {(3, 3), (1, 3), (5, 5)} <= kernels, kernels
    for entry in ENTRIES:
        assert (MXNET / entry["file"]).is_file(), entry["file"]
        assert (MXNET / entry["expected"]).is_file(), entry["expected"]
        assert (entry["kind"] == "export") == (entry["symbol"] is not None) == (entry["naming"] == "export")
        if entry["symbol"]:
            assert (MXNET / entry["symbol"]).is_file() and stem_of(entry["symbol"]) == stem_of(entry["file"])
        assert entry["layers"], entry["file"]
        expected = np.load(MXNET / entry["expected"])
        assert {"input", "output"} <= set(expected.files)
        for layer in entry["layers"]:
            assert "kernel:" + layer["weight"] in expected.files, (entry["file"], layer["weight"])
            assert layer["d_mul"] == layer["kernel"][0] * layer["kernel"][1]
    assert sum(p.stat().st_size for p in MXNET.iterdir()) < 300 * 1024


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_fixture_arrays_compose_to_the_expected_kernels(entry):
    """The MXNet-free reader on the inputs: each layer's stored weight and D compose (numpy,
    FORMATS.md's Gluon arithmetic) to the kernel MXNet's DOConv2D composed, and the
    manifest's names and geometry agree with the file."""
    blob, parsed = mp.load(MXNET / entry["file"])
    named = parsed.named()
    expected = np.load(MXNET / entry["expected"])
    for layer in entry["layers"]:
        m, n = layer["kernel"]
        mn, cin, cout, g = m * n, layer["in_channels"], layer["out_channels"], layer["groups"]
        W, D = named[layer["weight"]], named[layer["d"]]
        assert W.shape == (cout, cin // g, m, n) and W.dtype == entry["dtype"], layer["weight"]
        assert D.shape == (mn, mn, cin) and D.dtype == entry["dtype"], layer["d"]
        if layer["bias"] is not None:
            assert named[layer["bias"]].shape == (cout,)
        d = D.values(blob)
        assert np.abs(d).max() > 0.1, f"{layer['d']} is (nearly) zero: folding would not matter"
        got = mp.compose(W.values(blob), d, layer)
        assert_kernel(got, expected["kernel:" + layer["weight"]], entry["dtype"], layer["weight"])
    # The identity is computed by the graph, never stored: no other (MN, MN, Cin) array.
    d_names = {l["d"] for l in entry["layers"]}
    for r in parsed.records:
        if len(r.shape) == 3 and r.shape[0] == r.shape[1] and r.name not in d_names:
            raise AssertionError(f"{r.name}: an unexpected {r.shape} array")


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["kind"] == "export"],
                         ids=ids([e for e in ENTRIES if e["kind"] == "export"]))
def test_fixture_symbol_composes_each_kernel(entry):
    """The exported symbol recomputes each DO kernel from its weight and D variables."""
    graph = load_graph(MXNET / entry["symbol"])
    nodes = graph["nodes"]
    for layer in entry["layers"]:
        weight, d = bare(layer["weight"]), bare(layer["d"])
        conv = next(k for k, n in enumerate(nodes) if n["op"] == "Convolution" and weight in ancestors_names(nodes, k))
        assert nodes[nodes[conv]["inputs"][1][0]]["op"] == "transpose"
        ops = {nodes[j]["op"] for j in ancestors(nodes, nodes[conv]["inputs"][1][0])}
        assert {"_eye", "elemwise_mul", "sum", "null"} <= ops, ops
        assert d in ancestors_names(nodes, conv)


def ancestors(nodes, start):
    seen, stack = set(), [start]
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            stack.extend(i[0] for i in nodes[k]["inputs"])
    return seen


def ancestors_names(nodes, start):
    return {nodes[k]["name"] for k in ancestors(nodes, start)}


# ---------------------------------------------------------------------------------------
# doconv-fold, checked by MXNet


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_fold(entry, fold):
    f = folded_ok(fold, entry)
    lines = [line.strip() for line in f.result.stdout.splitlines()]
    counts = [int(m.group(1)) for line in lines if (m := SUMMARY_FOLDED.search(line))]
    assert counts == [len(entry["layers"])], f.result.stdout
    assert any(line.startswith("verified: worst relative error") for line in lines), f.result.stdout
    written = sorted(p.name for p in f.params.parent.iterdir())
    want = sorted(p.name for p in (f.params, f.symbol) if p is not None)
    assert written == want, f"stray or missing files: {written}"


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_plain_net_loads_and_predicts(entry, fold):
    """MXNet's plain twin loads the folded file strictly and predicts what the DO net did,
    with the folded kernels MXNet's DOConv2D composed."""
    f = folded_ok(fold, entry)
    args = ["predict", "--net", entry["plain_net"], "--naming", entry["naming"], "--expected", MXNET / entry["expected"],
            f.params]
    if f.symbol is not None:
        args.append(f.symbol)
    report = oracle(*args)
    tolerance = TOLERANCE[entry["dtype"]]
    assert report["relative_error"] <= tolerance, f"{entry['file']}: relative error {report['relative_error']:.3g}"
    expected = np.load(MXNET / entry["expected"])
    assert report["shape"] == list(expected["output"].shape)
    for layer in entry["layers"]:
        name = layer["weight"]
        assert name in report["kernels"], f"{name} not read by MXNet: {report['params']}"
        assert report["dtypes"][name] == entry["dtype"], f"{name}: {report['dtypes'][name]}"
        assert_kernel(report["kernels"][name], expected["kernel:" + name], entry["dtype"], name)
    assert sorted(report["params"]) == sorted(expected_names(entry))


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_d_gone_and_every_other_array_untouched(entry, fold):
    """Same names in the same order without D; the folded kernels keep the weight's name,
    shape, dtype and record header; every other array record is byte for byte the input's.
    Checked twice: by MXNet (mx.nd.load, hashes of the values) and by the bytes."""
    f = folded_ok(fold, entry)
    want_names = expected_names(entry)
    weights = {l["weight"] for l in entry["layers"]}

    before, after = dump(MXNET / entry["file"]), dump(f.params)
    assert [a["name"] for a in after] == want_names, f"names after folding:\n got  {[a['name'] for a in after]}\n want {want_names}"
    by_name = {a["name"]: a for a in before}
    for a in after:
        b = by_name[a["name"]]
        assert (a["dtype"], a["shape"]) == (b["dtype"], b["shape"]), a["name"]
        if a["name"] in weights:
            assert a["sha256"] != b["sha256"], f"{a['name']} was not folded"
        else:
            assert a["sha256"] == b["sha256"], f"{a['name']} changed"

    blob_in, parsed_in = mp.load(MXNET / entry["file"])
    blob_out, parsed_out = mp.load(f.params)
    assert parsed_out.names == want_names
    records_in = parsed_in.named()
    for record in parsed_out.records:
        original = records_in[record.name]
        if record.name in weights:
            assert (record.magic, record.stype, record.shape, record.dtype, record.dev_type, record.dev_id) == \
                (original.magic, original.stype, original.shape, original.dtype, original.dev_type, original.dev_id), record.name
        else:
            assert record.raw(blob_out) == original.raw(blob_in), f"{record.name}: record bytes changed"
    assert blob_out[:16] == blob_in[:16], "list header changed"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["kind"] == "params"],
                         ids=ids([e for e in ENTRIES if e["kind"] == "params"]))
def test_folding_a_folded_file_changes_nothing(entry, fold, tmp_path):
    """No DO layer left: the file is written back byte for byte."""
    f = folded_ok(fold, entry)
    again = tmp_path / ("again-" + entry["file"])
    result = run_fold(f.params, again)
    assert result.returncode == 0, result.stdout + result.stderr
    assert again.read_bytes() == f.params.read_bytes()


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["dtype"] == "float32"][:1] + EXPORTS_FLOAT32[:1],
                         ids=lambda e: e["file"])
def test_verification_failure_writes_nothing(entry, tmp_path, clean_tmpdir):
    """The float32 kernels are probed while the params are written: a failure found then
    still commits nothing, over existing outputs (an export pair's two files included), and
    leaves no temporary file."""
    source = MXNET / entry["file"]  # an export pair given by its params file
    out = tmp_path / ("folded-0000.params" if entry["kind"] == "export" else "folded.params")
    old = {out: b"old params\n"}
    if entry["kind"] == "export":
        old[tmp_path / "folded-symbol.json"] = b"old symbol\n"
    for path, content in old.items():
        path.write_bytes(content)
    result = run_fold("--json", "--tolerance", "0", source, out)
    assert result.returncode == 1, result.stderr
    [r] = json.loads(result.stdout)["results"]
    assert r["status"] == "verification_failed" and "nothing written" in r["error"], r["error"]
    assert r["layers"] and all(layer["relative_error"] > 0 for layer in r["layers"])
    assert {path: path.read_bytes() for path in old} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in old)


# ---------------------------------------------------------------------------------------
# Export pairs


EXPORTS = [e for e in ENTRIES if e["kind"] == "export"]


def node_view(graph):
    """Nodes by content: (op, name, attrs, inputs as (name, output index))."""
    nodes = graph["nodes"]
    return [(n["op"], n["name"], n.get("attrs", {}), [(nodes[i[0]]["name"], i[1]) for i in n["inputs"]]) for n in nodes]


@pytest.mark.parametrize("entry", EXPORTS, ids=ids(EXPORTS))
def test_export_symbol_reads_the_weights(entry, fold):
    f = folded_ok(fold, entry)
    graph = load_graph(f.symbol)
    original = load_graph(MXNET / entry["symbol"])
    nodes = graph["nodes"]
    for k, node in enumerate(nodes):
        for i in node["inputs"]:
            assert 0 <= i[0] < k, f"{node['name']}: input {i} is not an earlier node"
    ops = [n["op"] for n in nodes]
    left = sorted(set(ops) & COMPOSITION_OPS)
    assert not left, f"kernel computation left in the symbol: {left}"
    d_vars = {bare(l["d"]) for l in entry["layers"]}
    assert not [n["name"] for n in nodes if n["name"] in d_vars or n["name"].endswith("_D")], "D variables left"
    by_weight = {bare(l["weight"]): l for l in entry["layers"]}
    convs = {}
    for node in nodes:
        if node["op"] == "Convolution":
            source = nodes[node["inputs"][1][0]]
            assert source["op"] == "null", f"{node['name']} reads its weight from a {source['op']} node"
            convs[source["name"]] = node
    assert set(by_weight) <= set(convs), f"DO layers whose Convolution does not read the weight: {set(by_weight) - set(convs)}"
    for name, layer in by_weight.items():
        attrs = convs[name]["attrs"]
        m, n = layer["kernel"]
        assert (attrs["kernel"], attrs["num_group"], attrs["num_filter"]) == (f"({m}, {n})", str(layer["groups"]),
                                                                              str(layer["out_channels"]))
    # The rest of the graph as it was: the reference rewrite (each Convolution reads its
    # weight variable, nodes nothing reads any more removed, order kept).
    want = mp.reference_fold_symbol(original, entry)
    assert node_view(graph) == node_view(want)
    assert graph["arg_nodes"] == [k for k, n in enumerate(nodes) if n["op"] == "null"]
    assert [nodes[h[0]]["name"] for h in graph["heads"]] == [original["nodes"][h[0]]["name"] for h in original["heads"]]
    if "node_row_ptr" in graph:
        assert graph["node_row_ptr"] == want["node_row_ptr"]
    assert graph.get("attrs") == original.get("attrs")
    # Every variable but data has its array in the params file, with the right prefix.
    stored = {r["name"] for r in dump(f.params)}
    variables = {n["name"] for n in nodes if n["op"] == "null"} - {"data"}
    assert {bare(s) for s in stored} == variables


@pytest.mark.parametrize("entry", EXPORTS, ids=ids(EXPORTS))
def test_export_pair_given_by_its_params_file(entry, fold):
    """doconv-fold NAME-0000.params OUT-0000.params finds the symbol and writes both, the
    same as when given the symbol."""
    by_params = folded_ok(fold, entry, "params")
    by_symbol = folded_ok(fold, entry, "symbol")
    assert by_params.params.read_bytes() == by_symbol.params.read_bytes()
    assert load_graph(by_params.symbol) == load_graph(by_symbol.symbol)
    written = sorted(p.name for p in by_params.params.parent.iterdir())
    assert written == ["folded-0000.params", "folded-symbol.json"], written


# ---------------------------------------------------------------------------------------
# doconv-inspect


def geometry(layer, with_conv_attrs):
    """What a file tells of a layer. A weights file stores no stride or dilation; an export
    pair's symbol does."""
    shape = (layer["kind"], layer["in_channels"], layer["out_channels"], tuple(layer["kernel"]), layer["groups"],
             layer["d_mul"])
    return shape + ((tuple(layer["stride"]), tuple(layer["dilation"])) if with_conv_attrs else ())


def layer_stem(name):
    """The layer's own name in a file: 0, features.3, basic_conv0 (weight name without
    arg:, .weight or _weight)."""
    name = bare(name)
    return re.sub(r"[._]weight$", "", name)


def inspect_source(entry):
    return MXNET / (entry["symbol"] if entry["kind"] == "export" else entry["file"])


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_inspect(entry):
    result = run_inspect(inspect_source(entry), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(report)
    assert report["format"] == "mxnet"
    assert report["rejected"] == []
    layers = report["layers"]
    assert len(layers) == len(entry["layers"]), [l["name"] for l in layers]
    assert len({l["name"] for l in layers}) == len(layers)
    blob, parsed = mp.load(MXNET / entry["file"])
    named = parsed.named()
    tolerance = 1e-4 if entry["dtype"] == "float32" else 2e-2
    for want in entry["layers"]:
        stem = layer_stem(want["weight"])
        found = [l for l in layers if l["name"] == stem or l["name"].endswith(stem)]
        assert len(found) == 1, (stem, [l["name"] for l in layers])
        got = found[0]
        export = entry["kind"] == "export"
        assert geometry(got, export) == geometry(want, export), got["name"]
        assert got["has_d"] is True and got["form"] == "kernel composition" and got["element_type"] == entry["dtype"]
        m, n = want["kernel"]
        mn, cin, cout, g = m * n, want["in_channels"], want["out_channels"], want["groups"]
        assert got["params_trained"] == mn * mn * cin + cout * (cin // g) * mn
        assert got["params_folded"] == cout * (cin // g) * mn
        # D's distance from the identity and the H map (paper, Fig. 6), from the stored arrays.
        W = named[want["weight"]].values(blob).astype(np.float64)
        D = named[want["d"]].values(blob).astype(np.float64)
        deviation = np.linalg.norm(D) / np.sqrt(mn * cin)
        assert got["d_deviation"] is not None and abs(got["d_deviation"] - deviation) <= tolerance * deviation, \
            (got["d_deviation"], deviation)
        h = np.abs(mp.compose(W, D, want) - mp.compose(W, np.zeros_like(D), want)).sum(axis=(0, 1))
        h_got = np.array(got["h_map"], np.float64)
        assert h_got.shape == h.shape and np.all(np.abs(h_got - h) <= tolerance * h.max()), (got["h_map"], h.tolist())
    assert report["totals"]["layers"] == len(entry["layers"])


@pytest.mark.parametrize("entry", EXPORTS, ids=ids(EXPORTS))
def test_inspect_pair_given_by_its_params_file(entry):
    by_symbol = run_inspect(MXNET / entry["symbol"], "--json")
    by_params = run_inspect(MXNET / entry["file"], "--json")
    assert by_symbol.returncode == 0 and by_params.returncode == 0, by_symbol.stderr + by_params.stderr
    a, b = json.loads(by_symbol.stdout), json.loads(by_params.stdout)
    assert a["format"] == b["format"] == "mxnet"
    assert a["layers"] == b["layers"] and a["totals"] == b["totals"]


# ---------------------------------------------------------------------------------------
# verify-equivalence


def verify_args(entry, f):
    if entry["kind"] == "export":
        return MXNET / entry["symbol"], f.symbol
    return MXNET / entry["file"], f.params


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_verify_accepts_the_fold(entry, fold):
    f = folded_ok(fold, entry)
    result = run_verify(*verify_args(entry, f))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("entry", ENTRIES, ids=ids(ENTRIES))
def test_verify_rejects_a_tampered_kernel(entry, fold, tmp_path):
    f = folded_ok(fold, entry)
    layer = entry["layers"][0]
    if entry["kind"] == "export":
        # A pair beside each other: tampered-symbol.json + tampered-0000.params.
        shutil.copyfile(f.symbol, tmp_path / "tampered-symbol.json")
        bad_params, bad = tmp_path / "tampered-0000.params", tmp_path / "tampered-symbol.json"
        shutil.copyfile(f.symbol, tmp_path / "rewritten-symbol.json")
        good_params, good = tmp_path / "rewritten-0000.params", tmp_path / "rewritten-symbol.json"
    else:
        bad_params = bad = tmp_path / ("tampered-" + entry["file"])
        good_params = good = tmp_path / ("rewritten-" + entry["file"])
    original = MXNET / (entry["symbol"] if entry["kind"] == "export" else entry["file"])
    # A copy rewritten by mx.nd.save without a change still verifies.
    oracle("tamper", f.params, good_params, "--no-change", layer["weight"])
    result = run_verify(original, good)
    assert result.returncode == 0, result.stdout + result.stderr
    report = oracle("tamper", f.params, bad_params, layer["weight"])
    assert report["before"] != report["after"]
    result = run_verify(original, bad)
    assert result.returncode == 1, result.stdout + result.stderr


def test_params_picks_among_several_params_files_for_all_three_tools(tmp_path):
    """An export pair with two params files (two epochs): each tool asks for --params, and
    with it folds, inspects and verifies (FOLDED's pair holds the params of that epoch)."""
    import shutil
    for name in ("basic-symbol.json", "basic-0000.params"):
        shutil.copyfile(MXNET / name, tmp_path / name)
    shutil.copyfile(MXNET / "basic-0000.params", tmp_path / "basic-0007.params")
    symbol, params = tmp_path / "basic-symbol.json", tmp_path / "basic-0007.params"
    out = tmp_path / "out"
    out.mkdir()
    folded = out / "plain-symbol.json"
    for result in (run_fold(symbol, folded), run_inspect(symbol), run_verify(symbol, symbol)):
        assert result.returncode == 2 and "--params" in result.stderr, result.stderr
    result = run_fold(symbol, folded, "--params", params)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["plain-0007.params", "plain-symbol.json"]
    assert run_inspect(symbol, "--params", params).returncode == 0
    shutil.copyfile(out / "plain-0007.params", out / "plain-0000.params")  # FOLDED's pair has several too
    verdict = run_verify(symbol, folded, "--params", params)
    assert verdict.returncode == 0 and "EQUIVALENT" in verdict.stdout, verdict.stdout + verdict.stderr
