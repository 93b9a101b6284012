"""Writes sobol.json: torch.quasirandom.SobolEngine(1, scramble=True, seed=S) as scripts/exp/train.py
draws r (rng.draw(batch)[:, 0]), for seeds 0 and 3, batches of 8, 1, 5, 8 drawn in turn; and the
unscrambled engine's first 8 points. Run with Debian's torch 1.13: /usr/bin/python3 vampnet/testdata/gen_sobol.py"""
import json
import os

import torch

out = {}
for seed in (0, 3):
    rng = torch.quasirandom.SobolEngine(1, scramble=True, seed=seed)
    out["seed%d" % seed] = [rng.draw(n)[:, 0].tolist() for n in (8, 1, 5, 8)]
out["plain"] = torch.quasirandom.SobolEngine(1).draw(8)[:, 0].tolist()
out["torch"] = torch.__version__
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sobol.json"), "w") as f:
    json.dump(out, f, indent=1)
