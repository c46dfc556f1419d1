"""The installed wheel (scripts/test-wheel installs it into a fresh virtualenv and runs
this file with that virtualenv's python, PATH = its bin + /usr/bin:/bin, no
LD_LIBRARY_PATH): the one bundled executable loads its libraries from the package, the
umbrella command, the tools' old names and `python -m doconv` work on real fixtures, the
typed Python API does, and the versions agree with Sources/CommandLineSupport/Version.swift.

While developing, the same file runs against a source tree: with DOCONV_BIN_DIR naming a
folder that holds `doconv` and PYTHONPATH the tree's python/ folder, the tests of the
installation itself (PATH, ldd, metadata) are skipped and the console scripts are run
through the functions they call.

Fixtures come from fixtures/MANIFEST.json and fixtures/keras_h5/MANIFEST.json, as in
Tests/oracle. The onnx/onnxruntime checks run when those packages are importable, the
type checks when mypy and vermin are (scripts/test-wheel installs them all into the test
virtualenv).
"""
import importlib.metadata
import inspect
import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import pytest

import doconv
from doconv import DOConvError
from doconv._options import EXPAND, FLAG, FOLD, GLOBS, INSPECT, KERNEL_SIZES, NAMED_INTS, PATH, VALUE, VERIFY, arguments

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
KERAS = FIXTURES / "keras_h5"
EXPAND_FIXTURES = FIXTURES / "expand"
ONNX_FIXTURE = "grouped.dynamo.onnx"  # DO-DConv and DO-GConv layers, external data
KERAS_FIXTURE = "k2_net_a.h5"  # a Keras 2 full model: 3 DO-Conv, 1 DO-GConv (one 1x3, one 1x1)
SITE_PACKAGES = pathlib.Path(sysconfig.get_paths()["platlib"]).resolve()
PACKAGE = pathlib.Path(doconv.__file__).resolve().parent
#: Installed (scripts/test-wheel), not a source tree run against DOCONV_BIN_DIR.
INSTALLED = not os.environ.get("DOCONV_BIN_DIR")
installed_only = pytest.mark.skipif(not INSTALLED, reason="tests the installed wheel (DOCONV_BIN_DIR is set)")

#: The tools' old command names, the console-script function of each, and its subcommand.
OLD_NAMES = {
    "doconv-fold": ("doconv_fold", "fold"),
    "doconv-inspect": ("doconv_inspect", "inspect"),
    "verify-equivalence": ("verify_equivalence", "verify"),
    "doconv-expand": ("doconv_expand", "expand"),
}
COMMANDS = ("doconv", *OLD_NAMES)

# Libraries the manylinux policies count as the system's (auditwheel leaves them out);
# everything else the executable loads must come from the wheel.
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


