"""examples/torch_fashion_mnist.py trains, on a small generated dataset."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_example_trains(tmp_path):
    data = tmp_path / "data"
    subprocess.check_call([sys.executable,
                           os.path.join(ROOT, "test", "lq-train", "make-idx.py"),
                           str(data), "--size=28"])
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "torch_fashion_mnist.py"),
         "--data", str(data), "--epochs", "2", "--batch", "32"],
        check=True, capture_output=True, text=True).stdout
    assert "fp32" in out and "luq" in out
    last = out.strip().splitlines()[-1]
    # fp32 <acc>%  luq <acc>%  (<diff> points): the task is easy, both learn.
    accuracies = [float(w.rstrip("%")) for w in last.split() if w.endswith("%")]
    assert len(accuracies) == 2 and min(accuracies) > 50.0, out
