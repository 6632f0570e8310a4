#!/usr/bin/python3
"""The PyTorch peers for the seeds' CNN (configs/jobs/fashion_cnn.toml): Conv2d(1, 32, 3)
-> ReLU -> MaxPool2d(2) -> Flatten -> Linear(5408, 128) -> ReLU -> Linear(128, 10), softmax
cross-entropy, Adam at 0.001 with a cosine schedule over all steps, batch 64 per process,
on Fashion-MNIST from Debian's dataset-fashion-mnist (pixels / 255, as Custody reads them).

  step:   one thread, forward + backward + Adam's update of the next real batch, for
          --seconds; one JSON line with samples/s (bench/cnn_math.py alternates it with
          custody-bench-cnn step, which does the same in Custody's math path).
  single: one process, --threads threads (default 2), --epochs of training.
  ddp:    2 processes (gloo, loopback), DistributedDataParallel, each on half the data
          with one thread, gradients averaged every step (as Custody's BSP does).
After each training epoch the test accuracy is measured outside the timed part and the
first time it reaches --target (default 0.91) is noted.

Every process flushes denormals to zero (torch.set_flush_denormal(True)), as Custody's
workers and servers do (core/float_env.h). PyTorch's CPU convolutions here go through
oneDNN (MKL-DNN), its linear layers through its BLAS.

  bench/torch_cnn.py step|single|ddp [--seconds S] [--epochs N] [--threads T] [--target 0.91]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mlp import load  # noqa: E402  (same data, same scaling)


def model():
    torch.manual_seed(42)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 13 * 13, 128), nn.ReLU(), nn.Linear(128, 10))


def images(x):
    return x.reshape(-1, 1, 28, 28)


def accuracy(net, tx, ty):
    with torch.no_grad():
        correct = sum((net(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item() for i in range(0, len(tx), 1000))
    return correct / len(tx)


def step_rate(args):
    """Forward + backward + update of fresh batches in the data set's order, one thread."""
    torch.set_num_threads(1)
    x, y, _, _ = load()
    x = images(x)
    net = model()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
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


def train(net, x, y, tx, ty, args, rank=0, world=1):
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0] // world
    x, y = images(x[rank * n:(rank + 1) * n]), y[rank * n:(rank + 1) * n]
    tx = images(tx)
    steps = n // args.batch
    total = steps * args.epochs
    gen = torch.Generator().manual_seed(7 + rank)
    busy, first_at, first_epoch, history = 0.0, None, None, []
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        for s in range(steps):
            idx = order[s * args.batch:(s + 1) * args.batch]
            step = (epoch - 1) * steps + s
            for g in opt.param_groups:
                g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * step / total))
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[idx]), y[idx]).backward()
            opt.step()
        busy += time.perf_counter() - t0
        acc = accuracy(net, tx, ty)
        history.append(round(acc, 4))
        if first_at is None and acc >= args.target:
            first_at, first_epoch = busy, epoch
    return {"samples_per_sec": steps * args.batch * world * args.epochs / busy, "train_seconds": busy,
            "time_to_target_s": first_at, "epoch_to_target": first_epoch, "accuracy_history": history}


def ddp_worker(rank, args, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x, y, tx, ty = load()
    net = nn.parallel.DistributedDataParallel(model())
    dist.barrier()
    result = train(net, x, y, tx, ty, args, rank, 2)
    if rank == 0:
        out.put(result)
    dist.destroy_process_group()


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
    if args.mode == "step":
        result = step_rate(args)
    elif args.mode == "single":
        torch.set_num_threads(args.threads)
        x, y, tx, ty = load()
        result = train(model(), x, y, tx, ty, args)
        result["threads"] = args.threads
    else:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=ddp_worker, args=(r, args, args.port, out)) for r in range(2)]
        for pr in procs:
            pr.start()
        result = out.get(timeout=3600)
        for pr in procs:
            pr.join()
        result["processes"] = 2
    result.update(info, mode=args.mode, batch=args.batch, lr=args.lr)
    if args.mode != "step":
        result["epochs"] = args.epochs
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
