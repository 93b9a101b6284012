"""Makes layer_parity.safetensors, the PyTorch reference for torchmods' smaller layers.

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 torchmods/testdata/gen_layer_parity.py

Each case "<case>" stores its parameters "<case>.<state_dict name>", input "<case>.x", output
"<case>.y", and for loss = sum(y * "<case>.g") the gradients "<case>.grad.x" (float inputs) and
"<case>.grad.<param>". The reference formulas are written out here from their sources: HF
LlamaRMSNorm and LlamaMLP, diffusers GEGLU, timm Mlp, HF rotate_half rotary embeddings, PEFT
LoRA, and MAE's numpy get_2d_sincos_pos_embed.
"""
import math
import os

import numpy as np
import torch
from torch import nn

import st_write

torch.manual_seed(99)
out = {}


def record(case, module, x, fn, float_input=True):
    if float_input:
        x = x.clone().requires_grad_(True)
    y = fn(x)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    for name, p in module.state_dict().items():
        out[f"{case}.{name}"] = p
    for name, p in module.named_parameters():
        if p.grad is not None:
            out[f"{case}.grad.{name}"] = p.grad
    out[f"{case}.x"] = x.detach()
    out[f"{case}.y"] = y.detach()
    out[f"{case}.g"] = g
    if float_input:
        out[f"{case}.grad.x"] = x.grad


class RMSNorm(nn.Module):  # HF LlamaRMSNorm
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d) + 0.5)
        self.eps = eps

    def forward(self, x):
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


m = RMSNorm(8)
record("rmsnorm", m, torch.randn(2, 3, 8), m)

m = nn.Embedding(10, 4)
record("embedding", m, torch.tensor([[1, 9, 0], [3, 3, 7]]), m, float_input=False)


class Mlp(nn.Module):  # timm Mlp, exact GELU
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 12), nn.Linear(12, 5)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x)))


m = Mlp()
record("mlp", m, torch.randn(3, 6), m)


class GEGLU(nn.Module):  # diffusers
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 2 * 7)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * nn.functional.gelu(gate)


m = GEGLU()
record("geglu", m, torch.randn(2, 4, 6), m)


class SwiGLU(nn.Module):  # HF LlamaMLP
    def __init__(self):
        super().__init__()
        self.gate_proj = nn.Linear(6, 10, bias=False)
        self.up_proj = nn.Linear(6, 10, bias=False)
        self.down_proj = nn.Linear(10, 6, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


m = SwiGLU()
record("swiglu", m, torch.randn(2, 3, 6), m)


def rotate_half(x):  # HF
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotary(x, pos, base=10000.0):
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(pos.float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


pos = torch.tensor([0, 1, 2, 7, 100])
out["rotary.pos"] = pos
record("rotary", nn.Module(), torch.randn(2, 3, 5, 8), lambda x: rotary(x, pos))


class LoRA(nn.Module):  # PEFT's Linear with one adapter, r=4, alpha=8, no dropout
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 6) * 0.3, requires_grad=False)
        self.bias = nn.Parameter(torch.randn(5) * 0.1, requires_grad=False)
        self.lora_A = nn.Linear(6, 4, bias=False)
        self.lora_B = nn.Linear(4, 5, bias=False)
        nn.init.normal_(self.lora_B.weight, std=0.2)  # non-zero, so the update is tested

    def forward(self, x):
        return nn.functional.linear(x, self.weight, self.bias) + self.lora_B(self.lora_A(x)) * (8 / 4)


m = LoRA()
record("lora", m, torch.randn(3, 6), m)


class LlamaAttention(nn.Module):  # HF LlamaAttention: 4 query heads, 2 key/value heads, rotary, causal
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(16, 16, bias=False)
        self.k_proj = nn.Linear(16, 8, bias=False)
        self.v_proj = nn.Linear(16, 8, bias=False)
        self.o_proj = nn.Linear(16, 16, bias=False)

    def forward(self, x):
        B, L, _ = x.shape
        H, KVH, hd = 4, 2, 4
        q = self.q_proj(x).view(B, L, H, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, L, KVH, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, L, KVH, hd).transpose(1, 2)
        pos = torch.arange(L)
        q, k = rotary(q, pos), rotary(k, pos)

        def repeat_kv(t, n):  # HF
            b, h, l, d = t.shape
            return t[:, :, None, :, :].expand(b, h, n, l, d).reshape(b, h * n, l, d)

        k, v = repeat_kv(k, H // KVH), repeat_kv(v, H // KVH)
        att = q @ k.transpose(2, 3) / hd ** 0.5
        att = att.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
        att = att.softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, L, H * hd))


