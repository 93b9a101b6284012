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
p.add_argument("--workload", default="smallop", choices=["smallop", "mlp", "encoder", "mae_vitb", "bert_mlm", "metapt_first", "metapt_second"])
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


def meta_step(second):
    """bench/gobench's metapt_first and metapt_second: one meta step with k = 1 on BERT with both
    pre-training heads (bert_mlm's sizes, no dropout): an inner SGD step (lr 1e-3) on batch 1's MLM
    loss with torch.autograd.grad (create_graph in second order), the MLM + NSP loss on batch 2 at
    the fast weights through functional_call, backward, AdamW."""
    from torch.nn.utils.stateless import functional_call  # torch.func.functional_call from 2.0
    V, H, L, A, I, B, S, steps = 30522, 256, 4, 4, 1024, 16, 128, 2
    if dev.type == "cuda":
        H, L, A, I, B, S, steps = 768, 12, 12, 3072, 32, 128, 10

    class BertForPreTraining(nn.Module):
        def __init__(self):
            super().__init__()
            self.word, self.pos, self.typ = nn.Embedding(V, H), nn.Embedding(512, H), nn.Embedding(2, H)
            self.norm = nn.LayerNorm(H, eps=1e-12)
            self.layers = nn.ModuleList([nn.TransformerEncoderLayer(H, A, I, dropout=0.0, activation="gelu", batch_first=True,
                                                                    layer_norm_eps=1e-12) for _ in range(L)])
            self.pooler = nn.Linear(H, H)
            self.dense, self.hnorm = nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12)
            self.bias = nn.Parameter(torch.zeros(V))
            self.seq_rel = nn.Linear(H, 2)

        def forward(self, ids, types, labels, nsp, objectives):
            x = self.word(ids) + self.typ(types) + self.pos(torch.arange(ids.shape[1], device=ids.device))[None]
            x = self.norm(x)
            for layer in self.layers:
                x = layer(x)
            total = 0
            if "mlm" in objectives:
                flat = labels.reshape(-1)
                at = flat.ne(-100).nonzero().reshape(-1)
                h = self.hnorm(nn.functional.gelu(self.dense(x.reshape(-1, H).index_select(0, at))))
                total = total + nn.functional.cross_entropy(nn.functional.linear(h, self.word.weight, self.bias), flat.index_select(0, at))
            if "nsp" in objectives:
                pooled = torch.tanh(self.pooler(x[:, 0]))
                total = total + nn.functional.cross_entropy(self.seq_rel(pooled), nsp)
            return total

    model = BertForPreTraining().to(dev)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def batch():
        ids = torch.randint(V, (B, S), device=dev)
        types = (torch.arange(S, device=dev) >= S // 2).long().expand(B, S)
        labels = torch.full((B * S,), -100, device=dev, dtype=torch.long)
        labels[::7] = ids.reshape(-1)[::7]
        return ids, types, labels.reshape(B, S), (torch.arange(B, device=dev) % 2)

    b1, b2 = batch(), batch()
    names = [n for n, _ in model.named_parameters()]

    def run():
        start = time.perf_counter()
        for i in range(steps):
            params = [p for _, p in model.named_parameters()]
            inner = model(*b1, ("mlm",))
            grads = torch.autograd.grad(inner, params, create_graph=second, allow_unused=True)
            fast = {n: p if g is None else p - 1e-3 * g for n, p, g in zip(names, params, grads)}
            loss = functional_call(model, fast, (*b2, ("mlm", "nsp")))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == steps - 1:
                check[0] = sync(loss)
        return (time.perf_counter() - start) / steps

    return run


if args.workload == "bert_mlm":
    run = bert_step()
elif args.workload in ("metapt_first", "metapt_second"):
    run = meta_step(args.workload == "metapt_second")
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
