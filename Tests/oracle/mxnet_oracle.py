"""The MXNet side of the MXNet oracle tests (test_mxnet_oracles.py, test_mxnet_hostile.py).
Runs under the MXNet 1.9.1 venv (scripts/install-mxnet), never under the test's own Python.

The small nets of the fixtures are defined here, once, as builders that take the class of
their DO-Conv layers: fixtures/make_mxnet_fixtures.py builds them with its DOConv2D, this
script with nn.Conv2D (the plain twin: same blocks, same names, a plain kernel where the
DO-Conv layer had weight and D). Nothing here composes a kernel: the plain net only loads
what doconv-fold wrote and runs it.

    python mxnet_oracle.py predict --net NAME --naming structural|legacy|export
                                   --expected NPZ FILE [SYMBOL]
        Loads FILE (a .params file; with --naming export, the pair SYMBOL + FILE) into the
        plain net (load_parameters, collect_params().load, SymbolBlock.imports), runs the
        npz's `input` and prints JSON: {"relative_error": max|out - output| / max|output|,
        "shape", "kernels": {name in the file: nested list}, "dtypes": {name: dtype as
        loaded}, "params": [names in the file]}.
    python mxnet_oracle.py dump FILE
        mx.nd.load(FILE), printed as JSON: [{"name", "dtype", "shape", "sha256"}] in file
        order (sha256 of the array's bytes, C order).
    python mxnet_oracle.py tamper FILE OUT NAME [--no-change]
        Writes OUT with mx.nd.save: FILE's arrays in order, NAME's first element changed
        (with --no-change: as they are).
    python mxnet_oracle.py symbol SYMBOL
        The symbol's nodes as JSON: [{"op", "name", "inputs": [names], "attrs"}].
    python mxnet_oracle.py serve
        The modes above without a new process each (MXNet takes ~2 s to import): one JSON
        list of arguments per stdin line, one reply line per command (see serve()).
"""
import argparse
import hashlib
import json
import sys
import traceback

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

# ---------------------------------------------------------------------------------------
# The nets. `do` is the class of the DO-Conv layers (DOConv2D, or nn.Conv2D for the plain
# twin); both take Conv2D's keyword arguments and in_channels. Every top-level block gets an
# explicit prefix, so collect_params() names do not depend on what else the process built.

INPUT_SHAPES = {"basic": (2, 3, 8, 8), "mobile": (2, 3, 10, 10), "seg": (1, 3, 10, 10), "half": (2, 3, 8, 8)}


def basic(do):
    """groups 1, 3x3, one with bias and one without, BatchNorm, a plain 1x1 conv, Dense."""
    net = nn.HybridSequential(prefix="basic_")
    with net.name_scope():
        net.add(do(8, 3, padding=1, in_channels=3, use_bias=True),      # 0: conv0
                nn.BatchNorm(in_channels=8),                          # 1
                nn.Activation("relu"),                                # 2
                do(8, 3, padding=1, in_channels=8, use_bias=False),     # 3: conv1
                nn.BatchNorm(in_channels=8),                          # 4
                nn.Activation("relu"),                                # 5
                nn.Conv2D(4, 1, in_channels=8),                       # 6: conv2, a plain conv
                nn.GlobalAvgPool2D(),                                 # 7
                nn.Dense(5, in_units=4))                              # 8
    return net


class Mobile(nn.HybridBlock):
    """Nested names (features.3.D): a stem, a depthwise 3x3 stride 2 (DO-DConv), a 1x3 and a
    5x5 DO-Conv, then pooling and a Dense head."""

    def __init__(self, do, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="features_")
            with self.features.name_scope():
                self.features.add(
                    do(8, 3, padding=1, in_channels=3),                                # 0
                    nn.BatchNorm(in_channels=8),                                       # 1
                    nn.Activation("relu"),                                             # 2
                    do(8, 3, strides=2, padding=1, groups=8, in_channels=8, use_bias=False),  # 3
                    nn.BatchNorm(in_channels=8),                                       # 4
                    nn.Activation("relu"),                                             # 5
                    do(4, (1, 3), padding=(0, 1), in_channels=8),                      # 6
                    do(6, 5, padding=2, in_channels=4, use_bias=False),                # 7
                    nn.GlobalAvgPool2D(),                                              # 8
                    nn.Flatten())                                                      # 9
            self.output = nn.Dense(5, in_units=6, prefix="output_")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def mobile(do):
    return Mobile(do, prefix="mobile_")


def seg(do):
    """The segmentation case: grouped DO-Conv (groups 2, dilation 2) and a groups 4 one that
    widens 8 -> 12 (D's channel index is not the conv's input channel there), per-pixel
    logits from a plain 1x1 conv."""
    net = nn.HybridSequential(prefix="seg_")
    with net.name_scope():
        net.add(do(8, 3, padding=1, in_channels=3, use_bias=False),               # 0
                nn.BatchNorm(in_channels=8),                                      # 1
                nn.Activation("relu"),                                            # 2
                do(8, 3, padding=2, dilation=2, groups=2, in_channels=8),         # 3
                nn.Activation("relu"),                                            # 4
                do(12, 3, padding=2, dilation=2, groups=4, in_channels=8),        # 5
                nn.BatchNorm(in_channels=12),                                     # 6
                nn.Activation("relu"),                                            # 7
                nn.Conv2D(3, 1, in_channels=12))                                  # 8
    return net


