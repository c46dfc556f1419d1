"""Bad MXNet files (`.params` NDArray lists and export() symbol JSON), with the strict
contract of test_hostile_inputs.py: doconv-fold, doconv-inspect and verify-equivalence
(the file against itself) must each exit 2 with exactly one stderr line that names the bad
file and contains the case's key phrase, write no output (neither half of an output pair)
and no stray file, leave the input byte for byte as it was, stay under the memory bound,
and leave TMPDIR (conftest's clean_tmpdir: a fresh empty folder per test) empty.

Every bad file is made here in tmp_path from the committed fixtures/mxnet files, edited at
the byte level with mxnet_params.py (no MXNet needed; its layout and writer are checked
against MXNet's own files by fixtures/make_mxnet_fixtures.py). The controls at the top show
that the files are valid until a case breaks them."""
import json
import pathlib
import shutil
import struct

import pytest

import hostile_contract
import mxnet_params as mp
from conftest import FIXTURES
from test_hostile_inputs import fold
from test_pytorch_hostile import work  # noqa: F401  (the fixture: a fresh input folder)

MXNET = FIXTURES / "mxnet"
PARAMS = MXNET / "basic.params"            # save_parameters names, 2 DO layers
PAIR = ("basic-symbol.json", "basic-0000.params")

# The phrase (case-insensitive, literal) each case's error line must contain.
PHRASES = {
    "truncated": "truncated",
    "count_past_end": "past the end",
    "name_count": "names",
    "magic": "magic",
    "sparse": "sparse",
    "json": "JSON",
    "missing_node": "node",
    "duplicate_name": "appears twice",
}


# ---------------------------------------------------------------------------------------
# The contract


def output_for(src):
    """Where each tool would write: out.params beside a .params file, out-symbol.json (and
    so out-0000.params) beside a symbol."""
    src = pathlib.Path(src)
    return src.parent / ("out-symbol.json" if src.name.endswith("-symbol.json") else "out.params")


def check_all_tools(src, case, tmpdir, folders, named=None):
    """fold, inspect and verify (src against itself) must all reject src (hostile_contract.py);
    neither half of an output pair may be written."""
    output = output_for(src)
    outputs = [output, output.parent / "out-0000.params", output.parent / "out-symbol.json"]
    hostile_contract.check_all_tools(src, PHRASES[case], tmpdir, folders, outputs, named=named)


def reject(src, case, tmpdir, work, named=None):
    check_all_tools(src, case, tmpdir, [work], named)


# ---------------------------------------------------------------------------------------
# Making the files


def params_parts():
    """(blob, ParamsFile) of the committed basic.params."""
    return mp.load(PARAMS)


def write_params(work, data, name="basic.params"):
    path = work / name
    path.write_bytes(bytes(data))
    return path


def rebuilt(records=None, names=None):
    """basic.params rebuilt from its raw records and names, with some replaced."""
    blob, parsed = params_parts()
    raw = [r.raw(blob) for r in parsed.records] if records is None else records
    return mp.list_bytes(raw, parsed.names if names is None else names)


def copy_pair(work):
    for name in PAIR:
        shutil.copyfile(MXNET / name, work / name)
    return work / PAIR[0], work / PAIR[1]


# ---------------------------------------------------------------------------------------
# Controls: the unbroken files fold


def test_committed_params_file_folds(work, clean_tmpdir):
    src = write_params(work, PARAMS.read_bytes())
    result = fold(src, work / "folded.params", env={"TMPDIR": str(clean_tmpdir)})
    assert result.status == 0, result
    assert (work / "folded.params").exists()


def test_rebuilt_params_file_is_the_committed_one():
    """The byte-level tools used below start from the exact file MXNet wrote."""
    assert rebuilt() == PARAMS.read_bytes()


def test_committed_pair_folds(work, clean_tmpdir):
    symbol, _ = copy_pair(work)
    result = fold(symbol, work / "out-symbol.json", env={"TMPDIR": str(clean_tmpdir)})
    assert result.status == 0, result
    assert (work / "out-symbol.json").exists() and (work / "out-0000.params").exists()


# ---------------------------------------------------------------------------------------
# .params files


