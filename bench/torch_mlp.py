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

Every process flushes denormals to zero, as Custody's workers and servers do (the loop,
the data and the layouts are bench/torch_peer.py's, shared with bench/torch_cnn.py).

  bench/torch_mlp.py single|ddp [--epochs N] [--lr LR] [--threads T] [--target 0.88]

Run it with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (see bench/compare.sh): the
machines here set both, which holds OpenBLAS to older kernels.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_peer  # noqa: E402  (the data, the training loop, single and DDP)


def model():
    torch.manual_seed(42)
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def sgd_momentum(params, lr):
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def flat(x):
    return x


PEER = torch_peer.Peer(model, sgd_momentum, flat)


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
            "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
            "flush_denormal": torch.set_flush_denormal(True)}
    torch_peer.report(torch_peer.run(PEER, args), info, args)


if __name__ == "__main__":
    sys.exit(main())
