"""onnxruntime's offline optimizer, as its documentation shows it: a session at
ORT_ENABLE_BASIC that saves the optimized model (constant folding included) and exits.

    python ort_offline.py INPUT OUTPUT
"""

import sys

import onnxruntime as ort


def main():
    source, target = sys.argv[1], sys.argv[2]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = target
    options.log_severity_level = 3
    ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    main()
