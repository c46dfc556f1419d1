"""Issue 28: one executable, `doconv`, serves every tool, chosen by its subcommand
(`doconv fold`) or by the name it runs under (`doconv-fold`, a link to it), with the same
flags, output and exit status either way. The oracle suite runs the tools under their own
names (scripts/test links them); these tests hold the two ways against each other, on a
model read in the process and on one read by the HDF5 worker child (which must be told its
tool, since it runs as /proc/self/exe)."""
import pathlib
import subprocess

import numpy as np
import pytest

from conftest import FIXTURES, fold_binary

TOOLS = {"doconv-fold": "fold", "doconv-inspect": "inspect", "verify-equivalence": "verify", "doconv-expand": "expand"}


def umbrella() -> pathlib.Path:
    """The doconv executable the tools' links point at."""
    return fold_binary().resolve()


def run(argv0, *args, cwd=None):
    """Runs the doconv executable with argv[0] set to `argv0`."""
    return subprocess.run([argv0, *map(str, args)], executable=str(umbrella()), capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def h5_contents(path):
    """Every dataset of an HDF5 file, by name."""
    import h5py

    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
    return found


def test_the_tools_are_one_executable():
    assert umbrella().name == "doconv"
    for tool in TOOLS:
        assert (umbrella().parent / tool).resolve() == umbrella(), tool


@pytest.mark.parametrize("model", ["g1_basic.ts.onnx", "keras_h5/k2_net_a.h5"])
def test_a_subcommand_and_its_tools_name_give_the_same_run(tmp_path, model):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    by_name = run("doconv-fold", "--quiet", FIXTURES / model, tmp_path / "a" / pathlib.Path(model).name)
    by_subcommand = run("doconv", "fold", "--quiet", FIXTURES / model, tmp_path / "b" / pathlib.Path(model).name)
    assert by_name.returncode == by_subcommand.returncode == 0, by_name.stderr + by_subcommand.stderr
    assert (by_name.stdout, by_name.stderr) == (by_subcommand.stdout, by_subcommand.stderr)
    a, b = tmp_path / "a" / pathlib.Path(model).name, tmp_path / "b" / pathlib.Path(model).name
    if model.endswith(".h5"):
        # HDF5 stamps objects with the second they were written: compare what they hold.
        assert h5_contents(a).keys() == h5_contents(b).keys()
        assert all(np.array_equal(x, h5_contents(b)[k]) for k, x in h5_contents(a).items())
    else:
        assert a.read_bytes() == b.read_bytes()
    inspect_name = run("doconv-inspect", "--json", FIXTURES / model)
    inspect_sub = run("doconv", "inspect", "--json", FIXTURES / model)
    assert inspect_name.returncode == 0 and inspect_name.stdout == inspect_sub.stdout


@pytest.mark.parametrize("tool, subcommand", TOOLS.items())
def test_bad_input_is_the_same_error_line_either_way(tool, subcommand, tmp_path):
    missing = tmp_path / "missing.onnx"
    args = [missing, tmp_path / "out"] if subcommand != "inspect" else [missing]
    by_name = run(tool, *args)
    by_subcommand = run("doconv", subcommand, *args)
    assert by_name.returncode == by_subcommand.returncode == 2
    assert by_name.stderr == by_subcommand.stderr and by_name.stderr.startswith(f"{tool}: error: ")
    assert len(by_name.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_usage_error_names_the_tool_and_its_help_as_run():
    by_name = run("doconv-fold", "--no-such-flag", "a.onnx", "b.onnx")
    by_subcommand = run("doconv", "fold", "--no-such-flag", "a.onnx", "b.onnx")
    assert by_name.returncode == by_subcommand.returncode == 2
    assert by_name.stderr.splitlines() == ["doconv-fold: error: Unknown option '--no-such-flag'", "Usage: see 'doconv-fold --help'"]
    assert by_subcommand.stderr.splitlines() == ["doconv-fold: error: Unknown option '--no-such-flag'", "Usage: see 'doconv fold --help'"]


def test_the_umbrella_lists_every_tool_and_refuses_an_unknown_one():
    listing = run("doconv", "--help")
    assert listing.returncode == 0
    for subcommand in TOOLS.values():
        assert f"\n  {subcommand} " in listing.stdout, listing.stdout
    unknown = run("doconv", "unfold", "a.onnx")
    assert unknown.returncode == 2 and unknown.stderr.startswith("doconv: error: ")
    # Under a name that is no tool's (a renamed copy, a differently named link) it is the umbrella.
    assert run("my-doconv", "--help").stdout == listing.stdout


def test_versions_agree():
    version = run("doconv", "--version").stdout
    assert version.strip()
    for tool, subcommand in TOOLS.items():
        assert run(tool, "--version").stdout == version == run("doconv", subcommand, "--version").stdout


def test_the_completion_script_covers_every_subcommand():
    script = run("doconv", "--generate-completion-script", "bash").stdout
    for subcommand in TOOLS.values():
        assert subcommand in script
    assert "--fuse-bn" in script and "--dmul" in script


def test_option_values_that_begin_with_a_dash_reach_the_keras_worker(tmp_path):
    """The HDF5 worker gets the options again on its own command line: a config, a glob or
    a template whose name begins with '-' must still be a value there (each is written
    joined to its flag)."""
    import shutil

    shutil.copy(FIXTURES / "keras_h5" / "k2_net_a_weights.h5", tmp_path / "-weights.h5")
    shutil.copy(FIXTURES / "keras_h5" / "k2_net_a.json", tmp_path / "-model.json")
    folded = run("doconv-fold", "--config=-model.json", "--exclude=-nothing", "--", "-weights.h5", "out.h5", cwd=tmp_path)
    assert folded.returncode == 0, folded.stderr
    assert (tmp_path / "out.h5").exists()
    inspected = run("doconv", "inspect", "--config=-model.json", "--only=-none", "--", "-weights.h5", cwd=tmp_path)
    assert inspected.returncode == 0, inspected.stderr
    expand = FIXTURES / "expand"
    shutil.copy(expand / "keras_plain_weights.h5", tmp_path / "-plain.h5")
    shutil.copy(expand / "keras_plain.json", tmp_path / "-plain.json")
    expanded = run("doconv-expand", "--config=-plain.json", "--exclude=-none", "--", "-plain.h5", "do.h5", cwd=tmp_path)
    assert expanded.returncode == 0, expanded.stderr
    assert (tmp_path / "do.h5").exists()
