"""Makes loss_parity.safetensors, the PyTorch reference for torchmods' CrossEntropy,
SoftTargetCrossEntropy and BatchNorm1d.

Run with Debian's python3-torch (1.13.1, the libtorch the Go side links):
    /usr/bin/python3 torchmods/testdata/gen_loss_parity.py

Cross-entropy, case "ce.<case>": logits "ce.<case>.logits", int64 targets "ce.<case>.targets",
the loss "ce.<case>.y" of F.cross_entropy with the case's reduction, ignore_index and
label_smoothing, and for loss = sum(y * "ce.<case>.g") the gradient "ce.<case>.grad.logits".
"soft": timm's SoftTargetCrossEntropy, torch.sum(-target * F.log_softmax(x, -1), -1).mean(),
with "soft.logits", "soft.target", "soft.y" and "soft.grad.logits".

BatchNorm1d, case "bn.<case>": its state_dict before training under "bn.<case>.sd." (running
statistics moved off their initial values so that loading them is tested); then two training
steps, step i with input "bn.<case>.x<i>" ([N, C] then [N, C, L]), output "bn.<case>.y<i>",
for loss = sum(y<i> * g<i>) the gradients "bn.<case>.grad<i>.<x|weight|bias>" (those of that
step alone), and the buffers after it "bn.<case>.after<i>.<buffer>"; then in evaluation
mode the output "bn.<case>.y3" of "bn.<case>.x3".
"""
import os

import torch
import torch.nn.functional as F
from torch import nn

import st_write

torch.manual_seed(2024)
out = {}

N, C = 7, 5
logits = torch.randn(N, C) * 2
targets = torch.tensor([0, 3, -100, 4, 0, 2, -100])
cases = {  # name: (reduction, ignore_index, label_smoothing, targets)
    "mean": ("mean", -100, 0.0, targets),
    "sum": ("sum", -100, 0.0, targets),
    "none": ("none", -100, 0.0, targets),
    "smooth_mean": ("mean", -100, 0.1, targets),
    "smooth_sum": ("sum", -100, 0.25, targets),
    "smooth_none": ("none", -100, 0.1, targets),
    "ignore0_smooth_mean": ("mean", 0, 0.2, torch.where(targets == -100, 1, targets)),  # skips the two 0s
}
for name, (red, ign, ls, tg) in cases.items():
    x = logits.clone().requires_grad_(True)
    y = F.cross_entropy(x, tg, reduction=red, ignore_index=ign, label_smoothing=ls)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    p = f"ce.{name}."
    out[p + "logits"], out[p + "targets"], out[p + "y"], out[p + "g"] = logits, tg, y.detach(), g
    out[p + "grad.logits"] = x.grad

# [N, C, d] logits with [N, d] targets (a sequence of tokens per row)
x = torch.randn(2, C, 3).requires_grad_(True)
tg = torch.tensor([[1, -100, 4], [0, 2, 2]])
y = F.cross_entropy(x, tg, label_smoothing=0.1)
y.backward()
out.update({"ce.nd.logits": x.detach(), "ce.nd.targets": tg, "ce.nd.y": y.detach(), "ce.nd.g": torch.ones(()),
            "ce.nd.grad.logits": x.grad})

# timm's SoftTargetCrossEntropy
x = torch.randn(4, C).requires_grad_(True)
target = torch.softmax(torch.randn(4, C), -1)
y = torch.sum(-target * F.log_softmax(x, dim=-1), dim=-1).mean()
y.backward()
out.update({"soft.logits": x.detach(), "soft.target": target, "soft.y": y.detach(), "soft.grad.logits": x.grad})

# BatchNorm1d
for name, kw in {"affine": dict(eps=1e-3, momentum=0.3), "probe": dict(affine=False, eps=1e-6)}.items():
    bn = nn.BatchNorm1d(6, **kw)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    p = f"bn.{name}."
    for k, v in bn.state_dict().items():
        out[p + "sd." + k] = v.clone()
    bn.train()
    for i, x in [(1, torch.randn(8, 6) * 3 + 1), (2, torch.randn(4, 6, 3) - 2)]:
        x = x.requires_grad_(True)
        y = bn(x)
        g = torch.randn_like(y)
        for q in bn.parameters():
            q.grad = None
        (y * g).sum().backward()
        out[f"{p}x{i}"], out[f"{p}y{i}"], out[f"{p}g{i}"] = x.detach(), y.detach(), g
        out[f"{p}grad{i}.x"] = x.grad
        for k, q in bn.named_parameters():
            out[f"{p}grad{i}.{k}"] = q.grad.clone()
        for k, v in bn.named_buffers():
            out[f"{p}after{i}.{k}"] = v.clone()
    bn.eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        out[p + "x3"], out[p + "y3"] = x, bn(x)

here = os.path.dirname(os.path.abspath(__file__))
n, size = st_write.write(os.path.join(here, "loss_parity.safetensors"), out,
                         {"torch": torch.__version__, "script": "gen_loss_parity.py"})
print(f"wrote loss_parity.safetensors: {n} tensors, {size} bytes of data")
