"""Single-op ONNX models (onnx.helper) covering every op of verify-equivalence's reference
executor with its main attributes, each with seeded inputs: onnxruntime is the oracle."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NP_TO_ONNX = {
    np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE,
    np.int64: TensorProto.INT64, np.int32: TensorProto.INT32, np.bool_: TensorProto.BOOL,
}


class Case:
    """One model and its feeds; `skip` gives onnxruntime's reason when it refuses the model
    (the test then checks that it still does, instead of comparing)."""

    def __init__(self, name, model, feeds, skip=None):
        self.name = name
        self.model = model
        self.feeds = feeds
        self.skip = skip


def refused(case, reason):
    case.skip = reason
    return case


def rand(rng, *shape, low=-1.0, high=1.0, dtype=np.float32):
    return rng.uniform(low, high, shape).astype(dtype)


def single(name, op, inputs, attrs=None, consts=(), outputs=1, opset=17, out_names=None, node_inputs=None):
    """A model with one `op` node: `inputs` (name -> array) are graph inputs fed at run time,
    `consts` (name, array) initializers; `node_inputs` orders the node's inputs ('' = omitted)."""
    attrs = attrs or {}
    consts = list(consts)
    names = node_inputs if node_inputs is not None else list(inputs) + [c[0] for c in consts]
    outs = out_names or [f"y{k}" for k in range(outputs)]
    node = helper.make_node(op, names, outs, name=name, **attrs)
    graph_inputs = [helper.make_tensor_value_info(k, NP_TO_ONNX[v.dtype.type], list(v.shape)) for k, v in inputs.items()]
    graph_outputs = [helper.make_value_info(o, onnx.TypeProto()) for o in outs]
    initializers = [numpy_helper.from_array(v, k) for k, v in consts]
    graph = helper.make_graph([node], name, graph_inputs, graph_outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="op-cases")
    model.ir_version = 8 if opset < 21 else 10
    # Output types come from onnx's shape inference (onnxruntime needs them declared).
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for output in model.graph.output:
        if output.name in known and known[output.name].type.tensor_type.elem_type:
            output.type.CopyFrom(known[output.name].type)
    return Case(name, model, dict(inputs))


def i64(*values):
    return np.array(values, np.int64)


