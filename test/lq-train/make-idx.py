#!/usr/bin/env python3
"""Writes a small, learnable IDX dataset (gzipped, like Debian's
Fashion-MNIST): class c is a bright 4x4 square at a position of its own on
a noisy image (12x12 unless --size says otherwise). With --corrupt, one
file is broken."""

import argparse
import gzip
import os
import random
import struct


def images_and_labels(count, size, rng):
    images, labels = bytearray(), bytearray()
    for _ in range(count):
        label = rng.randrange(10)
        pixels = [rng.randrange(40) for _ in range(size * size)]
        row, col = divmod(label, 5)
        for y in range(4):
            for x in range(4):
                pixels[(1 + row * 6 + y) * size + 1 + col * 2 + x] = 200 + rng.randrange(56)
        images += bytes(pixels)
        labels.append(label)
    return images, labels


def write(path, magic, dims, payload):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims))
        f.write(payload)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--corrupt", choices=["truncated", "magic", "counts", "label"])
    parser.add_argument("--size", type=int, default=12)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(7)
    for prefix, count in (("train", 640), ("t10k", 200)):
        images, labels = images_and_labels(count, args.size, rng)
        image_magic, label_magic = 0x803, 0x801
        label_count = count
        if prefix == "train":
            if args.corrupt == "truncated":
                images = images[:-100]
            elif args.corrupt == "magic":
                image_magic = 0x1234
            elif args.corrupt == "counts":
                label_count = count - 1
                labels = labels[:-1]
            elif args.corrupt == "label":
                labels[3] = 12
        write(os.path.join(args.dir, prefix + "-images-idx3-ubyte.gz"), image_magic,
              (count, args.size, args.size), bytes(images))
        write(os.path.join(args.dir, prefix + "-labels-idx1-ubyte.gz"), label_magic,
              (label_count,), bytes(labels))


if __name__ == "__main__":
    main()
