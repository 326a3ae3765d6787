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


def _ddp(data, *options):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "torch_ddp.py"),
         "--data", str(data), "--ranks", "2", "--epochs", "3", "--batch",
         "16", *options], capture_output=True, text=True, timeout=600)


def test_ddp_example_resumes_to_the_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    subprocess.check_call([sys.executable,
                           os.path.join(ROOT, "test", "lq-train", "make-idx.py"),
                           str(data), "--size=28"])
    whole = _ddp(data)
    assert whole.returncode == 0, whole.stderr
    checkpoint = str(tmp_path / "run.pt")
    first = _ddp(data, "--checkpoint", checkpoint, "--stop-after", "1")
    assert "stopped after epoch 1 of 3" in first.stdout, first.stderr
    rest = _ddp(data, "--checkpoint", checkpoint)
    assert rest.returncode == 0, rest.stderr
    assert "epoch 1:" not in rest.stdout  # resumed, not restarted
    digest = whole.stdout.strip().splitlines()[-1]
    assert digest.startswith("parameters ")
    assert rest.stdout.strip().splitlines()[-1] == digest
    other = _ddp(data, "--checkpoint", checkpoint, "--epochs", "4")
    assert other.returncode != 0
    assert "written with --epochs 3, not 4" in other.stderr
