#!/usr/bin/env python3
"""The MLP of lq-train in PyTorch, fp32 against lq.torch.Linear (4 bits).

    PYTHONPATH=build/python /usr/bin/python3 examples/torch_fashion_mnist.py --epochs 2

Reads Debian's Fashion-MNIST (dataset-fashion-mnist) and trains
784-512-256-10 with torch.nn.Linear, then with every Linear replaced by
lq.torch.Linear (forward SAWB int4, backward LUQ log4), from the same seed.
"""

import argparse
import gzip
import struct
import time

import numpy as np
import torch

import lq.torch


def load(path_prefix):
    with gzip.open(path_prefix + "-images-idx3-ubyte.gz") as f:
        _, count, rows, cols = struct.unpack(">IIII", f.read(16))
        images = np.frombuffer(f.read(), np.uint8).reshape(count, rows * cols)
    with gzip.open(path_prefix + "-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = np.frombuffer(f.read(), np.uint8)
    return (torch.from_numpy(images.astype(np.float32) / 255.0),
            torch.from_numpy(labels.astype(np.int64)))


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))


def train(model, data, args):
    (x, y), (tx, ty) = data
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                          weight_decay=5e-4)
    steps = args.epochs * (len(x) // args.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for epoch in range(args.epochs):
        start = time.time()
        order = torch.randperm(len(x))
        for i in range(len(x) // args.batch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item() * 100
        print(f"  epoch {epoch + 1}: loss {loss.item():.4f}  test {acc:.2f}%  "
              f"{time.time() - start:.1f} s")
    return acc


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--limit", type=int, default=0,
                        help="use the first N training images")
    args = parser.parse_args()
    train_set = load(args.data + "/train")
    if args.limit:
        train_set = (train_set[0][:args.limit], train_set[1][:args.limit])
    data = (train_set, load(args.data + "/t10k"))
    results = {}
    for name in ("fp32", "luq"):
        torch.manual_seed(0)
        model = mlp()
        if name == "luq":
            lq.torch.quantize_model(model)
        print(name)
        results[name] = train(model, data, args)
    print(f"fp32 {results['fp32']:.2f}%  luq {results['luq']:.2f}%  "
          f"({results['luq'] - results['fp32']:+.2f} points)")


if __name__ == "__main__":
    main()
