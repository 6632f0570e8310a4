#!/usr/bin/python3
"""The PyTorch peers of Custody's throughput benchmark, on the same model, batch and data.

  single: one process, torch.set_num_threads(THREADS), plain SGD with momentum.
  ddp:    2 processes (gloo, loopback), DistributedDataParallel, each on half the data
          with one thread, gradients averaged every step (as Custody's BSP does).

Both train the MLP 784-256-128-10 (ReLU, softmax cross-entropy) on Fashion-MNIST from
Debian's dataset-fashion-mnist, batch 64 per process, momentum 0.9, the learning rate
schedule of the Custody job (cosine from LR over all steps). After each epoch the test
accuracy is measured (outside the timed part) and the first time it reaches TARGET is
noted. Prints one JSON object on stdout.

Every process flushes denormals to zero (torch.set_flush_denormal(True)), as Custody's
workers and servers do (core/float_env.h): without it, values that underflow during
training cost a microcode assist per operation and PyTorch's figure swung between 39,000
and 87,000 samples/s across runs (issue 17).

  bench/torch_mlp.py single|ddp [--epochs N] [--lr LR] [--threads T] [--target 0.88]

Run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (see bench/compare.sh): the
machines here set both, which holds OpenBLAS to older kernels.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load():
    x = read_idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx("train-labels-idx1-ubyte.gz").astype(np.int64)
    tx = read_idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    ty = read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(tx), torch.from_numpy(ty)


def model():
    torch.manual_seed(42)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def accuracy(net, tx, ty):
    with torch.no_grad():
        return (net(tx).argmax(1) == ty).float().mean().item()


def train(net, x, y, tx, ty, args, rank=0, world=1):
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0] // world
    x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
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
    p.add_argument("mode", choices=["single", "ddp"])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", type=float, default=0.88)
    p.add_argument("--port", type=int, default=29511)
    args = p.parse_args()
    info = {"torch": torch.__version__, "blas": torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0],
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}
    info["flush_denormal"] = torch.set_flush_denormal(True)
    if args.mode == "single":
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
    result.update(info, mode=args.mode, epochs=args.epochs, batch=args.batch, lr=args.lr)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
