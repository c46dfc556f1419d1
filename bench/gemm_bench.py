"""verify-equivalence's float64 GEMM next to numpy's dgemm (OpenBLAS, all cores) on the same
shapes. Never in CI.

    DOCONV_BENCH=1 swift build -c release --product gemm-bench
    python3 bench/gemm_bench.py .build/release/gemm-bench [--rounds 5]

Prints the CPU's vector extensions, then a table: GFLOP/s of each doconv build (portable,
AVX2 + FMA, AVX-512) and of numpy.dot, and the best doconv build over numpy.
"""
import argparse
import json
import subprocess
import time

import numpy as np


def cpu_flags():
    flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0]
    wanted = ["avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]
    return [f for f in wanted if f" {f}" in flags + " "]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU vector extensions: {', '.join(cpu_flags())}; numpy {np.__version__}")
    rows = [json.loads(line) for line in subprocess.run([args.binary, "--rounds", str(args.rounds)], capture_output=True, text=True, check=True).stdout.splitlines()]
    shapes = {}
    for row in rows:
        shapes.setdefault(row["shape"], {"m": row["m"], "n": row["n"], "k": row["k"]})[row["build"]] = row["gflops"]
    builds = sorted({row["build"] for row in rows}, key=["portable", "avx2-fma", "avx512"].index)
    print("| shape (M x N x K) | " + " | ".join(f"doconv {b}" for b in builds) + " | numpy dgemm | best / numpy |")
    print("|---|" + "---:|" * (len(builds) + 2))
    for name, entry in shapes.items():
        a = np.random.rand(entry["m"], entry["k"])
        b = np.random.rand(entry["k"], entry["n"])
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        numpy = 2 * entry["m"] * entry["n"] * entry["k"] / sorted(times)[len(times) // 2] / 1e9
        best = max(entry[b] for b in builds)
        cells = " | ".join(f"{entry[b]:.1f}" for b in builds)
        print(f"| {name} ({entry['m']} x {entry['n']} x {entry['k']}) | {cells} | {numpy:.1f} | {best / numpy:.2f} |")
    print("GFLOP/s, median of the rounds, all cores.")


if __name__ == "__main__":
    main()
