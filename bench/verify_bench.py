"""verify-equivalence against the check users would write themselves: onnxruntime running both
models on the same 3 random inputs and comparing the outputs. Both run as child processes,
N rounds interleaved; the table gives median wall time and peak RSS (from wait4).

    python bench/verify_bench.py --verify PATH [--rounds N] ORIGINAL:FOLDED ...

Run by bench/verify.sh, which builds the tools and makes the models.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def ort_compare(original, folded, inputs=3):
    """What a user would write: both models in onnxruntime, seeded random inputs, every output compared."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    a = ort.InferenceSession(original, options, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(folded, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for _ in range(inputs):
        feeds = {}
        for i in a.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = rng.random(shape, dtype=np.float32)
        for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
            scale = max(float(np.abs(x).max()) if x.size else 0.0, 1e-30)
            if x.shape != y.shape or (x.size and float(np.abs(x.astype(np.float64) - y).max()) > 1e-4 * scale):
                raise SystemExit("outputs differ")


def measure(command):
    """(wall seconds, peak RSS in MB, exit status) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("pairs", nargs="+", help="ORIGINAL:FOLDED")
    args = parser.parse_args()
    rows = []
    for pair in args.pairs:
        original, folded = pair.split(":")
        tools = {
            "verify-equivalence (3 inputs, all checks)": [args.verify, original, folded, "--inputs", "3"],
            "onnxruntime, both models, 3 inputs": [sys.executable, __file__, "--ort", original, folded],
        }
        results = {name: [] for name in tools}
        for _ in range(args.rounds):
            for name, command in tools.items():
                results[name].append(measure(command))
        name = os.path.basename(original)
        wall = {tool: statistics.median(r[0] for r in runs) for tool, runs in results.items()}
        for tool, runs in results.items():
            statuses = sorted({r[2] for r in runs})
            rows.append((name, tool, wall[tool], max(r[1] for r in runs), statuses))
        ratio = wall["verify-equivalence (3 inputs, all checks)"] / wall["onnxruntime, both models, 3 inputs"]
        rows.append((name, "ratio verify-equivalence / onnxruntime", ratio, None, None))
    print("| model | tool | median wall | peak RSS | exit |")
    print("|---|---|---:|---:|---|")
    for name, tool, wall, rss, statuses in rows:
        if rss is None:
            print(f"| {name} | {tool} | {wall:.2f}x | | |")
        else:
            print(f"| {name} | {tool} | {wall:.2f} s | {rss:.0f} MB | {','.join(map(str, statuses))} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--ort":
        ort_compare(sys.argv[2], sys.argv[3])
    else:
        main()
