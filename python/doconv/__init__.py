"""doconv: fold DO-Conv layers into plain convolutions, from Python.

The package bundles the ``doconv`` executable (its tools are subcommands: ``doconv fold``,
``doconv inspect``, ``doconv verify``, ``doconv expand``; console scripts ``doconv``,
``doconv-fold``, ``doconv-inspect``, ``verify-equivalence`` and ``doconv-expand`` run it)
and runs it with ``--json``; every function returns the tool's JSON document as a
TypedDict generated from ``schemas/`` (:class:`FoldDocument`, :class:`InspectDocument`,
:class:`VerifyDocument`, :class:`ExpandDocument`). No logic of the tools is repeated here.

    >>> import doconv
    >>> doconv.inspect("model.onnx")["totals"]["layers"]
    3
    >>> doconv.fold("model.onnx", "plain.onnx", fuse_bn=True)["results"][0]["status"]
    'folded'
    >>> doconv.verify("model.onnx", "plain.onnx")["equivalent"]
    True

Keyword options are the tools' flags: ``fuse_bn=True`` -> ``--fuse-bn``,
``tolerance=1e-5`` -> ``--tolerance=1e-05``, ``kernel_size={"conv1": (1, 3)}`` ->
``--kernel-size=conv1=1x3``, ``dim={"batch": 2}`` -> ``--dim=batch=2``. Paths may be
``str`` or ``pathlib.Path`` and may begin with ``-``. A tool's error (bad input, exit
status 2) raises :class:`DOConvError`.
"""
import os
from typing import Optional, Sequence, Union, cast

from . import _documents
from ._binaries import TOOLS, binary_path
from ._documents import *  # noqa: F401,F403 - the document types, listed in _documents.__all__
from ._documents import ExpandDocument, FoldDocument, InspectDocument, VerifyDocument
from ._options import EXPAND, FOLD, INSPECT, VERIFY, Globs, KernelSizes, NamedInts, PathLike, arguments, path
from ._runner import DOConvError, run_json

__all__ = [
    "fold",
    "inspect",
    "verify",
    "expand",
    "DOConvError",
    "binary_path",
    "TOOLS",
    "PathLike",
    "KernelSizes",
    "NamedInts",
    "Globs",
    "__version__",
] + _documents.__all__


