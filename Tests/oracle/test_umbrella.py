"""Issue 28: one executable, `doconv`, serves every tool, chosen by its subcommand
(`doconv fold`) or by the name it runs under (`doconv-fold`, a link to it), with the same
flags, output and exit status either way. The oracle suite runs the tools under their own
names (scripts/test links them); these tests hold the two ways against each other, on a
model read in the process and on one read by the HDF5 worker child (which must be told its
tool, since it runs as /proc/self/exe)."""
import pathlib
import subprocess

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
    assert (tmp_path / "a" / pathlib.Path(model).name).read_bytes() == (tmp_path / "b" / pathlib.Path(model).name).read_bytes()
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
