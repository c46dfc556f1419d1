"""PyTorch checkpoints: doconv-fold against cp and against folding in Python with torch.

    DOCONV_TORCH_PYTHON=/path/to/venv/bin/python bench/checkpoint.sh [--rounds N]

Makes a ResNet-50-DO state dict (torchvision's ResNet-50 with every 3x3 conv a DOConv2d:
W (Cout, Cin/g, 9), D and d_diag (Cin, 9, 9); about 100 MB in float32) saved by torch.save
(zip and legacy) and by safetensors, an ImageNet-example checkpoint around it, a timm-style
training checkpoint (argparse.Namespace args, an EMA state dict, optimizer state: it needs
weights_only=False) and a sharded checkpoint (huggingface_hub's save_torch_state_dict,
20 MB safetensors shards), then times, interleaved, N rounds (median wall time, peak RSS of
the child from wait4):
- doconv-fold (release, verification on) on each file;
- cp of the same file;
- the same fold in Python: torch.load(weights_only=True), D + d_diag, einsum, reshape,
  torch.save (what a user would otherwise write), in a fresh interpreter each round.
/usr/bin/time (Debian's `time` package) measures each child. Then checks with torch that each doconv output loads with weights_only=True into a plain
torchvision ResNet-50 with strict=True and predicts what the DO net predicts.
"""
import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

import torch
import torchvision

# What a user would otherwise write: the layers' arithmetic in torch, on a state dict.
FOLD_FUNCTION = r"""
import torch


def fold(sd):
    out = {}
    for key, value in sd.items():
        if key.endswith(".W") and key[:-1] + "D" in sd:
            p = key[:-2]
            d = sd[p + ".D"] + sd[p + ".d_diag"]
            cout, cin_g, dmul = value.shape
            cin, mn, _ = d.shape
            g = cin // cin_g
            wr = value.reshape(cout // g, cin, dmul)
            out[p + ".weight"] = torch.einsum("ims,ois->oim", d, wr).reshape(cout, cin_g, 3, 3)
        elif not (key.endswith(".D") or key.endswith(".d_diag")):
            out[key] = value
    return out
"""

# A torch.save checkpoint: torch.load (weights_only as the file allows), fold, torch.save.
PY_FOLD = FOLD_FUNCTION + r"""
import sys
src, dst = sys.argv[1], sys.argv[2]
ckpt = torch.load(src, weights_only=sys.argv[3] == "weights_only")
if "state_dict" in ckpt:
    ckpt = {k: (fold(v) if k.startswith("state_dict") else v) for k, v in ckpt.items() if k != "optimizer"}
else:
    ckpt = fold(ckpt)
torch.save(ckpt, dst)
"""

# A sharded checkpoint, as a user would write it with huggingface_hub.
PY_FOLD_SHARDED = FOLD_FUNCTION + r"""
import json, pathlib, sys
from safetensors.torch import load_file
from huggingface_hub import save_torch_state_dict
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
index = json.loads((src / "model.safetensors.index.json").read_text())
sd = {}
for shard in sorted(set(index["weight_map"].values())):
    sd.update(load_file(src / shard))
dst.mkdir(exist_ok=True)
save_torch_state_dict(fold(sd), dst, max_shard_size="20MB")
"""


