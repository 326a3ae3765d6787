"""What the comparison examples (resnet_fashion_mnist.py, char_transformer.py)
share: the training modes, the per-epoch CSV, the plot and the final table.

Modes: fp32 (torch's own layers), luq (4-bit forward, LUQ backward),
smpN (LUQ averaging N samples), and any of the 4-bit modes with "-fnt":
the last --fnt-epochs epochs take the backward GEMMs in fp32 while the
forward stays 4-bit (lq.torch.set_fnt).
"""

import argparse
import csv
import os
import re
import time

import torch

import lq
import lq.torch

_MODE = re.compile(r"^(fp32|luq|smp(\d+))(-fnt)?$")


class Mode:
    def __init__(self, name):
        match = _MODE.match(name)
        if not match or (match.group(1) == "fp32" and match.group(3)):
            raise lq.Error(f"unknown mode {name!r}: expected fp32, luq, smpN, "
                           "or luq-fnt / smpN-fnt")
        self.name = name
        self.low_precision = match.group(1) != "fp32"
        self.samples = int(match.group(2)) if match.group(2) else 1
        self.fnt = bool(match.group(3))

    def quantize(self, model, skip):
        """The model of this mode: unchanged for fp32, else its Linear and
        Conv2d layers (but `skip`) as lq.torch layers."""
        if self.low_precision:
            lq.torch.quantize_model(model, skip=skip, samples=self.samples)
        return model

    def start_epoch(self, model, epoch, epochs, fnt_epochs):
        """Switches the last fnt_epochs epochs of an -fnt mode to fp32
        gradients; returns whether this epoch is one of them."""
        fine_tuning = self.fnt and epoch >= epochs - fnt_epochs
        if self.low_precision:
            lq.torch.set_fnt(model, fine_tuning)
        return fine_tuning


def parse_modes(text):
    return [Mode(name) for name in text.split(",") if name]


def argument_parser(doc, epochs):
    """An argparse parser with the options every comparison takes."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--modes", default="fp32,luq,smp2,smp2-fnt",
                        help="comma list of fp32, luq, smpN, luq-fnt, smpN-fnt")
    parser.add_argument("--fnt-epochs", type=int, default=1,
                        help="final epochs of -fnt modes with fp32 gradients")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def parse_arguments(parser):
    """(args, modes)."""
    args = parser.parse_args()
    modes = parse_modes(args.modes)
    if args.fnt_epochs >= args.epochs and any(m.fnt for m in modes):
        parser.error(f"--fnt-epochs ({args.fnt_epochs}) must be below "
                     f"--epochs ({args.epochs})")
    return args, modes


def optimizer_step(loss, optimizer, schedule, clip=None):
    """One step on `loss`; returns its value."""
    optimizer.zero_grad()
    loss.backward()
    if clip is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    schedule.step()
    return loss.item()


def run_epochs(mode, model, args, train_epoch, evaluate, columns):
    """Trains `model` for args.epochs epochs of `mode` (its FNT epochs
    included): train_epoch() returns an epoch's mean loss, evaluate() the
    metric after it. columns: (loss column, metric column, a format of
    loss and metric for the progress line). Returns (CSV rows, the final
    metric, mean seconds per training epoch)."""
    loss_column, metric_column, progress = columns
    rows, seconds = [], []
    for epoch in range(args.epochs):
        fine_tuning = mode.start_epoch(model, epoch, args.epochs,
                                       args.fnt_epochs)
        start = time.time()
        loss = train_epoch()
        seconds.append(time.time() - start)
        metric = evaluate()
        rows.append({"mode": mode.name, "epoch": epoch + 1,
                     loss_column: loss, metric_column: metric,
                     "seconds": round(seconds[-1], 2)})
        print(f"  {mode.name} epoch {epoch + 1}"
              f"{' (fnt)' if fine_tuning else ''}: "
              f"{progress.format(loss, metric)}  {seconds[-1]:.1f} s",
              flush=True)
    return rows, metric, sum(seconds) / len(seconds)


def write_csv(path, rows):
    """rows: dicts with the same keys, one per (mode, epoch)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows, png, panels):
    """Curves per mode, one panel per (column, title, y label), in the style
    of lq-train's plot (lq-plot). Returns False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    curves = {}
    for row in rows:
        curves.setdefault(row["mode"], []).append(row)
    fig, axes = pyplot.subplots(1, len(panels), figsize=(5.5 * len(panels),
                                                          4.2))
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for i, (mode, points) in enumerate(curves.items()):
        epochs = [p["epoch"] for p in points]
        for ax, (column, _, _) in zip(axes, panels):
            (h,) = ax.plot(epochs, [p[column] for p in points],
                           color=colors[i % len(colors)], marker="o",
                           markersize=3, label=mode)
        handles.append(h)
    for ax, (_, title, ylabel) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    # Below the panels: inside, the legend would hide the curves' ends.
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 6), frameon=False)
    fig.tight_layout()
    tmp = png + ".tmp"
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    os.replace(tmp, png)
    pyplot.close(fig)
    return True


def compare(modes, train, args, table, panels):
    """Trains every mode (train(mode) returns run_epochs' result), then
    prints the table (print_table's arguments after results) and writes
    the CSV and the plot."""
    rows, results = [], {}
    for mode in modes:
        mode_rows, metric, per_epoch = train(mode)
        rows += mode_rows
        results[mode.name] = (metric, per_epoch)
    print_table(results, *table)
    write_csv(args.csv, rows)
    drawn = plot(rows, args.png, panels)
    print(f"curves: {args.csv}" + (f", {args.png}" if drawn else
                                   " (no matplotlib: plot skipped)"))


def print_table(results, metric, value_format, baseline_gap):
    """results: {mode: (final metric, seconds per epoch)}; value_format
    formats the metric, baseline_gap a mode's difference from fp32."""
    base = results.get("fp32")
    print(f"\n| mode | {metric} | vs fp32 | s / epoch |")
    print("|---|---|---|---|")
    for mode, (value, seconds) in results.items():
        gap = "—" if mode == "fp32" or base is None else baseline_gap(
            value, base[0])
        print(f"| {mode} | {value_format.format(value)} | {gap} | "
              f"{seconds:.1f} |")
