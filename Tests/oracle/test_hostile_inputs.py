"""Issue 7, items 1 and 2: every kind of bad input, one test each, with a strict contract.

For each case doconv-fold (and, where it reads the same file, doconv-inspect and
verify-equivalence) must:
- exit with status 2,
- print exactly one line on stderr, naming the input file (or, for output-folder cases,
  the output path) and the problem (a key phrase is asserted),
- write no output file and leave no stray file (temporary or otherwise) in the folder,
- leave the input and any external data file byte for byte as they were,
- stay within a fixed memory bound (the child's peak RSS from wait4), however large the
  sizes the file claims.

Every file is generated here in tmp_path from onnx.helper models or the committed Keras
fixtures (small), so nothing large is committed.
"""
import os
import stat
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import FIXTURES, ROOT, fold_binary, tool_binary
from synthetic import do_conv_model

# Every test here also checks that the tools leave TMPDIR empty.
pytestmark = pytest.mark.usefixtures("clean_tmpdir")

# Peak RSS allowed for any bad input (the tools themselves need about 15-40 MB).
MEMORY_LIMIT_KB = 200 * 1024
TIMEOUT_S = 60
KERAS = FIXTURES / "keras_h5"


# ---------------------------------------------------------------------------------------
# Running the tools


class Run:
    def __init__(self, status, stdout, stderr, maxrss_kb):
        self.status, self.stdout, self.stderr, self.maxrss_kb = status, stdout, stderr, maxrss_kb

    def __repr__(self):
        return f"status {self.status}, peak {self.maxrss_kb} KB\nstdout: {self.stdout[-800:]}\nstderr: {self.stderr[-800:]}"


# Runs the tool from a small fresh interpreter and reports its status and peak RSS (wait4)
# on the file descriptor given as its first argument. Linux carries a process's peak RSS across exec, so a tool forked straight from
# this (large) pytest process would report pytest's own peak; forked from the launcher it
# reports its own.
LAUNCHER = r"""
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    try:
        os.close(report)
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report, b"%d %d" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss))
"""


