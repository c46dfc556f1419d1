"""A synthetic DO-Conv model of a chosen size, weights in external data, for the scale test.

    python make_synthetic.py OUT.onnx --layers N [--channels C]

N layers of Cin = Cout = C, 3x3, Dmul = 9, as the TorchScript exporter writes them:
Einsum('ims,ois->oim', D, W) -> Reshape -> Conv, chained. D and W go to OUT.onnx.data,
written layer by layer, so making the file never holds more than one tensor in memory.
With C = 1024 a layer is 38 MB and 64 layers are 2.3 GiB, past protobuf's 2 GiB limit.
"""

import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper


def external(name, dims, data_type, location, offset, length):
    tensor = TensorProto(name=name, dims=dims, data_type=data_type)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--channels", type=int, default=1024)
    args = parser.parse_args()
    c, mn, dmul = args.channels, 9, 9
    data_name = args.out.name + ".data"
    rng = np.random.default_rng(7)
    nodes, initializers = [], []
    previous = "input"
    with open(args.out.with_name(data_name), "wb") as data:
        def put(name, array):
            offset = data.tell()
            data.write(array.tobytes())
            initializers.append(external(name, list(array.shape), TensorProto.FLOAT, data_name, offset, array.nbytes))

        for k in range(args.layers):
            # D + I as exported (identity offset already added), W small so activations stay finite.
            d = rng.normal(0, 0.05, (c, mn, dmul)).astype(np.float32)
            d[:, np.arange(mn), np.arange(dmul)] += 1
            put(f"layer{k}.D", d)
            del d
            put(f"layer{k}.W", (rng.standard_normal((c, c, dmul), dtype=np.float32) * (1 / np.sqrt(c * dmul))).astype(np.float32))
            initializers.append(helper.make_tensor(f"layer{k}.shape", TensorProto.INT64, [4], [c, c, 3, 3]))
            nodes += [
                helper.make_node("Einsum", [f"layer{k}.D", f"layer{k}.W"], [f"layer{k}.e"], equation="ims,ois->oim"),
                helper.make_node("Reshape", [f"layer{k}.e", f"layer{k}.shape"], [f"layer{k}.kernel"]),
                helper.make_node("Conv", [previous, f"layer{k}.kernel"], [f"layer{k}.out"], pads=[1, 1, 1, 1],
                                 name=f"layer{k}.conv"),
            ]
            previous = f"layer{k}.out"
    graph = helper.make_graph(nodes, "synthetic_do", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, 4, 4])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, c, 4, 4])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(args.out))


if __name__ == "__main__":
    main()
