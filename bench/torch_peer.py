#!/usr/bin/python3
"""What bench/torch_mlp.py and bench/torch_cnn.py share: Fashion-MNIST from Debian's
dataset-fashion-mnist (pixels / 255, as Custody reads them), the training loop (a cosine
learning-rate schedule over all steps, batch per process, test accuracy after each epoch
outside the timed part, the first time it reaches the target), and the two layouts:

  single: one process, --threads threads.
  ddp:    2 processes (gloo, loopback), DistributedDataParallel, each on half the data
          with one thread, gradients averaged every step (as Custody's BSP does).

A model script gives a Peer: how to build its network (seeded), its optimizer, and how a
batch of flat 784-pixel rows becomes its input. Peer functions must be module-level (the
DDP processes are spawned and receive them pickled by name).

Every process flushes denormals to zero (torch.set_flush_denormal(True)), as Custody's
workers and servers do (core/float_env.h): without it, values that underflow during
training cost a microcode assist per operation and PyTorch's figure swung between 39,000
and 87,000 samples/s across runs (issue 17).
"""
import collections
import gzip
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"

# model(): the network, seeded; optimizer(params, lr); shape(x): flat rows -> its input.
Peer = collections.namedtuple("Peer", ["model", "optimizer", "shape"])


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


def accuracy(net, tx, ty):
    with torch.no_grad():  # in slices of 1000: a conv layer's activations of 10,000 images are large
        correct = sum((net(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item() for i in range(0, len(tx), 1000))
    return correct / len(tx)


def train(peer, net, x, y, tx, ty, args, rank=0, world=1):
    opt = peer.optimizer(net.parameters(), args.lr)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0] // world
    x, y = peer.shape(x[rank * n:(rank + 1) * n]), y[rank * n:(rank + 1) * n]
    tx = peer.shape(tx)
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


def ddp_worker(rank, peer, args, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    x, y, tx, ty = load()
    net = nn.parallel.DistributedDataParallel(peer.model())
    dist.barrier()
    result = train(peer, net, x, y, tx, ty, args, rank, 2)
    if rank == 0:
        out.put(result)
    dist.destroy_process_group()


def run(peer, args):
    """args.mode single or ddp: trains and returns the result (samples/s, time to target)."""
    torch.set_flush_denormal(True)
    if args.mode == "single":
        torch.set_num_threads(args.threads)
        x, y, tx, ty = load()
        result = train(peer, peer.model(), x, y, tx, ty, args)
        result["threads"] = args.threads
        return result
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=ddp_worker, args=(r, peer, args, out)) for r in range(2)]
    for pr in procs:
        pr.start()
    result = out.get(timeout=3600)
    for pr in procs:
        pr.join()
    result["processes"] = 2
    return result


def report(result, info, args):
    result.update(info, mode=args.mode, batch=args.batch, lr=args.lr)
    if args.mode != "step":
        result["epochs"] = args.epochs
    print(json.dumps(result))
