"""The TensorFlow side of the TensorFlow oracle tests (test_tensorflow_oracles.py). Runs under
the tensorflow-cpu + tf_keras venv (scripts/install-tensorflow), never under the test's own
Python. Nothing here composes a kernel: the plain twin only loads what doconv-fold wrote.

    python tf_oracle.py JOBS.json
        JOBS is a list of {"config": MODEL.json (model.to_json() of the DO-Conv model),
        "checkpoint": PREFIX, "expected": NPZ, "style": "keras" | "tf.train.Checkpoint.save" |
        "tf.train.Checkpoint.write"}.
        For each: the plain twin is the config with every DOConv2D made a Conv2D (same name,
        filters, kernel size, strides, dilation, groups, bias; D_mul dropped), or a
        DepthwiseConv2D (depth_multiplier filters/groups) for the layers the job's
        "depthwise" lists, built with no custom class; PREFIX is loaded into it (model.load_weights, or
        tf.train.Checkpoint(model=twin).restore / .read) and must pass assert_consumed(); the npz's
        `input` is run. Prints one JSON list: {"relative_error": max|out - output| /
        max|output|, "consumed": true, "variables": {key: shape} (tf.train.list_variables)}
        or {"error": "..."} per job. A job {"model": FILE.h5, "expected": NPZ} instead loads
        FILE with tf_keras.models.load_model and no custom object, and runs it the same way;
        with "onnx": true it also exports the model with tf2onnx and runs the ONNX file in
        onnxruntime ("onnx_relative_error", or "onnx_error" when either step fails). With
        "do_layer": true FILE is a DO-Conv model (doconv-expand's output): it is loaded with the
        DOConv2D of fixtures/make_keras_h5_fixtures.py (the user's layer class, written from
        the paper) as its one custom object.
    python tf_oracle.py tamper PREFIX OUT KEY SCALE
        Rewrites PREFIX at OUT with TensorFlow's own bundle writer (tf.raw_ops.SaveV2): every
        tensor as tf.train.load_checkpoint reads it, the object graph included, KEY's values
        multiplied by SCALE (SCALE "ulp": its first element moved by one float32 ulp; "shape=A,B,..":
        the same values reshaped, the object graph unchanged).
"""
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

CONV2D_KEYS = {"name", "trainable", "dtype", "filters", "kernel_size", "strides", "padding", "data_format",
               "dilation_rate", "groups", "activation", "use_bias", "kernel_initializer", "bias_initializer",
               "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint"}


def plain_twin(config_path, depthwise=()):
    model = json.loads(open(config_path).read())
    for layer in model["config"]["layers"]:
        if layer["class_name"] == "DOConv2D":
            config = {k: v for k, v in layer["config"].items() if k in CONV2D_KEYS}
            layer["class_name"] = "Conv2D"
            if layer["config"]["name"] in depthwise:
                layer["class_name"] = "DepthwiseConv2D"
                config["depth_multiplier"] = config.pop("filters") // config.pop("groups")
                config = {k if k == "kernel_size" else k.replace("kernel_", "depthwise_"): v for k, v in config.items()}
            layer["config"] = config
            layer.pop("module", None)
            layer.pop("registered_name", None)
    return tf_keras.models.model_from_json(json.dumps(model))


def run(job):
    if "model" in job:
        custom = {}
        if job.get("do_layer"):
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures"))
            import make_keras_h5_fixtures
            custom = {"DOConv2D": make_keras_h5_fixtures.define_keras2_layer(tf)}
        model = tf_keras.models.load_model(job["model"], custom_objects=custom, compile=False)
        expected = np.load(job["expected"])
        out = np.asarray(model(expected["input"], training=False))
        reference = expected["output"]
        result = {"relative_error": float(np.abs(out - reference).max() / max(np.abs(reference).max(), 1e-30)),
                  "classes": [layer.__class__.__name__ for layer in model.layers]}
        if job.get("onnx"):
            import onnxruntime
            import tf2onnx
            spec = (tf.TensorSpec((None,) + tuple(model.input_shape[1:]), tf.float32, name="x"),)
            try:
                proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
                onnx_out = onnxruntime.InferenceSession(proto.SerializeToString()).run(None, {"x": expected["input"]})[0]
                result["onnx_relative_error"] = float(np.abs(onnx_out - reference).max() / max(np.abs(reference).max(), 1e-30))
            except Exception as error:
                result["onnx_error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        return result
    twin = plain_twin(job["config"], job.get("depthwise", ()))
    if job.get("style") == "tf.train.Checkpoint.save":
        tf.train.Checkpoint(model=twin).restore(job["checkpoint"]).assert_consumed()
    elif job.get("style") == "tf.train.Checkpoint.write":
        # read, not restore: restore makes a save_counter, which Checkpoint.write never saves.
        tf.train.Checkpoint(model=twin).read(job["checkpoint"]).assert_consumed()
    else:
        twin.load_weights(job["checkpoint"]).assert_consumed()
    expected = np.load(job["expected"])
    out = np.asarray(twin(expected["input"], training=False))
    reference = expected["output"]
    return {"relative_error": float(np.abs(out - reference).max() / max(np.abs(reference).max(), 1e-30)), "consumed": True,
            "variables": {key: list(shape) for key, shape in tf.train.list_variables(job["checkpoint"])}}


def tamper(prefix, out, key, scale):
    reader = tf.train.load_checkpoint(prefix)
    names = sorted(reader.get_variable_to_dtype_map())
    tensors = []
    for name in names:
        value = reader.get_tensor(name)
        if name == key:
            if scale.startswith("shape="):
                value = value.reshape([int(d) for d in scale[6:].split(",")])
            elif scale == "ulp":
                flat = value.reshape(-1).copy()
                flat[0] = np.nextafter(flat[0], np.float32(np.inf))
                value = flat.reshape(value.shape)
            else:
                value = (value * np.asarray(float(scale), dtype=value.dtype)).astype(value.dtype)
        tensors.append(tf.constant(value))
    tf.raw_ops.SaveV2(prefix=out, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)


def main():
    if sys.argv[1] == "tamper":
        tamper(*sys.argv[2:6])
        return
    results = []
    for job in json.loads(open(sys.argv[1]).read()):
        try:
            results.append(run(job))
        except Exception as error:  # reported per job, so one bad file does not hide the rest
            results.append({"error": f"{type(error).__name__}: {error}".splitlines()[0][:2000]})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
