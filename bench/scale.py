"""How doconv-fold's time and memory grow with the model: synthetic models at four sizes,
the largest past 2 GiB of weights (external data), each folded several times.

    python scale.py --doconv BIN --work DIR [--layers 16 32 48 64] [--rounds 3] [--json OUT]

Prints per size the median wall time, the peak RSS against the bytes the fold rewrites
(D and W in, the folded kernels out), cp's time for the same files, and the least-squares
slope of time over size. Each size's files are deleted before the next one is made, and
everything is removed at the end (about 2 x 2.4 GB of disk at the largest size).
"""

import argparse
import json
import pathlib
import shutil
import subprocess
import sys

import measure

HERE = pathlib.Path(__file__).resolve().parent
CHANNELS = 1024


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1 - ss_res / ss_tot if ss_tot else 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doconv", required=True)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--layers", type=int, nargs="+", default=[16, 32, 48, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()

    rows = []
    try:
        for layers in args.layers:
            folder = args.work / f"scale-{layers}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            source = folder / "model.onnx"
            subprocess.run([sys.executable, str(HERE / "make_synthetic.py"), str(source), "--layers", str(layers),
                            "--channels", str(CHANNELS)], check=True)
            data = pathlib.Path(str(source) + ".data")
            weight_bytes = data.stat().st_size
            target = folder / "out" / "model.onnx"
            target.parent.mkdir()
            runs, copies = [], []
            for _ in range(args.rounds):
                measure.remove(target, str(target) + ".data")
                runs.append(measure.run([args.doconv, str(source), str(target), "--quiet"]))
                measure.remove(target, str(target) + ".data")
                copies.append(measure.run(["cp", str(source), str(data), str(target.parent) + "/"])[0])
            wall = measure.median([s for s, _ in runs])
            peak = measure.median([p for _, p in runs])
            rows.append(dict(layers=layers, weight_bytes=weight_bytes, rewritten_bytes=weight_bytes, wall_s=wall,
                             peak_rss_bytes=peak, cp_s=measure.median(copies), walls=[s for s, _ in runs]))
            print(f"  {layers} layers, {weight_bytes / 2**30:.2f} GiB: {wall:.2f} s, peak {peak / 2**20:.0f} MiB", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        for layers in args.layers:
            shutil.rmtree(args.work / f"scale-{layers}", ignore_errors=True)

    slope, intercept, r2 = fit([r["weight_bytes"] / 2**30 for r in rows], [r["wall_s"] for r in rows])
    print(f"\nScale: synthetic DO-Conv models ({CHANNELS} channels, 3x3, Dmul 9; D and W in external data), "
          f"median of {args.rounds} runs")
    print("| layers | D + W GiB | doconv-fold s | cp s | peak RSS MiB | peak / rewritten bytes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layers']} | {r['weight_bytes'] / 2**30:.2f} | {r['wall_s']:.2f} | {r['cp_s']:.2f} | "
              f"{r['peak_rss_bytes'] / 2**20:.0f} | {r['peak_rss_bytes'] / r['rewritten_bytes']:.2f}x |")
    print(f"time: slope {slope:.3f} s per GiB of weights (intercept {intercept:.3f} s, R^2 {r2:.4f})")
    memory_slope, overhead, memory_r2 = fit([r["rewritten_bytes"] for r in rows], [r["peak_rss_bytes"] for r in rows])
    print(f"peak RSS: {memory_slope:.2f} x the rewritten bytes + {overhead / 2**20:.0f} MiB (R^2 {memory_r2:.4f})")
    if args.json:
        args.json.write_text(json.dumps(dict(rows=rows, slope_s_per_gib=slope, intercept_s=intercept, r2=r2,
                                             memory_per_byte=memory_slope, memory_overhead_bytes=overhead), indent=1))


if __name__ == "__main__":
    main()
