"""Workers of the data-parallel tests: each runs in a process of its own
(torch.multiprocessing.spawn), joins a gloo group on 127.0.0.1 and writes
what the test checks to `out` (torch.save) for the parent to read."""

import datetime
import os
import socket

import torch
import torch.distributed as dist

import lq.torch as lqt


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank, world, port):
    # The ranks share the machine's cores, and a stuck collective fails the
    # test instead of hanging it.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(minutes=3))


def _teacher_data(rank, steps, batch):
    """A linearly separable 4-class problem; each rank its own samples."""
    teacher = torch.Generator().manual_seed(99)
    projection = torch.randn(16, 4, generator=teacher)
    data = torch.Generator().manual_seed(1000 + rank)
    for _ in range(steps):
        x = torch.randn(batch, 16, generator=data)
        yield x, (x @ projection).argmax(1)


def train(rank, world, port, out):
    """Trains a 4-bit MLP under DistributedDataParallel on this rank's data;
    saves the losses, the final parameters and the layers' streams."""
    _join(rank, world, port)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 4))
    lqt.quantize_model(model, hindsight=True)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for x, labels in _teacher_data(rank, steps=40, batch=32):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    torch.save({"losses": losses,
                "params": [p.detach().clone() for p in model.parameters()],
                "streams": [model[i].luq_stream() for i in (0, 2)]},
               os.path.join(out, f"train-{rank}.pt"))
    dist.destroy_process_group()


def gradient_samples(rank, world, port, out, trials):
    """On identical inputs on every rank, the weight gradient of one layer
    over `trials` steps, before and after the all-reduce (mean over
    ranks), for per-rank and shared streams."""
    _join(rank, world, port)
    torch.manual_seed(5)
    x = torch.randn(64, 32)
    dy = torch.randn(64, 16) * 1e-2
    result = {}
    for policy in ("per_rank", "shared"):
        torch.manual_seed(6)  # the same layer and seeds on every rank
        layer = lqt.Linear(32, 16, streams=policy)
        local, reduced = [], []
        for _ in range(trials):
            layer.weight.grad = None
            layer(x).backward(dy)
            grad = layer.weight.grad.clone()
            local.append(grad.clone())
            dist.all_reduce(grad)
            reduced.append(grad / world)
        result[policy] = {"local": torch.stack(local),
                          "reduced": torch.stack(reduced)}
    torch.save(result, os.path.join(out, f"grad-{rank}.pt"))
    dist.destroy_process_group()
