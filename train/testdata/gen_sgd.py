"""Reference for train.SGD, LARS and ClipGradNorm: five steps on a Linear(4, 3) with MSE loss.
- sgd: torch.optim.SGD(lr 0.05, momentum 0.9, dampening 0.1, weight decay 0.01 on the weight only, Nesterov off)
- nesterov: torch.optim.SGD(lr 0.05, momentum 0.9, Nesterov, weight decay 0.01 on the weight only)
- lars: MAE's LARS (util/lars.py: momentum 0.9, weight decay 0.05, trust 0.001), written out below, lr 0.5
- clip: SGD(lr 0.1) after clip_grad_norm_(max_norm=0.05) each step; "clip.norm" holds the first norm
Run: /usr/bin/python3 train/testdata/gen_sgd.py"""
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402

torch.manual_seed(11)
init = torch.nn.Linear(4, 3)
x, y = torch.randn(8, 4), torch.randn(8, 3)
out = {"weight": init.weight.detach().clone(), "bias": init.bias.detach().clone(), "input_x": x, "input_y": y}


def fresh():
    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(out["weight"])
        lin.bias.copy_(out["bias"])
    return lin


def lars_step(params, lr, momentum=0.9, weight_decay=0.05, trust=0.001, state={}):
    with torch.no_grad():
        for p in params:
            dp = p.grad
            if p.ndim > 1:
                dp = dp.add(p, alpha=weight_decay)
                pn, un = torch.norm(p), torch.norm(dp)
                q = torch.where(pn > 0., torch.where(un > 0, trust * pn / un, torch.ones_like(pn)), torch.ones_like(pn))
                dp = dp.mul(q)
            mu = state.setdefault(id(p), torch.zeros_like(p))
            mu.mul_(momentum).add_(dp)
            p.add_(mu, alpha=-lr)


for case in ["sgd", "nesterov", "lars", "clip"]:
    lin = fresh()
    if case == "sgd":
        opt = torch.optim.SGD([{"params": [lin.weight], "weight_decay": 0.01}, {"params": [lin.bias], "weight_decay": 0.0}],
                              lr=0.05, momentum=0.9, dampening=0.1)
    elif case == "nesterov":
        opt = torch.optim.SGD([{"params": [lin.weight], "weight_decay": 0.01}, {"params": [lin.bias], "weight_decay": 0.0}],
                              lr=0.05, momentum=0.9, nesterov=True)
    elif case == "clip":
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    state = {}
    for i in range(5):
        lin.zero_grad()
        torch.nn.functional.mse_loss(lin(x), y).backward()
        if case == "lars":
            lars_step([lin.weight, lin.bias], 0.5, state=state)
            continue
        if case == "clip":
            n = torch.nn.utils.clip_grad_norm_(lin.parameters(), 0.05)
            if i == 0:
                out["clip.norm"] = n.reshape(1)
        opt.step()
    out[f"{case}.weight"] = lin.weight.detach()
    out[f"{case}.bias"] = lin.bias.detach()
st_write.write(os.path.join(here, "sgd.safetensors"), out)
print("wrote sgd.safetensors")
