"""Reference for train.AdamW: five torch.optim.AdamW steps (lr 0.01, betas (0.9, 0.999), eps 1e-8,
weight decay 0.1 on the weight, none on the bias, as parameter groups) on a Linear(4, 3) with MSE loss.
Run: /usr/bin/python3 train/testdata/gen_adamw.py"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402

torch.manual_seed(3)
lin = torch.nn.Linear(4, 3)
x, y = torch.randn(8, 4), torch.randn(8, 3)
out = {"weight": lin.weight.detach().clone(), "bias": lin.bias.detach().clone(), "input_x": x, "input_y": y}
opt = torch.optim.AdamW([{"params": [lin.weight], "weight_decay": 0.1}, {"params": [lin.bias], "weight_decay": 0.0}],
                        lr=0.01, betas=(0.9, 0.999), eps=1e-8)
for _ in range(5):
    opt.zero_grad()
    torch.nn.functional.mse_loss(lin(x), y).backward()
    opt.step()
out["final.weight"] = lin.weight.detach()
out["final.bias"] = lin.bias.detach()
st_write.write(os.path.join(here, "adamw.safetensors"), out)
print("wrote adamw.safetensors")
