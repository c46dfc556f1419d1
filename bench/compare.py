"""doconv-fold side by side with what users would run instead, on the same model files.

    python compare.py --doconv BIN --venv VENV --rounds N --work DIR --json OUT MODEL...

Each round runs every tool once on every model, in a rotating order (so no tool always
runs first, on a cold cache, or right after a heavy one); outputs are deleted before each
run, outside the timing, so no run pays for replacing the previous output, except in the
two "over an existing output" rows (doconv-fold and cp writing over the output of their
last run, as a rerun does: the kernel then frees the old file's pages and blocks, which
costs every tool). Every run starts with nothing left to write back (`sync`, untimed).
Prints, per
model, the median wall time and peak RSS of each tool, the peak as a multiple of the
model's bytes (.onnx plus external data) and the ratios to doconv-fold.
"""

import argparse
import json
import os
import pathlib
import platform
import shlex
import sys

import measure

HERE = pathlib.Path(__file__).resolve().parent


def model_bytes(path):
    data = pathlib.Path(str(path) + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def tools(doconv, venv):
    """name -> (command for input and output paths, files the run writes)."""
    python = str(venv / "bin" / "python")
    return {
        "doconv-fold": lambda src, dst: [doconv, src, dst, "--quiet"],
        "onnxruntime (offline, BASIC)": lambda src, dst: [python, str(HERE / "tools" / "ort_offline.py"), src, dst],
        "onnxsim": lambda src, dst: [str(venv / "bin" / "onnxsim"), src, dst],
        "polygraphy (fold constants)": lambda src, dst: [str(venv / "bin" / "polygraphy"), "surgeon", "sanitize", src,
                                                        "--fold-constants", "-o", dst, "--silent"],
        "cp (I/O floor)": copy,
        "cp, then fsync (a durable copy)": durable_copy,
        EXISTING_FOLD: lambda src, dst: [doconv, src, dst, "--quiet"],
        EXISTING_COPY: copy,
    }


def copy(src, dst):
    return ["cp", src] + ([src + ".data"] if os.path.exists(src + ".data") else []) + [os.path.dirname(dst) + "/"]


def durable_copy(src, dst):
    """cp, then coreutils' sync on the copies (fsync): the bytes on disk, as doconv-fold's
    atomic replace makes them before its rename."""
    copies = [dst] + ([dst + ".data"] if os.path.exists(src + ".data") else [])
    return ["sh", "-c", " ".join(shlex.quote(a) for a in copy(src, dst)) + " && sync " + " ".join(shlex.quote(c) for c in copies)]


# Rows whose output is left in place between runs (the first run makes it, untimed).
EXISTING_FOLD = "doconv-fold over an existing output"
EXISTING_COPY = "cp over an existing output"
REPLACING = {EXISTING_FOLD, EXISTING_COPY}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doconv", required=True)
    parser.add_argument("--venv", required=True, type=pathlib.Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", required=True, type=pathlib.Path)
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--only", nargs="*", help="tool names to run (default: all)")
    parser.add_argument("models", nargs="+", type=pathlib.Path)
    args = parser.parse_args()

    table = tools(args.doconv, args.venv)
    names = [n for n in table if not args.only or any(o in n for o in args.only)]
    samples = {(str(m), n): [] for m in args.models for n in names}
    for round_ in range(args.rounds):
        for model in args.models:
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                out_dir = args.work / f"{model.stem}.{names.index(name)}"
                out_dir.mkdir(parents=True, exist_ok=True)
                target = out_dir / model.name
                replacing = name in REPLACING
                if not replacing:
                    measure.remove(target, str(target) + ".data")
                elif not target.exists():
                    measure.run(table[name](str(model), str(target)))  # the output it will replace
                # No run pays for the last one's writeback: cp leaves its 100 MB dirty, and
                # the next tool's writes and fsync queued behind them.
                os.sync()
                seconds, peak = measure.run(table[name](str(model), str(target)))
                if not target.exists():
                    raise SystemExit(f"{name} wrote no {target}")
                samples[(str(model), name)].append((seconds, peak))
                if not replacing:
                    measure.remove(target, str(target) + ".data")
        print(f"  round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    results = []
    for model in args.models:
        size = model_bytes(model)
        base = measure.median([s for s, _ in samples[(str(model), "doconv-fold")]]) if "doconv-fold" in names else None
        print(f"\n{model.name}: {size / 1e6:.1f} MB (model + external data), median of {args.rounds} runs")
        print(f"| tool | wall s | peak RSS MB | peak / model | wall vs doconv-fold |")
        print(f"|---|---:|---:|---:|---:|")
        for name in names:
            runs = samples[(str(model), name)]
            wall = measure.median([s for s, _ in runs])
            peak = measure.median([p for _, p in runs])
            ratio = f"{wall / base:.1f}x" if base else "-"
            print(f"| {name} | {wall:.3f} | {peak / 1e6:.0f} | {peak / size:.2f}x | {ratio} |")
            results.append(dict(model=model.name, model_bytes=size, tool=name, wall_s=wall, peak_rss_bytes=peak,
                                walls=[s for s, _ in runs], peaks=[p for _, p in runs]))
    if args.json:
        args.json.write_text(json.dumps(dict(machine=platform.platform(), cpus=os.cpu_count(), rounds=args.rounds,
                                              results=results), indent=1))


if __name__ == "__main__":
    main()
