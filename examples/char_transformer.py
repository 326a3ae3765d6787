#!/usr/bin/env python3
"""A character-level transformer language model in fp32 and in 4 bits.

    PYTHONPATH=build/python /usr/bin/python3 examples/char_transformer.py \\
        --epochs 8 --fnt-epochs 2 --modes fp32,luq,smp2,smp2-fnt

Trains on Debian's fortune cookies (package fortunes: the text files of
/usr/share/games/fortunes, in name order), the last 10% held out for
validation (the first --limit characters). The model: character and
position embeddings, --layers pre-LayerNorm blocks of causal multi-head
self-attention and an MLP (ReLU, or GELU with --activation gelu), a final
LayerNorm and a Linear head. In the 4-bit modes every projection
of every block — qkv, the attention's output projection, both MLP layers
— is an lq.torch.Linear (SAWB int4 forward, LUQ log4 gradients); the
attention's score and value products (QK^T, AV) have no weights and stay
in high precision, and so does the head (the paper keeps the first and
last layers in high precision; the embeddings are lookups). Every mode
starts from the same weights and sees the same windows under AdamW with
warmup and a cosine learning rate. Reports the validation loss in bits per
character; writes a CSV (mode, epoch, train_bpc, val_bpc, seconds) and a
plot.
"""

import math
import os

import torch

from lq_modes import (argument_parser, compare, optimizer_step,
                      parse_arguments, run_epochs)

CORPUS = "/usr/share/games/fortunes"
ACTIVATIONS = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU}


def read_corpus(path, limit):
    """The fortune files (a directory) or one text file, as one string."""
    if os.path.isdir(path):
        # The strfile indexes (.dat) are binary; .u8 files are UTF-8
        # copies of the same fortunes.
        names = sorted(n for n in os.listdir(path)
                       if not n.endswith((".dat", ".u8")) and
                       os.path.isfile(os.path.join(path, n)))
        if not names:
            raise SystemExit(f"{path}: no text files (Debian: apt install "
                             "fortunes)")
        parts = []
        for name in names:
            with open(os.path.join(path, name), "rb") as f:
                parts.append(f.read().decode("latin-1"))
        text = "".join(parts)
    else:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    return text[:limit] if limit else text


class Block(torch.nn.Module):
    def __init__(self, width, heads, activation):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)
        self.ln2 = torch.nn.LayerNorm(width)
        # After a ReLU (a module of this Sequential) quantize_model makes
        # the second layer's input unsigned: 15 levels instead of 7.
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width),
                                       ACTIVATIONS[activation](),
                                       torch.nn.Linear(4 * width, width))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
                   for z in (q, k, v))
        # QK^T and AV in fp32: activations times activations, the paper's
        # high-precision part of attention.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        attention = scores.masked_fill(causal, float("-inf")).softmax(-1)
        y = (attention @ v).transpose(1, 2).reshape(b, t, c)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class CharTransformer(torch.nn.Module):
    def __init__(self, vocab, width, heads, layers, context, activation):
        super().__init__()
        self.token = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.Sequential(*[Block(width, heads, activation)
                                            for _ in range(layers)])
        self.ln = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)
        return self.head(self.ln(self.blocks(x)))


def bits_per_char(logits, targets):
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return loss / math.log(2)


def evaluate(model, data, context, batch):
    """Mean bits per character over the validation text, cut into
    consecutive windows (each predicts its characters from the window's
    earlier ones)."""
    windows = (len(data) - 1) // context
    inputs = data[:windows * context].reshape(windows, context)
    targets = data[1:windows * context + 1].reshape(windows, context)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, windows, batch):
            x, y = inputs[i:i + batch], targets[i:i + batch]
            total += bits_per_char(model(x), y).item() * len(x)
    model.train()
    return total / windows


def train(mode, vocab, train_data, val_data, args):
    torch.manual_seed(args.seed)  # same initial weights for every mode
    model = CharTransformer(vocab, args.width, args.heads, args.layers,
                            args.context, args.activation).to(args.device)
    mode.quantize(model, skip=["head"])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr,
                            betas=(0.9, 0.98), weight_decay=0.01)
    total_steps = args.epochs * args.steps
    warmup = max(1, total_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(
            math.pi * min(s, total_steps) / total_steps))))
    # Window starts from their own generator: the same windows for every
    # mode, whatever LUQ draws from torch's default generator.
    order_rng = torch.Generator().manual_seed(args.seed)
    offsets = torch.arange(args.context + 1)

    def train_epoch():
        total = 0.0
        for _ in range(args.steps):
            starts = torch.randint(0, len(train_data) - args.context - 1,
                                   (args.batch,), generator=order_rng)
            window = train_data[(starts[:, None] + offsets).to(args.device)]
            loss = bits_per_char(model(window[:, :-1]), window[:, 1:])
            total += optimizer_step(loss, opt, sched, clip=1.0)
        return total / args.steps

    return run_epochs(
        mode, model, args, train_epoch,
        lambda: evaluate(model, val_data, args.context, 4 * args.batch),
        ("train_bpc", "val_bpc", "train {:.4f}  validation {:.4f} bits/char"))


def main():
    parser = argument_parser(__doc__, epochs=8)
    parser.add_argument("--data", default=CORPUS,
                        help="a directory of fortune files or a text file")
    parser.add_argument("--steps", type=int, default=250,
                        help="training steps per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    # ReLU: the second MLP layer's input is then quantized unsigned, and
    # the 4-bit forward loses less than with GELU (docs/results.md).
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS),
                        default="relu", help="the MLP's activation")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--limit", type=int, default=1_000_000,
                        help="use the first N characters (0: all)")
    parser.add_argument("--csv", default="char_transformer.csv")
    parser.add_argument("--png", default="char_transformer.png")
    args, modes = parse_arguments(parser)

    text = read_corpus(args.data, args.limit)
    split = len(text) * 9 // 10  # fixed split: the last 10% validates
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    train_data = data[:split].to(args.device)
    val_data = data[split:].to(args.device)
    print(f"{len(text)} characters ({len(chars)} distinct): {split} train, "
          f"{len(text) - split} validation; {args.epochs} epochs of "
          f"{args.steps} steps, batch {args.batch}x{args.context}, "
          f"on {args.device}")
    compare(modes, lambda mode: train(mode, len(chars), train_data, val_data,
                                      args), args,
            ("validation bits/char", "{:.4f}",
             lambda value, base: f"{100 * (value - base) / base:+.2f}%"),
            [("train_bpc", "Training loss", "bits per character"),
             ("val_bpc", "Validation loss", "bits per character")])


if __name__ == "__main__":
    main()
