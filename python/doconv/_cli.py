"""The console scripts: ``doconv`` and the tools' own names (``doconv-fold``,
``doconv-inspect``, ``verify-equivalence``, ``doconv-expand``).

Each replaces the Python process with the bundled ``doconv`` (``os.execv``) run under its
own name as argv[0], which is how the executable tells which tool to be, and passes the
command line on unchanged: output, error lines and exit status are the executable's.
"""
import os
import sys
from typing import NoReturn

from ._binaries import EXECUTABLE, binary_path


def run_as(name: str) -> NoReturn:
    """Replaces this process with ``doconv`` run as ``name``, given this process's arguments."""
    try:
        path = binary_path()
    except OSError as error:
        sys.stderr.write(f"{name}: error: {error}\n")
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [name, *sys.argv[1:]])


def doconv() -> NoReturn:
    """``doconv``: every tool, by its subcommand (``doconv fold``, ...; see ``doconv --help``)."""
    run_as(EXECUTABLE)


def doconv_fold() -> NoReturn:
    """``doconv-fold``, the same as ``doconv fold``: fold the DO-Conv layers of a model."""
    run_as("doconv-fold")


def doconv_inspect() -> NoReturn:
    """``doconv-inspect``, the same as ``doconv inspect``: report what a fold would fold."""
    run_as("doconv-inspect")


def verify_equivalence() -> NoReturn:
    """``verify-equivalence``, the same as ``doconv verify``: does a folded model compute what
    its original computes?"""
    run_as("verify-equivalence")


def doconv_expand() -> NoReturn:
    """``doconv-expand``, the same as ``doconv expand``: turn plain conv weights into DO-Conv ones."""
    run_as("doconv-expand")
