"""TensorFlow checkpoints: doconv-fold against what a user would otherwise run, the same fold
in Python with TensorFlow (load the DO-Conv model's weights, compose each kernel with the
layer's own arithmetic, set them into the plain twin, save_weights). Never in CI.

    TF_USE_LEGACY_KERAS=1 /work/venv-tf/bin/python bench/tf_checkpoint_bench.py --doconv .build/release/doconv-fold
        [--layers 8] [--channels 512] [--rounds 3] [--work /tmp/doconv-tf-bench]

The model: Input (16, 16, C), then LAYERS DOConv2D(C, 3x3, D_mul 9) (fixtures' layer, written
from the paper), trained one step with Adam (so the checkpoint holds optimizer slots, as a
ModelCheckpoint would), saved with save_weights in the TF format. Prints median wall time
and peak RSS of each way, and checks that both results load into the plain twin and agree.
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

PYTHON_FOLD = r'''
import os, sys, json
os.environ["TF_USE_LEGACY_KERAS"] = "1"; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, sys.argv[4])
import tensorflow as tf, tf_keras
import make_keras_h5_fixtures as kh
DOConv2D = kh.define_keras2_layer(tf)
config = open(sys.argv[1]).read()
model = tf_keras.models.model_from_json(config, custom_objects={"DOConv2D": DOConv2D})
model.load_weights(sys.argv[2]).expect_partial()
plain = json.loads(config)
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
twin.save_weights(sys.argv[3])
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
    ckpt = str(args.work / "ckpt")
    model.save_weights(ckpt)
    config = args.work / "model.json"
    config.write_text(model.to_json())
    size = sum(p.stat().st_size for p in args.work.glob("ckpt.*"))

    ways = {
        "doconv-fold": lambda out: [args.doconv, "--config", str(config), ckpt, out],
        "Python + TensorFlow": lambda out: [sys.executable, "-c", PYTHON_FOLD, str(config), ckpt, out, str(pathlib.Path(__file__).resolve().parent.parent / "fixtures")],
    }
    results = {name: [] for name in ways}
    for r in range(args.rounds):
        for name, command in ways.items():
            results[name].append(timed(command(str(args.work / f"out-{name[:6]}"))))
    print(f"checkpoint: {args.layers} DOConv2D {c}x{c} 3x3, Dmul 9, with Adam slots: {size / 2**20:.1f} MiB")
    print("| way | median wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(w for w, _ in runs):.2f} | {max(m for _, m in runs):.0f} |")
    # Both results are the same plain model.
    a = tf.train.load_checkpoint(str(args.work / "out-doconv"))
    b = tf.train.load_checkpoint(str(args.work / "out-Python"))
    worst = 0.0
    for key in a.get_variable_to_shape_map():
        if key.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE"):
            x, y = a.get_tensor(key), b.get_tensor(key)
            worst = max(worst, float(np.abs(x - y).max() / np.abs(y).max()))
    print(f"folded kernels, doconv vs TensorFlow's own composition: worst relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