def cases():
    rng = np.random.default_rng(1234)
    x4 = lambda *s: rand(rng, *s)  # noqa: E731
    out = []
    add = out.append

    # Conv family.
    add(single("conv_pads", "Conv", {"x": x4(1, 3, 7, 6)}, {"pads": [1, 1, 1, 1]}, [("w", x4(4, 3, 3, 3)), ("b", x4(4))]))
    add(single("conv_asym_pads_stride", "Conv", {"x": x4(2, 3, 9, 8)}, {"pads": [0, 1, 2, 1], "strides": [2, 3]}, [("w", x4(5, 3, 3, 2))]))
    add(single("conv_dilation", "Conv", {"x": x4(1, 2, 9, 9)}, {"dilations": [2, 3], "pads": [2, 2, 2, 2]}, [("w", x4(3, 2, 3, 3))]))
    add(single("conv_groups", "Conv", {"x": x4(1, 4, 6, 6)}, {"group": 2, "pads": [1, 1, 1, 1]}, [("w", x4(6, 2, 3, 3)), ("b", x4(6))]))
    add(single("conv_depthwise", "Conv", {"x": x4(1, 4, 6, 6)}, {"group": 4, "strides": [2, 2]}, [("w", x4(8, 1, 3, 3))]))
    for mode in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        add(single(f"conv_autopad_{mode.lower()}", "Conv", {"x": x4(1, 2, 7, 8)}, {"auto_pad": mode, "strides": [2, 2]}, [("w", x4(3, 2, 4, 3))]))
    add(single("conv_1d", "Conv", {"x": x4(1, 3, 10)}, {"pads": [1, 2], "strides": [2]}, [("w", x4(2, 3, 4))]))
    add(single("conv_3d", "Conv", {"x": x4(1, 2, 4, 5, 5)}, {"pads": [1, 0, 1, 1, 0, 1]}, [("w", x4(2, 2, 3, 2, 3))]))
    add(single("convtranspose_stride_pads", "ConvTranspose", {"x": x4(1, 3, 4, 5)}, {"strides": [2, 2], "pads": [1, 1, 1, 1]}, [("w", x4(3, 2, 3, 3)), ("b", x4(2))]))
    add(single("convtranspose_output_padding", "ConvTranspose", {"x": x4(1, 2, 3, 3)}, {"strides": [2, 3], "output_padding": [1, 2]}, [("w", x4(2, 3, 3, 3))]))
    add(single("convtranspose_groups_dilations", "ConvTranspose", {"x": x4(1, 4, 4, 4)}, {"group": 2, "dilations": [2, 1]}, [("w", x4(4, 3, 2, 3))]))
    add(single("convtranspose_output_shape", "ConvTranspose", {"x": x4(1, 2, 3, 3)}, {"strides": [2, 2], "output_shape": [8, 7]}, [("w", x4(2, 2, 3, 3))]))
    add(single("convtranspose_output_shape_crop", "ConvTranspose", {"x": x4(1, 2, 3, 3)}, {"strides": [2, 2], "output_shape": [6, 5]}, [("w", x4(2, 2, 3, 3))]))
    add(single("convtranspose_same_lower", "ConvTranspose", {"x": x4(1, 2, 3, 4)}, {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, [("w", x4(2, 2, 2, 3))]))
    add(single("conv_float16", "Conv", {"x": x4(1, 2, 5, 5).astype(np.float16)}, {"pads": [1, 1, 1, 1]}, [("w", x4(3, 2, 3, 3).astype(np.float16))]))
    add(single("convtranspose_same_upper", "ConvTranspose", {"x": x4(1, 2, 3, 4)}, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, [("w", x4(2, 2, 3, 3))]))
    add(single("batchnorm", "BatchNormalization", {"x": x4(2, 3, 4, 4)}, {"epsilon": 1e-3},
               [("scale", x4(3)), ("bias", x4(3)), ("mean", x4(3)), ("var", rand(rng, 3, low=0.5, high=2))]))

    # Pooling.
    add(single("maxpool_pads_stride", "MaxPool", {"x": x4(1, 2, 7, 7)}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}))
    add(single("maxpool_ceil", "MaxPool", {"x": x4(1, 2, 8, 7)}, {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}))
    add(single("maxpool_dilations", "MaxPool", {"x": x4(1, 1, 9, 9)}, {"kernel_shape": [2, 2], "dilations": [2, 2]}))
    add(single("maxpool_same_upper", "MaxPool", {"x": x4(1, 2, 7, 6)}, {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}))
    add(single("maxpool_indices", "MaxPool", {"x": x4(1, 2, 6, 6)}, {"kernel_shape": [2, 2], "strides": [2, 2]}, outputs=2))
    for include in (0, 1):
        add(single(f"averagepool_pads_cip{include}", "AveragePool", {"x": x4(1, 2, 7, 7)},
                   {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": include}))
        add(single(f"averagepool_ceil_cip{include}", "AveragePool", {"x": x4(1, 2, 8, 8)},
                   {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1], "ceil_mode": 1, "count_include_pad": include}))
    add(single("averagepool_same_lower", "AveragePool", {"x": x4(1, 1, 6, 7)}, {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}))
    add(single("globalaveragepool", "GlobalAveragePool", {"x": x4(2, 3, 5, 4)}))
    add(single("globalmaxpool", "GlobalMaxPool", {"x": x4(2, 3, 5, 4)}))

    # Activations and arithmetic.
    x = x4(2, 3, 4, 5) * 4
    for op, attrs in [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
                      ("HardSwish", {}), ("Tanh", {}), ("Identity", {}), ("Neg", {}), ("Abs", {}), ("Exp", {}), ("Erf", {}),
                      ("Softplus", {}), ("Elu", {"alpha": 0.7}), ("Selu", {}), ("Floor", {}), ("Ceil", {}), ("Round", {}),
                      ("Sin", {}), ("Cos", {}), ("Sign", {}), ("Softsign", {})]:
        add(single(op.lower(), op, {"x": x}, attrs))
    add(single("sqrt_log_reciprocal_input", "Sqrt", {"x": rand(rng, 3, 4, low=0.1, high=4)}))
    add(single("log", "Log", {"x": rand(rng, 3, 4, low=0.1, high=4)}))
    add(single("reciprocal", "Reciprocal", {"x": rand(rng, 3, 4, low=0.5, high=4)}))
    add(single("gelu", "Gelu", {"x": x}, opset=20))
    add(single("gelu_tanh", "Gelu", {"x": x}, {"approximate": "tanh"}, opset=20))
    add(single("clip_inputs", "Clip", {"x": x}, consts=[("lo", np.array(-0.5, np.float32)), ("hi", np.array(0.7, np.float32))]))
    add(single("clip_min_only", "Clip", {"x": x}, consts=[("lo", np.array(-0.5, np.float32))]))
    add(single("clip_max_only", "Clip", {"x": x}, node_inputs=["x", "", "hi"], consts=[("hi", np.array(0.25, np.float32))]))
    add(single("clip_attrs_opset6", "Clip", {"x": x}, {"min": -0.3, "max": 0.6}, opset=6))
    for op in ("Add", "Sub", "Mul", "Div", "Pow", "PRelu"):
        a = x4(2, 3, 4, 5) + (2 if op == "Pow" else 0)
        add(single(f"{op.lower()}_broadcast", op, {"a": a, "b": x4(3, 1, 5) + (2 if op == "Div" else 0)}))
    add(single("mul_scalar", "Mul", {"a": x4(2, 3)}, consts=[("s", np.array(1.5, np.float32))]))
    add(single("div_int64", "Div", {"a": i64(7, -7, 9, 100, -3)}, consts=[("b", i64(2, 2, -4, 7, 5))]))
    add(single("sub_int64_broadcast", "Sub", {"a": i64(1, 2, 3).reshape(3, 1)}, consts=[("b", i64(10, 20))]))
    add(single("mod_int", "Mod", {"a": i64(7, -7, 9, -9)}, consts=[("b", i64(3, 3, -4, -4))]))
    add(single("mod_fmod", "Mod", {"a": x * 3}, {"fmod": 1}, consts=[("b", np.array(0.7, np.float32))]))
    for op in ("Max", "Min", "Sum", "Mean"):
        add(single(f"{op.lower()}_variadic", op, {"a": x4(2, 3), "b": x4(3), "c": x4(1, 3)}))
    for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        add(single(f"{op.lower()}", op, {"a": i64(1, 2, 3, 4)}, consts=[("b", i64(3, 2, 1, 4))]))
    add(single("less_float", "Less", {"a": x4(2, 3), "b": x4(3)}))
    add(single("where", "Where", {"c": np.array([[True, False, True]]), "a": x4(2, 3), "b": x4(2, 1)}))
    add(single("not", "Not", {"c": np.array([True, False, True])}))
    add(single("and", "And", {"a": np.array([True, False, True, False])}, consts=[("b", np.array([True, True, False, False]))]))

    # Casts.
    add(single("cast_float_to_int64", "Cast", {"x": x * 3}, {"to": TensorProto.INT64}))
    add(single("cast_int_to_float", "Cast", {"x": i64(1, -2, 300)}, {"to": TensorProto.FLOAT}))
    add(single("cast_to_float16", "Cast", {"x": x}, {"to": TensorProto.FLOAT16}))
    add(single("cast_to_bool", "Cast", {"x": np.array([0.0, 1.5, -2.0], np.float32)}, {"to": TensorProto.BOOL}))
    add(single("castlike", "CastLike", {"x": i64(3, 4)}, consts=[("like", np.zeros(1, np.float32))]))

    # Reductions and softmax.
    y = x4(2, 3, 4, 5)
    add(single("reducemean_axes_keep", "ReduceMean", {"x": y}, {"axes": [1, -1], "keepdims": 1}))
    add(single("reducemean_axes_drop", "ReduceMean", {"x": y}, {"axes": [2], "keepdims": 0}))
    add(single("reducemean_all", "ReduceMean", {"x": y}))
    add(single("reducemean_opset18_input", "ReduceMean", {"x": y}, {"keepdims": 0}, consts=[("axes", i64(0, 3))], opset=18))
    add(single("reducesum_opset13_input", "ReduceSum", {"x": y}, consts=[("axes", i64(1))], opset=13))
    for op in ("ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare"):
        add(single(op.lower(), op, {"x": y}, {"axes": [1], "keepdims": 0}))
    add(single("argmax", "ArgMax", {"x": y}, {"axis": 2, "keepdims": 0}))
    add(single("argmin_keep", "ArgMin", {"x": y}, {"axis": -1}))
    add(single("softmax_last", "Softmax", {"x": y * 3}))
    add(single("softmax_axis1", "Softmax", {"x": y * 3}, {"axis": 1}))
    add(single("softmax_opset11_coerced", "Softmax", {"x": y * 3}, {"axis": 2}, opset=11))
    add(single("logsoftmax", "LogSoftmax", {"x": y * 3}, {"axis": 1}))

    # Shape ops.
    add(single("flatten_axis2", "Flatten", {"x": y}, {"axis": 2}))
    add(single("flatten_default", "Flatten", {"x": y}))
    add(single("reshape_zero_minus1", "Reshape", {"x": y}, consts=[("s", i64(0, -1, 5))]))
    add(single("reshape_allowzero", "Reshape", {"x": y}, {"allowzero": 1}, consts=[("s", i64(6, 20))], opset=14))
    add(single("transpose_perm", "Transpose", {"x": y}, {"perm": [0, 2, 3, 1]}))
    add(single("transpose_default", "Transpose", {"x": y}))
    add(single("concat_axis1", "Concat", {"a": x4(2, 3, 4), "b": x4(2, 1, 4), "c": x4(2, 2, 4)}, {"axis": 1}))
    add(single("concat_int_negative_axis", "Concat", {"a": i64(1, 2)}, {"axis": -1}, consts=[("b", i64(3))]))
    add(single("squeeze_opset13_input", "Squeeze", {"x": x4(1, 3, 1, 4)}, consts=[("axes", i64(2))], opset=13))
    add(single("squeeze_opset11_attr", "Squeeze", {"x": x4(1, 3, 1, 4)}, {"axes": [0]}, opset=11))
    add(single("squeeze_all", "Squeeze", {"x": x4(1, 3, 1, 4)}))
    add(single("unsqueeze_opset13_input", "Unsqueeze", {"x": x4(3, 4)}, consts=[("axes", i64(0, -1))], opset=13))
    add(single("unsqueeze_opset11_attr", "Unsqueeze", {"x": x4(3, 4)}, {"axes": [1]}, opset=11))
    add(single("shape", "Shape", {"x": y}))
    add(single("shape_start_end", "Shape", {"x": y}, {"start": 1, "end": -1}, opset=15))
    add(single("size", "Size", {"x": y}))
    add(single("gather_scalar", "Gather", {"x": y}, {"axis": 1}, consts=[("i", np.array(-1, np.int64))]))
    add(single("gather_2d_indices", "Gather", {"x": y}, {"axis": 3}, consts=[("i", i64(0, 4, 2, 1).reshape(2, 2))]))
    add(single("gather_int_data", "Gather", {"x": i64(10, 20, 30, 40)}, consts=[("i", i64(3, 0))]))
    add(single("slice_steps_axes", "Slice", {"x": y}, consts=[("st", i64(1, -1)), ("en", i64(4, -100)), ("ax", i64(2, 3)), ("sp", i64(2, -2))]))
    add(single("slice_large_ends", "Slice", {"x": y}, consts=[("st", i64(1)), ("en", i64(2**62)), ("ax", i64(1))]))
    add(single("slice_int_min_end_negative_step", "Slice", {"x": i64(1, 2, 3, 4, 5)},
               consts=[("st", i64(-1)), ("en", i64(-9223372036854775807)), ("ax", i64(0)), ("sp", i64(-1))]))
    add(single("slice_opset9_attrs", "Slice", {"x": y}, {"starts": [0, 1], "ends": [1, 3], "axes": [0, 2]}, opset=9))
    for mode in ("constant", "reflect", "edge"):
        add(single(f"pad_{mode}", "Pad", {"x": x4(1, 2, 4, 5)}, {"mode": mode},
                   consts=[("p", i64(0, 0, 1, 2, 0, 1, 2, 1)), ("v", np.array(0.5, np.float32))] if mode == "constant" else [("p", i64(0, 0, 1, 2, 0, 1, 2, 1))]))
    add(single("pad_opset18_axes", "Pad", {"x": x4(1, 2, 4, 5)}, node_inputs=["x", "p", "", "ax"], consts=[("p", i64(1, 2, 3, 0)), ("ax", i64(2, 3))], opset=18))
    add(single("pad_opset2_attrs", "Pad", {"x": x4(1, 2, 3, 3)}, {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 1.5}, opset=2))
    for transform, rounding in [("half_pixel", "round_prefer_floor"), ("asymmetric", "floor"), ("align_corners", "round_prefer_ceil"),
                                ("pytorch_half_pixel", "ceil"), ("tf_half_pixel_for_nn", "round_prefer_floor")]:
        add(single(f"resize_scales_{transform}_{rounding}", "Resize", {"x": x4(1, 2, 3, 4)},
                   {"mode": "nearest", "coordinate_transformation_mode": transform, "nearest_mode": rounding},
                   node_inputs=["x", "", "sc"], consts=[("sc", np.array([1, 1, 2.0, 1.5], np.float32))], opset=13))
    add(single("resize_sizes_down", "Resize", {"x": x4(1, 2, 6, 7)}, {"mode": "nearest"}, node_inputs=["x", "", "", "sz"],
               consts=[("sz", i64(1, 2, 4, 3))], opset=13))
    add(single("resize_opset11_roi", "Resize", {"x": x4(1, 1, 2, 3)}, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"},
               node_inputs=["x", "roi", "sc"], consts=[("roi", np.zeros(0, np.float32)), ("sc", np.array([1, 1, 3, 2], np.float32))], opset=11))
    add(single("upsample_opset9", "Upsample", {"x": x4(1, 1, 2, 3)}, {"mode": "nearest"}, consts=[("sc", np.array([1, 1, 2, 2], np.float32))], opset=9))
    add(single("expand", "Expand", {"x": x4(3, 1)}, consts=[("s", i64(2, 1, 4))]))
    add(single("tile", "Tile", {"x": x4(2, 3)}, consts=[("r", i64(2, 3))]))
    add(single("constantofshape_int", "ConstantOfShape", {"s": i64(2, 3)}, {"value": numpy_helper.from_array(np.array([7], np.int64))}))
    add(single("constantofshape_default", "ConstantOfShape", {"s": i64(4)}))
    add(single("range_int", "Range", {"a": np.array(2, np.int64)}, consts=[("l", np.array(11, np.int64)), ("d", np.array(3, np.int64))]))
    add(single("range_float", "Range", {"a": np.array(0.5, np.float32)}, consts=[("l", np.array(-2, np.float32)), ("d", np.array(-0.75, np.float32))]))
    add(single("split_opset13_input", "Split", {"x": x4(2, 7)}, {"axis": 1}, consts=[("s", i64(2, 5))], outputs=2, opset=13))
    add(single("split_opset18_num_outputs", "Split", {"x": x4(7, 2)}, {"num_outputs": 3}, outputs=3, opset=18))
    add(single("dropout_inference", "Dropout", {"x": y}))
    add(single("constant_tensor", "Constant", {}, {"value": numpy_helper.from_array(x4(2, 3))}))
    add(single("constant_value_float", "Constant", {}, {"value_float": 2.5}))
    add(single("constant_value_ints", "Constant", {}, {"value_ints": [1, 2, 3]}))

    # Linear algebra.
    add(single("gemm_transB_alpha_beta", "Gemm", {"a": x4(3, 4)}, {"transB": 1, "alpha": 0.5, "beta": 2.0}, consts=[("b", x4(5, 4)), ("c", x4(5))]))
    add(single("gemm_transA", "Gemm", {"a": x4(4, 3)}, {"transA": 1}, consts=[("b", x4(4, 2)), ("c", x4(3, 1))]))
    add(single("gemm_no_c", "Gemm", {"a": x4(2, 3)}, consts=[("b", x4(3, 2))]))
    add(single("matmul_2d", "MatMul", {"a": x4(3, 4), "b": x4(4, 5)}))
    add(single("matmul_batched_broadcast", "MatMul", {"a": x4(2, 1, 3, 4), "b": x4(3, 4, 2)}))
    add(single("matmul_vector_left", "MatMul", {"a": x4(4), "b": x4(2, 4, 3)}))
    add(single("matmul_vector_right", "MatMul", {"a": x4(2, 3, 4), "b": x4(4)}))
    for equation, shapes in [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("ims,ois->oim", [(3, 4, 5), (2, 3, 5)]),
        ("msi,sio->mio", [(4, 5, 3), (5, 3, 2)]),
        ("ij,jk", [(3, 4), (4, 5)]),
        ("ij->ji", [(3, 4)]),
        ("ij->", [(3, 4)]),
        ("ii->i", [(4, 4)]),
        ("i,i", [(5,), (5,)]),
        ("i,j->ij", [(3,), (4,)]),
        ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
        ("b...i,bi->b...", [(2, 3, 4), (2, 4)]),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
        ("abc,cd", [(2, 3, 4), (4, 2)]),
    ]:
        arrays = {f"x{k}": x4(*s) for k, s in enumerate(shapes)}
        safe = equation.replace("->", "_to_").replace(",", "_").replace("...", "E") or "empty"
        add(single(f"einsum_{safe}", "Einsum", arrays, {"equation": equation}, opset=12))

    out += resize_cases(rng)
    out += detection_cases(rng)
    out += indexing_cases(rng)
    out += control_flow_cases(rng)
    return out


# Resize and Upsample: every mode against every coordinate transformation, up and down,
# with the options each mode reads. Combinations onnxruntime refuses are marked `refused`.
TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize")
ROI = np.array([0, 0, 0.1, 0.25, 1, 1, 0.8, 0.9], np.float32)  # inside the image
ROI_OUTSIDE = np.array([0, 0, -0.3, 0.2, 1, 1, 1.25, 0.7], np.float32)  # rows past both ends: extrapolated

def resize(name, x, attrs, scales=None, sizes=None, roi=None, opset=19):
    """A Resize case; roi/scales/sizes as initializers, '' where absent."""
    consts, names = [], ["x", "", "", ""]
    for k, (key, value) in enumerate([("roi", roi), ("scales", scales), ("sizes", sizes)], start=1):
        if value is not None:
            consts.append((key, np.asarray(value, np.float32 if key != "sizes" else np.int64)))
            names[k] = key
    while names[-1] == "":
        names.pop()
    return single(name, "Resize", {"x": x}, attrs, consts=consts, node_inputs=names, opset=opset)


def resize_cases(rng):
    out = []
    add = out.append
    x = rand(rng, 1, 2, 5, 7, low=-2, high=2)
    up, down = [1, 1, 1.6, 2.0], [1, 1, 0.6, 0.45]
    for transform in TRANSFORMS:
        roi = ROI if transform == "tf_crop_and_resize" else None
        for direction, scales in (("up", up), ("down", down)):
            for rounding in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
                add(resize(f"resize_nearest_{transform}_{rounding}_{direction}", x,
                           {"mode": "nearest", "coordinate_transformation_mode": transform, "nearest_mode": rounding}, scales=scales, roi=roi))
            for antialias in (0, 1):
                add(resize(f"resize_linear_{transform}_{direction}_aa{antialias}", x,
                           {"mode": "linear", "coordinate_transformation_mode": transform, "antialias": antialias}, scales=scales, roi=roi))
            for exclude, a in ((0, -0.75), (1, -0.5)):
                add(resize(f"resize_cubic_{transform}_{direction}_exclude{exclude}", x,
                           {"mode": "cubic", "coordinate_transformation_mode": transform, "exclude_outside": exclude, "cubic_coeff_a": a},
                           scales=scales, roi=roi))
            add(resize(f"resize_cubic_{transform}_{direction}_antialias", x,
                       {"mode": "cubic", "coordinate_transformation_mode": transform, "antialias": 1, "cubic_coeff_a": -0.5}, scales=scales, roi=roi))
        # Sizes: the scale each axis uses is output / input.
        add(resize(f"resize_linear_{transform}_sizes", x, {"mode": "linear", "coordinate_transformation_mode": transform},
                   sizes=[1, 2, 8, 4], roi=roi))
        add(resize(f"resize_nearest_{transform}_sizes", x, {"mode": "nearest", "coordinate_transformation_mode": transform},
                   sizes=[1, 2, 3, 11], roi=roi))
    # Extrapolation outside the roi.
    for mode in ("nearest", "linear", "cubic"):
        add(resize(f"resize_{mode}_crop_extrapolation", x, {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize",
                                                            "extrapolation_value": -7.5}, sizes=[1, 2, 6, 5], roi=ROI_OUTSIDE))
    # Linear with antialias and exclude_outside; strong downscaling (wide filters).
    add(resize("resize_linear_antialias_exclude_outside", x, {"mode": "linear", "antialias": 1, "exclude_outside": 1}, scales=[1, 1, 0.4, 0.3]))
    add(resize("resize_cubic_antialias_exclude_outside", x, {"mode": "cubic", "antialias": 1, "exclude_outside": 1}, scales=[1, 1, 0.4, 0.3]))
    big = rand(rng, 1, 1, 12, 16)
    add(resize("resize_linear_antialias_quarter", big, {"mode": "linear", "antialias": 1}, scales=[1, 1, 0.25, 0.2]))
    add(resize("resize_cubic_antialias_quarter", big, {"mode": "cubic", "antialias": 1}, sizes=[1, 1, 3, 5]))
    # Other ranks and layouts: 1-D... 2-D bilinear, 3-D trilinear, 5-D, NHWC.
    add(resize("resize_linear_2d", rand(rng, 4, 6), {"mode": "linear"}, scales=[1.5, 0.5]))
    add(resize("resize_cubic_2d", rand(rng, 4, 6), {"mode": "cubic"}, scales=[1.5, 0.5]))
    add(resize("resize_linear_3d_trilinear", rand(rng, 3, 4, 5), {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
               scales=[2, 0.5, 1.4]))
    add(resize("resize_linear_5d", rand(rng, 1, 2, 3, 4, 5), {"mode": "linear"}, scales=[1, 1, 2, 0.5, 1.2]))
    add(resize("resize_linear_nhwc", rand(rng, 1, 5, 6, 3), {"mode": "linear"}, scales=[1, 1.5, 0.5, 1]))
    add(resize("resize_cubic_nhwc_up", rand(rng, 1, 5, 6, 3), {"mode": "cubic"}, scales=[1, 1.5, 2, 1]))
    add(resize("resize_nearest_1d_down", rand(rng, 9), {"mode": "nearest"}, scales=[0.5]))
    add(resize("resize_nearest_int32", np.arange(12, dtype=np.int32).reshape(1, 1, 3, 4), {"mode": "nearest"}, scales=[1, 1, 2, 1.5]))
    # Opset 18: axes, keep_aspect_ratio_policy.
    add(resize("resize_axes_scales", x, {"mode": "linear", "axes": [2, 3]}, scales=[1.5, 0.5], opset=18))
    add(resize("resize_axes_negative_sizes", x, {"mode": "cubic", "axes": [-1]}, sizes=[10], opset=18))
    add(resize("resize_axes_roi", x, {"mode": "linear", "axes": [3, 2], "coordinate_transformation_mode": "tf_crop_and_resize"},
               sizes=[5, 4], roi=[0.1, 0.2, 0.9, 0.7], opset=18))
    for policy in ("not_larger", "not_smaller"):
        add(resize(f"resize_{policy}", x, {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": policy}, sizes=[8, 9], opset=18))
        add(resize(f"resize_{policy}_nearest", x, {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": policy},
                   sizes=[3, 4], opset=18))
    # Older opsets: Resize-10 (asymmetric, onnxruntime's legacy nearest rounding), Resize-11
    # (roi input, sizes), Upsample-7 (scales attribute) and -9.
    for mode in ("nearest", "linear"):
        for direction, scales in (("up", [1, 1, 2, 1.5]), ("down", [1, 1, 0.5, 0.6])):
            add(single(f"resize_opset10_{mode}_{direction}", "Resize", {"x": x}, {"mode": mode},
                       consts=[("sc", np.array(scales, np.float32))], opset=10))
    add(resize("resize_opset11_sizes_cubic", x, {"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel"},
               scales=np.zeros(0, np.float32), sizes=[1, 2, 9, 3], roi=np.zeros(0, np.float32), opset=11))
    add(resize("resize_opset13_linear_align_corners", x, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
               scales=[1, 1, 2, 2], opset=13))
    add(single("upsample_opset7_attr", "Upsample", {"x": rand(rng, 1, 1, 2, 3)}, {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 3.0]}, opset=7))
    # Valid by the spec, refused by onnxruntime: checked to stay refused, not compared.
    add(refused(resize("resize_linear_exclude_outside", x, {"mode": "linear", "exclude_outside": 1}, scales=[1, 1, 0.6, 1.5]),
                "onnxruntime: exclude_outside only for cubic, or linear with antialias"))
    add(refused(resize("resize_nearest_antialias", x, {"mode": "nearest", "antialias": 1}, scales=[1, 1, 0.6, 0.5]),
                "onnxruntime: antialias only with linear or cubic"))
    add(refused(resize("resize_cubic_nhwc_down", rand(rng, 1, 5, 6, 3), {"mode": "cubic"}, scales=[1, 0.6, 0.5, 1]),
                "onnxruntime: cubic on 4-D needs the outer two scales 1 (or NHWC upscaling)"))
    add(refused(resize("resize_linear_batch_axis", x, {"mode": "linear"}, scales=[2, 1, 1, 1]),
                "onnxruntime: linear on 4-D needs the outer two (or outer and inner) scales 1"))
    add(refused(resize("resize_cubic_3d", rand(rng, 3, 4, 5), {"mode": "cubic"}, scales=[1, 2, 0.5]),
                "onnxruntime: cubic only on 2-D or 4-D"))
    add(single("upsample_opset9_linear", "Upsample", {"x": rand(rng, 1, 2, 3, 4)}, {"mode": "linear"},
               consts=[("sc", np.array([1, 1, 2, 1.5], np.float32))], opset=9))
    return out


def detection_cases(rng):
    out = []
    add = out.append
    # NonZero: numbers, bools, nothing to find, a scalar.
    add(single("nonzero_float", "NonZero", {"x": np.array([[0, 1.5, 0], [2, 0, -1]], np.float32)}))
    add(single("nonzero_bool_3d", "NonZero", {"x": rng.uniform(size=(2, 3, 4)) > 0.5}))
    add(single("nonzero_int_none", "NonZero", {"x": np.zeros((3, 2), np.int64)}))
    add(single("nonzero_empty_input", "NonZero", {"x": np.zeros((2, 0), np.float32)}))
    add(single("nonzero_scalar", "NonZero", {"x": np.array(4, np.int64)}))
    # TopK: largest/smallest, along any axis, with ties (equal values keep the lower index first).
    ties = np.array([[3, 1, 3, 2, 1, 3, 0, 2], [5, 5, 5, 1, 1, 7, 7, 0]], np.float32)
    y = rand(rng, 3, 4, 5)
    add(single("topk_largest_last_axis", "TopK", {"x": y}, consts=[("k", i64(3))], outputs=2))
    add(single("topk_smallest_axis0", "TopK", {"x": y}, {"axis": 0, "largest": 0}, consts=[("k", i64(2))], outputs=2))
    add(single("topk_middle_axis", "TopK", {"x": y}, {"axis": -2}, consts=[("k", i64(4))], outputs=2))
    add(single("topk_ties_largest", "TopK", {"x": ties}, consts=[("k", i64(6))], outputs=2))
    add(single("topk_ties_smallest", "TopK", {"x": ties}, {"largest": 0}, consts=[("k", i64(8))], outputs=2))
    add(single("topk_int64", "TopK", {"x": i64(4, -2, 9, 4, 0, 9)}, consts=[("k", i64(4))], outputs=2))
    add(single("topk_k0", "TopK", {"x": y}, consts=[("k", i64(0))], outputs=2))
    add(single("topk_opset1_attr", "TopK", {"x": y}, {"k": 2, "axis": 1}, outputs=2, opset=1))
    add(single("topk_opset10_input", "TopK", {"x": y}, {"axis": 0}, consts=[("k", i64(1))], outputs=2, opset=10))
    # RoiAlign: rois partly outside the map, smaller than a pixel, several images; both modes,
    # adaptive (0) and fixed sampling, opset 16's half_pixel and output_half_pixel, opset 10.
    feature = rand(rng, 2, 3, 8, 9)
    rois = np.array([[0.5, 1.0, 6.0, 7.0], [-2.0, -1.0, 3.5, 2.5], [7.0, 6.0, 12.0, 10.0], [2.2, 3.1, 2.6, 3.3], [1, 1, 8, 8],
                     [6.0, 5.0, 3.5, 2.0]], np.float32)  # the last one inverted
    batch = i64(0, 1, 1, 0, 1, 0)
    for transform in ("half_pixel", "output_half_pixel"):
        for mode in ("avg", "max"):
            for ratio in (0, 2):
                add(single(f"roialign_{transform}_{mode}_ratio{ratio}", "RoiAlign", {"x": feature, "rois": rois},
                           {"coordinate_transformation_mode": transform, "mode": mode, "sampling_ratio": ratio,
                            "output_height": 3, "output_width": 2, "spatial_scale": 0.75}, consts=[("b", batch)], opset=16))
    add(single("roialign_opset10", "RoiAlign", {"x": feature, "rois": rois}, {"output_height": 2, "output_width": 4, "spatial_scale": 0.5},
               consts=[("b", batch)], opset=10))
    add(single("roialign_no_rois", "RoiAlign", {"x": feature, "rois": np.zeros((0, 4), np.float32)}, consts=[("b", np.zeros(0, np.int64))]))
    # NonMaxSuppression: corner and center boxes, thresholds, limits, several batches and
    # classes, equal scores, no boxes at all.
    centers = rng.uniform(0, 10, (2, 12, 2))
    sizes = rng.uniform(1, 5, (2, 12, 2))
    corner_boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=2)[:, :, [1, 0, 3, 2]].astype(np.float32)
    corner_boxes[0, 3] = corner_boxes[0, 3, [2, 3, 0, 1]]  # corners given the other way round
    center_boxes = np.concatenate([centers, sizes], axis=2).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 3, 12)).astype(np.float32)
    scores[0, 0, 5] = scores[0, 0, 7]  # a tie
    for box, (name, boxes) in enumerate((("corners", corner_boxes), ("centers", center_boxes))):
        add(single(f"nms_{name}_thresholds", "NonMaxSuppression", {"boxes": boxes, "scores": scores}, {"center_point_box": box},
                   consts=[("m", i64(5)), ("iou", np.array([0.3], np.float32)), ("s", np.array([0.2], np.float32))]))
        add(single(f"nms_{name}_all", "NonMaxSuppression", {"boxes": boxes, "scores": scores}, {"center_point_box": box},
                   consts=[("m", i64(100)), ("iou", np.array([0.5], np.float32))]))
    add(single("nms_no_limit_given", "NonMaxSuppression", {"boxes": corner_boxes, "scores": scores}))
    add(single("nms_no_boxes", "NonMaxSuppression", {"boxes": np.zeros((1, 0, 4), np.float32), "scores": np.zeros((1, 2, 0), np.float32)},
               consts=[("m", i64(10)), ("iou", np.array([0.5], np.float32)), ("s", np.array([0.0], np.float32))]))
    add(single("nms_all_below_threshold", "NonMaxSuppression", {"boxes": corner_boxes, "scores": scores},
               consts=[("m", i64(3)), ("iou", np.array([0.5], np.float32)), ("s", np.array([1.5], np.float32))]))
    return out


def indexing_cases(rng):
    out = []
    add = out.append
    data = rand(rng, 3, 4, 5)
    # GatherElements, GatherND.
    add(single("gatherelements_axis1", "GatherElements", {"x": data}, {"axis": 1},
               consts=[("i", rng.integers(-4, 4, (3, 2, 5)).astype(np.int64))]))
    add(single("gatherelements_axis0_int", "GatherElements", {"x": i64(*range(12)).reshape(3, 4)},
               consts=[("i", i64(2, 0, 1, -1, 0, 0, 2, 1).reshape(2, 4))]))
    add(single("gathernd_full_tuples", "GatherND", {"x": data}, consts=[("i", i64(0, 1, 2, 2, 3, -1, 1, 0, 0).reshape(3, 3))]))
    add(single("gathernd_slices", "GatherND", {"x": data}, consts=[("i", i64(2, 0, 1, 1).reshape(2, 1, 2))]))
    add(single("gathernd_batch_dims1", "GatherND", {"x": data}, {"batch_dims": 1}, consts=[("i", i64(0, 3, 2, 1, 1, 0).reshape(3, 2, 1))]))
    add(single("gathernd_batch_dims2", "GatherND", {"x": data}, {"batch_dims": 2},
               consts=[("i", rng.integers(0, 5, (3, 4, 1)).astype(np.int64))]))
    # ScatterElements and ScatterND with every reduction; repeated targets combine.
    indices = i64(1, 0, 2, 0, 1, 1, 2, 2, 0, 0).reshape(2, 5)
    updates = rand(rng, 2, 5)
    for reduction, opset in (("none", 18), ("add", 16), ("mul", 16), ("max", 18), ("min", 18)):
        repeated = indices if reduction != "none" else i64(1, 0, 2, 0, 1, 0, 2, 1, 2, 2).reshape(2, 5)
        add(single(f"scatterelements_{reduction}", "ScatterElements", {"x": rand(rng, 3, 5)}, {"axis": 0, "reduction": reduction},
                   consts=[("i", repeated), ("u", updates)], opset=opset))
        add(single(f"scatternd_{reduction}", "ScatterND", {"x": data}, {"reduction": reduction},
                   consts=[("i", i64(0, 1, 2, 3, 0, 1).reshape(3, 2) if reduction != "none" else i64(0, 1, 2, 3, 1, 0).reshape(3, 2)),
                           ("u", rand(rng, 3, 5))], opset=opset))
    add(single("scatterelements_axis1_negative", "ScatterElements", {"x": rand(rng, 2, 6)}, {"axis": -1},
               consts=[("i", i64(-1, 0, 2, 5, -3, 1).reshape(2, 3)), ("u", rand(rng, 2, 3))], opset=13))
    add(single("scatterelements_int", "ScatterElements", {"x": i64(*range(6)).reshape(2, 3)}, {"axis": 1},
               consts=[("i", i64(2, 0).reshape(2, 1)), ("u", i64(70, 80).reshape(2, 1))], opset=13))
    add(single("scatter_opset9", "Scatter", {"x": rand(rng, 3, 3)}, {"axis": 1}, consts=[("i", i64(1, 0, 2).reshape(3, 1)), ("u", rand(rng, 3, 1))],
               opset=9))
    add(single("scatternd_full_tuples", "ScatterND", {"x": data}, consts=[("i", i64(0, 0, 0, 2, 3, 4).reshape(2, 3)), ("u", rand(rng, 2))]))
    add(single("scatternd_whole_rows_int", "ScatterND", {"x": i64(*range(8)).reshape(4, 2)}, consts=[("i", i64(3, 0).reshape(2, 1)),
                                                                                                     ("u", i64(-1, -2, -3, -4).reshape(2, 2))]))
    # CumSum.
    for exclusive in (0, 1):
        for reverse in (0, 1):
            add(single(f"cumsum_e{exclusive}_r{reverse}", "CumSum", {"x": data}, {"exclusive": exclusive, "reverse": reverse},
                       consts=[("a", np.array(1, np.int64))]))
    add(single("cumsum_int_negative_axis", "CumSum", {"x": i64(*range(1, 7)).reshape(2, 3)}, consts=[("a", np.array(-1, np.int32))]))
    add(single("round_half_to_even", "Round", {"x": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997], np.float32)}))
    add(single("mod_int_negative", "Mod", {"a": i64(-7, 7, -8, 9, 0)}, consts=[("b", i64(3, -3, -3, 4, 5))]))
    add(refused(single("mod_float_fmod0", "Mod", {"a": rand(rng, 5) * 4}, consts=[("b", np.array(0.7, np.float32))]),
                "onnxruntime: fmod must be 1 for floating types"))
    add(single("mod_fmod_int", "Mod", {"a": i64(-7, 7, -8, 9, 0)}, {"fmod": 1}, consts=[("b", i64(3, -3, -3, 4, 5))]))
    return out


def graph_model(name, nodes, inputs, outputs, initializers=(), opset=17):
    """A model of `nodes`: graph inputs as (name, array) fed at run time, typed outputs."""
    graph_inputs = [helper.make_tensor_value_info(k, NP_TO_ONNX[v.dtype.type], list(v.shape)) for k, v in inputs]
    graph_outputs = [helper.make_tensor_value_info(k, t, None) for k, t in outputs]
    graph = helper.make_graph(nodes, name, graph_inputs, graph_outputs,
                              initializer=[numpy_helper.from_array(v, k) for k, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="op-cases")
    model.ir_version = 8
    return Case(name, model, dict(inputs))


def body(name, nodes, inputs, outputs, initializers=()):
    """A subgraph; inputs and outputs as (name, element type, shape or None)."""
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in inputs],
                             [helper.make_tensor_value_info(*o) for o in outputs],
                             initializer=[numpy_helper.from_array(v, k) for k, v in initializers])