def run(binary, *args, cwd=None, env=None):
    """Runs `binary args...` and returns its status, output and peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        report_read, report_write = os.pipe()
        try:
            launcher = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(report_write), str(binary), *map(str, args)],
                                        stdout=out, stderr=err, cwd=cwd, env={**os.environ, **(env or {})},
                                        pass_fds=(report_write,), start_new_session=True)
        finally:
            os.close(report_write)
        try:
            launcher.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            pytest.fail(f"{binary.name} {args} did not finish in {TIMEOUT_S} s")
        finally:
            with os.fdopen(report_read, "rb") as pipe:
                report = pipe.read().decode()
        status, maxrss = map(int, report.split())
        out.seek(0)
        err.seek(0)
        return Run(status, out.read().decode(errors="replace"), err.read().decode(errors="replace"), maxrss)


def fold(*args, **kw):
    return run(fold_binary(), *args, **kw)


def inspect(*args, **kw):
    return run(tool_binary("DOCONV_INSPECT", "doconv-inspect"), *args, **kw)


def verify(*args, **kw):
    return run(tool_binary("DOCONV_VERIFY", "verify-equivalence"), *args, **kw)


def snapshot(*folders):
    """Every file under the folders, with its bytes (symlinks as their targets' text)."""
    state = {}
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("*")):
            if path.is_symlink():
                state[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                state[str(path)] = path.read_bytes()
            else:
                state[str(path)] = "dir"
    return state


def assert_rejected(result, names, phrase, before, folders, output=None):
    """The contract: status 2, one stderr line naming `names` with `phrase`, nothing
    written, nothing changed, memory bounded."""
    assert result.status == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result
    for name in names:
        assert str(name) in lines[0], f"{name} not named: {lines[0]}"
    assert re.search(phrase, lines[0], re.IGNORECASE), f"/{phrase}/ not in: {lines[0]}"
    if output is not None:  # (a fold onto its own input is covered by the snapshot)
        assert not pathlib.Path(output).exists(), f"{output} was written"
    assert snapshot(*folders) == before, "files were added, removed or changed"
    assert result.maxrss_kb < MEMORY_LIMIT_KB, f"peak RSS {result.maxrss_kb} KB"


def check_fold(src, phrase, *extra_args, folders=None, output=None, names=None, env=None):
    """doconv-fold SRC OUTPUT must reject SRC (OUTPUT beside it by default)."""
    src = pathlib.Path(src)
    folders = folders or [src.parent]
    output = output or src.parent / ("out" + "".join(src.suffixes[-2:] if src.name.endswith(".weights.h5") else src.suffixes[-1:]))
    before = snapshot(*folders)
    result = fold(src, output, *extra_args, env=env)
    assert_rejected(result, names or [src], phrase, before, folders, None if pathlib.Path(output) == src else output)
    return result


def check_inspect(src, phrase, *extra_args, folders=None):
    src = pathlib.Path(src)
    folders = folders or [src.parent]
    before = snapshot(*folders)
    assert_rejected(inspect(src, *extra_args), [src], phrase, before, folders)


def check_verify(src, phrase, folded=None, folders=None):
    """verify-equivalence SRC FOLDED with a bad ORIGINAL (FOLDED a valid model)."""
    src = pathlib.Path(src)
    folders = folders or [src.parent]
    if folded is None:
        folded = FIXTURES / "plain_cnn.onnx"
    before = snapshot(*folders)
    assert_rejected(verify(src, folded), [src], phrase, before, folders)


# ---------------------------------------------------------------------------------------
# Building ONNX inputs


def save(folder, model, name="model.onnx"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def tensor(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def node(model, op, output=None):
    return next(n for n in model.graph.node if n.op_type == op and (output is None or n.output[0] == output))


def externalize(model, folder, name, location="weights.bin", data=None, offset=0, length=None):
    """Moves initializer `name`'s bytes into `folder/location` (or points it at
    `location` with the given offset/length and writes `data` there when given)."""
    t = tensor(model, name)
    raw = t.raw_data
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset), "length": str(len(raw) if length is None else length)}
    for key, value in entries.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    if data is not False:
        target = folder / location
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw if data is None else data)
    return raw


