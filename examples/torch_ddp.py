#!/usr/bin/env python3
"""Data-parallel 4-bit training with checkpoints that resume exactly.

    PYTHONPATH=build/python /usr/bin/python3 examples/torch_ddp.py \\
        --ranks 2 --epochs 3 --checkpoint run.pt
    # stopped (kill -9, a job's time limit, --stop-after 1)? the same
    # command resumes:
    PYTHONPATH=build/python /usr/bin/python3 examples/torch_ddp.py \\
        --ranks 2 --epochs 3 --checkpoint run.pt

Starts --ranks processes on this machine (gloo on CPU; NCCL with --cuda,
one GPU a rank) and trains lq-train's MLP on Fashion-MNIST with every
Linear an lq.torch.Linear under DistributedDataParallel. Each rank draws
its own LUQ samples (per-rank streams), so the all-reduced gradient
averages 2 samples like SMP. After every epoch rank 0 writes the
checkpoint atomically (a temporary file renamed over the old one): the
model's state_dict, the optimizer, the schedule, the epoch, and every
rank's RNG state and lq state (streams and in-hindsight estimates, which
follow each rank's own gradients). A resumed
run ends with the parameters of the uninterrupted one, bit for bit; the
last line prints their digest.
"""

import argparse
import datetime
import hashlib
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lq.torch
from torch_fashion_mnist import load


def mlp(inputs):
    model = torch.nn.Sequential(
        torch.nn.Linear(inputs, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10))
    return lq.torch.quantize_model(model, hindsight=True)


def save_atomically(state, path):
    """The old checkpoint stays whole until the new one is: a kill at any
    moment leaves one or the other."""
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def checkpoint(args, epoch, model, optimizer, schedule):
    # What differs between ranks, each restores its own on resume.
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, {"rng": torch.get_rng_state(),
                                   "lq": lq.torch.lq_state(model)})
    if dist.get_rank() == 0:
        save_atomically({"epoch": epoch, "ranks": args.ranks,
                         "epochs": args.epochs, "per_rank": ranks,
                         "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict()},
                        args.checkpoint)
    dist.barrier()


def check_resumable(args):
    """The checkpoint to resume from, if any, after checking that it is
    this run's."""
    if not args.checkpoint or not os.path.exists(args.checkpoint):
        return None
    state = torch.load(args.checkpoint)
    for option, why in (("ranks", "the per-rank LUQ streams and data "
                         "shards"), ("epochs", "the learning-rate schedule")):
        if state[option] != getattr(args, option):
            raise SystemExit(f"{args.checkpoint}: written with --{option} "
                             f"{state[option]}, not {getattr(args, option)}:"
                             f" {why} would differ")
    return state


def resume(state, model, optimizer, schedule):
    """The first epoch to run: 0, or the one after the checkpoint's."""
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    mine = state["per_rank"][dist.get_rank()]
    lq.torch.load_lq_state(model, mine["lq"])
    torch.set_rng_state(mine["rng"])
    return state["epoch"] + 1


def run(rank, args, port, state):
    backend = "nccl" if args.cuda else "gloo"
    if not args.cuda:
        # The ranks share this machine's cores: each its part, not all of
        # them (oversubscribed spinning threads slow every rank down).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.ranks))
    # A rank that dies leaves the others waiting in a collective: fail
    # instead of waiting forever.
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=args.ranks,
                            timeout=datetime.timedelta(minutes=5))
    device = torch.device(f"cuda:{rank}" if args.cuda else "cpu")
    x, y = load(os.path.join(args.data, "train"))
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    torch.manual_seed(0)
    model = mlp(x.shape[1]).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    shard = len(x) // args.ranks // args.batch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, args.epochs * shard)
    first = resume(state, model, optimizer, schedule)
    last = min(args.epochs, args.stop_after or args.epochs)
    for epoch in range(first, last):
        # Each rank its own shard of an epoch's permutation.
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(
            epoch))[rank::args.ranks]
        for step in range(shard):
            idx = order[step * args.batch:(step + 1) * args.batch]
            loss = torch.nn.functional.cross_entropy(
                ddp(x[idx].to(device)), y[idx].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
        if args.checkpoint:
            checkpoint(args, epoch, model, optimizer, schedule)
    if rank == 0 and last < args.epochs:
        print(f"stopped after epoch {last} of {args.epochs}")
    elif rank == 0:
        digest = hashlib.sha256()
        for p in model.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        print(f"parameters {digest.hexdigest()[:16]}")
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0,
                        help="use the first N training images")
    parser.add_argument("--checkpoint", default="",
                        help="checkpoint file: written after every epoch, "
                             "resumed from when it exists")
    parser.add_argument("--stop-after", type=int, default=0,
                        help="stop after this epoch (of --epochs); the "
                             "checkpoint resumes the run")
    parser.add_argument("--cuda", action="store_true",
                        help="NCCL, one CUDA device a rank")
    args = parser.parse_args()
    if args.stop_after and not args.checkpoint:
        raise SystemExit("--stop-after without --checkpoint would lose the "
                         "run")
    if args.cuda and torch.cuda.device_count() < args.ranks:
        raise SystemExit(f"--cuda needs {args.ranks} CUDA devices, this "
                         f"machine has {torch.cuda.device_count()}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = check_resumable(args)
    mp.spawn(run, args=(args, port, state), nprocs=args.ranks, join=True)


if __name__ == "__main__":
    main()
