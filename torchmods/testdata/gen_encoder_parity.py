"""Makes encoder_parity.safetensors, the PyTorch reference for torchmods' parity tests.

Run with Debian's python3-torch (1.13.1, the libtorch the Go side links):
    /usr/bin/python3 torchmods/testdata/gen_encoder_parity.py

Two nn.TransformerEncoderLayer(batch_first=True, dropout=0): "post" (post-norm, ReLU, no mask)
and "pre" (norm_first, GELU, a causal bool mask). For each: its state_dict under "<case>.",
the input "<case>.x", the output "<case>.y", and, for loss = sum(y * "<case>.g"), the gradient of
the input "<case>.grad.x" and of every parameter "<case>.grad.<name>". float32 throughout.
Also encoder_post.pt: the "post" layer's state dict as torch.save writes it, for torchfile.
"""
import os

import torch
from torch import nn

import st_write

torch.manual_seed(1234)
out = {}
B, L, D, H, FF = 2, 5, 16, 4, 32
for case, norm_first, act, causal in [("post", False, "relu", False), ("pre", True, "gelu", True)]:
    layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=act, batch_first=True,
                                       norm_first=norm_first)
    with torch.no_grad():  # move LayerNorm off its identity init so its parameters are tested
        for n in (layer.norm1, layer.norm2):
            n.weight.uniform_(0.5, 1.5)
            n.bias.uniform_(-0.5, 0.5)
        layer.self_attn.in_proj_bias.uniform_(-0.2, 0.2)
    layer.train()  # dropout is 0; train mode keeps PyTorch off its inference fast path
    x = torch.randn(B, L, D, requires_grad=True)
    mask = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1) if causal else None
    y = layer(x, src_mask=mask)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    for name, p in layer.state_dict().items():
        out[f"{case}.{name}"] = p
    if case == "post":
        post_state = layer.state_dict()
    for name, p in layer.named_parameters():
        out[f"{case}.grad.{name}"] = p.grad
    out[f"{case}.x"] = x.detach()
    out[f"{case}.y"] = y.detach()
    out[f"{case}.g"] = g
    out[f"{case}.grad.x"] = x.grad

here = os.path.dirname(os.path.abspath(__file__))
n, size = st_write.write(os.path.join(here, "encoder_parity.safetensors"),
                         {k: v.to(torch.float32) for k, v in out.items()},
                         {"torch": torch.__version__, "script": "gen_encoder_parity.py"})
print(f"wrote encoder_parity.safetensors: {n} tensors, {size} bytes of data")
torch.save(post_state, os.path.join(here, "encoder_post.pt"))
print("wrote encoder_post.pt: the post-norm layer's state dict, as torch.save writes it")
