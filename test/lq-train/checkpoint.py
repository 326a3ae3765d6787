#!/usr/bin/env python3
"""Reads and edits lq-train checkpoints (the layout in
tools/lq-train/Checkpoint.h) for the checkpoint tests.

  checkpoint.py same A B          A and B hold the same state: every section
                                  but TIME (seconds per epoch) is byte-equal
  checkpoint.py truncate F N      drops the last N bytes of F
  checkpoint.py flip F OFFSET     inverts the byte at OFFSET from F's end
  checkpoint.py lq-version F V    rewrites the lq version in F's header
  checkpoint.py format F N        rewrites the format version in F's header
"""

import struct
import sys

MAGIC = b"LQTRCKPT"


def split(data):
    """(header fields, [(tag, body)]) of a checkpoint."""
    assert data[:8] == MAGIC, "not a checkpoint"
    (fmt, n) = struct.unpack_from("<II", data, 8)
    version = data[16:16 + n]
    at = 16 + n
    (size, checksum) = struct.unpack_from("<QQ", data, at)
    payload = data[at + 16:]
    assert len(payload) == size, "truncated"
    sections, pos = [], 0
    while pos < len(payload):
        tag = payload[pos:pos + 4].decode()
        (length,) = struct.unpack_from("<Q", payload, pos + 4)
        sections.append((tag, payload[pos + 12:pos + 12 + length]))
        pos += 12 + length
    return (fmt, version, at), sections


def same(a, b):
    (fa, va, _), sa = split(open(a, "rb").read())
    (fb, vb, _), sb = split(open(b, "rb").read())
    differ = [ta for (ta, xa), (tb, xb) in zip(sa, sb)
              if ta != tb or (ta != "TIME" and xa != xb)]
    if (fa, va) != (fb, vb) or len(sa) != len(sb) or differ:
        print("differ: header" if (fa, va) != (fb, vb) else
              "differ: " + " ".join(differ or ["section count"]))
        return 1
    print("same state: " + " ".join(tag.strip() for tag, _ in sa
                                    if tag != "TIME"))
    return 0


def rewrite(path, edit):
    data = bytearray(open(path, "rb").read())
    open(path, "wb").write(edit(data))
    return 0


def with_version(data, version):
    (n,) = struct.unpack_from("<I", data, 12)
    return data[:12] + struct.pack("<I", len(version)) + version + data[16 + n:]


def flipped(data, offset):
    data[len(data) - offset] ^= 0xFF
    return data


def main():
    op, path, *rest = sys.argv[1:]
    if op == "same":
        return same(path, rest[0])
    if op == "truncate":
        return rewrite(path, lambda d: d[:len(d) - int(rest[0])])
    if op == "flip":
        return rewrite(path, lambda d: flipped(d, int(rest[0])))
    if op == "lq-version":
        return rewrite(path, lambda d: with_version(d, rest[0].encode()))
    if op == "format":
        return rewrite(path, lambda d: d[:8] + struct.pack("<I", int(rest[0])) + d[12:])
    raise SystemExit("unknown operation " + op)


if __name__ == "__main__":
    sys.exit(main())
