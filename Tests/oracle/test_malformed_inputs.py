"""Malformed and hostile models: doconv-fold must end with a clean status (0, 1 or 2),
never a signal or a hang, write nothing when it fails, and leave the input untouched."""
import os
import random
import shutil
import zipfile

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import FIXTURES, ROOT, manifest, run_fold, run_tool
from synthetic import do_conv_model

# Every test here also checks that the tools leave TMPDIR empty.
pytestmark = pytest.mark.usefixtures("clean_tmpdir")


def check_clean(tmp_path, src):
    before = src.read_bytes()
    dst = tmp_path / "out.onnx"
    result = run_fold(src, dst)
    assert result.returncode in (0, 1, 2), f"status {result.returncode}: {result.stderr[-500:]}"
    if result.returncode != 0:
        assert not dst.exists()
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert src.read_bytes() == before
    if dst.exists():
        dst.unlink()
    return result


@pytest.mark.parametrize("entry", [e for e in manifest() if not e["external_data"]], ids=lambda e: e["file"])
def test_byte_mutations(tmp_path, entry):
    data = bytearray((FIXTURES / entry["file"]).read_bytes())
    rng = random.Random(entry["file"])
    for trial in range(12):
        mutated = bytearray(data)
        kind = trial % 3
        if kind == 0:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif kind == 1:  # truncate
            mutated = mutated[: rng.randrange(1, len(mutated))]
        else:  # splice a chunk elsewhere
            a = rng.randrange(len(mutated))
            chunk = mutated[a : a + rng.randint(1, 64)]
            b = rng.randrange(len(mutated))
            mutated[b:b] = chunk
        src = tmp_path / f"mutant{trial}.onnx"
        src.write_bytes(bytes(mutated))
        check_clean(tmp_path, src)


def save(tmp_path, model, name="hostile.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_identity_cycle_into_a_conv_weight(tmp_path):
    model, _ = do_conv_model()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.input[1] = "loop_a"
    model.graph.node.extend([helper.make_node("Identity", ["loop_b"], ["loop_a"]), helper.make_node("Identity", ["loop_a"], ["loop_b"])])
    check_clean(tmp_path, save(tmp_path, model))


def test_reshape_cycle_in_an_operand(tmp_path):
    model, _ = do_conv_model()
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape" and n.input[0] == "conv.W")
    reshape.input[0] = "wr"  # W's reshape now reads its own output
    check_clean(tmp_path, save(tmp_path, model))


def test_lying_dims_and_short_data(tmp_path):
    for dims in ([6, 4, 9 * 1000], [2**40, 2**30, 9], [-6, 4, 9], [0, 4, 9]):
        model, _ = do_conv_model()
        w = next(t for t in model.graph.initializer if t.name == "conv.W")
        del w.dims[:]
        w.dims.extend(dims)
        result = check_clean(tmp_path, save(tmp_path, model))
        assert result.returncode != 0 or "not folded" in result.stdout


def test_absurd_reshape_and_groups(tmp_path):
    model, _ = do_conv_model()
    const = next(n for n in model.graph.node if n.op_type == "Constant" and n.output[0] == "k_shape")
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([2**62, 4, 3, 3], np.int64)))
    check_clean(tmp_path, save(tmp_path, model, "reshape.onnx"))
    for group in (0, -3, 2**40):
        model, _ = do_conv_model()
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        conv.attribute.append(helper.make_attribute("group", group))
        check_clean(tmp_path, save(tmp_path, model, f"group{group}.onnx"))


def test_kernel_far_larger_than_its_data(tmp_path):
    # Dmul 1, a 64x64 kernel, 4096 outputs: the kernel would be 2048 times D and W together;
    # refused rather than allocated.
    model, _ = do_conv_model(cin=1, cout=4096, m=64, n=64, dmul=1)
    result = check_clean(tmp_path, save(tmp_path, model))
    assert result.returncode == 0 and "not folded" in result.stdout


