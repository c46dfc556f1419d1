"""doconv: fold DO-Conv layers into plain convolutions, from Python.

The package bundles the three doconv command-line tools (``doconv-fold``,
``doconv-inspect``, ``verify-equivalence``, also installed as console scripts) and runs
them with ``--json``; every function returns the tool's JSON document as a dict. No logic
of the tools is repeated here.

    >>> import doconv
    >>> doconv.inspect("model.onnx")["totals"]["layers"]
    3
    >>> doconv.fold("model.onnx", "plain.onnx", fuse_bn=True)["results"][0]["status"]
    'folded'
    >>> doconv.verify("model.onnx", "plain.onnx")["equivalent"]
    True

Keyword options map to the tools' flags: ``fuse_bn=True`` -> ``--fuse-bn``,
``tolerance=1e-5`` -> ``--tolerance 1e-5``, ``kernel_size={"conv1": (1, 3)}`` ->
``--kernel-size conv1=1x3``, ``dim={"batch": 2}`` -> ``--dim batch=2``. An unknown keyword
raises TypeError; a tool's error (bad input, exit status 2) raises :class:`DOConvError`.
"""
import os
from typing import Any, Dict, Optional, Sequence, Union

from ._binaries import TOOLS, binary_path
from ._options import arguments, table
from ._runner import DOConvError, PathLike, run_json

__all__ = ["fold", "inspect", "verify", "DOConvError", "binary_path", "TOOLS", "__version__"]


def _version() -> str:
    """The installed distribution's version (that of Sources/CommandLineSupport/Version.swift)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("doconv")
    except PackageNotFoundError:  # running from a source checkout
        return "0+unknown"


__version__: str = _version()


def _path(value: Any, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path, not {value!r}")
    return os.fspath(value)


def fold(
    input: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    *,
    timeout: Optional[float] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Folds the DO-Conv layers of ``input`` into plain convolutions, written to ``output``.

    Runs ``doconv-fold INPUT OUTPUT --json``. Given a list of inputs, ``output`` is a folder
    and each model is written into it under its own name (``doconv-fold IN... -o DIR``).

    Args:
        input: the model (ONNX, Keras .h5/.keras, PyTorch checkpoint, .safetensors, a
            sharded checkpoint's index or folder, MXNet .params or export symbol), or a list
            of models.
        output: the folded model's path (may be ``input``), or the folder for a list.
        timeout: seconds to wait for the tool (subprocess.TimeoutExpired after).
        **options: ``tolerance`` (float), ``no_verify``, ``fuse_bn``, ``reparam``,
            ``fold_separable``, ``keep_names``, ``strict_pickle``, ``allow_partial``, ``keep_grouped`` (bools), ``config``,
            ``params`` (paths), ``kernel_size`` ({layer: (M, N)} or ["layer=MxN", ...]),
            ``exclude``, ``only`` (a glob or a list of globs).

    Returns:
        The tool's document: ``{"format_version": 1, "tool": "doconv-fold", "results":
        [{"input", "output", "status", "exit_status", ...}, ...]}``. A model whose
        verification failed is reported there (``exit_status`` 1, nothing written), not
        raised.

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line. For a
            list of inputs, the results of all of them (those folded and written, and the
            one with ``status`` "error") are in the exception's ``document``.
        TypeError: an unknown keyword or a value of the wrong type.
    """
    flags = arguments("fold", table("doconv-fold"), options)
    if isinstance(input, (str, os.PathLike)):
        args = flags + ["--", os.fspath(input), _path(output, "output")]
    else:
        args = flags + ["-o", _path(output, "output"), "--"] + [_path(p, "each input") for p in input]
    return run_json("doconv-fold", args, documented_statuses=(0, 1), timeout=timeout)


def inspect(path: PathLike, *, timeout: Optional[float] = None, **options: Any) -> Dict[str, Any]:
    """Describes the DO-Conv layers of a model and what folding them changes; writes nothing.

    Runs ``doconv-inspect PATH --json``; the document is described by
    ``schemas/inspect-report.schema.json`` (``layers``, ``rejected``, ``totals``, ...).

    Args:
        path: the model.
        timeout: seconds to wait for the tool (subprocess.TimeoutExpired after).
        **options: ``config``, ``params``, ``svg`` (paths; ``svg`` writes the H maps there),
            ``kernel_size`` ({layer: (M, N)} or ["layer=MxN", ...]), ``reparam``,
            ``strict_pickle`` (bools), ``exclude``, ``only`` (a glob or a list of globs).

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line.
        TypeError: an unknown keyword or a value of the wrong type.
    """
    flags = arguments("inspect", table("doconv-inspect"), options)
    return run_json("doconv-inspect", [*flags, "--", _path(path, "path")], timeout=timeout)


def verify(
    original: PathLike,
    folded: PathLike,
    *,
    timeout: Optional[float] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Checks that ``folded`` computes what ``original`` computes, apart from the fold's code.

    Runs ``verify-equivalence ORIGINAL FOLDED --json``.

    Args:
        original: the model before folding.
        folded: the folded model.
        timeout: seconds to wait for the tool (subprocess.TimeoutExpired after).
        **options: ``tolerance`` (float), ``inputs``, ``seed`` (ints), ``dim``
            ({name: size} or ["name=size", ...]), ``config`` (path), ``kernel_size`` and
            ``exclude``, ``only`` (as the fold was given them), ``strict_pickle`` (bool).

    Returns:
        The tool's document: ``{"format_version": 1, "tool": "verify-equivalence",
        "equivalent": bool, "verdict": ..., ...}``. Models that are not equivalent (exit
        status 1) are a result with ``equivalent`` false, not an error.

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line.
        TypeError: an unknown keyword or a value of the wrong type.
    """
    flags = arguments("verify", table("verify-equivalence"), options)
    positional = [_path(original, "original"), _path(folded, "folded")]
    return run_json("verify-equivalence", [*flags, "--", *positional], documented_statuses=(0, 1), timeout=timeout)