@pytest.fixture
def work(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------------------------------
# Files that are not models


def test_empty_file(work):
    src = work / "empty.onnx"
    src.write_bytes(b"")
    check_fold(src, "empty")
    check_inspect(src, "empty")
    check_verify(src, "empty")
    # A bad FOLDED model is named just the same.
    before = snapshot(work)
    assert_rejected(verify(FIXTURES / "g1_basic.ts.onnx", src), [src], "empty", before, [work])


def test_random_bytes(work):
    src = work / "random.onnx"
    src.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    check_fold(src, "not an ONNX model")


def test_truncated_model(work):
    data = (FIXTURES / "g1_basic.ts.onnx").read_bytes()
    src = work / "truncated.onnx"
    src.write_bytes(data[: len(data) * 2 // 3])
    check_fold(src, "not an ONNX model|truncated")
    check_inspect(src, "not an ONNX model|truncated")
    check_verify(src, "not an ONNX model|truncated")


def test_text_file(work):
    src = work / "notes.onnx"
    src.write_text("This is a text file, not a model.\nir_version: 8\n")
    check_fold(src, "not an ONNX model")


# ---------------------------------------------------------------------------------------
# Tensors whose data does not fit their dims


@pytest.mark.parametrize("delta", [-4, 4], ids=["shorter", "longer"])
def test_raw_data_length_disagrees_with_dims(work, delta):
    model, _ = do_conv_model()
    w = tensor(model, "conv.W")
    w.raw_data = w.raw_data[:delta] if delta < 0 else w.raw_data + b"\0" * delta
    src = save(work, model)
    check_fold(src, r"conv\.W.*data bytes")


def test_raw_data_short_in_a_tensor_the_fold_does_not_read(work):
    # A plain initializer (a Conv bias): the model is just as broken.
    model, _ = do_conv_model()
    node(model, "Conv").input.append("conv.bias")
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(6, np.float32), "conv.bias"))
    bias = tensor(model, "conv.bias")
    bias.raw_data = bias.raw_data[:-8]
    check_fold(save(work, model), r"conv\.bias.*data bytes")


@pytest.mark.parametrize("dims", [[2**40, 2**30, 9], [2**62, 4, 9], [-6, 4, 9], [6, -1, 9]],
                         ids=["overflow", "overflow64", "negative", "minus-one"])
def test_dims_that_overflow_or_are_negative(work, dims):
    model, _ = do_conv_model()
    w = tensor(model, "conv.W")
    del w.dims[:]
    w.dims.extend(dims)
    src = save(work, model)
    check_fold(src, r"conv\.W.*invalid dims")
    if dims[0] == 2**40:
        check_inspect(src, r"conv\.W.*invalid dims")
        check_verify(src, r"conv\.W.*invalid dims")


def test_lying_dims_with_typed_field(work):
    # float_data holds 216 values, the dims claim 2^33: the count is what the file holds.
    model, _ = do_conv_model(typed_fields=True)
    w = tensor(model, "conv.W")
    del w.dims[:]
    w.dims.extend([2**31, 4, 1])
    check_fold(save(work, model), r"conv\.W.*(holds|values)")


@pytest.mark.parametrize("field", ["int32_data", "int64_data", "string_data", "double_data"])
def test_float_data_in_the_wrong_typed_field(work, field):
    model, _ = do_conv_model()
    w = tensor(model, "conv.W")
    values = numpy_helper.to_array(w).flatten()
    w.ClearField("raw_data")
    if field == "string_data":
        w.string_data.extend(str(v).encode() for v in values)
    elif field == "double_data":
        w.double_data.extend(float(v) for v in values)
    else:
        getattr(w, field).extend(int(v * 1000) for v in values)
    check_fold(save(work, model), rf"conv\.W.*{field}")


def test_both_raw_data_and_float_data(work):
    model, _ = do_conv_model()
    w = tensor(model, "conv.W")
    w.float_data.extend(numpy_helper.to_array(w).flatten().tolist())
    check_fold(save(work, model), r"conv\.W.*both raw_data and float_data")


def test_typed_field_count_disagrees_with_dims(work):
    model, _ = do_conv_model(typed_fields=True)
    w = tensor(model, "conv.W")
    del w.float_data[-3:]
    check_fold(save(work, model), r"conv\.W.*holds 213 values")


# ---------------------------------------------------------------------------------------
# External data


def external_model(work, location="weights.bin", **kw):
    model, _ = do_conv_model()
    externalize(model, work, "conv.W", location=location, **kw)
    return model


def test_external_data_with_dot_dot(tmp_path, work):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    model = external_model(work, location="../secret.bin", data=False)
    src = save(work, model)
    check_fold(src, "leaves the model's folder", folders=[tmp_path])
    check_inspect(src, "leaves the model's folder", folders=[tmp_path])
    check_verify(src, "leaves the model's folder", folders=[tmp_path])


def test_external_data_with_an_absolute_path(tmp_path, work):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    src = save(work, external_model(work, location=str(secret), data=False))
    check_fold(src, "not a relative path", folders=[tmp_path])


def test_external_data_through_a_symlinked_file(tmp_path, work):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    (work / "weights.bin").symlink_to(secret)
    src = save(work, external_model(work, data=False))
    check_fold(src, "outside the model's folder", folders=[tmp_path])
    check_inspect(src, "outside the model's folder", folders=[tmp_path])


def test_external_data_through_a_symlinked_folder(tmp_path, work):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"\0" * 4096)
    (work / "sub").symlink_to(outside)
    src = save(work, external_model(work, location="sub/w.bin", data=False))
    check_fold(src, "outside the model's folder", folders=[tmp_path])