def do_resnet50(seed=0):
    """ResNet-50's state dict with every 3x3 conv as DOConv2d tensors, and the plain twin's
    state dict the fold must give (computed here with torch)."""
    torch.manual_seed(seed)
    plain = torchvision.models.resnet50().eval()
    do_sd, plain_sd = {}, {}
    for key, value in plain.state_dict().items():
        if key.endswith(".weight") and value.dim() == 4 and value.shape[2:] == (3, 3):
            p = key[: -len(".weight")]
            cout, cin_g = value.shape[:2]
            g = 1
            cin = cin_g * g
            w = torch.randn(cout, cin_g, 9) * (2.0 / (cin_g * 9)) ** 0.5
            d = torch.randn(cin, 9, 9) * 0.05
            eye = torch.eye(9).unsqueeze(0).repeat(cin, 1, 1)
            do_sd[p + ".W"], do_sd[p + ".D"], do_sd[p + ".d_diag"] = w, d, eye
            k = torch.einsum("ims,ois->oim", d + eye, w.reshape(cout // g, cin, 9)).reshape(cout, cin_g, 3, 3)
            plain_sd[key] = k
        else:
            do_sd[key] = value
            plain_sd[key] = value
    return do_sd, plain_sd


def run(cmd):
    """Wall time and peak RSS (MB) of one child. GNU time starts it, because Linux carries a
    process's peak RSS across exec: forked from this (large, torch-loaded) interpreter the
    child would report ours."""
    with tempfile.NamedTemporaryFile("r") as report:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", report.name, *cmd],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {proc.stderr}")
        elapsed, peak_kb = report.read().split()[-2:]
    return float(elapsed), int(peak_kb) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--doconv", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="doconv-ckpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    do_sd, plain_sd = do_resnet50()
    files = {
        "zip": work / "resnet50_do.pth",
        "legacy": work / "resnet50_do_legacy.pth",
        "imagenet": work / "resnet50_do_ckpt.pth.tar",
        "safetensors": work / "resnet50_do.safetensors",
    }
    torch.save(do_sd, files["zip"])
    torch.save(do_sd, files["legacy"], _use_new_zipfile_serialization=False)
    opt_state = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": list(range(len(do_sd)))}]}
    torch.save({"epoch": 90, "arch": "resnet50", "state_dict": {"module." + k: v for k, v in do_sd.items()},
                "best_acc1": torch.tensor(76.1), "optimizer": opt_state}, files["imagenet"])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in do_sd.items()}, files["safetensors"])
    files["timm"] = work / "resnet50_do_timm.pth.tar"
    ema = {k: v.clone() for k, v in do_sd.items()}
    torch.save({"epoch": 299, "arch": "resnet50_do", "state_dict": do_sd, "optimizer": opt_state, "version": 2,
                "args": argparse.Namespace(model="resnet50_do", lr=0.5, epochs=300, batch_size=256),
                "state_dict_ema": ema, "metric": 79.2}, files["timm"])
    from huggingface_hub import save_torch_state_dict
    files["sharded"] = work / "resnet50_do_sharded"
    files["sharded"].mkdir(exist_ok=True)
    save_torch_state_dict({k: v.contiguous() for k, v in do_sd.items()}, files["sharded"], max_shard_size="20MB")

    rows = []
    for name, path in files.items():
        size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
        times = {"doconv-fold": [], "cp": [], "python+torch": []}
        peaks = {k: [] for k in times}
        for _ in range(args.rounds):
            for tool in times:
                out = work / ("out_" + path.name)
                if path.is_dir():
                    shutil.rmtree(out, ignore_errors=True)
                if tool == "doconv-fold":
                    cmd = [args.doconv, "--quiet", str(path), str(out)]
                elif tool == "cp":
                    cmd = ["cp", "-r", str(path), str(out)]
                elif name == "sharded":
                    cmd = [sys.executable, "-c", PY_FOLD_SHARDED, str(path), str(out)]
                else:
                    if name == "safetensors":
                        continue
                    mode = "full" if name == "timm" else "weights_only"
                    cmd = [sys.executable, "-c", PY_FOLD, str(path), str(out), mode]
                t, m = run(cmd)
                times[tool].append(t)
                peaks[tool].append(m)
        row = {"file": name, "size_mb": size / 1e6}
        for tool in times:
            if times[tool]:
                row[tool] = (statistics.median(times[tool]), max(peaks[tool]))
        rows.append(row)

        # The doconv output loads into a plain ResNet-50 and predicts the same.
        out = work / ("out_" + path.name)
        shutil.rmtree(out, ignore_errors=True) if out.is_dir() else None
        subprocess.run([args.doconv, "--quiet", str(path), str(out)], check=True)
        from safetensors.torch import load_file
        if name == "safetensors":
            sd = load_file(out)
        elif name == "sharded":
            index = json.loads((out / "model.safetensors.index.json").read_text())
            sd = {}
            for shard in sorted(set(index["weight_map"].values())):
                sd.update(load_file(out / shard))
            assert set(index["weight_map"]) == set(sd)
        else:
            sd = torch.load(out, weights_only=name != "timm")
            if "state_dict" in sd:
                if name == "timm":
                    assert sd["args"].lr == 0.5 and sd["state_dict_ema"].keys() == sd["state_dict"].keys()
                sd = {k.removeprefix("module."): v for k, v in sd["state_dict"].items()}
        net = torchvision.models.resnet50().eval()
        net.load_state_dict(sd, strict=True)
        ref = torchvision.models.resnet50().eval()
        ref.load_state_dict(plain_sd, strict=True)
        x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            err = ((net(x) - ref(x)).abs().max() / ref(x).abs().max()).item()
        row["relative_error_vs_torch"] = err

    print(f"\nResNet-50-DO checkpoints, median of {args.rounds} rounds (wall time; peak RSS)\n")
    print("| file | size | doconv-fold | cp | python + torch | doconv / cp | python / doconv | doconv peak / file | output vs torch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d, c = r["doconv-fold"], r["cp"]
        p = r.get("python+torch")
        print(f"| {r['file']} | {r['size_mb']:.1f} MB | {d[0]:.3f} s, {d[1]:.0f} MB | {c[0]:.3f} s | "
              + (f"{p[0]:.2f} s, {p[1]:.0f} MB" if p else "n/a") + f" | {d[0] / c[0]:.1f}x | "
              + (f"{p[0] / d[0]:.1f}x" if p else "n/a") + f" | {d[1] / r['size_mb']:.2f}x | {r['relative_error_vs_torch']:.1e} |")
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
