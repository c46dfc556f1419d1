"""Shared fixtures for the oracle tests: the built tools and the fixture manifest."""
import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


def tool_binary(variable, name) -> pathlib.Path:
    """The built tool `name`, or the path in environment variable `variable`."""
    path = pathlib.Path(os.environ.get(variable, ROOT / ".build" / "debug" / name))
    if not path.exists():
        pytest.fail(f"{path} does not exist: build first (swift build)")
    return path


def fold_binary() -> pathlib.Path:
    return tool_binary("DOCONV_FOLD", "doconv-fold")


def run_tool(variable, name, *args, env=None, timeout=300, cwd=None):
    """Runs the tool and returns the CompletedProcess."""
    return subprocess.run([str(tool_binary(variable, name)), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def run_fold(*args):
    """Runs doconv-fold and returns the CompletedProcess."""
    return run_tool("DOCONV_FOLD", "doconv-fold", *args)


def run_inspect(*args, **kwargs):
    """Runs doconv-inspect and returns the CompletedProcess."""
    return run_tool("DOCONV_INSPECT", "doconv-inspect", *args, **kwargs)


def run_verify(*args, **kwargs):
    """Runs verify-equivalence and returns the CompletedProcess."""
    return run_tool("DOCONV_VERIFY", "verify-equivalence", *args, **({"timeout": 600} | kwargs))


def manifest(path=FIXTURES / "MANIFEST.json"):
    """The entries of a fixture manifest. An empty or missing one is an error, not an empty
    list: the tests that loop over it would otherwise pass without testing anything."""
    if not pathlib.Path(path).exists():
        raise FileNotFoundError(f"{path} is missing: regenerate the fixtures (see README, Fixtures)")
    entries = json.loads(pathlib.Path(path).read_text())
    if isinstance(entries, dict):
        entries = entries.get("entries", [])
    if not entries:
        raise ValueError(f"{path} lists no fixture: the tests that loop over it would test nothing")
    return entries


@pytest.fixture
def clean_tmpdir(tmp_path_factory, monkeypatch):
    """TMPDIR set to a fresh folder for the test, which must be empty when the test ends:
    the tools leave no temporary file or folder behind, however they end."""
    folder = tmp_path_factory.mktemp("tmpdir")
    monkeypatch.setenv("TMPDIR", str(folder))
    yield folder
    left = sorted(os.listdir(folder))
    assert not left, f"temporary files left in TMPDIR: {left}"