def test_external_data_escape_in_a_tensor_the_fold_does_not_read(tmp_path, work):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    model, _ = do_conv_model()
    node(model, "Conv").input.append("conv.bias")
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(6, np.float32), "conv.bias"))
    externalize(model, work, "conv.bias", location="../secret.bin", data=False)
    check_fold(save(work, model), "leaves the model's folder", folders=[tmp_path])


def test_external_data_file_missing(work):
    src = save(work, external_model(work, location="gone.bin", data=False))
    check_fold(src, "does not exist")


@pytest.mark.parametrize("offset,length", [(10_000, None), (0, 4096), (64, 2**62), (2**62, 16)],
                         ids=["offset-beyond", "length-beyond", "huge-length", "huge-offset"])
def test_external_data_offset_or_length_beyond_the_file(work, offset, length):
    model, _ = do_conv_model()
    raw = tensor(model, "conv.W").raw_data
    externalize(model, work, "conv.W", data=raw, offset=offset, length=length if length is not None else len(raw))
    src = save(work, model)
    check_fold(src, "beyond the end")
    if offset == 64:
        check_inspect(src, "beyond the end")
        check_verify(src, "beyond the end")


def test_external_data_length_disagrees_with_dims(work):
    model, _ = do_conv_model()
    raw = tensor(model, "conv.W").raw_data
    externalize(model, work, "conv.W", data=raw + b"\0" * 64, length=len(raw) - 8)
    check_fold(save(work, model), r"conv\.W.*data bytes")


# ---------------------------------------------------------------------------------------
# Graphs that cannot run


def test_node_input_names_no_tensor(work):
    model, _ = do_conv_model()
    node(model, "Einsum").input[1] = "nowhere"
    check_fold(save(work, model), "'nowhere'.*no node, initializer or graph input")


def test_node_input_names_no_tensor_outside_the_do_conv(work):
    model, _ = do_conv_model()
    model.graph.node.append(helper.make_node("Relu", ["ghost"], ["relu_out"], name="stray_relu"))
    check_fold(save(work, model), "'ghost'.*no node, initializer or graph input")


def test_identity_cycle_into_a_conv_weight(work):
    model, _ = do_conv_model()
    node(model, "Conv").input[1] = "loop_a"
    model.graph.node.extend([helper.make_node("Identity", ["loop_b"], ["loop_a"]), helper.make_node("Identity", ["loop_a"], ["loop_b"])])
    check_fold(save(work, model), "cycle")


def test_reshape_cycle_in_an_operand(work):
    model, _ = do_conv_model()
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape" and n.input[0] == "conv.W")
    reshape.input[0] = "wr"  # W's reshape now reads its own output
    src = save(work, model)
    check_fold(src, "cycle")
    check_inspect(src, "cycle")


def test_do_conv_operands_disagree(work):
    # D (Cin, MN, Dmul') with Dmul' = 8, W (Cout, Cin, Dmul) with Dmul = 9: einsum 'ims,ois' cannot run.
    model, _ = do_conv_model()
    for name in ("conv.D", "conv.d_diag"):
        t = tensor(model, name)
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[:, :, :8].copy(), name))
    check_fold(save(work, model), "Einsum.*(disagree|do not fit)")


def test_do_conv_reshape_to_a_different_element_count(work):
    model, _ = do_conv_model()
    node(model, "Constant", "k_shape").attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([6, 4, 3, 4], np.int64)))
    check_fold(save(work, model), "Reshape.*elements")


def test_do_conv_operand_reshape_to_a_different_element_count(work):
    model, _ = do_conv_model()
    node(model, "Constant", "w_shape").attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([6, 4, 8], np.int64)))
    check_fold(save(work, model), "Reshape.*elements")


