"""TypedDicts of the JSON documents the doconv tools print with ``--json``.

Generated from schemas/*.schema.json by scripts/generate-python-types: do not edit; change
a schema and run the script (a wheel test fails when this file is stale).
"""
from typing import List, Literal, Optional, TypedDict, Union

__all__ = [
    "ExpandBytes",
    "ExpandDocument",
    "ExpandLayer",
    "ExpandNotExpanded",
    "ExpandParameters",
    "FoldDocument",
    "FoldResult",
    "FoldResultBatchNormsFused",
    "FoldResultBytes",
    "FoldResultLayer",
    "FoldResultLayersFolded",
    "FoldResultLayersFoldedByKind",
    "FoldResultNotFolded",
    "FoldResultParameters",
    "FoldResultReparameterized",
    "InspectDocument",
    "InspectLayer",
    "InspectRejected",
    "InspectReparam",
    "InspectReparamBlock",
    "InspectReparamRefused",
    "InspectTotals",
    "InspectTotalsLayersByKind",
    "VerifyDocument",
    "VerifyEndToEnd",
    "VerifyEndToEndOutput",
    "VerifyErrorStats",
    "VerifyErrorStatsFirstDisagreement",
    "VerifyFirstDisagreement",
    "VerifyLayer",
    "VerifyStructure",
]


