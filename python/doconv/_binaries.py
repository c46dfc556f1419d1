"""Where the bundled command-line tools are: ``doconv/bin/`` inside the installed package.

The wheel built by ``scripts/wheel`` carries the three executables in ``doconv/bin/`` and
the shared libraries they need (libprotobuf-c, libhdf5 and their dependencies) in
``doconv.libs/`` beside the package, found through the executables' rpath. Setting
``DOCONV_BIN_DIR`` points the package at another folder holding the three tools (for
example a ``swift build`` output while developing).
"""
import os
import pathlib
from typing import Dict, Tuple

#: The tools the package runs, by the name of their executable.
TOOLS: Tuple[str, ...] = ("doconv-fold", "doconv-inspect", "verify-equivalence")

#: The folder of the bundled executables.
BIN_DIR = pathlib.Path(__file__).resolve().parent / "bin"


def bin_dir() -> pathlib.Path:
    """The folder the tools are run from: ``$DOCONV_BIN_DIR`` if set, else ``doconv/bin``."""
    override = os.environ.get("DOCONV_BIN_DIR")
    return pathlib.Path(override) if override else BIN_DIR


def binary_path(tool: str) -> str:
    """The absolute path of executable ``tool`` (one of :data:`TOOLS`).

    Raises ValueError for an unknown tool and FileNotFoundError when the executable is
    missing (a source checkout or an sdist install, which carry no binaries).
    """
    if tool not in TOOLS:
        raise ValueError(f"unknown doconv tool {tool!r}; the tools are {', '.join(TOOLS)}")
    path = bin_dir() / tool
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the doconv executable is missing; install a doconv wheel built by scripts/wheel "
            "(or set DOCONV_BIN_DIR to a folder holding doconv-fold, doconv-inspect and verify-equivalence)"
        )
    if not os.access(path, os.X_OK):
        # Nothing in site-packages is changed at run time: an installer dropped the mode bits.
        raise PermissionError(f"{path}: not executable; reinstall the doconv wheel (pip keeps its mode bits)")
    return str(path)


def binary_paths() -> Dict[str, str]:
    """Every tool's executable, by tool name."""
    return {tool: binary_path(tool) for tool in TOOLS}
