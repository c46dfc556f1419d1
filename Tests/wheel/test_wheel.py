"""The installed wheel (scripts/test-wheel installs it into a fresh virtualenv and runs
this file with that virtualenv's python, PATH = its bin + /usr/bin:/bin, no
LD_LIBRARY_PATH): the bundled executables load their libraries from the package, the
console scripts and the Python API work on real fixtures, and the versions agree with
Sources/CommandLineSupport/Version.swift.

Fixtures come from fixtures/MANIFEST.json and fixtures/keras_h5/MANIFEST.json, as in
Tests/oracle. The onnx/onnxruntime checks run when those packages are importable
(scripts/test-wheel installs them into the test virtualenv).
"""
import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
import sysconfig
from typing import Any, Dict, List

import pytest

import doconv
from doconv import DOConvError
from doconv._options import arguments, table, table_from_help

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
TOOLS = ("doconv-fold", "doconv-inspect", "verify-equivalence")
ONNX_FIXTURE = "grouped.dynamo.onnx"  # DO-DConv and DO-GConv layers, external data
KERAS_FIXTURE = "k2_net_a.h5"  # a Keras 2 full model: 3 DO-Conv, 1 DO-GConv (one 1x3, one 1x1)
SITE_PACKAGES = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
PACKAGE = pathlib.Path(doconv.__file__).resolve().parent

# Libraries the manylinux policies count as the system's (auditwheel leaves them out);
# everything else the tools load must come from the wheel.
SYSTEM_LIBRARIES = {
    "linux-vdso.so.1", "libc.so.6", "libm.so.6", "libmvec.so.1", "libdl.so.2", "librt.so.1",
    "libpthread.so.0", "libresolv.so.2", "libutil.so.1", "libnsl.so.1", "libanl.so.1",
    "libgcc_s.so.1", "libstdc++.so.6", "libatomic.so.1", "libz.so.1", "libexpat.so.1",
}


def swift_version() -> str:
    """The version on the one line of Version.swift that holds it."""
    text = (ROOT / "Sources" / "CommandLineSupport" / "Version.swift").read_text(encoding="utf-8")
    match = re.search(r'^\s*public\s+static\s+let\s+string\s*=\s*"([^"]+)"', text, re.MULTILINE)
    assert match, "Version.swift has no line `public static let string = \"X.Y.Z\"`"
    return match.group(1)


def manifest_entry(manifest: pathlib.Path, file: str) -> Dict[str, Any]:
    """The fixture manifest's entry for `file`."""
    entries = json.loads(manifest.read_text())
    if isinstance(entries, dict):
        entries = entries.get("entries", [])
    return next(e for e in entries if e["file"] == file)