def _version() -> str:
    """The installed distribution's version (that of Sources/CommandLineSupport/Version.swift)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("doconv")
    except PackageNotFoundError:  # running from a source checkout
        return "0+unknown"


__version__: str = _version()


def fold(
    model: Union[PathLike, Sequence[PathLike]],
    output: PathLike,
    *,
    tolerance: Optional[float] = None,
    no_verify: bool = False,
    config: Optional[PathLike] = None,
    kernel_size: Optional[KernelSizes] = None,
    params: Optional[PathLike] = None,
    fuse_bn: bool = False,
    fold_separable: bool = False,
    reparam: bool = False,
    keep_names: bool = False,
    strict_pickle: bool = False,
    allow_partial: bool = False,
    keep_grouped: bool = False,
    exclude: Optional[Globs] = None,
    only: Optional[Globs] = None,
    timeout: Optional[float] = None,
) -> FoldDocument:
    """Folds the DO-Conv layers of ``model`` into plain convolutions, written to ``output``.

    Runs ``doconv fold --json MODEL OUTPUT``. Given a list of models, ``output`` is a folder
    and each model is written into it under its own name (``doconv fold IN... -o DIR``).

    Args:
        model: the model (ONNX, Keras .h5/.keras, PyTorch checkpoint, .safetensors, a
            sharded checkpoint's index or folder, MXNet .params or export symbol,
            TensorFlow checkpoint prefix), or a list of models.
        output: the folded model's path (may be ``model``), or the folder for a list.
        tolerance: largest accepted relative error per layer (default: 1e-5 for float32,
            1e-10 for float64, 5e-3 for float16, 3e-2 for bfloat16).
        no_verify: skip the per-layer numerical verification.
        config: Keras, TensorFlow: the model's JSON (``model.to_json()``), for files that
            carry no config.
        kernel_size: Keras, PyTorch, TensorFlow: layers' kernel sizes when nothing else
            gives them: ``{"conv1": (1, 3)}`` or ``["conv1=1x3"]``.
        params: MXNet: the export's params file, when several ``NAME-NNNN.params`` sit
            beside ``NAME-symbol.json``.
        fuse_bn: Keras, ONNX: also fold each inference-mode BatchNormalization into the
            conv before it.
        fold_separable: Keras, ONNX: also fold depthwise + 1x1 pairs and SeparableConv2D
            with Dmul < M*N (raises their MACs).
        reparam: ONNX: also merge linear over-parameterizations (RepVGG, ACNet,
            MobileOne, DBB branches summed; ExpandNets chains; Conv + BatchNormalization)
            into single Convs.
        keep_names: PyTorch: keep the key ``P.W`` for the folded kernel instead of
            nn.Conv2d's ``P.weight``.
        strict_pickle: PyTorch: refuse checkpoints that pickle Python objects (as
            ``torch.load(weights_only=True)`` does) instead of carrying them through
            unexecuted.
        allow_partial: Keras, TensorFlow: without a config, fold what can be told and
            leave a layer that may be a 1x1 DOConv2D or a Conv1D unfolded.
        keep_grouped: Keras, TensorFlow: write a folded DO-DConv as
            ``Conv2D(groups=Cin)`` instead of DepthwiseConv2D.
        exclude: leave the layers whose name matches this glob (or one of these) unfolded
            (``*`` also crosses dots and slashes).
        only: fold only the layers whose name matches one of these globs.
        timeout: seconds to wait for the tool; after it the tool and its workers are
            killed and subprocess.TimeoutExpired is raised.

    Returns:
        The tool's document: ``doc["results"]`` holds one :class:`FoldResult` per model
        (``status``, ``exit_status``, ``layers``, ...). A model whose verification failed
        is reported there (``exit_status`` 1, nothing written), not raised.

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line. For a
            list of models, the results of all of them (those folded and written, and the
            one with ``status`` "error") are in the exception's ``document``.
        TypeError: a value of the wrong type.
    """
    flags = arguments(FOLD, locals())
    if isinstance(model, (str, os.PathLike)):
        args = [*flags, "--", path(model, "model"), path(output, "output")]
    else:
        args = [*flags, f"--output-dir={path(output, 'output')}", "--", *(path(m, "each model") for m in model)]
    return cast(FoldDocument, run_json("doconv-fold", args, documented_statuses=(0, 1), timeout=timeout))


def inspect(
    model: PathLike,
    *,
    svg: Optional[PathLike] = None,
    config: Optional[PathLike] = None,
    kernel_size: Optional[KernelSizes] = None,
    params: Optional[PathLike] = None,
    reparam: bool = False,
    strict_pickle: bool = False,
    exclude: Optional[Globs] = None,
    only: Optional[Globs] = None,
    timeout: Optional[float] = None,
) -> InspectDocument:
    """Describes the DO-Conv layers of a model and what folding them changes; writes nothing
    (but ``svg``).

    Runs ``doconv inspect --json MODEL``.

    Args:
        model: the model.
        svg: write every layer's H map into this SVG file.
        config, kernel_size, params, strict_pickle, exclude, only: as for :func:`fold`.
        reparam: ONNX: also list the blocks ``fold(..., reparam=True)`` would merge into
            one Conv each, and the look-alikes it would leave (``doc["reparam"]``).
        timeout: as for :func:`fold`.

    Returns:
        The tool's document: ``layers``, ``rejected``, ``totals``, ...

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line.
        TypeError: a value of the wrong type.
    """
    flags = arguments(INSPECT, locals())
    return cast(InspectDocument, run_json("doconv-inspect", [*flags, "--", path(model, "model")], timeout=timeout))


def verify(
    original: PathLike,
    folded: PathLike,
    *,
    tolerance: Optional[float] = None,
    inputs: Optional[int] = None,
    seed: Optional[int] = None,
    dim: Optional[NamedInts] = None,
    config: Optional[PathLike] = None,
    kernel_size: Optional[KernelSizes] = None,
    params: Optional[PathLike] = None,
    strict_pickle: bool = False,
    exclude: Optional[Globs] = None,
    only: Optional[Globs] = None,
    timeout: Optional[float] = None,
) -> VerifyDocument:
    """Checks that ``folded`` computes what ``original`` computes, apart from the fold's code.

    Runs ``doconv verify --json ORIGINAL FOLDED``.

    Args:
        original: the model before folding.
        folded: the folded model.
        tolerance: largest accepted relative error (default: by element type, as for
            :func:`fold`).
        inputs: seeded random inputs to run end to end (0: skip; default 3).
        seed: seed of the random inputs and probes (default 0).
        dim: sizes of symbolic input dims: ``{"batch": 2}`` or ``["batch=2"]``;
            batch-like dims default to 1.
        config, kernel_size, strict_pickle, exclude, only: as the fold was given them.
        params: MXNet: ORIGINAL's params file, when several ``NAME-NNNN.params`` sit
            beside ``NAME-symbol.json`` (FOLDED's of the same epoch is used).
        timeout: as for :func:`fold`.

    Returns:
        The tool's document: ``equivalent``, ``verdict``, ``structure``, ``layers``,
        ``end_to_end``, ``first_disagreement``. Models that are not equivalent (exit
        status 1) are a result with ``equivalent`` false, not an error.

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line.
        TypeError: a value of the wrong type.
    """
    flags = arguments(VERIFY, locals())
    positional = [path(original, "original"), path(folded, "folded")]
    return cast(
        VerifyDocument,
        run_json("verify-equivalence", [*flags, "--", *positional], documented_statuses=(0, 1), timeout=timeout),
    )


def expand(
    plain: PathLike,
    output: PathLike,
    *,
    dmul: Optional[int] = None,
    groups: Optional[NamedInts] = None,
    like: Optional[PathLike] = None,
    config: Optional[PathLike] = None,
    seed: Optional[int] = None,
    tolerance: Optional[float] = None,
    no_verify: bool = False,
    exclude: Optional[Globs] = None,
    only: Optional[Globs] = None,
    timeout: Optional[float] = None,
) -> ExpandDocument:
    """Turns the plain conv weights of ``plain`` into DO-Conv layers that compute exactly
    those convs, written to ``output``: a start for DO-Conv training.

    Runs ``doconv expand --json PLAIN OUTPUT``.

    Args:
        plain: the plain model's weights (Keras .h5/.keras, PyTorch checkpoint,
            .safetensors, a sharded checkpoint, MXNet/Gluon .params or export pair).
        output: where the expanded weights go.
        dmul: depth multiplier of every expanded layer (default M*N; below M*N is refused:
            no exact start exists).
        groups: groups of the layers matching a glob (the last match wins):
            ``{"dw": 8}`` or ``["dw=8"]``; a kernel does not tell them.
        like: a freshly initialized DO-Conv model's weights: which layers are DO-Conv
            layers, with their groups and Dmul.
        config: Keras: the model's JSON (``model.to_json()``), for a weights-only .h5.
        seed: seed of the random columns of layers whose Dmul exceeds M*N (default 0).
        tolerance: largest accepted relative error per layer when composed back
            (default: as for :func:`fold`).
        no_verify: skip composing every layer back.
        exclude, only: leave the layers matching these globs plain / expand only those.
        timeout: as for :func:`fold`.

    Returns:
        The tool's document: ``status``, ``layers``, ``not_expanded``, ... A layer that
        does not compose back (``status`` "verification_failed", exit status 1, nothing
        written) is reported there, not raised.

    Raises:
        DOConvError: bad input or usage (exit status 2), with the tool's error line; its
            ``document`` is the tool's (``status`` "error").
        TypeError: a value of the wrong type.
    """
    flags = arguments(EXPAND, locals())
    positional = [path(plain, "plain"), path(output, "output")]
    return cast(
        ExpandDocument,
        run_json("doconv-expand", [*flags, "--", *positional], documented_statuses=(0, 1), timeout=timeout),
    )