def test_absurd_reshape_of_the_kernel(work):
    model, _ = do_conv_model()
    node(model, "Constant", "k_shape").attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([2**62, 4, 3, 3], np.int64)))
    check_fold(save(work, model), "Reshape")


@pytest.mark.parametrize("target,dtype", [("conv.D", np.int32), ("conv.W", np.int64), ("both", np.int32), ("both", np.bool_)],
                         ids=["D-int32", "W-int64", "DW-int32", "DW-bool"])
def test_non_float_do_conv_operands(work, target, dtype):
    model, _ = do_conv_model()
    names = ["conv.D", "conv.d_diag", "conv.W"] if target == "both" else (["conv.D", "conv.d_diag"] if target == "conv.D" else [target])
    for name in names:
        t = tensor(model, name)
        t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) * 10).astype(dtype), name))
    check_fold(save(work, model), "not a float|element type")


def test_non_float_plain_conv_weight(work):
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="int_conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.ones((3, 2, 3, 3), np.int32), "w")]), opset_imports=[helper.make_opsetid("", 17)])
    check_fold(save(work, model), "int_conv.*not a float")


def test_a_near_miss_is_not_an_error(work):
    """The contrast: a valid graph that looks like DO-Conv but is not one is left alone."""
    model, _ = do_conv_model()
    node(model, "Einsum").attribute[0].s = b"ims,ois->omi"
    node(model, "Constant", "k_shape").attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([6, 4, 3, 3], np.int64)))
    src = save(work, model)
    result = fold(src, work / "out.onnx")
    assert result.status == 0 and "not folded" in result.stdout, result


# ---------------------------------------------------------------------------------------
# Output folders, and a failing fold onto its own input


def test_output_folder_does_not_exist(tmp_path, work):
    src = save(work, do_conv_model()[0])
    output = tmp_path / "missing" / "out.onnx"
    check_fold(src, "no such file or directory", output=output, names=[output], folders=[tmp_path])
    # With -o and several inputs: still one line, naming the folder.
    second = save(work, do_conv_model(seed=1)[0], "second.onnx")
    before = snapshot(tmp_path)
    result = fold(src, second, "-o", tmp_path / "missing")
    assert_rejected(result, [tmp_path / "missing"], "output folder does not exist", before, [tmp_path])


def test_output_folder_is_a_file(tmp_path, work):
    src = save(work, do_conv_model()[0])
    (tmp_path / "plainfile").write_bytes(b"x")
    output = tmp_path / "plainfile" / "out.onnx"
    check_fold(src, "not a directory", output=output, names=[output], folders=[tmp_path])
    before = snapshot(tmp_path)
    result = fold(src, "-o", tmp_path / "plainfile")
    assert_rejected(result, [tmp_path / "plainfile"], "output folder is not a folder", before, [tmp_path])


