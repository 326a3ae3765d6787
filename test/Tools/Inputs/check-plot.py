"""Checks a PNG drawn by lq-plot: a PNG file, with a legend entry (and a
curve, unless it lies under a later mode's) in each of the first N colors
of matplotlib's cycle, one per mode, and no pixel in the next color. Modes
that train alike can draw identical curves: the later one covers the
earlier, whose legend entry alone is about 70 pixels.

    check-plot.py PLOT.png N
"""

import sys

import numpy
from matplotlib import image, pyplot

path, modes = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    if f.read(8) != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
pixels = image.imread(path)[:, :, :3]
cycle = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]


def count(hex_color):
    rgb = numpy.array([int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((numpy.abs(pixels - rgb).max(axis=2) < 3 / 255).sum())


for i, color in enumerate(cycle[:modes + 1]):
    n = count(color)
    if i < modes and n < 40:
        sys.exit(f"{path}: mode {i + 1}'s color {color} has {n} pixels")
    if i == modes and n:
        sys.exit(f"{path}: {n} pixels of {color}, the color of a mode "
                 f"{modes + 1} that the CSV does not have")
print(f"{path}: {modes} modes drawn")