class ExpandLayer(TypedDict):
    """One expanded layer."""

    #: The layer (ONNX: the DO-Conv module or Conv node; Keras, PyTorch, MXNet: the layer or
    #: parameter prefix).
    name: str

    #: DO-Conv (groups 1), DO-DConv (groups = in_channels), DO-GConv (other groups).
    kind: Literal["DO-Conv", "DO-DConv", "DO-GConv"]

    #: How the model computed the layer: the kernel composed from D and W, or a depthwise
    #: conv then a 1x1 conv (a depthwise + 1x1 pair).
    form: Literal["kernel composition", "feature composition"]

    #: How D and W are laid out.
    layout: Literal["pytorch", "keras"]

    #: The weights' element type (the fold computes in float32 and stores this type).
    element_type: Literal["float32", "float16", "bfloat16", "float64"]

    #: Input channels Cin.
    in_channels: int

    #: Output channels Cout.
    out_channels: int

    #: The folded kernel's [M, N].
    kernel: List[int]

    #: Conv groups.
    groups: int

    #: Depth multiplier Dmul.
    d_mul: int

    #: The Conv's strides.
    stride: List[int]

    #: The Conv's dilations.
    dilation: List[int]

    #: The layer composed back in float64 from W and D as stored, against the plain kernel:
    #: ||W' - K|| / ||K||; null with --no-verify.
    relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: Largest accepted relative error for this layer (--tolerance, or its element type's
    #: default).
    tolerance: float

    #: False when the probes disagreed beyond the tolerance (or the weights hold NaN or
    #: infinite values); true when they agreed or did not run.
    verified: bool


class ExpandParameters(TypedDict):
    """Weight elements before (the plain model) and after (the expanded one); null for status
    "error"."""

    #: Weight elements of the plain model.
    before: int

    #: Weight elements of the expanded model.
    after: int


class ExpandBytes(TypedDict):
    """Weight bytes before (the plain model) and after (the expanded one); null for status
    "error"."""

    #: Weight bytes of the plain model.
    before: int

    #: Weight bytes of the expanded model.
    after: int


class ExpandNotExpanded(TypedDict):
    """A conv left plain."""

    #: The node or layer.
    name: str

    #: Why it was not expanded.
    reason: str

    #: Always false: kept for the shape of doconv fold's entries.
    is_doconv_layer: bool


class ExpandDocument(TypedDict):
    """What `doconv expand --json` (doconv-expand --json) prints on standard output: one document
    for the one input (also when it failed). Error lines still go to standard error and the
    exit status is unchanged. Non-finite numbers are written as the strings "inf", "-inf" and
    "nan"; null always means "not there" (not verified, not known)."""

    #: Version of this document's layout.
    format_version: Literal[1]

    #: The tool that wrote the document.
    tool: Literal["doconv-expand"]

    #: The tool's version (doconv expand --version).
    version: str

    #: The plain model, as given on the command line.
    input: str

    #: Where the expanded model goes; the file exists only for status "expanded" or
    #: "unchanged".
    output: str

    #: How the input was read: the format registry's name (as in doconv-inspect --json); null
    #: when its format could not be told (status "error").
    format: Optional[Literal[
        "onnx", "keras-h5", "keras-archive", "pytorch", "safetensors", "sharded", "mxnet",
        "tf-checkpoint", "tf-savedmodel", "tflite",
    ]]

    #: expanded: convs became DO-Conv layers and the model was written; unchanged: no conv to
    #: expand, the weights written as they were; verification_failed: a layer composed back
    #: differs from its plain kernel beyond the tolerance, nothing written (exit status 1);
    #: error: bad input or a failed write or worker, nothing written (exit status 2).
    status: Literal["expanded", "unchanged", "verification_failed", "error"]

    #: The run's exit status: 0 (expanded, unchanged), 1 (verification_failed), 2 (error).
    exit_status: Literal[0, 1, 2]

    #: For status "error" and "verification_failed": the error line's message, as written to
    #: standard error after "doconv-expand: error: "; otherwise null.
    error: Optional[str]

    #: One entry per expanded conv, now a DO-Conv layer: what doconv fold reports for it
    #: (kind, form, layout, geometry with its Dmul), and its composition back into the plain
    #: kernel.
    layers: List[ExpandLayer]

    #: Weight elements before (the plain model) and after (the expanded one); null for status
    #: "error".
    parameters: Optional[ExpandParameters]

    #: Weight bytes before (the plain model) and after (the expanded one); null for status
    #: "error".
    bytes: Optional[ExpandBytes]

    #: The largest relative_error over the layers ("nan" when any is NaN); null when
    #: verification was skipped or nothing was expanded.
    worst_relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: True when every layer was composed back and matched its plain kernel (also when
    #: nothing was expanded); false with --no-verify, for verification_failed and for error.
    verified: bool

    #: Convs left plain (a layer kind the framework's DO-Conv does not cover, a conv inside a
    #: pickled module, --exclude/--only), with the reason.
    not_expanded: List[ExpandNotExpanded]

    #: Other things to know (optimizer state dropped, groups assumed), one sentence each.
    notes: List[str]

    #: Wall-clock time of the expansion, its verification and the write, in milliseconds.
    time_ms: float


#: Folded layers of each kind; every kind is listed, zeros included.
FoldResultLayersFoldedByKind = TypedDict("FoldResultLayersFoldedByKind", {
    #: DO-Conv layers folded.
    "DO-Conv": int,
    #: DO-DConv layers folded.
    "DO-DConv": int,
    #: DO-GConv layers folded.
    "DO-GConv": int,
})


class FoldResultLayersFolded(TypedDict):
    """The folded DO-Conv layers, counted."""

    #: Number of folded DO-Conv layers (the length of layers).
    total: int

    #: Folded layers of each kind; every kind is listed, zeros included.
    by_kind: FoldResultLayersFoldedByKind

    #: How many of them were depthwise + 1x1 pairs (feature composition).
    from_depthwise_pairs: int


class FoldResultLayer(TypedDict):
    """One folded DO-Conv layer."""

    #: The layer (ONNX: the DO-Conv module or Conv node; Keras, PyTorch, MXNet: the layer or
    #: parameter prefix).
    name: str

    #: DO-Conv (groups 1), DO-DConv (groups = in_channels), DO-GConv (other groups).
    kind: Literal["DO-Conv", "DO-DConv", "DO-GConv"]

    #: How the model computed the layer: the kernel composed from D and W, or a depthwise
    #: conv then a 1x1 conv (a depthwise + 1x1 pair).
    form: Literal["kernel composition", "feature composition"]

    #: How D and W are laid out.
    layout: Literal["pytorch", "keras"]

    #: The weights' element type (the fold computes in float32 and stores this type).
    element_type: Literal["float32", "float16", "bfloat16", "float64"]

    #: Input channels Cin.
    in_channels: int

    #: Output channels Cout.
    out_channels: int

    #: The folded kernel's [M, N].
    kernel: List[int]

    #: Conv groups.
    groups: int

    #: Depth multiplier Dmul.
    d_mul: int

    #: The Conv's strides.
    stride: List[int]

    #: The Conv's dilations.
    dilation: List[int]

    #: Worst relative error of the random probes through the layer both ways (folded against
    #: DO-Conv form); null when verification was skipped (--no-verify).
    relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: Largest accepted relative error for this layer (--tolerance, or its element type's
    #: default).
    tolerance: float

    #: False when the probes disagreed beyond the tolerance (or the weights hold NaN or
    #: infinite values); true when they agreed or did not run.
    verified: bool


class FoldResultBatchNormsFused(TypedDict):
    """One BatchNormalization folded into the Conv before it (--fuse-bn)."""

    #: The BatchNormalization node or layer.
    name: str

    #: Worst relative error of the probe of the fused Conv against Conv then
    #: BatchNormalization; null when verification was skipped.
    relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: Largest accepted relative error.
    tolerance: float

    #: False when the probe disagreed beyond the tolerance.
    verified: bool


class FoldResultReparameterized(TypedDict):
    """One block of linear branches or stages merged into a single Conv (--reparam)."""

    #: The Add at the root of the block's sum, or a chain's last stage.
    name: str

    #: Each branch's stages in data-flow order ("Conv 3x3", "Conv 1x1 ->
    #: BatchNormalization"), or "identity".
    branches: List[str]

    #: The merged Conv's kernel [kh, kw].
    kernel: List[int]

    #: The merged Conv's groups.
    groups: int

    #: Nodes of the block the one Conv replaces.
    nodes_replaced: int

    #: Worst probe error of the merged Conv against the block's own stages; null when
    #: verification was skipped.
    relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: Largest accepted relative error.
    tolerance: float

    #: False when the probe disagreed beyond the tolerance.
    verified: bool


class FoldResultParameters(TypedDict):
    """Weight elements of the model before and after folding (of the fold computed, also when
    nothing was written because verification failed)."""

    #: Weight elements before folding.
    before: int

    #: Weight elements after folding.
    after: int


class FoldResultBytes(TypedDict):
    """Weight bytes of the model before and after folding (of the fold computed, also when
    nothing was written because verification failed)."""

    #: Weight bytes before folding.
    before: int

    #: Weight bytes after folding.
    after: int


class FoldResultNotFolded(TypedDict):
    """A layer left alone."""

    #: The node or layer.
    name: str

    #: Why it was not folded.
    reason: str

    #: True for a real DO-Conv layer where doconv does not fold yet (inside an ONNX local
    #: function or control-flow subgraph), false for a look-alike.
    is_doconv_layer: bool


class FoldResult(TypedDict):
    """What happened to one input. Status "error" carries no fold data: layers_folded,
    parameters, bytes and worst_relative_error are null and the lists empty.
    "verification_failed" carries all of it, though nothing was written."""

    #: The input model, as given on the command line.
    input: str

    #: Where the folded model goes (OUTPUT, or DIR/NAME with -o DIR); the file exists only
    #: for status "folded" or "unchanged".
    output: str

    #: How the input was read: the format registry's name (as in doconv-inspect --json); null
    #: when its format could not be told (status "error").
    format: Optional[Literal[
        "onnx", "keras-h5", "keras-archive", "pytorch", "safetensors", "sharded", "mxnet",
        "tf-checkpoint", "tf-savedmodel", "tflite",
    ]]

    #: folded: layers (or BatchNormalizations, or --reparam blocks) folded and the model
    #: written; unchanged: nothing to fold, the model written as it was; verification_failed:
    #: a folded layer disagreed beyond the tolerance, nothing written (exit status 1); error:
    #: bad input or a failed write or worker, nothing written (exit status 2).
    status: Literal["folded", "unchanged", "verification_failed", "error"]

    #: The exit status this input alone would give: 0 (folded, unchanged), 1
    #: (verification_failed), 2 (error). The run's exit status is the largest of them.
    exit_status: Literal[0, 1, 2]

    #: For status "error" and "verification_failed": the error line's message, as written to
    #: standard error after "doconv-fold: error: "; otherwise null.
    error: Optional[str]

    #: The folded DO-Conv layers, counted; null for status "error".
    layers_folded: Optional[FoldResultLayersFolded]

    #: One entry per folded DO-Conv layer, in the order the fold found them.
    layers: List[FoldResultLayer]

    #: BatchNormalizations folded into the Conv before them (--fuse-bn).
    batch_norms_fused: List[FoldResultBatchNormsFused]

    #: Blocks of linear branches merged into one Conv each (--reparam).
    reparameterized: List[FoldResultReparameterized]

    #: Weight elements before and after folding; null for status "error".
    parameters: Optional[FoldResultParameters]

    #: Weight bytes before and after folding; null for status "error".
    bytes: Optional[FoldResultBytes]

    #: The largest relative_error over layers, batch_norms_fused and reparameterized ("nan"
    #: when any is NaN); null when verification was skipped or nothing was folded.
    worst_relative_error: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: True when verification ran and everything folded passed it (also when nothing was
    #: folded); false with --no-verify, for verification_failed and for error.
    verified: bool

    #: Layers that looked like DO-Conv but were left alone, with the reason.
    not_folded: List[FoldResultNotFolded]

    #: Other things to know (state that was dropped, for example), one sentence each.
    notes: List[str]

    #: Wall-clock time of this input's fold, verification and write, in milliseconds.
    time_ms: float


class FoldDocument(TypedDict):
    """What `doconv-fold --json` prints on standard output: one document with a result per input,
    in the order given (also for inputs that failed). Error lines still go to standard error
    and the exit status is unchanged. Non-finite numbers (NaN or infinite errors) are written
    as the strings "inf", "-inf" and "nan"; null always means "not there" (not verified, not
    known)."""

    #: Version of this document's layout.
    format_version: Literal[1]

    #: The tool that wrote the document.
    tool: Literal["doconv-fold"]

    #: The tool's version (doconv-fold --version).
    version: str

    #: One result per input model, in the order given.
    results: List[FoldResult]


class _InspectLayerRequired(TypedDict):
    """The keys of ``InspectLayer`` that are always there."""

    #: The layer (ONNX: the DO-Conv module or Conv node; Keras: the layer name).
    name: str

    #: DO-Conv (groups 1), DO-DConv (groups = in_channels), DO-GConv (other groups).
    kind: Literal["DO-Conv", "DO-DConv", "DO-GConv"]

    #: How the model computes the layer: the kernel composed from D and W, or a depthwise
    #: conv then a 1x1 conv (feature composition).
    form: Literal["kernel composition", "feature composition"]

    #: How D and W are laid out.
    layout: Literal["pytorch", "keras"]

    element_type: Literal["float32", "float16", "bfloat16", "float64"]

    in_channels: int

    out_channels: int

    #: [M, N].
    kernel: List[int]

    stride: List[int]

    dilation: List[int]

    groups: int

    #: Depth multiplier Dmul.
    d_mul: int

    #: False for a 1x1 layer without D (its kernel is W reshaped).
    has_d: bool

    #: Elements of D (when stored) and W: in_channels*M*N*d_mul +
    #: out_channels*(in_channels/groups)*d_mul.
    params_trained: int

    #: Elements of the folded kernel: out_channels*(in_channels/groups)*M*N.
    params_folded: int

    #: (params_trained - params_folded) * element size; negative when folding grows the layer
    #: (d_mul < M*N).
    bytes_saved: int

    #: Multiply-accumulates of the folded conv for one output position (all output channels):
    #: out_channels*(in_channels/groups)*M*N.
    macs_per_output_position: int

    #: The same as the model computes the layer before folding: equal to
    #: macs_per_output_position for kernel composition (composing the kernel is a per-
    #: inference cost, not per position); in_channels*d_mul*M*N +
    #: out_channels*(in_channels/groups)*d_mul for feature composition (a depthwise conv,
    #: then a 1x1 conv).
    macs_per_output_position_unfolded: int

    #: ||D - I||_F / ||I||_F for the D the layer composes (identity offset included) and the
    #: identity offset I tiled over the input channels; 0 without D; null when undefined (I
    #: is empty because d_mul < M*N, or D is not finite).
    d_deviation: Optional[float]

    #: The paper's Figure 6 map, M rows of N values: H[m][n] = sum over output and input
    #: channels of |W'[o,c,m,n] - W[o,c,m,n]|, W' the folded kernel, W the kernel with D = I.
    #: null marks a non-finite value.
    h_map: List[List[Optional[float]]]


class InspectLayer(_InspectLayerRequired, total=False):
    """An item of ``InspectDocument["layers"]``."""

    #: ONNX: where the layer sits when not in the main graph: a local function's call
    #: ("function DOConv2d, call node /conv1/DOConv2d") or a control-flow subgraph path ("If
    #: choose/then_branch"). Absent for the main graph.
    location: str


class _InspectRejectedRequired(TypedDict):
    """The keys of ``InspectRejected`` that are always there."""

    name: str

    reason: str


class InspectRejected(_InspectRejectedRequired, total=False):
    """An item of ``InspectDocument["rejected"]``."""

    #: True for a real DO-Conv layer where doconv does not fold yet (inside an ONNX local
    #: function or control-flow subgraph), rather than a look-alike.
    unreached: bool


#: ``InspectTotals["layers_by_kind"]``.
InspectTotalsLayersByKind = TypedDict("InspectTotalsLayersByKind", {
    "DO-Conv": int,
    "DO-DConv": int,
    "DO-GConv": int,
})


class InspectTotals(TypedDict):
    """``InspectDocument["totals"]``."""

    layers: int

    layers_by_kind: InspectTotalsLayersByKind

    params_trained: int

    params_folded: int

    #: params_trained - params_folded.
    params_saved: int

    #: Sum of the layers' bytes_saved.
    bytes_saved: int

    #: Sum of the layers' macs_per_output_position (after folding): per output position, not
    #: per inference (weight files carry no feature-map sizes).
    macs_per_output_position: int

    #: Sum of the layers' macs_per_output_position_unfolded (as the model computes them
    #: before folding).
    macs_per_output_position_unfolded: int

    #: True when folding leaves the MACs as they are: every layer is in kernel composition
    #: form (the model already runs a conv of the folded size). Feature-composition pairs
    #: change them.
    macs_unchanged_by_folding: bool


class InspectReparamBlock(TypedDict):
    """An item of ``InspectReparam["blocks"]``."""

    #: The Add at the root of the block's sum, or a chain's last stage.
    name: str

    #: Each branch's stages in data-flow order ("Conv 3x3", "Conv 1x1 ->
    #: BatchNormalization"), or "identity" for the block's input itself.
    branches: List[str]

    #: The merged Conv's kernel [kh, kw].
    kernel: List[int]

    #: The merged Conv's groups.
    groups: int

    #: Nodes of the block (branch stages and Adds) the one Conv replaces.
    nodes_replaced: int

    #: Worst probe error of the merged Conv against the block's own stages, relative to the
    #: largest output value; null when not finite.
    relative_error: Optional[float]


class InspectReparamRefused(TypedDict):
    """An item of ``InspectReparam["refused"]``."""

    name: str

    reason: str


class InspectReparam(TypedDict):
    """With --reparam (ONNX): the blocks of linear branches (or chains of linear stages) that
    doconv-fold --reparam merges into one Conv each, and the look-alikes it leaves, with the
    reason. Absent without --reparam."""

    #: One entry per block, in graph order (blocks that only form once others merged come
    #: after them).
    blocks: List[InspectReparamBlock]

    #: Look-alikes that do not merge.
    refused: List[InspectReparamRefused]


class _InspectDocumentRequired(TypedDict):
    """The keys of ``InspectDocument`` that are always there."""

    #: Version of this document's layout.
    format_version: Literal[1]

    #: The model file, as given on the command line.
    model: str

    #: How the model was read.
    format: Literal[
        "onnx", "keras-h5", "keras-archive", "pytorch", "safetensors", "sharded", "mxnet",
        "tf-checkpoint", "tf-savedmodel", "tflite",
    ]

    #: One entry per DO-Conv layer, in graph order.
    layers: List[InspectLayer]

    #: Layers that looked like DO-Conv but would not be folded.
    rejected: List[InspectRejected]

    totals: InspectTotals


class InspectDocument(_InspectDocumentRequired, total=False):
    """What `doconv-inspect --json MODEL` prints: the DO-Conv layers of a model in graph order,
    what folding them changes, and the layers that looked like DO-Conv but would not be
    folded."""

    #: With --reparam (ONNX): the blocks of linear branches (or chains of linear stages) that
    #: doconv-fold --reparam merges into one Conv each, and the look-alikes it leaves, with
    #: the reason. Absent without --reparam.
    reparam: InspectReparam


class VerifyStructure(TypedDict):
    """Step 1: FOLDED against ORIGINAL, node by node, tensor by tensor."""

    #: True when there is no structural difference.
    ok: bool

    #: What the check matched ("12 nodes against ORIGINAL's 30, 3 Convs with a folded kernel,
    #: ..."); may be empty.
    summary: str

    #: Each structural difference, one line each; every one fails the verification.
    differences: List[str]


class VerifyErrorStatsFirstDisagreement(TypedDict):
    """Where two tensors first disagree beyond the tolerance."""

    #: Multi-index into the tensor (row-major, as the model stores it).
    index: List[int]

    #: Which run it came from ("input 2 of 3", "patch 1") when there were several; else null.
    context: Optional[str]

    #: The reference value (ORIGINAL's, or the float64 recomputation's).
    expected: Union[float, Literal["inf", "-inf", "nan"]]

    #: FOLDED's value.
    actual: Union[float, Literal["inf", "-inf", "nan"]]


class VerifyErrorStats(TypedDict):
    """Error statistics of one comparison of FOLDED against a reference."""

    #: Largest |actual - expected| over the compared elements ("inf" when one side is NaN or
    #: infinite and the other is not).
    worst_absolute: Union[float, Literal["inf", "-inf", "nan"]]

    #: worst_absolute divided by the largest finite |expected| (normwise; worst_absolute
    #: itself when the reference is all zeros).
    worst_relative: Union[float, Literal["inf", "-inf", "nan"]]

    #: Largest accepted relative error.
    tolerance: float

    #: True when no element differs by more than tolerance times the largest |expected|.
    passed: bool

    #: Elements compared (over all inputs or patches).
    element_count: int

    #: The first element beyond the tolerance; null when the comparison passed.
    first_disagreement: Optional[VerifyErrorStatsFirstDisagreement]


class VerifyLayer(TypedDict):
    """One Conv of FOLDED that replaced ORIGINAL's kernel computation (a DO-Conv layer, a
    depthwise + 1x1 pair, a fused BatchNormalization, or a --reparam block), checked
    numerically."""

    #: The DO-Conv layer's name (from detection in ORIGINAL), else the Conv's.
    name: str

    #: FOLDED's Conv, as the text report names it ("Conv '/0/Conv'").
    conv: str

    #: What the layer is ("DO-DConv 3x3, groups 8, Dmul 9 (pytorch kernel composition)",
    #: "Conv + BatchNormalization").
    description: str

    #: True when every check that ran passed, a kernel check ran (or, for a --reparam block,
    #: the probe), and there is no problem.
    passed: bool

    #: True for a block merged by --reparam, checked by the probe alone (there is no kernel
    #: to recompute).
    linear_block: bool

    #: FOLDED's kernel against a float64 recomputation from ORIGINAL's D and W (or from
    #: ORIGINAL's own kernel computation without a detected layer); null when it did not run.
    kernel: Optional[VerifyErrorStats]

    #: FOLDED's kernel against ORIGINAL's kernel as ORIGINAL's graph computes it (reference
    #: executor); null when it did not run.
    graph_kernel: Optional[VerifyErrorStats]

    #: Seeded random patches through the layer both ways; null when it did not run.
    probe: Optional[VerifyErrorStats]

    #: FOLDED's bias against the expected one (depthwise + 1x1 pairs, fused
    #: BatchNormalization); null when there is none to check.
    bias: Optional[VerifyErrorStats]

    #: Failures that are not numbers (shapes, missing tensors), one line each.
    problems: List[str]


class VerifyEndToEndOutput(TypedDict):
    """One graph output compared over all the seeded inputs: its name beside the error
    statistics."""

    #: The graph output.
    name: str

    #: Largest |actual - expected| over the compared elements ("inf" when one side is NaN or
    #: infinite and the other is not).
    worst_absolute: Union[float, Literal["inf", "-inf", "nan"]]

    #: worst_absolute divided by the largest finite |expected| (normwise; worst_absolute
    #: itself when the reference is all zeros).
    worst_relative: Union[float, Literal["inf", "-inf", "nan"]]

    #: Largest accepted relative error.
    tolerance: float

    #: True when no element differs by more than tolerance times the largest |expected|.
    passed: bool

    #: Elements compared (over all inputs or patches).
    element_count: int

    #: The first element beyond the tolerance; null when the comparison passed.
    first_disagreement: Optional[VerifyErrorStatsFirstDisagreement]


class VerifyEndToEnd(TypedDict):
    """Step 3: both models run by the reference executor on the same seeded random inputs, every
    graph output compared."""

    #: False when the comparison did not run (Keras and checkpoint files hold no graph;
    #: unsupported ops).
    ran: bool

    #: Why it did not run; null when it ran.
    skipped_reason: Optional[str]

    #: The feeds used ("3 seeded random inputs (seed 0): 'input' float32 [1, 8, 8, 8]"); null
    #: when it did not run.
    inputs: Optional[str]

    #: One entry per graph output.
    outputs: List[VerifyEndToEndOutput]

    #: FOLDED's end-to-end failures (it does not run, an output is missing or reshaped), one
    #: line each.
    problems: List[str]


class VerifyFirstDisagreement(TypedDict):
    """The first thing that failed, in the order the text report lists them: a structural
    difference, then each layer (its kernel, graph_kernel, probe and bias checks, then its
    problems), then each output, then an end-to-end problem."""

    #: What failed: the structure check, a layer, a graph output, or FOLDED's end-to-end run.
    where: Literal["structure", "layer", "output", "end_to_end"]

    #: The layer's or output's name; null for structure and end_to_end.
    name: Optional[str]

    #: For a layer, which check: kernel, graph_kernel, probe, bias, or problem (a failure
    #: that is not a number); "output" for an output; null otherwise.
    check: Optional[Literal["kernel", "graph_kernel", "probe", "bias", "problem", "output"]]

    #: One line saying what failed (the structural difference or problem itself, or the
    #: disagreeing values).
    message: str

    #: For a numerical disagreement: the multi-index of the first element beyond the
    #: tolerance; else null.
    index: Optional[List[int]]

    #: Which run the disagreement came from ("input 1 of 3", "patch 1"), when there were
    #: several; else null.
    context: Optional[str]

    #: The reference value at index; null when not a numerical disagreement.
    expected: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: FOLDED's value at index; null when not a numerical disagreement.
    actual: Optional[Union[float, Literal["inf", "-inf", "nan"]]]

    #: The tolerance the value exceeded; null when not a numerical disagreement.
    tolerance: Optional[float]


class VerifyDocument(TypedDict):
    """What `verify-equivalence --json ORIGINAL FOLDED` prints on standard output: the report's
    sections with their numbers, the first disagreement and the verdict. Printed for exit
    status 0 (equivalent) and 1 (not equivalent); bad input (exit status 2) prints one error
    line on standard error and no document. Non-finite numbers are written as the strings
    "inf", "-inf" and "nan" (JSON has no number for them); null means "not there"."""

    #: Version of this document's layout.
    format_version: Literal[1]

    #: The tool that wrote the document.
    tool: Literal["verify-equivalence"]

    #: The tool's version (verify-equivalence --version).
    version: str

    #: The model before folding, as given.
    original: str

    #: The folded model, as given.
    folded: str

    #: How both files were read: the format registry's name (as in doconv-inspect --json).
    format: Literal[
        "onnx", "keras-h5", "keras-archive", "pytorch", "safetensors", "sharded", "mxnet",
        "tf-checkpoint", "tf-savedmodel", "tflite",
    ]

    #: Step 1: FOLDED against ORIGINAL, node by node, tensor by tensor.
    structure: VerifyStructure

    #: Step 2: one entry per replaced Conv, in FOLDED's order.
    layers: List[VerifyLayer]

    #: Step 3: both models run by the reference executor on the same seeded random inputs,
    #: every graph output compared.
    end_to_end: VerifyEndToEnd

    #: Things to know that do not fail the verification, one line each.
    notes: List[str]

    #: The first thing that failed; null when the models are equivalent.
    first_disagreement: Optional[VerifyFirstDisagreement]

    #: The verdict: true exactly when the exit status is 0.
    equivalent: bool

    #: The text report's verdict line ("verdict: EQUIVALENT", "verdict: NOT EQUIVALENT (1
    #: layer off, 1 output off)").
    verdict: str
