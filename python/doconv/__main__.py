"""``python -m doconv ...``: the ``doconv`` command, with the arguments unchanged.

    python -m doconv fold model.onnx plain.onnx
    python -m doconv verify model.onnx plain.onnx
    python -m doconv --help

The executable replaces this process (as the console scripts do), so its output, error
lines and exit status are its own.
"""
from ._cli import doconv

if __name__ == "__main__":
    doconv()
