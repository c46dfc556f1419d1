"""Where the bundled executable is: ``doconv/bin/doconv`` inside the installed package.

The wheel built by ``scripts/wheel`` carries one executable, ``doconv``, that serves every
tool: chosen by its subcommand (``doconv fold ...``) or by the name it is run under
(argv[0] ``doconv-fold``), with the same flags, output and exit status either way. The
shared libraries it needs (libprotobuf-c, libhdf5 and their dependencies) are in
``doconv.libs/`` beside the package, found through its rpath. ``DOCONV_BIN_DIR`` points
the package at another folder holding ``doconv`` (a ``swift build`` output while
developing, for example).
"""
import os
import pathlib
from typing import Dict

#: The executable's file name.
EXECUTABLE = "doconv"

#: The tools, by the command name each had as an executable of its own (and still answers
#: to, as a console script), with the ``doconv`` subcommand that runs it.
TOOLS: Dict[str, str] = {
    "doconv-fold": "fold",
    "doconv-inspect": "inspect",
    "verify-equivalence": "verify",
    "doconv-expand": "expand",
}

#: The folder of the bundled executable.
BIN_DIR = pathlib.Path(__file__).resolve().parent / "bin"


def bin_dir() -> pathlib.Path:
    """The folder ``doconv`` is run from: ``$DOCONV_BIN_DIR`` if set, else ``doconv/bin``."""
    override = os.environ.get("DOCONV_BIN_DIR")
    return pathlib.Path(override) if override else BIN_DIR


def binary_path() -> str:
    """The absolute path of the ``doconv`` executable.

    Raises FileNotFoundError when it is missing (a source checkout or an sdist install,
    which carry no binaries) and PermissionError when it is not executable.
    """
    path = bin_dir() / EXECUTABLE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the doconv executable is missing; install a doconv wheel built by scripts/wheel "
            "(or set DOCONV_BIN_DIR to a folder holding doconv)"
        )
    if not os.access(path, os.X_OK):
        # Nothing in site-packages is changed at run time: an installer dropped the mode bits.
        raise PermissionError(f"{path}: not executable; reinstall the doconv wheel (pip keeps its mode bits)")
    return str(path.absolute())
