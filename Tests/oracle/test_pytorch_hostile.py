"""Bad PyTorch checkpoints and safetensors files, with the strict contract of
test_hostile_inputs.py: doconv-fold, doconv-inspect and verify-equivalence (the file
against itself) must each exit 2 with exactly one stderr line that names the input file
and contains the case's key phrase, write no output and no stray file, leave the input
byte for byte as it was, stay under the memory bound, and leave TMPDIR (conftest's
clean_tmpdir: a fresh empty folder per test) empty after each run.

Every bad file is made here in tmp_path, from the committed fixtures/torch files or from
hand-made pickle bytes and zips (torch_checkpoint.write_torch_zip lays them out as
torch.save does); test_hand_made_checkpoint_folds is the control that shows the hand-made
files are valid until a case breaks them."""
import json
import pathlib
import struct

import numpy as np
import pytest

import hostile_contract

import torch_checkpoint as tc
from conftest import FIXTURES
from test_hostile_inputs import fold, inspect, verify

TORCH = FIXTURES / "torch"

# The phrase (case-insensitive, literal) each case's error line must contain.
PHRASES = {
    "truncated_zip": "corrupt",
    "missing_storage": "missing",
    "storage_past_end": "past the end of its storage",
    "unknown_opcode": "unknown pickle opcode",
    "deep_nesting": "nested deeper than",
    "huge_memo": "memo",
    "disallowed_global": "--strict-pickle",
    "d_disagrees": "disagree",
    "safetensors_header": "header",
    "safetensors_data_offsets": "data_offsets",
    "legacy_truncated": "truncated",
    "empty": "empty",
    "foreign_zip": "not a",
}


# ---------------------------------------------------------------------------------------
# The contract


def check_all_tools(src, case, tmpdir, folders, extra=()):
    """fold, inspect and verify (src against itself) must all reject src (hostile_contract.py)."""
    src = pathlib.Path(src)
    output = src.parent / ("out" + "".join(src.suffixes[-1:]))
    hostile_contract.check_all_tools(src, PHRASES[case], tmpdir, folders, [output], extra=extra)


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


def reject(src, case, tmpdir, work, extra=()):
    check_all_tools(src, case, tmpdir, [work], extra)


# ---------------------------------------------------------------------------------------
# Hand-made pickles (protocol 2, the opcodes torch.save writes)


PROTO = b"\x80\x02"
MARK, STOP, TUPLE, EMPTY_TUPLE, REDUCE = b"(", b".", b"t", b")", b"R"
BINPERSID, NEWFALSE, SETITEMS, EMPTY_LIST, APPEND = b"Q", b"\x89", b"u", b"]", b"a"


