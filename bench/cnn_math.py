#!/usr/bin/python3
"""The seeds' CNN math path against PyTorch, both on one thread, in one run (issue 17).

Alternates ROUNDS times: custody-bench-cnn step SECONDS (Custody's Model::gradient and
Adam's update on the next real Fashion-MNIST batch, no actors, FTZ/DAZ set) and
bench/torch_cnn.py step --seconds SECONDS (the same CNN, the same batches and Adam in
PyTorch with torch.set_num_threads(1) and torch.set_flush_denormal(True)); reports each
side's median samples/s, the spread, and the ratio of the medians (also per CPU second
of the measuring process, which a shared machine disturbs less). With --conv it also
runs custody-bench-cnn conv (im2col + GEMM against Eigen's Tensor convolutions for the
conv layer alone).

  bench/cnn_math.py [--rounds 5] [--seconds 3] [--conv]

Prints a short table and one JSON line; writes build/bench/cnn_math.json.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / os.environ.get("CUSTODY_BUILD_DIR", "build")
sys.path.insert(0, str(ROOT / "bench"))
from compare import run_json, torch_env  # noqa: E402  (one way to run a peer and read its JSON)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conv", action="store_true", help="also im2col+GEMM vs Eigen Tensor convolutions")
    args = p.parse_args()
    custody, torch = [], []
    for i in range(args.rounds):
        print(f"[cnn_math] round {i + 1} of {args.rounds}", file=sys.stderr, flush=True)
        custody.append(run_json([BUILD / "bin/custody-bench-cnn", "step", str(args.seconds)]))
        torch.append(run_json(["/usr/bin/python3", ROOT / "bench/torch_cnn.py", "step", "--seconds", str(args.seconds)],
                              env=torch_env()))
    c = [r["samples_per_sec"] for r in custody]
    t = [r["samples_per_sec"] for r in torch]
    result = {"benchmark": "cnn_math_vs_torch", "architecture": custody[0]["architecture"], "batch": custody[0]["batch"],
              "threads": 1, "rounds": args.rounds, "seconds_per_run": args.seconds,
              "custody_samples_per_sec": statistics.median(c), "custody_runs": [round(v, 1) for v in c],
              "torch_samples_per_sec": statistics.median(t), "torch_runs": [round(v, 1) for v in t],
              "ratio": statistics.median(c) / statistics.median(t),
              "ratio_median_of_rounds": statistics.median(a / b for a, b in zip(c, t)),
              # Per CPU second: on a shared machine the wall clock also counts waiting for a core.
              "custody_samples_per_cpu_sec": statistics.median(r["samples_per_cpu_sec"] for r in custody),
              "torch_samples_per_cpu_sec": statistics.median(r["samples_per_cpu_sec"] for r in torch),
              "torch": torch[0]["torch"], "simd": custody[0]["simd"]}
    if args.conv:
        print("[cnn_math] conv layer: im2col + GEMM vs Eigen Tensor", file=sys.stderr, flush=True)
        result["conv_layer"] = run_json([BUILD / "bin/custody-bench-cnn", "conv", str(max(args.seconds / 3, 0.5)),
                                         str(args.rounds)])
    print(f"seeds' CNN, forward + backward + Adam, batch {result['batch']}, one thread, medians of {args.rounds} "
          f"alternating rounds of {args.seconds:g} s:")
    print(f"  Custody math path  {result['custody_samples_per_sec']:8,.0f} samples/s  (spread {min(c):,.0f}-{max(c):,.0f})")
    print(f"  PyTorch {result['torch']:9} {result['torch_samples_per_sec']:8,.0f} samples/s  (spread {min(t):,.0f}-{max(t):,.0f})")
    result["ratio_cpu"] = result["custody_samples_per_cpu_sec"] / result["torch_samples_per_cpu_sec"]
    print(f"  Custody / PyTorch  {result['ratio']:.2f}  (median of the rounds' ratios {result['ratio_median_of_rounds']:.2f}; "
          f"per CPU second {result['custody_samples_per_cpu_sec']:,.0f} / {result['torch_samples_per_cpu_sec']:,.0f} "
          f"= {result['ratio_cpu']:.2f})")
    if "conv_layer" in result:
        v = result["conv_layer"]
        print("conv layer 1x28x28 -> 32 x 3x3, batch 64, microseconds (forward / backward; wall, then CPU):")
        for name in ("im2col", "tensor_patches", "tensor_convolve"):
            cpu = v["cpu_us"][name]
            print(f"  {name:16} {v[name + '_forward_us']:9,.0f} / {v[name + '_backward_us']:9,.0f}    "
                  f"{cpu[0]:9,.0f} / {cpu[1]:9,.0f}")
    (BUILD / "bench").mkdir(parents=True, exist_ok=True)
    (BUILD / "bench/cnn_math.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
