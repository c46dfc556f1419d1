"""TensorFlow checkpoints and Keras HDF5 files: doconv-fold against what a user would
otherwise run, the same fold in Python with TensorFlow (load the DO-Conv model's weights,
compose each kernel with the layer's own arithmetic, set them into the plain twin, save),
and cp. Never in CI.

    TF_USE_LEGACY_KERAS=1 /work/venv-tf/bin/python bench/tf_checkpoint_bench.py --doconv .build/release/doconv-fold
        [--format tf|h5] [--layers 8] [--channels 512] [--rounds 3] [--work /tmp/doconv-tf-bench]

The model: Input (16, 16, C), then LAYERS DOConv2D(C, 3x3, D_mul 9) (fixtures' layer, written
from the paper), trained one step with Adam (so the file holds optimizer state, as a
ModelCheckpoint would), saved with save_weights in the TF format (`--format tf`) or with
model.save as a legacy HDF5 model (`--format h5`). Prints median wall time and peak RSS of
each way, and checks that both results load into the plain twin and agree.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "fixtures"))

# The fold a user would write with TensorFlow: argv is FORMAT SOURCE OUT FIXTURES, FORMAT "tf"
# (SOURCE "CONFIG.json:CHECKPOINT", saved with save_weights) or "h5" (SOURCE a model.save file).
PYTHON_FOLD = r'''
import os, sys, json
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
form, source, out = sys.argv[1:4]
sys.path.insert(0, sys.argv[4])
import tensorflow as tf, tf_keras
import make_keras_h5_fixtures as kh
DOConv2D = kh.define_keras2_layer(tf)
if form == "h5":
    model = tf_keras.models.load_model(source, custom_objects={"DOConv2D": DOConv2D})
else:
    config, checkpoint = source.split(":", 1)
    model = tf_keras.models.model_from_json(open(config).read(), custom_objects={"DOConv2D": DOConv2D})
    model.load_weights(checkpoint).expect_partial()
plain = json.loads(model.to_json())
for layer in plain["config"]["layers"]:
    if layer["class_name"] == "DOConv2D":
        layer["class_name"] = "Conv2D"; layer["config"].pop("D_mul", None)
twin = tf_keras.models.model_from_json(json.dumps(plain))
for layer in model.layers:
    if isinstance(layer, DOConv2D):
        weights = [layer.composite_kernel().numpy()] + ([layer.bias.numpy()] if layer.use_bias else [])
        twin.get_layer(layer.name).set_weights(weights)
    elif layer.weights:
        twin.get_layer(layer.name).set_weights(layer.get_weights())
twin.save(out) if form == "h5" else twin.save_weights(out)
'''


def timed(command):
    done = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr[-2000:]}")
    wall, rss = done.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doconv", required=True)
    parser.add_argument("--format", choices=["tf", "h5"], default="tf")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/doconv-tf-bench"))
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    import tf_keras
    import make_keras_h5_fixtures as kh
    DOConv2D = kh.define_keras2_layer(tf)

    args.work.mkdir(parents=True, exist_ok=True)
    c = args.channels
    inputs = tf_keras.Input((16, 16, c))
    x = inputs
    for k in range(args.layers):
        x = DOConv2D(c, 3, D_mul=9, padding="same", name=f"do{k}")(x)
    model = tf_keras.Model(inputs, x)
    model.compile(optimizer="adam", loss="mse")
    data = np.random.default_rng(0).standard_normal((2, 16, 16, c)).astype("float32")
    model.fit(data, data, epochs=1, verbose=0)
    fixtures = str(pathlib.Path(__file__).resolve().parent.parent / "fixtures")
    if args.format == "h5":
        source = str(args.work / "model.h5")
        model.save(source)
        size = os.path.getsize(source)
        ways = {
            "doconv-fold": lambda out: [args.doconv, source, out + ".h5"],
            "Python + TensorFlow": lambda out: [sys.executable, "-c", PYTHON_FOLD, "h5", source, out + ".h5", fixtures],
            "cp": lambda out: ["cp", source, out + ".h5"],
        }
    else:
        ckpt = str(args.work / "ckpt")
        model.save_weights(ckpt)
        config = args.work / "model.json"
        config.write_text(model.to_json())
        size = sum(p.stat().st_size for p in args.work.glob("ckpt.*"))
        ways = {
            "doconv-fold": lambda out: [args.doconv, "--config", str(config), ckpt, out],
            "Python + TensorFlow": lambda out: [sys.executable, "-c", PYTHON_FOLD, "tf", f"{config}:{ckpt}", out, fixtures],
        }
    results = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, command in ways.items():
            out = str(args.work / f"out-{name[:6]}")
            for stale in (out, out + ".h5"):
                if os.path.isfile(stale):
                    os.unlink(stale) # each way writes a fresh output
            results[name].append(timed(command(out)))
    kind = "legacy HDF5 model (model.save)" if args.format == "h5" else "checkpoint"
    print(f"{kind}: {args.layers} DOConv2D {c}x{c} 3x3, Dmul 9, with Adam state: {size / 2**20:.1f} MiB")
    print("| way | median wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(w for w, _ in runs):.3f} | {max(m for _, m in runs):.0f} |")
    # Both results are the same plain model.
    if args.format == "h5":
        a = tf_keras.models.load_model(str(args.work / "out-doconv.h5"))
        b = tf_keras.models.load_model(str(args.work / "out-Python.h5"))
        pairs = [(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights) if "kernel" in x.name]
    else:
        a = tf.train.load_checkpoint(str(args.work / "out-doconv"))
        b = tf.train.load_checkpoint(str(args.work / "out-Python"))
        pairs = [(a.get_tensor(key), b.get_tensor(key)) for key in a.get_variable_to_shape_map()
                 if key.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE")]
    worst = max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in pairs)
    print(f"folded kernels ({len(pairs)}), doconv vs TensorFlow's own composition: worst relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