def unicode(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value):
    """BININT, or LONG1 for values outside int32 (as pickle writes them)."""
    if -2**31 <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def global_(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ints(values):
    return MARK + b"".join(integer(v) for v in values) + TUPLE


def tensor(key, numel, size, stride=None, offset=0, storage_class="FloatStorage"):
    """_rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), offset, size, stride, False, OrderedDict())."""
    if stride is None:
        stride = [int(np.prod(size[k + 1:], dtype=np.int64)) for k in range(len(size))]
    pid = MARK + unicode("storage") + global_("torch", storage_class) + unicode(key) + unicode("cpu") + integer(numel) + TUPLE
    return (global_("torch._utils", "_rebuild_tensor_v2") + MARK + pid + BINPERSID + integer(offset) + ints(size)
            + ints(stride) + NEWFALSE + global_("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)


def state_dict_pickle(items):
    """An OrderedDict of key -> tensor opcodes."""
    body = b"".join(unicode(key) + ops for key, ops in items)
    return PROTO + global_("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MARK + body + SETITEMS + STOP


def do_layer(cin=4, cout=6, mn=9, d_mul=9, d_cin=None, seed=0):
    """A one-layer DO-Conv state dict: (pickle items, storages), storage keys 0..3."""
    rng = np.random.default_rng(seed)
    d_cin = cin if d_cin is None else d_cin
    s = np.arange(d_mul)
    identity = ((s < mn * (d_mul // mn)) & (s % mn == np.arange(mn)[:, None])).astype(np.float32)
    arrays = {
        "conv.W": rng.standard_normal((cout, cin, d_mul)).astype(np.float32) * 0.3,
        "conv.D": rng.standard_normal((d_cin, mn, d_mul)).astype(np.float32) * 0.3,
        "conv.d_diag": np.tile(identity, (d_cin, 1, 1)),
        "conv.bias": rng.standard_normal(cout).astype(np.float32) * 0.1,
    }
    items, storages = [], {}
    for k, (name, array) in enumerate(arrays.items()):
        items.append((name, tensor(str(k), array.size, list(array.shape))))
        storages[str(k)] = array.tobytes()
    return items, storages


def hand_made(work, items=None, storages=None, data_pkl=None, name="model.pth"):
    if items is None and data_pkl is None:
        items, layer_storages = do_layer()
        storages = layer_storages if storages is None else storages
    pkl = data_pkl if data_pkl is not None else state_dict_pickle(items)
    return tc.write_torch_zip(work / name, pathlib.Path(name).stem, pkl, storages or {})


def test_hand_made_checkpoint_folds(work, clean_tmpdir):
    """The control: the hand-made file is a valid checkpoint, read alike by the oracle
    reader and doconv."""
    src = hand_made(work)
    ckpt = tc.load(src)
    assert list(ckpt.obj) == ["conv.W", "conv.D", "conv.d_diag", "conv.bias"]
    out = work / "folded.pth"
    result = fold(src, out, env={"TMPDIR": str(clean_tmpdir)})
    assert result.status == 0, result
    assert list(tc.load(out).obj) == ["conv.weight", "conv.bias"]
    assert list(clean_tmpdir.iterdir()) == []


# ---------------------------------------------------------------------------------------
# Containers


def test_truncated_zip(work, clean_tmpdir):
    data = (TORCH / "plain_sd.pth").read_bytes()
    src = work / "truncated.pth"
    src.write_bytes(data[: len(data) * 3 // 5])
    reject(src, "truncated_zip", clean_tmpdir, work)


def test_empty_file(work, clean_tmpdir):
    src = work / "empty.pth"
    src.write_bytes(b"")
    reject(src, "empty", clean_tmpdir, work)


def test_empty_safetensors_file(work, clean_tmpdir):
    src = work / "empty.safetensors"
    src.write_bytes(b"")
    reject(src, "empty", clean_tmpdir, work)


def test_zip_that_is_not_a_checkpoint(work, clean_tmpdir):
    src = work / "notes.pth"
    tc.write_zip(src, [("notes/readme.txt", b"These are notes, not a model.\n")])
    reject(src, "foreign_zip", clean_tmpdir, work)


def test_legacy_file_truncated_in_the_storage_data(work, clean_tmpdir):
    data = (TORCH / "legacy_sd.pth").read_bytes()
    ckpt = tc.load(TORCH / "legacy_sd.pth")
    first_storage = min(s.source for s in ckpt.storages.values())
    cut = len(data) - 100
    assert cut > first_storage, "the cut must fall in the storage data"
    src = work / "legacy.pth"
    src.write_bytes(data[:cut])
    reject(src, "legacy_truncated", clean_tmpdir, work)


# ---------------------------------------------------------------------------------------
# Storages and tensors


def test_pickle_names_a_missing_storage(work, clean_tmpdir):
    items, storages = do_layer()
    del storages["1"]
    reject(hand_made(work, items, storages), "missing_storage", clean_tmpdir, work)


def test_committed_checkpoint_without_a_storage_record(work, clean_tmpdir):
    src = TORCH / "plain_sd.pth"
    root = tc.load(src).root
    reject(tc.rewrite_zip(src, work / "plain_sd.pth", drop={f"{root}/data/3"}), "missing_storage", clean_tmpdir, work)


@pytest.mark.parametrize("variant", ["offset", "size", "stride", "huge-size"])
def test_tensor_past_the_end_of_its_storage(work, clean_tmpdir, variant):
    items, storages = do_layer()
    numel = 6 * 4 * 9
    size, stride, offset = [6, 4, 9], None, 0
    if variant == "offset":
        offset = 10
    elif variant == "size":
        size = [7, 4, 9]
    elif variant == "stride":
        stride = [37, 9, 1]
    else:
        size = [2**40, 4, 9]
    items[0] = ("conv.W", tensor("0", numel, size, stride, offset))
    reject(hand_made(work, items, storages), "storage_past_end", clean_tmpdir, work)


def test_d_shape_disagrees_with_w(work, clean_tmpdir):
    # D and its identity say Cin = 5, W says Cin = 4.
    items, storages = do_layer(d_cin=5)
    reject(hand_made(work, items, storages), "d_disagrees", clean_tmpdir, work)


# ---------------------------------------------------------------------------------------
# Pickles


def test_unknown_pickle_opcode(work, clean_tmpdir):
    items, storages = do_layer()
    pkl = state_dict_pickle(items)
    bad = pkl[:2] + b"\xff" + pkl[2:]
    reject(hand_made(work, storages=storages, data_pkl=bad), "unknown_opcode", clean_tmpdir, work)


@pytest.mark.parametrize("shape", ["lists", "marks"])
def test_deep_nesting(work, clean_tmpdir, shape):
    depth = 100_000
    if shape == "lists":  # [[[...]]]: 100k EMPTY_LIST, then 99,999 APPEND
        body = EMPTY_LIST * depth + APPEND * (depth - 1)
    else:  # ((((...)))): 100k MARK, then 100k TUPLE
        body = MARK * depth + TUPLE * depth
    reject(hand_made(work, data_pkl=PROTO + body + STOP, storages={}), "deep_nesting", clean_tmpdir, work)


def test_huge_memo_index(work, clean_tmpdir):
    pkl = PROTO + b"j" + struct.pack("<I", 0xFFFFFFF0) + STOP  # LONG_BINGET
    reject(hand_made(work, data_pkl=pkl, storages={}), "huge_memo", clean_tmpdir, work)


@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "exec"), ("__builtin__", "eval")])
def test_disallowed_global_with_strict_pickle(work, clean_tmpdir, module, name):
    pkl = PROTO + global_(module, name) + MARK + unicode("touch /tmp/doconv-pwned") + TUPLE + REDUCE + STOP
    reject(hand_made(work, data_pkl=pkl, storages={}), "disallowed_global", clean_tmpdir, work, ["--strict-pickle"])
    assert not pathlib.Path("/tmp/doconv-pwned").exists()


def test_disallowed_global_inside_a_state_dict_with_strict_pickle(work, clean_tmpdir):
    items, storages = do_layer()
    items.insert(1, ("conv.hook", global_("os", "system") + MARK + unicode("true") + TUPLE + REDUCE))
    reject(hand_made(work, items, storages), "disallowed_global", clean_tmpdir, work, ["--strict-pickle"])


@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "exec")])
def test_foreign_global_is_carried_never_run(work, clean_tmpdir, module, name):
    """Without --strict-pickle a global outside the allowlist is carried: the layer folds, the
    call is written back as it was (the recording oracle reads the same call in both files),
    the summary names it, and nothing ran."""
    marker = work / "pwned"
    items, storages = do_layer()
    items.insert(1, ("conv.hook", global_(module, name) + MARK + unicode(f"touch {marker}") + TUPLE + REDUCE))
    src = hand_made(work, items, storages)
    out = work / "out.pth"
    result = fold(src, out, env={"TMPDIR": str(clean_tmpdir)})
    assert result.status == 0, result
    assert f"{module}.{name}" in result.stdout and "weights_only=False" in result.stdout, result.stdout
    before, after = tc.load(src, permissive=True), tc.load(out, permissive=True)
    assert before.carried == after.carried == {f"{module}.{name}"}
    hook_in, hook_out = before.obj["conv.hook"], after.obj["conv.hook"]
    assert hook_in.global_name == hook_out.global_name == f"{module}.{name}"
    assert hook_out.made == hook_in.made == ("call", (f"touch {marker}",), {})
    assert "conv.weight" in after.obj and "conv.D" not in after.obj
    assert verify(src, out, env={"TMPDIR": str(clean_tmpdir)}).status == 0
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# safetensors


def safetensors_bytes(entries, metadata, data):
    header = dict(entries)
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    blob = json_bytes(header)
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob + data


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def committed_safetensors():
    path = TORCH / "model.safetensors"
    entries, metadata, start = tc.safetensors_header(path)
    return entries, metadata, path.read_bytes()[start:]


def test_safetensors_rewritten_is_valid(work, clean_tmpdir):
    """The control for the cases below: the same file re-made by safetensors_bytes folds."""
    entries, metadata, data = committed_safetensors()
    src = work / "model.safetensors"
    src.write_bytes(safetensors_bytes(entries, metadata, data))
    result = fold(src, work / "folded.safetensors", env={"TMPDIR": str(clean_tmpdir)})
    assert result.status == 0, result


@pytest.mark.parametrize("length", ["past-the-file", "huge"])
def test_safetensors_header_length_past_the_file(work, clean_tmpdir, length):
    data = bytearray((TORCH / "model.safetensors").read_bytes())
    data[:8] = struct.pack("<Q", len(data) + 100 if length == "past-the-file" else 2**63 - 8)
    src = work / "model.safetensors"
    src.write_bytes(bytes(data))
    reject(src, "safetensors_header", clean_tmpdir, work)


def test_safetensors_data_offsets_past_the_data(work, clean_tmpdir):
    entries, metadata, data = committed_safetensors()
    name, entry = next((n, e) for n, e in entries if n.endswith(".W"))
    begin, end = entry["data_offsets"]
    entry["data_offsets"] = [len(data) - (end - begin) + 256, len(data) + 256]  # the right length, past the end
    src = work / "model.safetensors"
    src.write_bytes(safetensors_bytes(entries, metadata, data))
    reject(src, "safetensors_data_offsets", clean_tmpdir, work)


# ---------------------------------------------------------------------------------------
# Carried objects (globals outside the allowlist, read without --strict-pickle) stay bounded


NEWOBJ, BUILD = b"\x81", b"b"


def test_carried_objects_nested_deep(work, clean_tmpdir):
    """100k objects, each cls.__new__(cls) whose BUILD state is the next one."""
    depth = 100_000
    body = (global_("m", "C") + EMPTY_TUPLE + NEWOBJ) * depth + BUILD * (depth - 1)
    reject(hand_made(work, data_pkl=PROTO + body + STOP, storages={}), "deep_nesting", clean_tmpdir, work)


def test_huge_memo_index_inside_a_carried_object(work, clean_tmpdir):
    pkl = PROTO + global_("m", "C") + EMPTY_TUPLE + NEWOBJ + b"j" + struct.pack("<I", 0xFFFFFFF0) + BUILD + STOP
    reject(hand_made(work, data_pkl=pkl, storages={}), "huge_memo", clean_tmpdir, work)


def test_carried_object_holding_itself(work, clean_tmpdir):
    """An object whose state is a list holding the object (a cycle through the memo)."""
    pkl = PROTO + global_("m", "C") + EMPTY_TUPLE + NEWOBJ + b"q\x00" + EMPTY_LIST + b"h\x00" + APPEND + BUILD + STOP
    PHRASES.setdefault("cycle", "cycle")
    reject(hand_made(work, data_pkl=pkl, storages={}), "cycle", clean_tmpdir, work)


# ---------------------------------------------------------------------------------------
# Sizes that would overflow: an error line, never a trap


PHRASES.update({"empty_view_offset": "past the end of its storage", "kernel_side": "not a kernel size", "kernel_area": "does not give"})


def test_empty_tensor_with_a_huge_storage_offset(work, clean_tmpdir):
    """A zero-element tensor whose storage_offset is 2^62: its view reads nothing, but a
    reader that slices the storage from the offset would trap."""
    items, storages = do_layer()
    items.append(("empty", tensor("9", 0, [0], offset=2**62)))
    storages["9"] = b""
    reject(hand_made(work, items, storages), "empty_view_offset", clean_tmpdir, work)


@pytest.mark.parametrize("size, case", [("4294967296x4294967296", "kernel_side"), ("65536x65536", "kernel_area")])
def test_kernel_size_that_overflows(work, clean_tmpdir, size, case):
    src = hand_made(work)
    out = work / "out.pth"
    for tool, run_it in (("fold", lambda: fold(src, out, "--kernel-size", f"conv={size}", env={"TMPDIR": str(clean_tmpdir)})),
                         ("inspect", lambda: inspect(src, "--kernel-size", f"conv={size}", env={"TMPDIR": str(clean_tmpdir)})),
                         ("verify", lambda: verify(src, src, "--kernel-size", f"conv={size}", env={"TMPDIR": str(clean_tmpdir)}))):
        result = run_it()
        assert result.status == 2, f"{tool}: {result!r}"
        assert PHRASES[case] in result.stderr.splitlines()[0], f"{tool}: {result.stderr}"
        assert not out.exists()