def test_external_data_mutations(tmp_path):
    name = "grouped.dynamo.onnx"
    for trial in range(6):
        work = tmp_path / f"t{trial}"
        work.mkdir()
        shutil.copy(FIXTURES / name, work / name)
        data = bytearray((FIXTURES / (name + ".data")).read_bytes())
        (work / (name + ".data")).write_bytes(bytes(data[: len(data) * trial // 6]))
        check_clean(work, work / name)


def test_corrupt_hdf5_files_end_cleanly_even_when_libhdf5_crashes(tmp_path):
    """Seeded byte flips of Keras HDF5 fixtures. Some of these (iterations 37 and 57) make
    libhdf5 itself segfault; doconv-fold runs HDF5 work in a child process and must still
    end with one clean line, nothing written and no temporary file left."""
    folder = FIXTURES / "keras_h5"
    files = [("k2_net_a.h5", None), ("k3_net_dw.h5", None), ("k2_net_dw_weights.h5", "k2_net_dw.json"),
             ("k3_net_a.weights.h5", "k3_net_a.json")]
    rng = random.Random(7)
    statuses = set()
    for trial in range(60):
        name, config = rng.choice(files)
        data = bytearray((folder / name).read_bytes())
        for _ in range(rng.randint(1, 10)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        src = tmp_path / "mutant.h5"
        src.write_bytes(bytes(data))
        dst = tmp_path / "out.h5"
        args = [src, dst] + (["--config", folder / config] if config else [])
        result = run_fold(*args)
        statuses.add(result.returncode)
        assert result.returncode in (0, 1, 2), f"trial {trial}: status {result.returncode}"
        if result.returncode != 0:
            assert len(result.stderr.strip().splitlines()) == 1, f"trial {trial}: {result.stderr}"
            assert not dst.exists()
        dst.unlink(missing_ok=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mutant.h5"], f"trial {trial} left files behind"
    assert 2 in statuses


def test_a_file_libhdf5_loops_on_ends_at_the_time_limit(tmp_path, monkeypatch):
    """A corrupt Keras file (found by scripts/fuzz) on which libhdf5 never returns: the worker
    is killed at the time limit (lowered here) and the run ends with one clean line."""
    src = tmp_path / "loops.h5"
    src.write_bytes((ROOT / "Tests/oracle/data/libhdf5-loops.h5").read_bytes())
    monkeypatch.setenv("DOCONV_HDF5_TIME_LIMIT", "4")
    result = check_clean(tmp_path, src)
    assert result.returncode == 2 and "did not finish" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loops.h5"]


@pytest.mark.parametrize("tool", ["fold", "inspect", "verify"])
def test_a_file_libhdf5_crashes_on_ends_in_one_line(tmp_path, tool):
    """A byte-flipped k3_net_dw.h5 that makes libhdf5 segfault (found by seeded mutation);
    all three tools read Keras files in a child process, so it ends in one line, exit 2."""
    src = tmp_path / "crash.h5"
    src.write_bytes((ROOT / "Tests/oracle/data/libhdf5-crash.h5").read_bytes())
    if tool == "fold":
        result = run_fold(src, tmp_path / "out.h5")
    elif tool == "inspect":
        result = run_tool("DOCONV_INSPECT", "doconv-inspect", src)
    else:
        result = run_tool("DOCONV_VERIFY", "verify-equivalence", src, FIXTURES / "keras_h5" / "k3_net_dw.h5")
    assert result.returncode == 2 and "HDF5 library crashed" in result.stderr, result.stderr
    assert "SIGSEGV" in result.stderr or "SIGABRT" in result.stderr or "SIGBUS" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crash.h5"]


@pytest.mark.parametrize("tool", ["fold", "inspect", "verify"])
def test_a_trap_of_our_own_in_the_keras_child_is_named_as_ours(tool, tmp_path):
    """A failed runtime check in doconv's own code (SIGILL) is not blamed on libhdf5 or the
    file: the line says it is a doconv bug (the child is made to die so by a test hook)."""
    import os
    src = FIXTURES / "keras_h5" / "k2_net_a.h5"
    env = {**os.environ, "DOCONV_TEST_CHILD_TRAP": "1"}
    if tool == "fold":
        result = run_tool("DOCONV_FOLD", "doconv-fold", src, tmp_path / "out.h5", env=env)
    elif tool == "inspect":
        result = run_tool("DOCONV_INSPECT", "doconv-inspect", src, env=env)
    else:
        result = run_tool("DOCONV_VERIFY", "verify-equivalence", src, src, env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "doconv itself stopped on a failed check" in lines[0] and "SIGILL" in lines[0] and "HDF5" not in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def ending(tool):
    """How a run on the looping file ends: the time limit, or for verify-equivalence, which
    walks the file its own way from the root group, libhdf5's report of the damage there."""
    return ("did not finish", "cannot list group") if tool == "verify" else ("did not finish",)


@pytest.mark.parametrize("tool", ["inspect", "verify"])
def test_inspect_and_verify_end_a_libhdf5_loop_at_the_time_limit(tmp_path, tool):
    src = tmp_path / "loops.h5"
    src.write_bytes((ROOT / "Tests/oracle/data/libhdf5-loops.h5").read_bytes())
    env = dict(os.environ, DOCONV_HDF5_TIME_LIMIT="4")
    if tool == "inspect":
        result = run_tool("DOCONV_INSPECT", "doconv-inspect", src, env=env)
    else:
        result = run_tool("DOCONV_VERIFY", "verify-equivalence", src, FIXTURES / "keras_h5" / "k3_net_a.h5", env=env)
    assert result.returncode == 2 and any(p in result.stderr for p in ending(tool)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loops.h5"]


@pytest.mark.parametrize("where", ["conv weight", "W"])
def test_values_read_twice_at_every_step_do_not_explode(tmp_path, where):
    """x_{k+1} = Add(x_k, x_k), 40 times: a walk that follows every path instead of every
    value would take 2^40 steps. The graph is valid and not a DO-Conv: exit 0, fast."""
    model, _ = do_conv_model()
    graph = model.graph
    nodes, previous = [], "conv.W"
    if where == "conv weight":
        conv = next(n for n in graph.node if n.op_type == "Conv")
        previous = conv.input[1]
    for k in range(40):
        nodes.append(helper.make_node("Add", [previous, previous], [f"doubled{k}"]))
        previous = f"doubled{k}"
    if where == "conv weight":
        conv.input[1] = previous
        graph.node.extend(nodes)
        # Conv must come after its weight's producers.
        graph.node.remove(conv)
        graph.node.append(conv)
    else:
        for node in graph.node:
            node.input[:] = [previous if name == "conv.W" else name for name in node.input]
        for node in reversed(nodes):
            graph.node.insert(0, node)
    src = save(tmp_path, model)
    for tool, variable, name in [("fold", "DOCONV_FOLD", "doconv-fold"), ("inspect", "DOCONV_INSPECT", "doconv-inspect")]:
        args = [src] + ([tmp_path / "out.onnx"] if tool == "fold" else [])
        result = run_tool(variable, name, *args, timeout=60)
        assert result.returncode == 0, result.stderr


def keras_archive_around(tmp_path, weights):
    """A .keras archive holding a real config and the given (corrupt) model.weights.h5."""
    src = tmp_path / "model.keras"
    with zipfile.ZipFile(FIXTURES / "keras_h5" / "k3_net_dw.keras") as original, zipfile.ZipFile(src, "w") as archive:
        for info in original.infolist():
            data = weights.read_bytes() if info.filename == "model.weights.h5" else original.read(info)
            archive.writestr(info, data)
    return src


def run_on_archive(tool, src, tmp_path, env=None):
    if tool == "fold":
        return run_tool("DOCONV_FOLD", "doconv-fold", src, tmp_path / "out.keras", env=env)
    if tool == "inspect":
        return run_tool("DOCONV_INSPECT", "doconv-inspect", src, env=env)
    return run_tool("DOCONV_VERIFY", "verify-equivalence", src, FIXTURES / "keras_h5" / "k3_net_dw.keras", env=env)


@pytest.mark.parametrize("tool", ["fold", "inspect", "verify"])
def test_a_keras_archive_whose_weights_crash_libhdf5_leaves_no_temporary_folder(tmp_path, tool, clean_tmpdir):
    """Issue 14, item 1: the weights are extracted to TMPDIR; when libhdf5 crashes on them,
    the parent removes the child's folder (doconv-inspect and verify-equivalence used to
    leave theirs)."""
    src = keras_archive_around(tmp_path, ROOT / "Tests/oracle/data/libhdf5-crash.h5")
    result = run_on_archive(tool, src, tmp_path)
    assert result.returncode == 2 and "HDF5 library crashed" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert os.listdir(clean_tmpdir) == []


@pytest.mark.parametrize("tool", ["fold", "inspect", "verify"])
def test_a_keras_archive_whose_weights_loop_libhdf5_leaves_no_temporary_folder(tmp_path, tool, clean_tmpdir):
    src = keras_archive_around(tmp_path, ROOT / "Tests/oracle/data/libhdf5-loops.h5")
    result = run_on_archive(tool, src, tmp_path, env=dict(os.environ, DOCONV_HDF5_TIME_LIMIT="4"))
    assert result.returncode == 2 and any(p in result.stderr for p in ending(tool)), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert os.listdir(clean_tmpdir) == []