m = LlamaAttention()
record("gqa", m, torch.randn(2, 6, 16), m)


class TimmAttention(nn.Module):  # timm Attention (fused qkv with bias) plus an additive bias
    def __init__(self, bias):
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.proj = nn.Linear(16, 16)
        self.extra = bias

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, 4, C // 4).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * (C // 4) ** -0.5) @ k.transpose(-2, -1) + self.extra
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


rel = torch.randn(4, 5, 5)  # [heads, L, S], as a relative-position bias
out["timm_attn.input_bias"] = rel
m = TimmAttention(rel)
record("timm_attn", m, torch.randn(2, 5, 16), m)


# activations on the same input: exact GELU, tanh GELU, QuickGELU (OpenAI CLIP), SiLU
xa = torch.linspace(-6, 6, 49).reshape(7, 7)
record("act_gelu_tanh", nn.Module(), xa, lambda x: nn.functional.gelu(x, approximate="tanh"))
record("act_quick_gelu", nn.Module(), xa, lambda x: x * torch.sigmoid(1.702 * x))
record("act_silu", nn.Module(), xa, nn.functional.silu)

# cross-attention through nn.MultiheadAttention: queries [2, 3, 8] attend to a context [2, 5, 8]
mha = nn.MultiheadAttention(8, 2, batch_first=True)
with torch.no_grad():
    mha.in_proj_bias.uniform_(-0.2, 0.2)
context = torch.randn(2, 5, 8)
out["cross.input_context"] = context
record("cross", mha, torch.randn(2, 3, 8), lambda x: mha(x, context, context, need_weights=False)[0])


# MAML: one inner SGD step with create_graph, then the outer loss with the fast weights; the
# gradients of the outer loss reach the initial weights through the inner step (second order).
maml = nn.Linear(3, 2)
xi, yi, xo, yo = torch.randn(4, 3), torch.randn(4, 2), torch.randn(5, 3), torch.randn(5, 2)
inner = nn.functional.mse_loss(maml(xi), yi)
gw, gb = torch.autograd.grad(inner, [maml.weight, maml.bias], create_graph=True)
fw, fb = maml.weight - 0.1 * gw, maml.bias - 0.1 * gb
outer = nn.functional.mse_loss(nn.functional.linear(xo, fw, fb), yo)
outer.backward()
for name, t in [("weight", maml.weight), ("bias", maml.bias)]:
    out[f"maml.{name}"] = t.detach()
    out[f"maml.grad.{name}"] = t.grad
for name, t in [("xi", xi), ("yi", yi), ("xo", xo), ("yo", yo)]:
    out[f"maml.input_{name}"] = t
out["maml.outer"] = outer.detach().reshape(1)


class PatchEmbed(nn.Module):  # timm PatchEmbed: image 8, patch 4, 3 channels, width 6
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, 6, kernel_size=4, stride=4)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


m = PatchEmbed()
record("patch", m, torch.randn(2, 3, 8, 8), m)


def t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):  # HF T5
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, large)
    return relative_buckets


rel = torch.arange(-300, 301)
out["t5.rel"] = rel
out["t5.bucket_bi"] = t5_bucket(rel, True, 32, 128)
out["t5.bucket_uni"] = t5_bucket(rel, False, 32, 128)
emb = nn.Embedding(32, 4)
ctx, mem = torch.arange(5)[:, None], torch.arange(7)[None, :]
out["t5bias.relative_attention_bias.weight"] = emb.weight.detach()
out["t5bias.y"] = emb(t5_bucket(mem - ctx)).permute([2, 0, 1]).unsqueeze(0).detach()


# MAE's numpy sin-cos table (models_mae.py / util/pos_embed.py), grid 4, dim 8, with cls token
def get_1d(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out_ = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out_), np.cos(out_)], axis=1)


def get_2d(embed_dim, grid_size, cls_token):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([get_1d(embed_dim // 2, grid[0]), get_1d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


out["sincos2d.y"] = torch.from_numpy(get_2d(8, 4, True)).float()

here = os.path.dirname(os.path.abspath(__file__))
n, size = st_write.write(os.path.join(here, "layer_parity.safetensors"), out,
                        {"torch": torch.__version__, "script": "gen_layer_parity.py"})
print(f"wrote layer_parity.safetensors: {n} tensors, {size} bytes of data")