@pytest.mark.parametrize("where", ["data", "header", "names"])
def test_truncated(work, clean_tmpdir, where):
    blob, parsed = params_parts()
    d = next(r for r in parsed.records if r.name == "3.D")
    cut = {"data": d.data_at + (d.end - d.data_at) // 2,  # in the middle of a D's data
           "header": d.shape_at + 6,                       # in the middle of its shape
           "names": parsed.names_at + 20}[where]           # in the middle of the names
    reject(write_params(work, blob[:cut]), "truncated", clean_tmpdir, work)


@pytest.mark.parametrize("count", [10**6, 2**62], ids=["million", "huge"])
def test_array_count_past_the_end(work, clean_tmpdir, count):
    data = bytearray(PARAMS.read_bytes())
    data[16:24] = struct.pack("<Q", count)
    reject(write_params(work, data), "count_past_end", clean_tmpdir, work)


@pytest.mark.parametrize("change", ["fewer", "more"])
def test_name_count_disagrees_with_array_count(work, clean_tmpdir, change):
    _, parsed = params_parts()
    names = parsed.names[:-1] if change == "fewer" else parsed.names + ["extra.weight"]
    reject(write_params(work, rebuilt(names=names)), "name_count", clean_tmpdir, work)


@pytest.mark.parametrize("which", ["weight", "D"])
def test_duplicated_array_name(work, clean_tmpdir, which):
    """Two arrays of one name: the fold finds and replaces arrays by name, so it would write
    a corrupt file (a name list that no longer matches the arrays); refused instead."""
    _, parsed = params_parts()
    names = list(parsed.names)
    target = next(k for k, n in enumerate(names) if n.endswith(which))
    other = next(k for k, n in enumerate(names) if k != target and not n.endswith(("weight", "D")))
    names[other] = names[target]
    reject(write_params(work, rebuilt(names=names)), "duplicate_name", clean_tmpdir, work)


@pytest.mark.parametrize("magic", [0xF993FACB, 0xDEADBEEF], ids=lambda m: f"{m:#x}")
def test_unknown_array_magic(work, clean_tmpdir, magic):
    blob, parsed = params_parts()
    data = bytearray(blob)
    second = parsed.records[1]
    data[second.start:second.start + 4] = struct.pack("<I", magic)
    reject(write_params(work, data), "magic", clean_tmpdir, work)


@pytest.mark.parametrize("target", ["8.weight", "0.D"])
def test_sparse_storage_type(work, clean_tmpdir, target):
    """A row_sparse array (as mx.nd.save writes one) in place of a dense one: a plain
    array (the Dense weight) or a DO layer's D."""
    blob, parsed = params_parts()
    records = []
    for r in parsed.records:
        if r.name == target:
            values = r.values(blob)
            rows = [0, values.shape[0] - 1]
            records.append(mp.row_sparse_bytes(values[rows], rows, values.shape))
        else:
            records.append(r.raw(blob))
    reject(write_params(work, rebuilt(records=records)), "sparse", clean_tmpdir, work)


def test_truncated_params_of_a_pair(work, clean_tmpdir):
    """Given the symbol, the bad file is the pair's params file: the line names it."""
    symbol, params = copy_pair(work)
    data = params.read_bytes()
    params.write_bytes(data[: len(data) // 2])
    reject(symbol, "truncated", clean_tmpdir, work, named=params)


# ---------------------------------------------------------------------------------------
# Symbol JSON


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_symbol_json_does_not_parse(work, clean_tmpdir, damage):
    symbol, _ = copy_pair(work)
    text = symbol.read_text()
    symbol.write_text(text[: len(text) // 2] if damage == "cut" else "this is { not JSON\n")
    reject(symbol, "json", clean_tmpdir, work)


@pytest.mark.parametrize("index", ["past", "negative"])
def test_symbol_node_input_references_a_missing_node(work, clean_tmpdir, index):
    symbol, _ = copy_pair(work)
    graph = json.loads(symbol.read_text())
    nodes = graph["nodes"]
    conv = next(n for n in nodes if n["op"] == "Convolution")
    conv["inputs"][0][0] = len(nodes) + 7 if index == "past" else -1
    symbol.write_text(json.dumps(graph, indent=2))
    reject(symbol, "missing_node", clean_tmpdir, work)