def half(do):
    """float16 (build() casts it; Gluon keeps BatchNorm's parameters float32)."""
    net = nn.HybridSequential(prefix="half_")
    with net.name_scope():
        net.add(do(6, 3, padding=1, in_channels=3),                           # 0
                nn.BatchNorm(in_channels=6),                                  # 1
                nn.Activation("relu"),                                        # 2
                do(6, 3, padding=1, groups=3, in_channels=6),                 # 3
                nn.Activation("relu"),                                        # 4
                nn.GlobalAvgPool2D(),                                         # 5
                nn.Dense(4, in_units=6))                                      # 6
    return net


NETS = {"basic": (basic, "float32"), "mobile": (mobile, "float32"), "seg": (seg, "float32"), "half": (half, "float16")}


def build(name, do):
    """The net `name` with DO layers of class `do`, initialized and cast to its dtype."""
    builder, dtype = NETS[name]
    net = builder(do)
    net.initialize(mx.init.Xavier())
    if dtype != "float32":
        net.cast(dtype)
    return net


def plain(name):
    return build(name, nn.Conv2D)


# ---------------------------------------------------------------------------------------
# Modes: each returns what it prints (JSON)


class OracleError(Exception):
    pass


def nested(array):
    return array.asnumpy().astype(np.float64).tolist()


def predict(args):
    expected = np.load(args.expected)
    if args.naming == "export":
        if args.symbol is None:
            raise OracleError("predict --naming export needs SYMBOL")
        # SymbolBlock.imports loads with the saved dtypes (cast_dtype, dtype_source "saved").
        net = nn.SymbolBlock.imports(args.symbol, ["data"], args.file)
        stored = list(mx.nd.load(args.file))
        params = {("arg:" + n if "arg:" + n in stored else "aux:" + n): p for n, p in net.collect_params().items()}
    else:
        net = plain(args.net)  # at the net's dtype: loading checks every dtype and shape
        if args.naming == "structural":
            net.load_parameters(args.file)  # strict: no missing, no extra parameter
            params = net._collect_params_with_prefix()
        else:
            net.collect_params().load(args.file)  # strict too
            params = dict(net.collect_params().items())
    kernels = {name: nested(p.data()) for name, p in params.items() if "kernel:" + name in expected.files}
    dtypes = {name: np.dtype(p.dtype).name for name, p in params.items()}
    # MXNet 1.9.1 has no float16 convolution on CPU: a float16 net runs cast to float32,
    # as make_mxnet_fixtures.py ran the DO net.
    net.cast("float32")
    result = net(mx.nd.array(expected["input"], dtype="float32"))
    out = result.asnumpy().astype(np.float64)
    want = expected["output"].astype(np.float64)
    error = float(np.abs(out - want).max() / max(np.abs(want).max(), 1e-30))
    return {"relative_error": error, "shape": list(out.shape), "kernels": kernels, "dtypes": dtypes, "params": list(params)}


def dump(args):
    arrays = mx.nd.load(args.file)
    items = arrays.items() if isinstance(arrays, dict) else ((None, a) for a in arrays)
    return [{"name": name, "dtype": np.dtype(a.dtype).name, "shape": list(a.shape),
             "sha256": hashlib.sha256(np.ascontiguousarray(a.asnumpy()).tobytes()).hexdigest()} for name, a in items]


def tamper(args):
    arrays = mx.nd.load(args.file)
    if args.name not in arrays:
        raise OracleError(f"{args.name} is not in {args.file}: {list(arrays)}")
    target = arrays[args.name].asnumpy()
    flat = target.reshape(-1)
    value = float(flat[0])
    if not args.no_change:
        flat[0] = -value + 1.0 if abs(value) < 4 else value / 2
    arrays[args.name] = mx.nd.array(target, dtype=target.dtype)
    mx.nd.save(args.out, arrays)
    return {"name": args.name, "before": value, "after": float(flat[0])}


def symbol(args):
    graph = json.loads(open(args.symbol).read())
    nodes = graph["nodes"]
    return [{"op": n["op"], "name": n["name"], "inputs": [nodes[i[0]]["name"] for i in n["inputs"]],
             "attrs": n.get("attrs", {})} for n in nodes]


# The reply marker of serve mode: MXNet may write log lines of its own to stdout.
REPLY = "@@mxnet-oracle "


def serve(parser):
    """One command line (a JSON list of arguments) per stdin line; one reply line per
    command: REPLY + {"ok": true, "result": ...} or {"ok": false, "error": "..."}."""
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        try:
            args = parser.parse_args(json.loads(line))
            if args.mode == "serve":
                raise OracleError("serve inside serve")
            reply = {"ok": True, "result": args.run(args)}
        except SystemExit as e:  # argparse
            reply = {"ok": False, "error": f"bad arguments ({e})"}
        except Exception:
            reply = {"ok": False, "error": traceback.format_exc()}
        out.write(REPLY + json.dumps(reply) + "\n")
        out.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("predict")
    p.add_argument("--net", required=True, choices=sorted(NETS))
    p.add_argument("--naming", required=True, choices=["structural", "legacy", "export"])
    p.add_argument("--expected", required=True)
    p.add_argument("file")
    p.add_argument("symbol", nargs="?")
    p.set_defaults(run=predict)
    p = modes.add_parser("dump")
    p.add_argument("file")
    p.set_defaults(run=dump)
    p = modes.add_parser("tamper")
    p.add_argument("file")
    p.add_argument("out")
    p.add_argument("name")
    p.add_argument("--no-change", action="store_true", help="rewrite the file without changing anything")
    p.set_defaults(run=tamper)
    p = modes.add_parser("symbol")
    p.add_argument("symbol")
    p.set_defaults(run=symbol)
    modes.add_parser("serve")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(parser)
        return
    try:
        print(json.dumps(args.run(args)))
    except OracleError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
