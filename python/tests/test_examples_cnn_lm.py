"""examples/resnet_fashion_mnist.py and examples/char_transformer.py: small
runs of every mode, on generated data, whose loss falls."""

import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODES = ["fp32", "luq", "smp2", "smp2-fnt"]


def _run(tmp_path, script, *options):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script),
         "--modes", ",".join(MODES), "--csv", str(tmp_path / "curves.csv"),
         "--png", str(tmp_path / "curves.png"), *options],
        check=True, capture_output=True, text=True).stdout
    with open(tmp_path / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["mode"] for r in rows] == [m for m in MODES for _ in (1, 2, 3)]
    # The last epoch of smp2-fnt (and only it) fine-tunes in fp32.
    assert out.count("(fnt)") == 1 and "smp2-fnt epoch 3 (fnt)" in out, out
    for mode in MODES:
        assert f"| {mode} |" in out, out
    return out, rows


def _falls(rows, column):
    for mode in MODES:
        values = [float(r[column]) for r in rows if r["mode"] == mode]
        assert values[-1] < values[0], (mode, values)


def test_resnet_example_trains_every_mode(tmp_path):
    data = tmp_path / "data"
    subprocess.check_call([sys.executable,
                           os.path.join(ROOT, "test", "lq-train", "make-idx.py"),
                           str(data), "--size=28"])
    _, rows = _run(tmp_path, "resnet_fashion_mnist.py", "--data", str(data),
                   "--epochs", "3", "--batch", "32", "--widths", "8", "8", "16",
                   "--train-limit", "256", "--test-limit", "200")
    _falls(rows, "train_loss")
    assert max(float(r["test_accuracy"]) for r in rows) > 30


def test_char_transformer_example_trains_every_mode(tmp_path):
    text = tmp_path / "text.txt"
    # A learnable text: a few sentences repeated in a fixed order.
    sentences = ["the quick brown fox jumps over the lazy dog. ",
                 "pack my box with five dozen liquor jugs! ",
                 "how vexingly quick daft zebras jump? "]
    text.write_text("".join(sentences[i % 3] for i in range(300)))
    _, rows = _run(tmp_path, "char_transformer.py", "--data", str(text),
                   "--epochs", "3", "--steps", "12", "--batch", "8",
                   "--context", "32", "--width", "32", "--heads", "2",
                   "--layers", "1", "--lr", "3e-3")
    _falls(rows, "train_bpc")
    _falls(rows, "val_bpc")