def run(tool: str, *args: Any, timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    """Runs a console script found on PATH (the test virtualenv's bin)."""
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def fold_has_json() -> bool:
    """Whether doconv-fold and verify-equivalence take --json yet (issue 16, in progress)."""
    helps = [run(tool, "--help").stdout for tool in ("doconv-fold", "verify-equivalence")]
    return all("--json" in h for h in helps)


# --- the installation -------------------------------------------------------------------


def test_package_imported_from_the_virtualenv():
    assert str(PACKAGE).startswith(str(SITE_PACKAGES) + os.sep), PACKAGE
    assert (PACKAGE / "py.typed").is_file()
    assert not os.environ.get("LD_LIBRARY_PATH")
    assert "/opt/swift" not in os.environ["PATH"]


@pytest.mark.parametrize("tool", TOOLS)
def test_console_script_on_path(tool):
    found = shutil.which(tool)
    assert found, f"{tool} is not on PATH"
    assert pathlib.Path(found).parent == pathlib.Path(sys.executable).parent


@pytest.mark.parametrize("tool", TOOLS)
def test_binaries_load_their_libraries_from_the_package(tool):
    binary = PACKAGE / "bin" / tool
    assert doconv.binary_path(tool) == str(binary)
    assert os.access(binary, os.X_OK)
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    lines = [line.strip() for line in ldd.splitlines() if line.strip()]
    assert not [line for line in lines if "not found" in line], ldd
    assert "/opt/swift" not in ldd and ".build" not in ldd, ldd
    resolved: Dict[str, pathlib.Path] = {}
    for line in lines:
        if "=>" in line:
            name, _, rest = line.partition("=>")
            path = rest.split("(")[0].strip()
            if path:
                resolved[name.strip()] = pathlib.Path(path).resolve()
    for wanted in ("libprotobuf-c", "libhdf5"):
        matches = {n: p for n, p in resolved.items() if n.startswith(wanted)}
        assert matches, f"{tool} does not load {wanted}:\n{ldd}"
        for name, path in matches.items():
            assert str(path).startswith(str(SITE_PACKAGES)), f"{name} => {path}: not from the wheel"
    outside = {n: p for n, p in resolved.items()
               if not str(p).startswith(str(SITE_PACKAGES)) and n not in SYSTEM_LIBRARIES
               and not n.startswith("ld-linux")}
    assert not outside, f"{tool} loads libraries from outside the wheel: {outside}"


def test_versions_agree_with_version_swift():
    version = swift_version()
    assert doconv.__version__ == version
    from importlib.metadata import version as dist_version
    assert dist_version("doconv") == version
    wheel = os.environ.get("DOCONV_WHEEL_FILE")
    if wheel:
        assert re.fullmatch(rf"doconv-{re.escape(version)}-py3-none-manylinux_2_\d+_x86_64\.whl",
                            pathlib.Path(wheel).name), wheel


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_version(tool):
    result = run(tool, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == swift_version()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell):
    result = run("doconv-fold", "--generate-completion-script", shell)
    assert result.returncode == 0, result.stderr
    assert "doconv-fold" in result.stdout and "fuse-bn" in result.stdout


# --- the console scripts ----------------------------------------------------------------


@pytest.fixture(scope="module")
def folded_onnx(tmp_path_factory) -> pathlib.Path:
    """ONNX_FIXTURE folded by the doconv-fold console script."""
    out = tmp_path_factory.mktemp("onnx") / "grouped.folded.onnx"
    result = run("doconv-fold", FIXTURES / ONNX_FIXTURE, out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def folded_keras(tmp_path_factory) -> pathlib.Path:
    """KERAS_FIXTURE folded by the doconv-fold console script."""
    out = tmp_path_factory.mktemp("keras") / "k2_net_a.folded.h5"
    result = run("doconv-fold", FIXTURES / "keras_h5" / KERAS_FIXTURE, out)
    assert result.returncode == 0, result.stderr
    return out


def test_inspect_json():
    entry = manifest_entry(FIXTURES / "MANIFEST.json", ONNX_FIXTURE)
    result = run("doconv-inspect", FIXTURES / ONNX_FIXTURE, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "onnx"
    assert len(report["layers"]) == len(entry["do_layers"]) == report["totals"]["layers"]
    kinds = [layer["kind"] for layer in entry["do_layers"]]
    assert report["totals"]["layers_by_kind"] == {k: kinds.count(k) for k in ("DO-Conv", "DO-DConv", "DO-GConv")}
    assert [layer["kind"] for layer in report["layers"]] == kinds
    assert report["totals"]["params_folded"] < report["totals"]["params_trained"]


def test_fold_onnx(folded_onnx):
    assert folded_onnx.stat().st_size > 0
    assert folded_onnx.with_name(folded_onnx.name + ".data").is_file()  # external data stays external
    report = json.loads(run("doconv-inspect", folded_onnx, "--json").stdout)
    assert report["totals"]["layers"] == 0


def test_fold_onnx_runs_like_the_original(folded_onnx):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    np = pytest.importorskip("numpy")
    model = onnx.load(str(folded_onnx))
    onnx.checker.check_model(model)
    assert "Einsum" not in [node.op_type for node in model.graph.node]
    expected = np.load(FIXTURES / "grouped.expected.npz")

    def run_model(path: pathlib.Path) -> Any:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: expected["input"]})[0]

    original, folded = run_model(FIXTURES / ONNX_FIXTURE), run_model(folded_onnx)
    error = float(np.abs(folded.astype(np.float64) - original).max() / np.abs(original).max())
    assert error <= 1e-4


def test_fold_keras(folded_keras):
    assert folded_keras.stat().st_size > 0
    report = json.loads(run("doconv-inspect", folded_keras, "--json").stdout)
    assert report["format"] == "keras-h5"
    assert report["totals"]["layers"] == 0  # every DOConv2D became a Conv2D


def test_verify_onnx(folded_onnx):
    result = run("verify-equivalence", FIXTURES / ONNX_FIXTURE, folded_onnx)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout


def test_verify_keras(folded_keras):
    result = run("verify-equivalence", FIXTURES / "keras_h5" / KERAS_FIXTURE, folded_keras)
    assert result.returncode == 0, result.stdout + result.stderr


def test_exit_status_and_error_line_pass_through(tmp_path):
    result = run("doconv-fold", tmp_path / "missing.onnx", tmp_path / "out.onnx")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("doconv-fold: error: ") and "missing.onnx" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.onnx").exists()


# --- the Python API ---------------------------------------------------------------------


def test_api_inspect():
    entry = manifest_entry(FIXTURES / "MANIFEST.json", ONNX_FIXTURE)
    report = doconv.inspect(FIXTURES / ONNX_FIXTURE)
    assert report["totals"]["layers"] == len(entry["do_layers"])
    assert report["model"] == str(FIXTURES / ONNX_FIXTURE)


def test_api_inspect_kernel_sizes_map_to_repeated_flags():
    weights = FIXTURES / "keras_h5" / "k2_net_a_weights.h5"  # legacy weights: no config inside
    with pytest.raises(DOConvError) as error:
        doconv.inspect(weights)
    assert error.value.exit_status == 2 and "do_wide" in error.value.message
    by_map = doconv.inspect(weights, kernel_size={"do_wide": (1, 3), "do_point": 1})
    by_list = doconv.inspect(weights, kernel_size=["do_wide=1x3", ("do_point", "1x1")])
    assert by_map == by_list
    assert [layer["name"] for layer in by_map["layers"]] == ["do_stem", "do_wide", "do_group", "do_point"]
    assert by_map["layers"][1]["kernel"] == [1, 3]


def test_api_fold(tmp_path):
    out = tmp_path / "grouped.folded.onnx"
    document = doconv.fold(FIXTURES / ONNX_FIXTURE, out)
    assert document["format_version"] == 1 and document["tool"] == "doconv-fold"
    assert document["version"] == swift_version()
    result = document["results"][0]
    assert result["status"] == "folded" and result["exit_status"] == 0
    assert pathlib.Path(result["output"]).resolve() == out.resolve()
    assert out.is_file()


def test_api_fold_keras_with_options(tmp_path):
    out = tmp_path / "k2_net_a.folded.h5"
    document = doconv.fold(FIXTURES / "keras_h5" / KERAS_FIXTURE, out, tolerance=1e-5, fuse_bn=True)
    assert document["results"][0]["status"] == "folded"
    assert out.is_file()


def test_api_fold_many_into_a_folder(tmp_path):
    inputs = [FIXTURES / ONNX_FIXTURE, FIXTURES / "g1_basic.ts.onnx"]
    document = doconv.fold(inputs, tmp_path)
    assert [r["status"] for r in document["results"]] == ["folded", "folded"]
    assert (tmp_path / ONNX_FIXTURE).is_file() and (tmp_path / "g1_basic.ts.onnx").is_file()
    # One bad input: exit status 2, and the exception carries every input's result.
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"junk")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DOConvError) as error:
        doconv.fold([FIXTURES / "g1_basic.ts.onnx", bad], out)
    assert error.value.exit_status == 2 and "garbage.onnx" in error.value.message
    assert error.value.document is not None
    assert [r["status"] for r in error.value.document["results"]] == ["folded", "error"]


