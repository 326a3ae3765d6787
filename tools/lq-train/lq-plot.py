#!/usr/bin/python3
"""Plots lq-train's curves: training loss and test accuracy per epoch, one
color per mode, from the CSV that lq-train writes (--csv) into a PNG.

    lq-plot CURVES.csv PLOT.png

lq-train runs it after training; it can also be run by hand on a CSV kept
from an earlier run. Exit status: 0 when the PNG is written, 3 when
matplotlib cannot be imported (the CSV still holds the curves), 1 on any
other error.
"""

import argparse
import csv
import math
import os
import sys

# Distinct from argparse's 2 (usage) and 1 (errors): lq-train reads this
# status as "no plotting library here", a note rather than a failure.
EXIT_NO_MATPLOTLIB = 3

COLUMNS = ("mode", "epoch", "train_loss", "test_accuracy")


class PlotError(Exception):
    pass


def read_curves(path):
    """Returns {mode: (epochs, losses, test accuracies)} in the CSV's order
    of first appearance, so that colors follow the order of --modes."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
            header = rows[0].keys() if rows else None
    except OSError as e:
        raise PlotError(f"{path}: cannot read: {e.strerror}")
    if header is None:
        raise PlotError(f"{path}: no curves in it")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise PlotError(f"{path}: no column {', '.join(missing)}; "
                       f"is it a CSV written by lq-train?")
    curves = {}
    for line, row in enumerate(rows, start=2):
        try:
            epoch = int(row["epoch"])
            loss = float(row["train_loss"])
            acc = float(row["test_accuracy"])
        except (TypeError, ValueError):
            raise PlotError(f"{path}:{line}: expected an integer epoch and "
                           f"numbers for train_loss and test_accuracy")
        epochs, losses, accs = curves.setdefault(row["mode"], ([], [], []))
        epochs.append(epoch)
        losses.append(loss)
        accs.append(acc)
    return curves


def plot(curves, png):
    # Agg renders without a display: lq-train runs on servers.
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, acc_ax) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    first = min(e for epochs, _, _ in curves.values() for e in epochs)
    last = max(e for epochs, _, _ in curves.values() for e in epochs)
    for i, (mode, (epochs, losses, accs)) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        (h,) = loss_ax.plot(epochs, losses, color=color, marker="o",
                            markersize=3, label=mode)
        acc_ax.plot(epochs, accs, color=color, marker="o", markersize=3)
        handles.append(h)
    for ax, title, ylabel in ((loss_ax, "Training loss", "loss"),
                              (acc_ax, "Test accuracy", "accuracy (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if first == last:
            # One epoch: a range of zero width would get fractional ticks.
            ax.set_xlim(first - 1, last + 1)
        ax.grid(True, alpha=0.3)
    # A non-finite loss (a diverged run) leaves a gap in its curve; a run
    # whose every loss is non-finite still gets its legend entry.
    if all(not math.isfinite(y) for _, ys, _ in curves.values() for y in ys):
        loss_ax.set_ylim(0, 1)

    # One legend for both panels, below them: inside an axes it would hide
    # the curves' ends, where the modes are compared.
    fig.legend(handles=handles, loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 6),
               frameon=False)
    fig.tight_layout()
    # Written next to the target and renamed, so a failed run never leaves
    # half a PNG under the requested name.
    tmp = png + ".tmp"
    try:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        os.replace(tmp, png)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise PlotError(f"{png}: cannot write: {e.strerror}")
    finally:
        pyplot.close(fig)


def main():
    parser = argparse.ArgumentParser(
        prog="lq-plot",
        description="Plots the curves of an lq-train CSV into a PNG.")
    parser.add_argument("csv", help="CSV written by lq-train --csv")
    parser.add_argument("png", help="PNG to write")
    args = parser.parse_args()

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"lq-plot: matplotlib not found (Debian: apt install "
              f"python3-matplotlib); the curves are in {args.csv}",
              file=sys.stderr)
        return EXIT_NO_MATPLOTLIB
    try:
        plot(read_curves(args.csv), args.png)
    except PlotError as e:
        print(f"lq-plot: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