def run(command: str, *args: Any, timeout: float = 300, cwd: Optional[pathlib.Path] = None) -> "subprocess.CompletedProcess[str]":
    """Runs a console script: found on PATH (the test virtualenv's bin) when installed, else
    the function it calls (doconv._cli), with the same arguments."""
    if INSTALLED:
        argv = [command]
    else:
        function = "doconv" if command == "doconv" else OLD_NAMES[command][0]
        argv = [sys.executable, "-c", f"from doconv import _cli; _cli.{function}()"]
    return subprocess.run([*argv, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def python_m(*args: Any, timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    """Runs `python -m doconv ARGS`."""
    return subprocess.run([sys.executable, "-m", "doconv", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# --- the installation -------------------------------------------------------------------


@installed_only
def test_package_imported_from_the_virtualenv() -> None:
    assert str(PACKAGE).startswith(str(SITE_PACKAGES) + os.sep), PACKAGE
    assert (PACKAGE / "py.typed").is_file()
    assert not os.environ.get("LD_LIBRARY_PATH")
    assert "/opt/swift" not in os.environ["PATH"]


@installed_only
@pytest.mark.parametrize("command", COMMANDS)
def test_console_script_on_path(command: str) -> None:
    found = shutil.which(command)
    assert found, f"{command} is not on PATH"
    assert pathlib.Path(found).parent == pathlib.Path(sys.executable).parent


@installed_only
def test_one_executable_loads_nothing_from_outside_the_package() -> None:
    """doconv/bin/doconv is the only executable; everything it loads is the system's (as the
    manylinux policy counts it) or the wheel's: libhdf5 and libprotobuf-c are linked in or
    bundled, never the build machine's."""
    assert sorted(p.name for p in (PACKAGE / "bin").iterdir()) == ["doconv"]
    binary = PACKAGE / "bin" / "doconv"
    assert doconv.binary_path() == str(binary)
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
    outside = {n: p for n, p in resolved.items()
               if not str(p).startswith(str(SITE_PACKAGES)) and n not in SYSTEM_LIBRARIES
               and not n.startswith("ld-linux")}
    assert not outside, f"doconv loads libraries from outside the wheel: {outside}"


@installed_only
def test_versions_agree_with_version_swift() -> None:
    version = swift_version()
    assert doconv.__version__ == version
    assert importlib.metadata.version("doconv") == version
    wheel = os.environ.get("DOCONV_WHEEL_FILE")
    if wheel:
        assert re.fullmatch(rf"doconv-{re.escape(version)}-py3-none-manylinux_2_\d+_x86_64\.whl",
                            pathlib.Path(wheel).name), wheel


@installed_only
def test_metadata_license_readme_urls_and_scripts() -> None:
    distribution = importlib.metadata.distribution("doconv")
    metadata = distribution.metadata
    assert metadata["License-Expression"] == "Apache-2.0"
    license_files = [f for f in distribution.files or [] if f.name == "LICENSE"]
    assert license_files, "the wheel carries no LICENSE (scripts/wheel copies it beside pyproject.toml)"
    text = license_files[0].locate().read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Documentation", "Issues"}
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "python -m doconv" in (distribution.read_text("METADATA") or "")  # the readme is the description
    scripts = {e.name: e.value for e in distribution.entry_points if e.group == "console_scripts"}
    assert scripts == {"doconv": "doconv._cli:doconv",
                       **{name: f"doconv._cli:{function}" for name, (function, _) in OLD_NAMES.items()}}


@pytest.mark.parametrize("command", COMMANDS)
def test_version(command: str) -> None:
    result = run(command, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == swift_version()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = run("doconv", "--generate-completion-script", shell)
    assert result.returncode == 0, result.stderr
    assert "fold" in result.stdout and "fuse-bn" in result.stdout and "verify" in result.stdout


@installed_only
def test_nothing_in_site_packages_changes_at_run_time(tmp_path: pathlib.Path) -> None:
    """Running the tools (console scripts, python -m, the API) writes and chmods nothing of
    the installed package."""

    def state() -> Dict[str, Tuple[int, int, int]]:
        return {str(p): (p.stat().st_mode, p.stat().st_size, p.stat().st_mtime_ns)
                for root in (PACKAGE, PACKAGE.parent / "doconv.libs") if root.exists()
                for p in sorted(root.rglob("*")) if "__pycache__" not in p.parts}

    before = state()
    assert run("doconv-inspect", FIXTURES / ONNX_FIXTURE).returncode == 0
    assert python_m("--version").returncode == 0
    doconv.fold(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx")
    assert state() == before


# --- the commands -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def folded_onnx(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """ONNX_FIXTURE folded by `doconv fold`."""
    out = tmp_path_factory.mktemp("onnx") / "grouped.folded.onnx"
    result = run("doconv", "fold", FIXTURES / ONNX_FIXTURE, out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def folded_keras(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """KERAS_FIXTURE folded by the doconv-fold console script (its HDF5 worker included)."""
    out = tmp_path_factory.mktemp("keras") / "k2_net_a.folded.h5"
    result = run("doconv-fold", KERAS / KERAS_FIXTURE, out)
    assert result.returncode == 0, result.stderr
    return out


def test_inspect_json() -> None:
    entry = manifest_entry(FIXTURES / "MANIFEST.json", ONNX_FIXTURE)
    result = run("doconv", "inspect", FIXTURES / ONNX_FIXTURE, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["format"] == "onnx"
    assert len(report["layers"]) == len(entry["do_layers"]) == report["totals"]["layers"]
    kinds = [layer["kind"] for layer in entry["do_layers"]]
    assert report["totals"]["layers_by_kind"] == {k: kinds.count(k) for k in ("DO-Conv", "DO-DConv", "DO-GConv")}
    assert [layer["kind"] for layer in report["layers"]] == kinds
    assert report["totals"]["params_folded"] < report["totals"]["params_trained"]


@pytest.mark.parametrize("old_name", ["doconv-inspect", "doconv-fold", "verify-equivalence"])
def test_old_names_are_their_subcommands(old_name: str, tmp_path: pathlib.Path) -> None:
    """`doconv-inspect ARGS` prints what `doconv inspect ARGS` prints; a bad input gives both
    the same error line and exit status."""
    subcommand = OLD_NAMES[old_name][1]
    if old_name == "doconv-inspect":
        for args in ([FIXTURES / ONNX_FIXTURE], [FIXTURES / ONNX_FIXTURE, "--json"], [KERAS / KERAS_FIXTURE]):
            old, new = run(old_name, *args), run("doconv", subcommand, *args)
            assert (old.returncode, old.stdout, old.stderr) == (new.returncode, new.stdout, new.stderr) == (0, old.stdout, "")
    missing = [tmp_path / "missing.onnx"] * (1 if subcommand == "inspect" else 2)
    old, new = run(old_name, *missing), run("doconv", subcommand, *missing)
    assert old.returncode == new.returncode == 2
    assert old.stdout == new.stdout == ""
    assert old.stderr == new.stderr
    assert old.stderr.startswith(f"{old_name}: error: ") and "missing.onnx" in old.stderr
    assert len(old.stderr.strip().splitlines()) == 1


def test_fold_onnx(folded_onnx: pathlib.Path) -> None:
    assert folded_onnx.stat().st_size > 0
    assert folded_onnx.with_name(folded_onnx.name + ".data").is_file()  # external data stays external
    report = json.loads(run("doconv-inspect", folded_onnx, "--json").stdout)
    assert report["totals"]["layers"] == 0


def test_fold_onnx_runs_like_the_original(folded_onnx: pathlib.Path) -> None:
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


def test_fold_keras(folded_keras: pathlib.Path) -> None:
    assert folded_keras.stat().st_size > 0
    report = json.loads(run("doconv", "inspect", folded_keras, "--json").stdout)
    assert report["format"] == "keras-h5"
    assert report["totals"]["layers"] == 0  # every DOConv2D became a Conv2D


def test_verify_onnx(folded_onnx: pathlib.Path) -> None:
    result = run("verify-equivalence", FIXTURES / ONNX_FIXTURE, folded_onnx)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: EQUIVALENT" in result.stdout


def test_verify_keras(folded_keras: pathlib.Path) -> None:
    result = run("doconv", "verify", KERAS / KERAS_FIXTURE, folded_keras)
    assert result.returncode == 0, result.stdout + result.stderr


def test_expand_by_its_old_name(tmp_path: pathlib.Path) -> None:
    """doconv-expand is doconv expand: the same document for the same Keras model (its
    HDF5 worker included), but the time it took."""
    documents = []
    for command in (["doconv-expand"], ["doconv", "expand"]):
        out = tmp_path / f"{len(documents)}.h5"
        result = run(*command, "--json", EXPAND_FIXTURES / "keras_plain.h5", out)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["status"] == "expanded" and document["output"] == str(out)
        documents.append({k: v for k, v in document.items() if k not in ("output", "time_ms")})
    assert documents[0] == documents[1]


def test_python_m_doconv_is_the_doconv_command(folded_onnx: pathlib.Path) -> None:
    """`python -m doconv verify A B` is `doconv verify A B`: same output and exit status;
    --version and --help come from the executable."""
    by_module = python_m("verify", FIXTURES / ONNX_FIXTURE, folded_onnx)
    assert by_module.returncode == 0 and "verdict: EQUIVALENT" in by_module.stdout, by_module.stderr
    by_module = python_m("verify", FIXTURES / ONNX_FIXTURE, folded_onnx, "--json")
    by_command = run("doconv", "verify", FIXTURES / ONNX_FIXTURE, folded_onnx, "--json")
    assert json.loads(by_module.stdout) == json.loads(by_command.stdout)
    assert python_m("--version").stdout.strip() == swift_version()
    help_text = python_m("--help")
    assert help_text.returncode == 0 and all(s in help_text.stdout for s in ("fold", "inspect", "verify"))
    bad = python_m("verify", FIXTURES / "missing.onnx", folded_onnx)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("verify-equivalence: error: ") and "missing.onnx" in bad.stderr
    unknown = python_m("unfold")
    assert unknown.returncode == 2 and "unfold" in unknown.stderr, unknown.stderr


# --- the Python API ---------------------------------------------------------------------


def test_api_inspect() -> None:
    entry = manifest_entry(FIXTURES / "MANIFEST.json", ONNX_FIXTURE)
    report = doconv.inspect(FIXTURES / ONNX_FIXTURE)
    assert report["totals"]["layers"] == len(entry["do_layers"])
    assert report["model"] == str(FIXTURES / ONNX_FIXTURE)


def test_api_inspect_kernel_sizes_map_to_repeated_flags() -> None:
    weights = KERAS / "k2_net_a_weights.h5"  # legacy weights: no config inside
    with pytest.raises(DOConvError) as error:
        doconv.inspect(weights)
    assert error.value.exit_status == 2 and "do_wide" in error.value.message
    by_map = doconv.inspect(weights, kernel_size={"do_wide": (1, 3), "do_point": 1})
    by_list = doconv.inspect(weights, kernel_size=["do_wide=1x3", ("do_point", "1x1")])
    assert by_map == by_list
    assert [layer["name"] for layer in by_map["layers"]] == ["do_stem", "do_wide", "do_group", "do_point"]
    assert by_map["layers"][1]["kernel"] == [1, 3]


def test_api_fold(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "grouped.folded.onnx"
    document = doconv.fold(FIXTURES / ONNX_FIXTURE, out)
    assert document["format_version"] == 1 and document["tool"] == "doconv-fold"
    assert document["version"] == swift_version()
    result = document["results"][0]
    assert result["status"] == "folded" and result["exit_status"] == 0
    assert pathlib.Path(result["output"]).resolve() == out.resolve()
    assert out.is_file()


def test_api_fold_keras_with_options(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "k2_net_a.folded.h5"
    document = doconv.fold(KERAS / KERAS_FIXTURE, out, tolerance=1e-5, fuse_bn=True)
    assert document["results"][0]["status"] == "folded"
    assert out.is_file()


def test_api_fold_many_into_a_folder(tmp_path: pathlib.Path) -> None:
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


def test_api_verify(folded_onnx: pathlib.Path) -> None:
    document = doconv.verify(FIXTURES / ONNX_FIXTURE, folded_onnx, inputs=2, seed=1, dim={"batch": 1})
    assert document["format_version"] == 1 and document["tool"] == "verify-equivalence"
    assert document["version"] == swift_version()
    assert document["equivalent"] is True
    assert document["end_to_end"]["ran"] and "2 seeded random inputs (seed 1)" in (document["end_to_end"]["inputs"] or "")


def test_api_verify_not_equivalent_is_a_result(folded_onnx: pathlib.Path) -> None:
    # Another model's fold: the tool exits 1 and still prints its document.
    document = doconv.verify(FIXTURES / "g1_basic.ts.onnx", folded_onnx)
    assert document["equivalent"] is False
    assert document["first_disagreement"] is not None


def test_api_verify_takes_kernel_size(tmp_path: pathlib.Path) -> None:
    """A weights-only Keras file needs the kernel sizes it does not tell, to fold and to verify."""
    weights, out = KERAS / "k2_net_a_weights.h5", tmp_path / "folded_weights.h5"
    sizes = {"do_wide": (1, 3), "do_point": 1}
    assert doconv.fold(weights, out, kernel_size=sizes)["results"][0]["status"] == "folded"
    with pytest.raises(DOConvError) as error:
        doconv.verify(weights, out)
    assert "do_wide" in error.value.message
    assert doconv.verify(weights, out, kernel_size=sizes)["equivalent"] is True


def test_api_params_picks_among_several_params_files(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An MXNet export pair with two params files (two epochs): fold, inspect and verify each
    need params= (here a relative path that begins with '-')."""
    folder = tmp_path / "-mx"
    folder.mkdir()
    for name in ("basic-symbol.json", "basic-0000.params"):
        shutil.copyfile(FIXTURES / "mxnet" / name, folder / name)
    shutil.copyfile(FIXTURES / "mxnet" / "basic-0000.params", folder / "basic-0007.params")
    monkeypatch.chdir(tmp_path)
    symbol, params = pathlib.Path("-mx/basic-symbol.json"), pathlib.Path("-mx/basic-0007.params")
    out = tmp_path / "out"
    out.mkdir()
    folded = out / "plain-symbol.json"
    for call in (lambda: doconv.fold(symbol, folded), lambda: doconv.inspect(symbol), lambda: doconv.verify(symbol, symbol)):
        with pytest.raises(DOConvError, match="--params"):
            call()
    assert doconv.fold(symbol, folded, params=params)["results"][0]["status"] == "folded"
    assert sorted(p.name for p in out.iterdir()) == ["plain-0007.params", "plain-symbol.json"]
    assert doconv.inspect(symbol, params=params)["totals"]["layers"] > 0
    shutil.copyfile(out / "plain-0007.params", out / "plain-0000.params")  # FOLDED's pair has several too
    assert doconv.verify(symbol, folded, params=params)["equivalent"] is True


def test_api_expand(tmp_path: pathlib.Path) -> None:
    """A plain PyTorch checkpoint expanded (groups its kernels cannot tell, a larger Dmul)
    folds back and verifies against the plain model; without the groups it is an error
    that still carries the document."""
    plain, out = EXPAND_FIXTURES / "plain.pth", tmp_path / "expanded.pth"
    manifest = json.loads((EXPAND_FIXTURES / "MANIFEST.json").read_text())
    with pytest.raises(DOConvError) as error:
        doconv.expand(plain, out)
    assert error.value.tool == "doconv-expand" and "--groups" in error.value.message
    assert error.value.document is not None and error.value.document["status"] == "error"
    document = doconv.expand(plain, out, groups=manifest["groups"], dmul=20, seed=3)
    assert document["tool"] == "doconv-expand" and document["status"] == "expanded"
    assert document["version"] == swift_version()
    assert {layer["name"] for layer in document["layers"]} >= {"stem", "dw", "grouped"}
    assert all(layer["d_mul"] == 20 for layer in document["layers"] if layer["kernel"] == [3, 3])
    sizes = {layer["name"]: tuple(layer["kernel"]) for layer in manifest["layers"]}
    assert doconv.fold(out, tmp_path / "back.pth", kernel_size=sizes)["results"][0]["status"] == "folded"
    assert doconv.verify(plain, out)["equivalent"] is True


def test_api_bad_input_raises(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07not a model at all")
    calls: List[Tuple[Any, str]] = [
        (lambda: doconv.inspect(tmp_path / "missing.onnx"), "doconv-inspect"),
        (lambda: doconv.fold(bad, tmp_path / "out.onnx"), "doconv-fold"),
        (lambda: doconv.verify(bad, bad), "verify-equivalence"),
    ]
    for call, tool in calls:
        with pytest.raises(DOConvError) as error:
            call()
        assert error.value.exit_status == 2
        assert error.value.tool == tool
        assert str(error.value) == error.value.message
        assert error.value.message.startswith(f"{tool}: error: ") and "\n" not in error.value.message
    assert not (tmp_path / "out.onnx").exists()
    copy = pickle.loads(pickle.dumps(error.value))
    assert (copy.message, copy.exit_status, copy.tool) == (error.value.message, 2, "verify-equivalence")


def test_api_wrong_keywords_and_values_raise_type_error(tmp_path: pathlib.Path) -> None:
    bad: Any = doconv.fold  # the calls below are wrong on purpose
    with pytest.raises(TypeError, match="fuse_batchnorm"):
        bad(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx", fuse_batchnorm=True)
    with pytest.raises(TypeError, match="input"):
        bad(input=FIXTURES / ONNX_FIXTURE, output=tmp_path / "out.onnx")
    with pytest.raises(TypeError, match="fuse_bn"):
        doconv.verify(FIXTURES / ONNX_FIXTURE, FIXTURES / ONNX_FIXTURE, fuse_bn=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="tolerance"):
        doconv.inspect(FIXTURES / ONNX_FIXTURE, tolerance=1e-5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="fuse_bn must be True or False"):
        bad(FIXTURES / ONNX_FIXTURE, tmp_path / "out.onnx", fuse_bn="yes")
    with pytest.raises(TypeError, match="output must be a path"):
        bad(FIXTURES / ONNX_FIXTURE, 3)
    assert not (tmp_path / "out.onnx").exists()


def test_options_spelled_as_flags() -> None:
    values: Dict[str, Any] = dict.fromkeys(FOLD)
    values.update(fuse_bn=True, reparam=False, tolerance=1e-5, kernel_size={"conv1": (3, 3), "row": [1, 3]},
                  config=pathlib.Path("-m.json"), exclude="-attn", only=["layer1.*", "stem"], strict_pickle=True)
    assert arguments(FOLD, values) == [
        "--tolerance=1e-05", "--config=-m.json", "--kernel-size=conv1=3x3", "--kernel-size=row=1x3", "--fuse-bn",
        "--strict-pickle", "--exclude=-attn", "--only=layer1.*", "--only=stem"]
    values = dict.fromkeys(VERIFY)
    values.update(dim={"batch": 2, "seq": 7}, inputs=3)
    assert arguments(VERIFY, values) == ["--inputs=3", "--dim=batch=2", "--dim=seq=7"]
    values.update(dim=["batch=2", ("seq", 7)], inputs=None)
    assert arguments(VERIFY, values) == ["--dim=batch=2", "--dim=seq=7"]
    with pytest.raises(TypeError, match="exclude must be a glob or a list of globs"):
        arguments(VERIFY, {**values, "exclude": 3})
    with pytest.raises(TypeError, match="size of layer 'x'"):
        arguments(VERIFY, {**values, "kernel_size": {"x": (1, 2, 3)}})


def dump_help(subcommand: str) -> Mapping[str, Any]:
    """`doconv SUBCOMMAND --experimental-dump-help`: the options the tool declares."""
    result = subprocess.run([doconv.binary_path(), subcommand, "--experimental-dump-help"], capture_output=True,
                            text=True, check=True, timeout=60)
    document: Mapping[str, Any] = json.loads(result.stdout)
    return document


#: Options the API passes itself (--json, -o for a list of models) or that only change the
#: text output it does not read.
NOT_KEYWORDS = {"help", "version", "json", "output-dir", "quiet", "maps"}


def declared_keywords(subcommand: str) -> Dict[str, str]:
    """The keywords the tool's declared options call for, with the kind of each value: every
    option its help shows, named with _ for -, but NOT_KEYWORDS."""
    command = dump_help(subcommand)["command"]
    if command.get("commandName") != subcommand:  # the document of the root: find the subcommand's
        command = next(c for c in command.get("subcommands", []) if c["commandName"] == subcommand)
    keywords: Dict[str, str] = {}
    for argument in command["arguments"]:
        longs = [n["name"] for n in argument.get("names", []) if n["kind"] == "long"]
        if argument["kind"] == "positional" or not argument.get("shouldDisplay", True) or not longs:
            continue
        if longs[0] in NOT_KEYWORDS:
            continue
        value = argument.get("valueName", "")
        if argument["kind"] == "flag":
            kind = FLAG
        elif argument.get("isRepeating"):
            kind = {"glob": GLOBS, "layer=MxN": KERNEL_SIZES, "name=value": NAMED_INTS, "LAYER=G": NAMED_INTS}.get(
                value, f"repeated {value}")
        else:
            kind = PATH if value.lower() in ("file", "template") else VALUE
        keywords[longs[0].replace("-", "_")] = kind
    return keywords


@pytest.mark.parametrize("function, table, subcommand", [
    (doconv.fold, FOLD, "fold"), (doconv.inspect, INSPECT, "inspect"), (doconv.verify, VERIFY, "verify"),
    (doconv.expand, EXPAND, "expand")])
def test_keywords_are_the_tools_declared_options(function: Any, table: Mapping[str, str], subcommand: str) -> None:
    """Each function's keyword-only parameters (but timeout) are the options its tool
    declares, each spelled as the tool reads it: a new option of the tool fails this until
    the API takes it."""
    declared = declared_keywords(subcommand)
    parameters = inspect.signature(function).parameters
    keywords = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"timeout"}
    assert keywords == set(declared), f"{function.__name__}(): keywords {sorted(keywords)}, the tool's {sorted(declared)}"
    assert dict(table) == declared
    for name, kind in declared.items():
        annotation = str(parameters[name].annotation)
        assert (annotation == "<class 'bool'>") == (kind == FLAG), (name, annotation)
        assert parameters[name].default in (None, False)


def test_api_paths_that_begin_with_a_dash(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths go after "--" and option values as --flag=value: a path or value that begins
    with '-' (str or pathlib.Path) is still a path."""
    shutil.copyfile(KERAS / KERAS_FIXTURE, tmp_path / "-in.h5")
    shutil.copyfile(KERAS / "k2_net_a_weights.h5", tmp_path / "-weights.h5")
    shutil.copyfile(KERAS / "k2_net_a.json", tmp_path / "-config.json")
    monkeypatch.chdir(tmp_path)
    document = doconv.fold("-in.h5", pathlib.Path("-out.h5"))
    assert document["results"][0]["status"] == "folded"
    assert doconv.inspect(pathlib.Path("-in.h5"))["format"] == "keras-h5"
    assert doconv.verify("-in.h5", "-out.h5")["equivalent"] is True
    folder = tmp_path / "out"
    folder.mkdir()
    assert doconv.fold([pathlib.Path("-in.h5")], folder)["results"][0]["status"] == "folded"
    # Option values: a config file and an SVG file named '-...', a glob that begins with '-'.
    report = doconv.inspect("-weights.h5", config=pathlib.Path("-config.json"), svg="-maps.svg", exclude="-none")
    assert report["totals"]["layers"] == 4
    assert pathlib.Path("-maps.svg").read_text().lstrip().startswith("<")
    # doconv fold and doconv expand hand the options to their HDF5 worker: they must stay
    # values there too.
    folded = doconv.fold("-weights.h5", "-weights.out.h5", config="-config.json", exclude="-none")
    assert folded["results"][0]["status"] == "folded"
    shutil.copyfile(EXPAND_FIXTURES / "keras_plain_weights.h5", tmp_path / "-plain.h5")
    shutil.copyfile(EXPAND_FIXTURES / "keras_plain.json", tmp_path / "-plain.json")
    expanded = doconv.expand("-plain.h5", "-expanded.h5", config=pathlib.Path("-plain.json"), exclude="-none")
    assert expanded["status"] == "expanded"
    assert doconv.verify("-weights.h5", "-weights.out.h5", config=pathlib.Path("-config.json"))["equivalent"] is True


def test_documents_have_the_keys_of_their_types(folded_onnx: pathlib.Path) -> None:
    """Real documents against the generated TypedDicts: every key a type requires is there,
    and no key is one the type does not know."""

    def check(value: Mapping[str, Any], kind: Any, where: str) -> None:
        assert kind.__required_keys__ <= set(value), f"{where}: missing {kind.__required_keys__ - set(value)}"
        assert set(value) <= set(kind.__annotations__), f"{where}: unknown {set(value) - set(kind.__annotations__)}"

    fold = doconv.fold(FIXTURES / ONNX_FIXTURE, folded_onnx.with_name("again.onnx"), fuse_bn=True)
    check(fold, doconv.FoldDocument, "fold")
    check(fold["results"][0], doconv.FoldResult, "fold results")
    check(fold["results"][0]["layers"][0], doconv.FoldResultLayer, "fold layers")
    inspected = doconv.inspect(FIXTURES / ONNX_FIXTURE, reparam=True)
    check(inspected, doconv.InspectDocument, "inspect")
    check(inspected["layers"][0], doconv.InspectLayer, "inspect layers")
    check(inspected["totals"], doconv.InspectTotals, "inspect totals")
    assert "reparam" in inspected  # the key that is there only with reparam=True
    assert "reparam" not in doconv.inspect(FIXTURES / ONNX_FIXTURE)
    verified = doconv.verify(FIXTURES / "g1_basic.ts.onnx", folded_onnx)
    check(verified, doconv.VerifyDocument, "verify")
    check(verified["end_to_end"], doconv.VerifyEndToEnd, "verify end_to_end")
    assert verified["first_disagreement"] is not None
    check(verified["first_disagreement"], doconv.VerifyFirstDisagreement, "verify first_disagreement")
    expanded = doconv.expand(EXPAND_FIXTURES / "keras_plain.h5", folded_onnx.with_name("expanded.h5"))
    check(expanded, doconv.ExpandDocument, "expand")
    check(expanded["layers"][0], doconv.ExpandLayer, "expand layers")


def test_generated_documents_are_current(tmp_path: pathlib.Path) -> None:
    """python/doconv/_documents.py (and the installed copy) is what
    scripts/generate-python-types writes from schemas/ now."""
    fresh = tmp_path / "_documents.py"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate-python-types"), str(fresh)], check=True, timeout=60)
    expected = fresh.read_bytes()
    assert (ROOT / "python" / "doconv" / "_documents.py").read_bytes() == expected, \
        "python/doconv/_documents.py is stale: run scripts/generate-python-types"
    assert (PACKAGE / "_documents.py").read_bytes() == expected
    roots = {f"{p.name.split('-')[0].capitalize()}Document" for p in (ROOT / "schemas").glob("*.schema.json")}
    assert roots <= set(doconv.__all__), "every schema's document type is exported by doconv"


MYPY_SAMPLE = '''\
import pathlib
import doconv

doc = doconv.fold(pathlib.Path("a.onnx"), "-b.onnx", fuse_bn=True, kernel_size={"c": (1, 3)}, exclude="x*")
reveal_type(doc["results"][0]["status"])
status: int = doc["results"][0]["status"]
doconv.fold("a.onnx", "b.onnx", fuse_batchnorm=True)
doconv.verify("a", "b", kernel_size=["c=1x3"], params="p.params", dim={"batch": 2})
doconv.verify("a", "b", inputs="3")
report = doconv.inspect("a.onnx")
reveal_type(report["layers"][0]["kind"])
report["totals"]["layer"]
'''


def test_mypy_strict(tmp_path: pathlib.Path) -> None:
    """mypy --strict passes on the package, and its types catch what they should in a user's
    code: a document's field of the wrong type, a misspelled keyword or key, a string for
    an int."""
    pytest.importorskip("mypy")
    environment = dict(os.environ)
    if not INSTALLED:  # mypy does not read PYTHONPATH
        environment["MYPYPATH"] = str(PACKAGE.parent)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    package = subprocess.run([*mypy, "-p", "doconv"], capture_output=True, text=True, env=environment, timeout=600)
    assert package.returncode == 0, package.stdout + package.stderr
    sample = tmp_path / "sample.py"
    sample.write_text(MYPY_SAMPLE)
    result = subprocess.run([*mypy, str(sample)], capture_output=True, text=True, env=environment, timeout=600,
                            cwd=tmp_path)
    lines: Dict[int, List[str]] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"sample\.py:(\d+): (\w+): (.*)", line)
        if match:
            lines.setdefault(int(match.group(1)), []).append(f"{match.group(2)}: {match.group(3)}")
    status = " ".join(lines.get(5, []))
    assert "Revealed type" in status and "Any" not in status, result.stdout
    assert all(f"'{s}'" in status for s in ("folded", "unchanged", "verification_failed", "error")), result.stdout
    assert [m for m in lines.get(6, []) if "Incompatible types in assignment" in m], result.stdout
    assert [m for m in lines.get(7, []) if 'Unexpected keyword argument "fuse_batchnorm"' in m], result.stdout
    assert 8 not in lines, result.stdout
    assert [m for m in lines.get(9, []) if 'Argument "inputs"' in m], result.stdout
    assert "DO-Conv" in " ".join(lines.get(11, [])), result.stdout
    assert [m for m in lines.get(12, []) if '"layer"' in m], result.stdout
    assert set(lines) == {5, 6, 7, 9, 11, 12}, result.stdout


def test_package_runs_on_python_3_8() -> None:
    """The package claims Python >= 3.8 and no such interpreter runs these tests: vermin
    finds what a newer Python would be needed for (annotations included: a TypedDict's and a
    function's are evaluated at run time)."""
    pytest.importorskip("vermin")
    vermin = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]  # it has no __main__
    result = subprocess.run([*vermin, "--target=3.8-", "--violations", "--eval-annotations",
                             "--no-tips", str(PACKAGE), str(ROOT / "scripts" / "generate-python-types")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_timeout_ends_the_tool_and_its_workers(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Keras file is read by a worker process (made to hang here by a test hook, as a
    library looping on a hostile file would). The tool runs in a process group of its own
    that the worker joins; a Python timeout kills the whole group, so nothing is left."""
    out = tmp_path / "timed-out.h5"
    monkeypatch.setenv("DOCONV_TEST_CHILD_HANG", "1")
    raised: List[BaseException] = []

    def fold() -> None:
        try:
            doconv.fold(KERAS / KERAS_FIXTURE, out, timeout=8)
        except BaseException as error:  # noqa: B902 - handed to the test's thread
            raised.append(error)

    def processes() -> Dict[int, Tuple[str, int, bytes]]:
        """Every live process: its state, process group and command line."""
        found = {}
        for proc in pathlib.Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rpartition(")")[2].split()
                found[int(proc.name)] = (fields[0], int(fields[2]), (proc / "cmdline").read_bytes())
            except (OSError, IndexError, ValueError):
                continue
        return found

    def members(group: int) -> Set[int]:
        return {pid for pid, (state, pgid, _) in processes().items() if pgid == group and state != "Z"}

    thread = threading.Thread(target=fold, daemon=True)  # daemon: a failure here must not hang pytest
    thread.start()
    tool: Optional[int] = None
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and (tool is None or len(members(tool)) < 2):
        tool = next((pid for pid, (_, pgid, cmdline) in processes().items()
                     if pgid == pid and str(out).encode() in cmdline), tool)
        time.sleep(0.05)
    assert tool is not None, "the tool never ran"
    try:
        assert len(members(tool)) >= 2, "the HDF5 worker never joined the tool's process group"
        thread.join(60)
        assert not thread.is_alive(), "fold() did not return after its timeout (a worker holds its pipes?)"
        assert len(raised) == 1 and isinstance(raised[0], subprocess.TimeoutExpired), raised
        deadline = time.monotonic() + 5
        while members(tool) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert members(tool) == set(), "processes of the tool's group still running after the timeout"
        assert not out.exists()
    finally:  # a failure leaves nothing running either
        for pid in members(tool):
            os.kill(pid, signal.SIGKILL)