def test_api_verify(folded_onnx):
    document = doconv.verify(FIXTURES / ONNX_FIXTURE, folded_onnx, inputs=2, seed=1, dim={"batch": 1})
    assert document["format_version"] == 1 and document["tool"] == "verify-equivalence"
    assert document["version"] == swift_version()
    assert document["equivalent"] is True


def test_api_verify_not_equivalent_is_a_result(folded_onnx):
    # Another model's fold: the tool exits 1 and still prints its document.
    document = doconv.verify(FIXTURES / "g1_basic.ts.onnx", folded_onnx)
    assert document["equivalent"] is False


def test_api_bad_input_raises(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07not a model at all")
    for call, tool in [
        (lambda: doconv.inspect(tmp_path / "missing.onnx"), "doconv-inspect"),
        (lambda: doconv.fold(bad, tmp_path / "out.onnx"), "doconv-fold"),
        (lambda: doconv.verify(bad, bad), "verify-equivalence"),
    ]:
        with pytest.raises(DOConvError) as error:
            call()
        assert error.value.exit_status == 2
        assert error.value.tool == tool
        assert str(error.value) == error.value.message
        assert error.value.message.startswith(f"{tool}: error: ") and "\n" not in error.value.message
    assert not (tmp_path / "out.onnx").exists()
    copy = pickle.loads(pickle.dumps(error.value))
    assert (copy.message, copy.exit_status, copy.tool) == (error.value.message, 2, "verify-equivalence")


def test_api_unknown_keyword_raises_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"fold\(\) got an unexpected keyword argument 'fuse_batchnorm'.*fuse_bn"):
        doconv.fold(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx", fuse_batchnorm=True)
    with pytest.raises(TypeError, match=r"accepted: config, dim, exclude, inputs, kernel_size, only, params, seed, strict_pickle, tolerance"):
        doconv.verify(FIXTURES / ONNX_FIXTURE, FIXTURES / ONNX_FIXTURE, fuse_bn=True)
    with pytest.raises(TypeError, match="tolerance"):
        doconv.inspect(FIXTURES / ONNX_FIXTURE, tolerance=1e-5)
    with pytest.raises(TypeError, match="fuse_bn must be True or False"):
        doconv.fold(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx", fuse_bn="yes")
    assert not (tmp_path / "out.onnx").exists()


def test_options_spelled_as_flags():
    args: List[str] = arguments("fold", table("doconv-fold"), {
        "fuse_bn": True, "reparam": False, "tolerance": 1e-5, "kernel_size": {"conv1": (3, 3), "row": [1, 3]},
        "config": pathlib.Path("m.json"), "params": None,
    })
    assert args == ["--fuse-bn", "--tolerance", "1e-05", "--kernel-size", "conv1=3x3", "--kernel-size", "row=1x3",
                    "--config", "m.json"]
    assert arguments("verify", table("verify-equivalence"), {"dim": {"batch": 2, "seq": 7}, "inputs": 3}) == [
        "--dim", "batch=2", "--dim", "seq=7", "--inputs", "3"]
    assert arguments("fold", table("doconv-fold"), {"exclude": "attn", "only": ["layer1.*", "stem"], "strict_pickle": True}) == [
        "--exclude", "attn", "--only", "layer1.*", "--only", "stem", "--strict-pickle"]
    with pytest.raises(TypeError, match="exclude must be a glob or a list of globs"):
        arguments("fold", table("doconv-fold"), {"exclude": 3})


def test_keywords_come_from_the_tools_declarations():
    """The keyword tables are the tools' own options (their --experimental-dump-help): every
    option a tool shows, named with _ for -, except those the API sets itself."""
    assert set(table("doconv-fold")) == {"tolerance", "no_verify", "config", "kernel_size", "params", "fuse_bn",
                                         "fold_separable", "reparam", "keep_names", "strict_pickle", "allow_partial", "keep_grouped", "exclude", "only"}
    assert set(table("doconv-inspect")) == {"svg", "config", "kernel_size", "params", "reparam", "strict_pickle", "exclude", "only"}
    assert set(table("verify-equivalence")) == {"tolerance", "inputs", "seed", "dim", "config", "kernel_size", "params",
                                                "strict_pickle", "exclude", "only"}
    # A format option a tool starts to declare is a keyword with no edit to the package.
    document = {"command": {"arguments": [
        {"kind": "option", "names": [{"kind": "long", "name": "saved-model-tag"}], "valueName": "tag", "shouldDisplay": True},
        {"kind": "flag", "names": [{"kind": "long", "name": "hidden-hook"}], "shouldDisplay": False},
        {"kind": "flag", "names": [{"kind": "long", "name": "json"}], "shouldDisplay": True}]}}
    assert table_from_help(document) == {"saved_model_tag": ("--saved-model-tag", "value")}


def test_api_paths_that_begin_with_a_dash(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API passes paths after "--": one that begins with '-' is still a path."""
    shutil.copyfile(FIXTURES / "keras_h5" / KERAS_FIXTURE, tmp_path / "-in.h5")
    monkeypatch.chdir(tmp_path)
    document = doconv.fold("-in.h5", "-out.h5")
    assert document["results"][0]["status"] == "folded"
    assert doconv.inspect("-in.h5")["format"] == "keras-h5"
    assert doconv.verify("-in.h5", "-out.h5")["equivalent"] is True
    folder = tmp_path / "out"
    folder.mkdir()
    assert doconv.fold(["-in.h5"], folder)["results"][0]["status"] == "folded"


def test_python_m_doconv_runs_the_tools_by_short_name() -> None:
    """`python -m doconv inspect MODEL` is doconv-inspect; an unknown tool is one error line."""
    done = subprocess.run([sys.executable, "-m", "doconv", "inspect", str(FIXTURES / ONNX_FIXTURE)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and "DO-" in done.stdout, done.stderr
    done = subprocess.run([sys.executable, "-m", "doconv", "unfold"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown tool 'unfold'" in done.stderr


def test_a_timeout_ends_the_tool_and_its_workers(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Keras file is read by a worker process (made to hang here by a test hook, as a
    library looping on a hostile file would): a Python timeout kills the whole group, so
    nothing is left running (nothing names the output on its command line afterwards)."""
    out = tmp_path / "timed-out.h5"
    monkeypatch.setenv("DOCONV_TEST_CHILD_HANG", "1")
    with pytest.raises(subprocess.TimeoutExpired):
        doconv.fold(FIXTURES / "keras_h5" / KERAS_FIXTURE, out, timeout=3)
    monkeypatch.delenv("DOCONV_TEST_CHILD_HANG")

    def running() -> List[str]:
        left = []
        for proc in pathlib.Path("/proc").iterdir():
            try:
                if str(out).encode() in (proc / "cmdline").read_bytes():
                    left.append(proc.name)
            except OSError:
                continue
        return left

    import time
    deadline = time.monotonic() + 5
    while running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running() == [], "doconv processes still running after the timeout"