def control_flow_cases(rng):
    """If, Loop and Scan whose bodies read values of the enclosing graph by name."""
    out = []
    add = out.append
    F, I, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
    x = rand(rng, 2, 3)
    w = rand(rng, 3)
    # If: each branch reads outer values (x, w, and an intermediate 'h' of the main graph).
    then_branch = body("then", [helper.make_node("Mul", ["h", "w"], ["t"])], [], [("t", F, None)])
    else_branch = body("else", [helper.make_node("Sub", ["x", "h"], ["e0"]), helper.make_node("Relu", ["e0"], ["e"])], [], [("e", F, None)])
    for flag in (True, False):
        add(graph_model(f"if_outer_scope_{str(flag).lower()}", [
            helper.make_node("Add", ["x", "w"], ["h"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=else_branch),
        ], [("c", np.array(flag)), ("x", x)], [("y", F)], initializers=[("w", w)]))
    # An If nested in a branch, reading the outermost scope.
    inner = helper.make_node("If", ["c2"], ["n"], then_branch=body("t2", [helper.make_node("Identity", ["x"], ["xi"])], [], [("xi", F, None)]),
                             else_branch=body("e2", [helper.make_node("Neg", ["x"], ["m"])], [], [("m", F, None)]))
    for c, c2 in ((True, True), (True, False), (False, True)):
        add(graph_model(f"if_nested_{c:d}{c2:d}", [
            helper.make_node("If", ["c"], ["y"], then_branch=body("outer_then", [inner], [], [("n", F, None)]),
                             else_branch=body("outer_else", [helper.make_node("Identity", ["w"], ["wi"])], [], [("wi", F, None)])),
        ], [("c", np.array(c)), ("c2", np.array(c2)), ("x", x)], [("y", F)], initializers=[("w", w)]))

    # Loop: trip count and cond, two loop-carried values, a scan output, outer reads.
    loop_body = body("loop_body", [
        helper.make_node("Cast", ["i"], ["fi"], to=F),
        helper.make_node("Mul", ["acc_in", "w"], ["scaled"]),
        helper.make_node("Add", ["scaled", "fi"], ["acc_out"]),
        helper.make_node("Add", ["count_in", "one"], ["count_out"]),
        helper.make_node("ReduceSum", ["acc_out"], ["total"], keepdims=0),
        helper.make_node("Less", ["total", "limit"], ["cond_out"]),
        helper.make_node("Identity", ["acc_out"], ["scan"]),
    ], [("i", I, []), ("cond_in", B, []), ("acc_in", F, [2, 3]), ("count_in", I, [])],
        [("cond_out", B, []), ("acc_out", F, [2, 3]), ("count_out", I, []), ("scan", F, [2, 3])], initializers=[("one", i64(1).reshape(()))])
    for name, trip, cond in (("trip_and_cond", 5, True), ("trip_only_body_cond_stops", 12, None), ("cond_only", None, True), ("zero_trips", 0, True),
                             ("cond_false", 3, False)):
        inputs = [("x", x)]
        consts = [("w", w * 2), ("limit", np.array(40.0, np.float32)), ("zero", np.array(0, np.int64))]
        names = ["", "", "x", "zero"]
        if trip is not None:
            consts.append(("M", np.array(trip, np.int64)))
            names[0] = "M"
        if cond is not None:
            inputs.append(("cond", np.array(cond)))
            names[1] = "cond"
        add(graph_model(f"loop_{name}", [helper.make_node("Loop", names, ["acc", "count", "scans"], body=loop_body)],
                        inputs, [("acc", F), ("count", I), ("scans", F)], initializers=consts))
    # A Loop whose body holds an If reading the loop's outer scope and the body's own values.
    branchy = body("branchy", [
        helper.make_node("Mod", ["i", "two"], ["parity"]),
        helper.make_node("Equal", ["parity", "zero"], ["even"]),
        helper.make_node("If", ["even"], ["step"], then_branch=body("even", [helper.make_node("Mul", ["v_in", "w"], ["a"])], [], [("a", F, None)]),
                         else_branch=body("odd", [helper.make_node("Add", ["v_in", "x"], ["b"])], [], [("b", F, None)])),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        helper.make_node("Identity", ["step"], ["v_out"]),
    ], [("i", I, []), ("cond_in", B, []), ("v_in", F, [2, 3])], [("cond_out", B, []), ("v_out", F, [2, 3])],
        initializers=[("two", i64(2).reshape(())), ("zero", i64(0).reshape(()))])
    add(graph_model("loop_with_if_in_body", [helper.make_node("Loop", ["M", "", "x"], ["v"], body=branchy)],
                    [("x", x)], [("v", F)], initializers=[("M", np.array(5, np.int64)), ("w", w)]))

    # Scan: a running sum over axis 1 read backwards, scan output stacked on axis 1, plus an outer read.
    scan_body = body("scan_body", [
        helper.make_node("Add", ["sum_in", "item"], ["sum_out"]),
        helper.make_node("Mul", ["sum_out", "w2"], ["emit"]),
    ], [("sum_in", F, [3]), ("item", F, [3])], [("sum_out", F, [3]), ("emit", F, [3])])
    add(graph_model("scan_reverse_axes", [helper.make_node("Scan", ["s0", "seq"], ["final", "emitted"], body=scan_body, num_scan_inputs=1,
                                                           scan_input_axes=[1], scan_input_directions=[1], scan_output_axes=[1])],
                    [("s0", rand(rng, 3)), ("seq", rand(rng, 3, 4))], [("final", F), ("emitted", F)], initializers=[("w2", rand(rng, 3))]))
    return out
