"""Makes encoder_parity.safetensors, the PyTorch reference for torchmods' parity tests.

Run with Debian's python3-torch (1.13.1, the libtorch the Go side links):
    /usr/bin/python3 torchmods/testdata/gen_encoder_parity.py

Two nn.TransformerEncoderLayer(batch_first=True, dropout=0): "post" (post-norm, ReLU, no mask)
and "pre" (norm_first, GELU, a causal bool mask). For each: its state_dict under "<case>.",
the input "<case>.x", the output "<case>.y", and, for loss = sum(y * "<case>.g"), the gradient of
the input "<case>.grad.x" and of every parameter "<case>.grad.<name>". float32 throughout.
The file is written by hand in the safetensors format (Debian has no safetensors package).
"""
import json
import os
import struct

import torch
from torch import nn

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
    for name, p in layer.named_parameters():
        out[f"{case}.grad.{name}"] = p.grad
    out[f"{case}.x"] = x.detach()
    out[f"{case}.y"] = y.detach()
    out[f"{case}.g"] = g
    out[f"{case}.grad.x"] = x.grad

header, blobs, off = {}, [], 0
for name in sorted(out):
    t = out[name].detach().contiguous().to(torch.float32)
    b = t.numpy().tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
header["__metadata__"] = {"torch": torch.__version__, "script": "gen_encoder_parity.py"}
hj = json.dumps(header).encode()
hj += b" " * (-len(hj) % 8)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encoder_parity.safetensors")
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
print(f"wrote {path}: {len(out)} tensors, {off} bytes of data")
