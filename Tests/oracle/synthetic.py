"""Builds small DO-Conv graphs with onnx.helper for shapes the exporter fixtures do not
cover (element types, the Keras chain, custom-domain ops, near-misses). The expected
kernels come from numpy's einsum, independently of doconv."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ONNX_TYPE = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE, np.float16: TensorProto.FLOAT16}


def identity_tiled(mn, dmul, channels, layout):
    """The fixed identity offset I_tiled of FORMATS.md."""
    eye = np.zeros((mn, dmul), np.float32)
    for s in range(mn * (dmul // mn)):
        eye[s % mn, s] = 1
    if layout == "pytorch":
        return np.broadcast_to(eye, (channels, mn, dmul)).copy()  # (Cin, MN, Dmul)
    return np.broadcast_to(eye[:, :, None], (mn, dmul, channels)).copy()  # (MN, Dmul, Cin)


def expected_kernel(layout, d, w, cin, cout, groups, m, n, dmul):
    """The framework arithmetic, in numpy."""
    if layout == "pytorch":
        wr = w.reshape(cout // groups, cin, dmul)
        return np.einsum("ims,ois->oim", d, wr).reshape(cout, cin // groups, m, n)
    wr = w.reshape(dmul, cin, cout // groups)
    hwio = np.einsum("msi,sio->mio", d, wr).reshape(m, n, cin // groups, cout)
    return hwio.transpose(3, 2, 0, 1)


def do_conv_model(layout="pytorch", cin=4, cout=6, groups=1, m=3, n=3, dmul=9, dtype=np.float32,
                  bfloat16=False, seed=0, casts=False, extra_nodes=(), extra_outputs=(), opset=17, d_constant=False,
                  typed_fields=False):
    """One DO-Conv layer: input (1, cin, 7, 7) -> Conv with a composed kernel -> output.

    Returns (model, expected kernel in float64)."""
    rng = np.random.default_rng(seed)
    mn = m * n
    if layout == "pytorch":
        d_raw = rng.normal(0, 0.5, (cin, mn, dmul)).astype(np.float32)
        w = rng.normal(0, 0.5, (cout, cin // groups, dmul)).astype(np.float32)
        w_shape = [cout // groups, cin, dmul]
        equation = "ims,ois->oim"
    else:
        d_raw = rng.normal(0, 0.5, (mn, dmul, cin)).astype(np.float32)
        w = rng.normal(0, 0.5, (dmul, cin // groups, cout)).astype(np.float32)
        w_shape = [dmul, cin, cout // groups]
        equation = "msi,sio->mio"
    diag = identity_tiled(mn, dmul, cin, layout)
    elem = TensorProto.BFLOAT16 if bfloat16 else ONNX_TYPE[dtype]

    def init(name, array):
        if bfloat16:
            bits = (array.astype(np.float32).view(np.uint32) + 0x7FFF + ((array.astype(np.float32).view(np.uint32) >> 16) & 1)) >> 16
            t = helper.make_tensor(name, TensorProto.BFLOAT16, array.shape, bits.astype(np.uint16).tobytes(), raw=True)
            return t, (bits.astype(np.uint32) << 16).view(np.float32)
        stored = array.astype(dtype)
        if typed_fields:  # float_data / double_data / int32_data instead of raw_data
            return helper.make_tensor(name, ONNX_TYPE[dtype], stored.shape, stored.flatten().tolist()), stored.astype(np.float32)
        return numpy_helper.from_array(stored, name), stored.astype(np.float32)

    d_t, d_stored = init("conv.D", d_raw)
    diag_t, diag_stored = init("conv.d_diag", diag)
    w_t, w_stored = init("conv.W", w)
    kernel = expected_kernel(layout, d_stored.astype(np.float64) + diag_stored, w_stored.astype(np.float64), cin, cout, groups, m, n, dmul)

    if d_constant:  # D + I as one Constant node, as a constant-folding exporter might leave it
        dt = (d_stored + diag_stored).astype(dtype)
        d_nodes = [helper.make_node("Constant", [], ["dt"], value=numpy_helper.from_array(dt, "dt_value"))]
        kernel = expected_kernel(layout, dt.astype(np.float64), w_stored.astype(np.float64), cin, cout, groups, m, n, dmul)
        initializers = [w_t]
    else:
        d_nodes = [helper.make_node("Add", ["conv.D", "conv.d_diag"], ["dt"])]
        initializers = [d_t, diag_t, w_t]
    nodes = d_nodes + [
        helper.make_node("Constant", [], ["w_shape"], value=numpy_helper.from_array(np.array(w_shape, np.int64))),
        helper.make_node("Reshape", ["conv.W", "w_shape"], ["wr"]),
        helper.make_node("Einsum", ["dt", "wr"], ["e"], equation=equation),
    ]
    last = "e"
    if casts:
        nodes.append(helper.make_node("Cast", [last], ["e_cast"], to=elem))
        nodes.append(helper.make_node("Identity", ["e_cast"], ["e_id"]))
        last = "e_id"
    if layout == "pytorch":
        k_shape = [cout, cin // groups, m, n]
        nodes += [helper.make_node("Constant", [], ["k_shape"], value=numpy_helper.from_array(np.array(k_shape, np.int64))),
                  helper.make_node("Reshape", [last, "k_shape"], ["kernel"])]
    else:
        k_shape = [m, n, cin // groups, cout]
        nodes += [helper.make_node("Constant", [], ["k_shape"], value=numpy_helper.from_array(np.array(k_shape, np.int64))),
                  helper.make_node("Reshape", [last, "k_shape"], ["hwio"])]
        if casts:
            nodes.append(helper.make_node("Cast", ["hwio"], ["hwio_cast"], to=elem))
        nodes.append(helper.make_node("Transpose", ["hwio_cast" if casts else "hwio"], ["kernel"], perm=[3, 2, 0, 1]))
    nodes.append(helper.make_node("Conv", ["input", "kernel"], ["conv_out"], group=groups, pads=[m // 2, n // 2, m // 2, n // 2], name="conv"))
    nodes += list(extra_nodes)
    last_out = nodes[-1].output[0]
    outputs = [helper.make_tensor_value_info(last_out, elem, ["n", "c", "h", "w"])]
    outputs += [helper.make_tensor_value_info(name, elem, [f"{name}_{k}" for k in range(3)]) for name in extra_outputs]
    graph = helper.make_graph(nodes, "do_conv", [helper.make_tensor_value_info("input", elem, [1, cin, 7, 7])], outputs,
                              initializer=initializers)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in {x.domain for x in extra_nodes if x.domain}]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="doconv-tests")
    return model, kernel