def test_two_inputs_of_one_name_into_one_folder(tmp_path, work):
    """-o DIR writes each input under its own name: two inputs of one name (from different
    folders) would land on one output, the second over the first. Refused before anything
    is written."""
    first = save(work / "a", do_conv_model()[0], "m.onnx")
    second = save(work / "b", do_conv_model(seed=1)[0], "m.onnx")
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    result = fold(first, second, "-o", out)
    assert_rejected(result, [first, second, out / "m.onnx"], "would both be written as", before, [tmp_path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_not_writable(tmp_path, work):
    src = save(work, do_conv_model()[0])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        check_fold(src, "permission denied", output=locked / "out.onnx", names=[locked / "out.onnx"], folders=[tmp_path])
    finally:
        locked.chmod(0o755)


def test_output_folder_not_writable_on_a_read_only_filesystem(work):
    if not os.path.isdir("/proc/self"):
        pytest.skip("no /proc")
    src = save(work, do_conv_model()[0])
    output = pathlib.Path("/proc/self/out.onnx")
    check_fold(src, "cannot write", output=output, names=[output], folders=[work])


def test_failing_fold_onto_its_own_input(work):
    model, _ = do_conv_model()
    w = tensor(model, "conv.W")
    w.raw_data = w.raw_data[:-4]
    src = save(work, model, "bad.onnx")
    check_fold(src, "data bytes", output=src)
    before = snapshot(work)
    assert_rejected(fold(src, "-o", work), [src], "data bytes", before, [work])


def test_failing_hdf5_fold_onto_its_own_input(work):
    src = work / "bad.h5"
    shutil.copy(KERAS / "k3_net_a.h5", src)
    with h5py().File(src, "r+") as f:
        del f["model_weights/do_stem/do_stem/D"]
    check_fold(src, "do_stem", output=src)
    before = snapshot(work)
    assert_rejected(fold(src, "-o", work), [src], "do_stem", before, [work])


# ---------------------------------------------------------------------------------------
# Keras HDF5


def h5py():
    return pytest.importorskip("h5py")


def keras_copy(work, name="k3_net_a.h5"):
    src = work / name
    shutil.copy(KERAS / name, src)
    return src


def replace_dataset(src, path, make):
    with h5py().File(src, "r+") as f:
        group, name = path.rsplit("/", 1)
        old = f[path][()]
        del f[path]
        make(f[group], name, old)


def test_hdf5_empty(work):
    src = work / "empty.h5"
    src.write_bytes(b"")
    check_fold(src, "empty")
    check_inspect(src, "empty")


def test_hdf5_text(work):
    src = work / "notes.h5"
    src.write_text("model weights go here\n" * 40)
    check_fold(src, "not an HDF5 file")


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_hdf5_truncated(work, fraction):
    data = (KERAS / "k3_net_a.h5").read_bytes()
    src = work / "truncated.h5"
    src.write_bytes(data[: int(len(data) * fraction)])
    check_fold(src, "truncated or corrupt")
    if fraction == 0.6:
        check_inspect(src, "truncated or corrupt")
        check_verify(src, "truncated or corrupt", folded=KERAS / "k3_net_a.h5")


@pytest.mark.parametrize("dataset", ["D", "kernel"])
def test_hdf5_missing_dataset(work, dataset):
    src = keras_copy(work)
    with h5py().File(src, "r+") as f:
        del f[f"model_weights/do_stem/do_stem/{dataset}"]
    check_fold(src, "do_stem")
    check_inspect(src, "do_stem")
    check_verify(src, "do_stem", folded=KERAS / "k3_net_a.h5")


def test_hdf5_inconsistent_shapes(work):
    src = keras_copy(work)
    replace_dataset(src, "model_weights/do_stem/do_stem/kernel", lambda g, n, old: g.create_dataset(n, data=old[:, :, :7]))
    check_fold(src, "do_stem.*(does not fit|config says|filters)")


def test_hdf5_d_shape_disagrees_with_kernel(work):
    src = keras_copy(work)
    replace_dataset(src, "model_weights/do_stem/do_stem/D", lambda g, n, old: g.create_dataset(n, data=old[:, :8, :]))
    check_fold(src, "do_stem.*does not fit")


@pytest.mark.parametrize("dtype", ["int32", "string"])
def test_hdf5_wrong_dtype(work, dtype):
    src = keras_copy(work)

    def make(group, name, old):
        if dtype == "int32":
            group.create_dataset(name, data=(old * 100).astype(np.int32))
        else:
            group.create_dataset(name, data=np.array([str(v).encode() for v in old.flatten()]).reshape(old.shape))
    replace_dataset(src, "model_weights/do_stem/do_stem/D", make)
    check_fold(src, "do_stem.*not a float")


@pytest.mark.parametrize("layout", ["chunked", "contiguous"])
def test_hdf5_huge_dims(work, layout):
    # A D that claims 2^40 float32 elements (4 TiB), none of them stored.
    src = keras_copy(work)
    shape = (9, 2**20, 2**20)

    def make(group, name, old):
        if layout == "chunked":
            group.create_dataset(name, shape=shape, maxshape=(None, None, None), dtype="f4", chunks=(9, 9, 3))
        else:
            group.create_dataset(name, shape=shape, dtype="f4")
    replace_dataset(src, "model_weights/do_stem/do_stem/D", make)
    check_fold(src, "do_stem/D' claims .* bytes of data")
    check_inspect(src, "do_stem/D' claims .* bytes of data")
    check_verify(src, "do_stem/D' claims .* bytes of data", folded=KERAS / "k3_net_a.h5")


def test_hdf5_huge_dims_in_a_dataset_the_fold_copies(work):
    # Not a DO-Conv weight: copied as is, so its claimed size must be refused before any read.
    src = keras_copy(work)
    replace_dataset(src, "model_weights/head/head/kernel",
                    lambda g, n, old: g.create_dataset(n, shape=(2**24, 2**24), dtype="f4"))
    check_fold(src, "head/kernel' claims .* bytes of data")


def test_hdf5_huge_dims_behind_a_compression_filter(work):
    # gzip-filtered chunks may expand, but only as far as deflate can (1032-fold) from what
    # is stored: nothing is stored here, so a 4 TiB claim is refused.
    src = keras_copy(work)
    replace_dataset(src, "model_weights/do_stem/do_stem/D",
                    lambda g, n, old: g.create_dataset(n, shape=(9, 2**20, 2**20), dtype="f4", chunks=(9, 64, 64), compression="gzip"))
    check_fold(src, "do_stem/D' claims .* bytes of data")


def test_highly_compressed_weights_are_not_mistaken_for_lies(work):
    # Control: a 4 MiB dataset of zeros that gzip stores in a few KiB, in a 100 KB file, is a
    # real file (a pruned layer) and must fold: the size check is deflate's bound on what
    # the stored chunks can expand to, not a guess at a typical ratio.
    src = work / "zeros.weights.h5"
    shutil.copy(KERAS / "k3_net_a.weights.h5", src)
    with h5py().File(src, "r+") as f:
        f["layers"].create_group("pruned/vars").create_dataset(
            "0", data=np.zeros((1024, 1024), np.float32), compression="gzip", compression_opts=9, chunks=(1024, 1024))
    assert src.stat().st_size < 1 << 20
    out = work / "out.weights.h5"
    result = fold(src, out, "--config", KERAS / "k3_net_a.json")
    assert result.status == 0, result
    with h5py().File(out, "r") as f:
        assert f["layers/pruned/vars/0"].shape == (1024, 1024)


def test_an_overwritten_output_keeps_its_mode(tmp_path, work):
    """Folding over an existing output (or in place) keeps that file's mode: a private 0600
    model stays private. A new output gets 0644 less the umask."""
    src = save(work, do_conv_model()[0])
    os.chmod(src, 0o600)
    result = fold(src, src)
    assert result.status == 0, result
    assert stat.S_IMODE(os.stat(src).st_mode) == 0o600
    out = tmp_path / "out.onnx"
    out.write_bytes(b"old")
    os.chmod(out, 0o640)
    assert fold(src, out).status == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    fresh = tmp_path / "fresh.onnx"
    assert fold(src, fresh).status == 0
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644 & ~current_umask()


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("fixture", ["keras_h5/k2_net_a.h5", "keras_h5/k3_net_a.keras", "torch/plain_sd.pth", "torch/model.safetensors",
                                     "mxnet/basic.params"])
def test_an_in_place_fold_keeps_the_mode_in_every_format(tmp_path, fixture):
    src = tmp_path / pathlib.Path(fixture).name
    shutil.copyfile(FIXTURES / fixture, src)
    os.chmod(src, 0o600)
    result = fold(src, src)
    assert result.status == 0, result
    assert stat.S_IMODE(os.stat(src).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [src.name], "temporary files left"
