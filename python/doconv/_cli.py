"""The console scripts ``doconv-fold``, ``doconv-inspect`` and ``verify-equivalence``.

Each replaces the Python process with the bundled executable (``os.execv``), passing the
command line on unchanged, so the tool's output, error lines and exit status are exactly
those of the executable.
"""
import os
import sys
from typing import List, NoReturn, Optional

from ._binaries import binary_path


def _exec(tool: str, arguments: Optional[List[str]] = None) -> NoReturn:
    """Replaces this process with ``tool``, given ``arguments`` (this process's by default)."""
    try:
        path = binary_path(tool)
    except OSError as error:
        sys.stderr.write(f"{tool}: error: {error}\n")
        sys.exit(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(path, [path, *(sys.argv[1:] if arguments is None else arguments)])


def doconv_fold() -> NoReturn:
    """``doconv-fold``: fold the DO-Conv layers of a model (see ``doconv-fold --help``)."""
    _exec("doconv-fold")


def doconv_inspect() -> NoReturn:
    """``doconv-inspect``: report what doconv-fold would fold (see ``doconv-inspect --help``)."""
    _exec("doconv-inspect")


def verify_equivalence() -> NoReturn:
    """``verify-equivalence``: check that a folded model computes what its original computes."""
    _exec("verify-equivalence")
