"""``python -m doconv TOOL ...``: runs a bundled tool by its short name.

    python -m doconv fold model.onnx plain.onnx      # doconv-fold
    python -m doconv inspect model.onnx              # doconv-inspect
    python -m doconv verify model.onnx plain.onnx    # verify-equivalence

The tool replaces this process (as the console scripts do), so its output, error lines and
exit status are the tool's own.
"""
import sys
from typing import Dict, List, NoReturn

from ._cli import _exec

#: Short names of the bundled tools.
SUBCOMMANDS: Dict[str, str] = {"fold": "doconv-fold", "inspect": "doconv-inspect", "verify": "verify-equivalence"}


def main(argv: List[str]) -> NoReturn:
    """Runs the tool ``argv[0]`` names with the rest of ``argv``."""
    usage = "usage: python -m doconv {fold,inspect,verify} ...  (each tool's --help says more)\n"
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(usage)
        sys.exit(0 if argv else 2)
    tool = SUBCOMMANDS.get(argv[0])
    if tool is None:
        sys.stderr.write(f"doconv: error: unknown tool {argv[0]!r}\n{usage}")
        sys.exit(2)
    _exec(tool, argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
