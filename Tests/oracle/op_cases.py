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
    def __init__(self, name, model, feeds):
        self.name = name
        self.model = model
        self.feeds = feeds


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
    return out
