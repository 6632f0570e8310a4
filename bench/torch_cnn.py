#!/usr/bin/python3
"""The PyTorch peers for the seeds' CNN (configs/jobs/fashion_cnn.toml): Conv2d(1, 32, 3)
-> ReLU -> MaxPool2d(2) -> Flatten -> Linear(5408, 128) -> ReLU -> Linear(128, 10), softmax
cross-entropy, Adam at 0.001 with a cosine schedule over all steps, batch 64 per process,
on Fashion-MNIST from Debian's dataset-fashion-mnist (pixels / 255, as Custody reads them).

  step:   one thread, forward + backward + Adam's update of the next real batch, for
          --seconds; one JSON line with samples/s (bench/cnn_math.py alternates it with
          custody-bench-cnn step, which does the same in Custody's math path).
  single, ddp: --epochs of training, as bench/torch_peer.py describes (threads default 2,
          target 0.91).

Every process flushes denormals to zero, as Custody's workers and servers do
(core/float_env.h). PyTorch's CPU convolutions here go through
oneDNN (MKL-DNN), its linear layers through its BLAS.

  bench/torch_cnn.py step|single|ddp [--seconds S] [--epochs N] [--threads T] [--target 0.91]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_peer  # noqa: E402  (the data, the training loop, single and DDP)
from torch_peer import load  # noqa: E402


def model():
    torch.manual_seed(42)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))


def images(x):
    return x.reshape(-1, 1, 28, 28)


def step_rate(args):
    """Forward + backward + update of fresh batches in the data set's order, one thread."""
    torch.set_num_threads(1)
    x, y, _, _ = load()
    x = images(x)
    net = model()
    opt = adam(net.parameters(), args.lr)
    loss_fn = nn.CrossEntropyLoss()
    batches = x.shape[0] // args.batch
    nxt = 0

    def step():
        nonlocal nxt
        b = nxt % batches
        nxt += 1
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x[b * args.batch:(b + 1) * args.batch]), y[b * args.batch:(b + 1) * args.batch]).backward()
        opt.step()

    for _ in range(20):
        step()
    # Wall time, and the process's CPU time (all its threads: with one intra-op thread,
    # as custody-bench-cnn reports its thread's).
    steps, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < args.seconds:
        for _ in range(10):
            step()
        steps += 10
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"benchmark": "torch_cnn_step", "threads": torch.get_num_threads(), "batch": args.batch,
            "samples_per_sec": steps * args.batch / elapsed, "samples_per_cpu_sec": steps * args.batch / cpu,
            "ms_per_step": 1e3 * elapsed / steps}


def adam(params, lr):
    return torch.optim.Adam(params, lr=lr)


PEER = torch_peer.Peer(model, adam, images)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["step", "single", "ddp"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", type=float, default=0.91)
    p.add_argument("--port", type=int, default=29521)
    args = p.parse_args()
    info = {"torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
            "flush_denormal": torch.set_flush_denormal(True)}
    torch_peer.report(step_rate(args) if args.mode == "step" else torch_peer.run(PEER, args), info, args)


if __name__ == "__main__":
    sys.exit(main())
