"""PyTorch's side of bench/opcost: the small op c = a + b on 16 floats, and the same work without
allocating (torch.add(a, b, out=c)), the fastest of REPS repetitions of N calls, in ns per call.

    /usr/bin/python3 bench/opcost_torch.py [N] [REPS]
"""
import sys
import time

import torch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 15
torch.set_num_threads(1)
a, b, out = torch.ones(16), torch.ones(16), torch.zeros(16)


def best(fn):
    fn()
    return min(fn() for _ in range(reps)) * 1e9 / n


def empty():
    t = time.perf_counter()
    for _ in range(n):
        pass
    return time.perf_counter() - t


def add_out():
    t = time.perf_counter()
    for _ in range(n):
        torch.add(a, b, out=out)
    return time.perf_counter() - t


def add():
    t = time.perf_counter()
    for _ in range(n):
        c = a + b
        del c
    return time.perf_counter() - t


for name, fn in [("python loop, empty", empty), ("torch.add(a, b, out=c) (no allocation)", add_out), ("c = a + b; del c", add)]:
    print(f"{name:<58} {best(fn):10.0f}")
