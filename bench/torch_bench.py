"""PyTorch twin of bench/gobench: the same workloads on the same libtorch.

Prints one JSON line: median seconds per iteration and peak RSS.
Run by scripts/bench_vs_pytorch.sh; needs torch (Debian: python3-torch).
"""
import argparse
import json
import resource
import time

import torch
from torch import nn

p = argparse.ArgumentParser()
p.add_argument("--workload", default="smallop", choices=["smallop", "mlp", "encoder", "mae_vitb", "bert_mlm"])
p.add_argument("--device", default="cpu")
p.add_argument("--reps", type=int, default=7)
args = p.parse_args()
dev = torch.device("cuda:0" if args.device == "cuda" else "cpu")
torch.manual_seed(0)
check = [0.0]


def sync(x):
    return x.reshape(-1)[0].item()  # a device-to-host copy waits for the device


def small_op():
    a = torch.ones(16, device=dev)
    b = torch.ones(16, device=dev)
    n = 20000

    def run():
        start = time.perf_counter()
        for _ in range(n):
            c = a + b
            del c
        check[0] = sync(a)
        return (time.perf_counter() - start) / n

    return run


def train_step(model, in_shape, out_shape):
    model = model.to(dev)
    # gotch's AdamW is libtorch's C++ one with these defaults: lr 1e-4, betas (0.9, 0.999), wd 0.01
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    x = torch.randn(in_shape, device=dev)
    y = torch.randn(out_shape, device=dev)
    steps = 50 if dev.type == "cuda" else 5

    def run():
        start = time.perf_counter()
        for i in range(steps):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == steps - 1:
                check[0] = sync(loss)
        return (time.perf_counter() - start) / steps

    return run


def mae_step():
    """bench/gobench's mae_vitb: the official ViT-B/16 MAE (mae/testdata/mae_ref.py), one pre-training step."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "mae", "testdata"))
    from mae_ref import MaskedAutoencoderViT
    model = MaskedAutoencoderViT(224, 16, 3, 768, 12, 12, 512, 8, 16, 4.0, True).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    batch, steps = (64, 10) if dev.type == "cuda" else (4, 2)
    x = torch.randn(batch, 3, 224, 224, device=dev)

    def run():
        start = time.perf_counter()
        for i in range(steps):
            noise = torch.rand(batch, 196, device=dev)
            loss = model(x, 0.75, noise)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == steps - 1:
                check[0] = sync(loss)
        return (time.perf_counter() - start) / steps

    return run


def bert_step():
    """bench/gobench's bert_mlm: BERT's embeddings, post-norm GELU layers (nn.TransformerEncoderLayer,
    no dropout, the same maths as HF's BertLayer) and MLM head tied to the word embeddings; the loss
    on every 7th position, projected there only; AdamW."""
    V, H, L, A, I, B, S, steps = 30522, 256, 4, 4, 1024, 16, 128, 2
    if dev.type == "cuda":
        H, L, A, I, B, S, steps = 768, 12, 12, 3072, 32, 128, 20

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word, self.pos, self.typ = nn.Embedding(V, H), nn.Embedding(512, H), nn.Embedding(2, H)
            self.norm = nn.LayerNorm(H, eps=1e-12)
            self.layers = nn.ModuleList([nn.TransformerEncoderLayer(H, A, I, dropout=0.0, activation="gelu", batch_first=True,
                                                                    layer_norm_eps=1e-12) for _ in range(L)])
            self.dense, self.hnorm = nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12)
            self.bias = nn.Parameter(torch.zeros(V))

        def forward(self, ids, pos):
            x = self.word(ids) + self.typ(torch.zeros_like(ids)) + self.pos(torch.arange(ids.shape[1], device=ids.device))[None]
            x = self.norm(x)
            for layer in self.layers:
                x = layer(x)
            h = x.reshape(-1, H).index_select(0, pos)
            h = self.hnorm(nn.functional.gelu(self.dense(h)))
            return nn.functional.linear(h, self.word.weight, self.bias)

    model = Bert().to(dev)
    with torch.no_grad():  # HF's BERT initialisation, as torchmods': N(0, 0.02) weights, zero biases
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(V, (B, S), device=dev)
    pos = torch.arange(0, B * S, 7, device=dev)
    labels = ids.reshape(-1).index_select(0, pos)

    def run():
        start = time.perf_counter()
        for i in range(steps):
            loss = nn.functional.cross_entropy(model(ids, pos), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == steps - 1:
                check[0] = sync(loss)
        return (time.perf_counter() - start) / steps

    return run


if args.workload == "bert_mlm":
    run = bert_step()
elif args.workload == "mae_vitb":
    run = mae_step()
elif args.workload == "smallop":
    run = small_op()
elif args.workload == "mlp":
    run = train_step(nn.Sequential(nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 1024), nn.ReLU(),
                                   nn.Linear(1024, 1024)), (512, 1024), (512, 1024))
else:
    layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, dropout=0.0, batch_first=True)
    run = train_step(layer, (32, 128, 256), (32, 128, 256))

run()  # warm-up
times = sorted(run() for _ in range(args.reps))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"workload": args.workload, "impl": "pytorch", "device": args.device,
                  "median_s": times[len(times) // 2], "peak_rss": peak, "check": check[0]}))
