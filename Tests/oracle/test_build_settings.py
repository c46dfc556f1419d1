"""Issue 14, item 4: only the fold kernel modules are built with -Ounchecked. Everything
else, the core with its raw-pointer writes above all, keeps its preconditions in release
builds of a tool that reads hostile files."""
import json
import subprocess

from conftest import ROOT

UNCHECKED_ALLOWED = {"DOConvFoldKernels", "DOConvFoldKernelsAVX2"}


def test_only_the_kernel_modules_drop_their_checks():
    unchecked = {target["name"] for target in _manifest()["targets"] for setting in target.get("settings", [])
                 if any("-Ounchecked" in flag for flag in setting.get("kind", {}).get("unsafeFlags", {}).get("_0", []))}
    assert unchecked, "the kernel modules are expected to keep -Ounchecked"
    assert unchecked <= UNCHECKED_ALLOWED, f"built without checks: {sorted(unchecked - UNCHECKED_ALLOWED)}"


def _manifest():
    return json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, capture_output=True, text=True,
                                     check=True, timeout=300).stdout)


def _closure(targets, start):
    """Every target `start` depends on, directly or not (itself included)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in targets:
            continue
        seen.add(name)
        for dependency in targets[name].get("dependencies", []):
            for kind in ("byName", "target"):
                if kind in dependency:
                    todo.append(dependency[kind][0])
    return seen


def test_the_fold_side_does_not_depend_on_the_reference_executor():
    """Issue 14, item 6: the ONNX-to-IR import and the reference executor live on the
    verification side. All tools are now one executable (issue 28), so the boundary is
    the modules': nothing the fold reaches through the format registry depends on the
    graph executor or on a verification module."""
    targets = {target["name"]: target for target in _manifest()["targets"]}
    fold_side = _closure(targets, "DOConvFormats")
    verify_side = _closure(targets, "DOConvVerifyONNX")
    assert "DOConvGraph" in verify_side, "the check itself must see the executor where it is"
    assert "DOConvONNX" in fold_side
    crossing = sorted(name for name in fold_side if name == "DOConvGraph" or name.startswith("DOConvVerify"))
    assert not crossing, f"the fold side depends on {crossing}"
