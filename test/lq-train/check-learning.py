"""Checks that every mode of an lq-train CSV learned: its training loss fell
to at most half of the first epoch's, and its last test accuracy beats
chance (10 classes) by a wide margin. A run that does not learn (a zero
learning rate, gradients lost on the way) fails both."""

import csv
import sys

CHANCE = 10.0      # percent, 10 balanced classes
MIN_ACCURACY = 50.0


def main(path):
    modes = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            modes.setdefault(row["mode"], []).append(row)
    if not modes:
        sys.exit(f"{path}: no epochs")
    failed = False
    for mode, rows in modes.items():
        first = float(rows[0]["train_loss"])
        last = float(rows[-1]["train_loss"])
        accuracy = float(rows[-1]["test_accuracy"])
        if len(rows) < 2 or not last <= 0.5 * first:
            print(f"{mode}: the loss did not fall to half: {first} -> {last}")
            failed = True
        if not accuracy >= MIN_ACCURACY:
            print(f"{mode}: test accuracy {accuracy}% is not above "
                  f"{MIN_ACCURACY}% (chance {CHANCE}%)")
            failed = True
        print(f"{mode}: loss {first:.4g} -> {last:.4g}, test {accuracy}%")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1])
