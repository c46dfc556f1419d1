"""numpy's einsum on the fold's layer shapes, measured the way bench/kernel measures
doconv's fold kernel: every layer of a model once per round, median of the rounds, GB/s of
W read plus W' written (and of D + W + W', which matters for depthwise layers, where D is
the largest tensor).

    python einsum_bench.py SHAPES.json [--json OUT]

SHAPES.json is what the kernel benchmark writes (its --json), so both use the same shapes.
"""

import argparse
import json
import time

import numpy as np


def layers(shapes, rng):
    out = []
    for s in shapes:
        mn = s["m"] * s["n"]
        for _ in range(s["count"]):
            d = rng.uniform(-1, 1, (s["cin"], mn, s["dmul"])).astype(np.float32)
            # W (Cout, Cin/g, Dmul) viewed as (Cout/g, Cin, Dmul): the same bytes.
            w = rng.uniform(-1, 1, (s["cout"] // s["groups"], s["cin"], s["dmul"])).astype(np.float32)
            out.append((d, w))
    return out


def seconds(body, rounds=9):
    body()  # warm
    samples = []
    for _ in range(rounds):
        repeats, start = 0, time.perf_counter()
        while True:
            body()
            repeats += 1
            elapsed = time.perf_counter() - start
            if elapsed >= 0.05:
                break
        samples.append(elapsed / repeats)
    return sorted(samples)[len(samples) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", help="JSON written by the kernel benchmark")
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    rows = []
    for model in json.load(open(args.shapes)):
        pairs = layers(model["shapes"], rng)
        w_bytes = sum(w.nbytes for _, w in pairs)
        d_bytes = sum(d.nbytes for d, _ in pairs)
        kernel_bytes = sum(w.shape[0] * d.shape[0] * d.shape[1] * 4 for d, w in pairs)
        result = {"model": model["model"]}
        for label, optimize in (("optimize", True), ("plain", False)):
            t = seconds(lambda: [np.einsum("ims,ois->oim", d, w, optimize=optimize) for d, w in pairs])
            result[f"einsum_{label}_gbs"] = (w_bytes + kernel_bytes) / t / 1e9
            result[f"einsum_{label}_all_gbs"] = (d_bytes + w_bytes + kernel_bytes) / t / 1e9
        rows.append(result)
        print(f"{model['model']:16s} numpy.einsum optimize=True {result['einsum_optimize_gbs']:6.1f} GB/s, "
              f"optimize=False {result['einsum_plain_gbs']:6.1f} GB/s (W + W'; with D: "
              f"{result['einsum_optimize_all_gbs']:.1f} / {result['einsum_plain_all_gbs']:.1f})")
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
