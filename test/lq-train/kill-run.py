#!/usr/bin/env python3
"""Runs a command and SIGKILLs it part way, as a crash would:

  kill-run.py --after-line=TEXT -- CMD...   once CMD prints a line holding
                                            TEXT (lq-train prints an epoch's
                                            line after its checkpoint)
  kill-run.py --after-file=PATH -- CMD...   once PATH exists (polled)

CMD's output is passed through. Fails when CMD ends before the kill (the
test would then not test a crash) or nothing triggers within --bound
seconds."""

import argparse
import os
import signal
import subprocess
import sys
import time


def wait_for_line(proc, text, deadline):
    for line in proc.stdout:
        sys.stdout.write(line)
        if text in line:
            return True
        if time.monotonic() > deadline:
            return False
    return False


def wait_for_file(proc, path, deadline):
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--after-line")
    parser.add_argument("--after-file")
    parser.add_argument("--bound", type=float, default=120.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    deadline = time.monotonic() + args.bound
    if args.after_line:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        triggered = wait_for_line(proc, args.after_line, deadline)
    else:
        proc = subprocess.Popen(command)
        triggered = wait_for_file(proc, args.after_file, deadline)
    finished = proc.poll() is not None
    if not finished:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.stdout:
        proc.stdout.close()
    sys.stdout.flush()
    if finished or proc.returncode != -signal.SIGKILL:
        print("kill-run: the command ended (exit %d) before the kill" %
              proc.returncode)
        return 1
    if not triggered:
        print("kill-run: killed without the trigger (bound or end of output)")
        return 1
    print("kill-run: killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
