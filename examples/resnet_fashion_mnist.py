#!/usr/bin/env python3
"""A residual CNN on Fashion-MNIST in fp32 and in 4 bits (lq.torch.Conv2d).

    PYTHONPATH=build/python /usr/bin/python3 examples/resnet_fashion_mnist.py \\
        --epochs 5 --train-limit 20000 --modes fp32,luq,smp2,smp2-fnt

ResNet-8: a 3x3 stem convolution, three stages of one basic block each
(two 3x3 convolutions with BatchNorm, a 1x1 projection on the shortcut
where the shape changes; widths 16/32/64, each stage halving the
resolution), global average pooling and a Linear head. Every mode starts
from the same weights and sees the same batches under SGD with momentum
and a cosine learning rate. The 4-bit modes replace every convolution but
the stem, and every Linear but the head, by lq.torch layers (the paper
keeps the first and last layers in high precision): SAWB int4 forward,
LUQ log4 gradients. Prints each epoch, then a table; writes a CSV
(mode, epoch, train_loss, test_accuracy, seconds) and a plot.
"""

import torch

import lq.torch
from lq_modes import (argument_parser, compare, optimizer_step,
                      parse_arguments, run_epochs)
from torch_fashion_mnist import load

# Fashion-MNIST's pixel mean and deviation (of the [0, 1] training images).
MEAN, STD = 0.2860, 0.3530


class Block(torch.nn.Module):
    """A basic block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        conv = torch.nn.Conv2d
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.shortcut = torch.nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = torch.nn.Sequential(
                conv(cin, cout, 1, stride, bias=False),
                torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(torch.nn.Module):
    def __init__(self, widths=(16, 32, 64), classes=10):
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, widths[0], 3, 1, 1, bias=False),
            torch.nn.BatchNorm2d(widths[0]), torch.nn.ReLU())
        blocks, cin = [], widths[0]
        for width in widths:
            blocks.append(Block(cin, width, 2))
            cin = width
        self.blocks = torch.nn.Sequential(*blocks)
        self.head = torch.nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x.mean((2, 3)))


def mark_unsigned_inputs(model):
    """Every convolution of a block reads a ReLU's output (the stem's or the
    previous block's, or its block's first ReLU) — non-negative, so SAWB
    quantizes it unsigned with twice the levels. quantize_model sees ReLU
    modules in a Sequential only; these ReLUs are in forward()."""
    for module in model.modules():
        if isinstance(module, lq.torch.Conv2d):
            module.unsigned_input = True


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) ==
                        y[i:i + batch]).sum().item()
    model.train()
    return 100.0 * correct / len(x)


def train(mode, data, args):
    (x, y), (tx, ty) = data
    torch.manual_seed(args.seed)  # same initial weights for every mode
    model = ResNet(tuple(args.widths)).to(args.device)
    mode.quantize(model, skip=["stem.0", "head"])
    if mode.low_precision:
        mark_unsigned_inputs(model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9,
                          weight_decay=5e-4, nesterov=True)
    steps = len(x) // args.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps)
    # The data order has its own generator: the LUQ seeds drawn from
    # torch's default one do not shift the batches between modes.
    order_rng = torch.Generator().manual_seed(args.seed)

    def train_epoch():
        order = torch.randperm(len(x), generator=order_rng)
        total = 0.0
        for i in range(steps):
            idx = order[i * args.batch:(i + 1) * args.batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            total += optimizer_step(loss, opt, sched)
        return total / steps

    return run_epochs(mode, model, args, train_epoch,
                      lambda: evaluate(model, tx, ty),
                      ("train_loss", "test_accuracy",
                       "loss {:.4f}  test {:.2f}%"))


def main():
    parser = argument_parser(__doc__, epochs=5)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--widths", type=int, nargs=3, default=[16, 32, 64])
    parser.add_argument("--train-limit", type=int, default=0,
                        help="train on the first N images (0: all 60000)")
    parser.add_argument("--test-limit", type=int, default=0,
                        help="test on the first N images (0: all 10000)")
    parser.add_argument("--csv", default="resnet_fashion_mnist.csv")
    parser.add_argument("--png", default="resnet_fashion_mnist.png")
    args, modes = parse_arguments(parser)

    def prepare(split, limit):
        images, labels = load(f"{args.data}/{split}")
        if limit:
            images, labels = images[:limit], labels[:limit]
        side = int(images.shape[1] ** 0.5)
        images = ((images - MEAN) / STD).reshape(-1, 1, side, side)
        return images.to(args.device), labels.to(args.device)

    data = (prepare("train", args.train_limit),
            prepare("t10k", args.test_limit))
    print(f"{len(data[0][0])} training and {len(data[1][0])} test images, "
          f"{args.epochs} epochs, batch {args.batch}, on {args.device}")
    compare(modes, lambda mode: train(mode, data, args), args,
            ("test accuracy (%)", "{:.2f}",
             lambda value, base: f"{value - base:+.2f} points"),
            [("train_loss", "Training loss", "loss"),
             ("test_accuracy", "Test accuracy", "accuracy (%)")])


if __name__ == "__main__":
    main()
