"""Makes the torch.save files that torchfile's bounds must refuse, with Debian's python3-torch 1.13.1:
    /usr/bin/python3 torchmods/torchfile/testdata/gen_bounds.py

Each is what a real torch.save writes, so the tests exercise the pickles PyTorch itself produces:
- expand.pt: a one-element storage viewed through stride 0 as 2**40 elements (4 TiB when copied);
- wrap.pt: a one-element float64 storage viewed as 2**61 elements, whose byte count wraps to 0 in 64 bits;
- cycle.pt: a dict that contains itself;
- dup.pt: {"a.b": t1, "a": {"b": t2}}, two tensors that flatten onto the name "a.b".
"""
import os

import torch

here = os.path.dirname(os.path.abspath(__file__))

torch.save({"w": torch.ones(1).expand(2**40)}, os.path.join(here, "expand.pt"))
torch.save({"w": torch.ones(1, dtype=torch.float64).expand(2**61)}, os.path.join(here, "wrap.pt"))
cycle = {"w": torch.ones(2)}
cycle["self"] = cycle
torch.save(cycle, os.path.join(here, "cycle.pt"))
torch.save({"a.b": torch.ones(2), "a": {"b": torch.zeros(2)}}, os.path.join(here, "dup.pt"))
print("wrote expand.pt, wrap.pt, cycle.pt, dup.pt")
