"""Shared fixtures for the oracle tests: the built doconv-fold and the fixture manifest."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


def fold_binary() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("DOCONV_FOLD", ROOT / ".build" / "debug" / "doconv-fold"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: build first (swift build)")
    return path


def run_fold(*args):
    """Runs doconv-fold and returns the CompletedProcess."""
    return subprocess.run([str(fold_binary()), *map(str, args)], capture_output=True, text=True, timeout=300)


def manifest():
    return json.loads((FIXTURES / "MANIFEST.json").read_text())
