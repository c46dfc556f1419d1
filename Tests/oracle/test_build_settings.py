"""Issue 14, item 4: only the fold kernel modules are built with -Ounchecked. Everything
else, the core with its raw-pointer writes above all, keeps its preconditions in release
builds of a tool that reads hostile files."""
import json
import subprocess

from conftest import ROOT, fold_binary, tool_binary

UNCHECKED_ALLOWED = {"DOConvFoldKernels", "DOConvFoldKernelsAVX2"}


def test_only_the_kernel_modules_drop_their_checks():
    manifest = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, capture_output=True, text=True,
                                         check=True, timeout=300).stdout)
    unchecked = {target["name"] for target in manifest["targets"] for setting in target.get("settings", [])
                 if any("-Ounchecked" in flag for flag in setting.get("kind", {}).get("unsafeFlags", {}).get("_0", []))}
    assert unchecked, "the kernel modules are expected to keep -Ounchecked"
    assert unchecked <= UNCHECKED_ALLOWED, f"built without checks: {sorted(unchecked - UNCHECKED_ALLOWED)}"


def test_doconv_fold_does_not_link_the_reference_executor():
    """Issue 14, item 6: the ONNX-to-IR import lives on the verification side, so the fold
    tool carries no graph executor (only verify-equivalence does)."""
    fold = subprocess.run(["nm", "-C", str(fold_binary())], capture_output=True, text=True, check=True).stdout
    verify = subprocess.run(["nm", "-C", str(tool_binary("DOCONV_VERIFY", "verify-equivalence"))], capture_output=True, text=True,
                            check=True).stdout
    assert "ReferenceExecutor" in verify, "the check itself must see the executor where it is"
    assert "ReferenceExecutor" not in fold and "ONNXGraphImport" not in fold
