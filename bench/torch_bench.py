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
p.add_argument("--workload", default="smallop", choices=["smallop", "mlp", "encoder", "mae_vitb", "bert_mlm", "metapt_first", "metapt_second", "llama_lm"])
p.add_argument("--device", default="cpu")
p.add_argument("--reps", type=int, default=7)
args = p.parse_args()
dev = torch.device("cuda:0" if args.device == "cuda" else "cpu")
torch.manual_seed(0)
check = [0.0]


def sync(x):
    return x.reshape(-1)[0].item()  # a device-to-host copy waits for the device


def timed_steps(steps, opt, loss_fn):
    """bench/gobench's timedSteps: a repetition of steps training steps (loss_fn's loss, backward,
    opt's step), seconds per step; the last loss is read back."""

    def run():
        start = time.perf_counter()
        for i in range(steps):
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i == steps - 1:
                check[0] = sync(loss)
        return (time.perf_counter() - start) / steps

    return run


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

    return timed_steps(steps, opt, lambda: nn.functional.mse_loss(model(x), y))


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

    return timed_steps(steps, opt, lambda: model(x, 0.75, torch.rand(batch, 196, device=dev))[0])


def bert_sizes(cuda_steps):
    """bench/gobench's benchBert: (vocab, hidden, layers, heads, ffn, batch, seq, steps)."""
    if dev.type == "cuda":
        return 30522, 768, 12, 12, 3072, 32, 128, cuda_steps
    return 30522, 256, 4, 4, 1024, 16, 128, 2


class Bert(nn.Module):
    """BERT's embeddings, post-norm GELU layers (nn.TransformerEncoderLayer, no dropout, the same
    maths as HF's BertLayer), the MLM head tied to the word embeddings and, with nsp, the pooler
    and the next-sentence head; HF's initialisation, as torchmods': N(0, 0.02), zero biases."""

    def __init__(self, V, H, L, A, I, nsp=False):
        super().__init__()
        self.H = H
        self.word, self.pos, self.typ = nn.Embedding(V, H), nn.Embedding(512, H), nn.Embedding(2, H)
        self.norm = nn.LayerNorm(H, eps=1e-12)
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(H, A, I, dropout=0.0, activation="gelu", batch_first=True,
                                                                layer_norm_eps=1e-12) for _ in range(L)])
        self.dense, self.hnorm = nn.Linear(H, H), nn.LayerNorm(H, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(V))
        if nsp:
            self.pooler, self.seq_rel = nn.Linear(H, H), nn.Linear(H, 2)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()

    def encode(self, ids, types):
        x = self.word(ids) + self.typ(types) + self.pos(torch.arange(ids.shape[1], device=ids.device))[None]
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def mlm_logits(self, x, at):
        """The vocabulary logits at the flat positions at only."""
        h = self.hnorm(nn.functional.gelu(self.dense(x.reshape(-1, self.H).index_select(0, at))))
        return nn.functional.linear(h, self.word.weight, self.bias)

    def nsp_logits(self, x):
        return self.seq_rel(torch.tanh(self.pooler(x[:, 0])))


def bert_step():
    """bench/gobench's bert_mlm: one masked-LM step, the loss on every 7th position, projected
    there only; AdamW."""
    V, H, L, A, I, B, S, steps = bert_sizes(20)
    model = Bert(V, H, L, A, I).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(V, (B, S), device=dev)
    pos = torch.arange(0, B * S, 7, device=dev)
    labels = ids.reshape(-1).index_select(0, pos)

    return timed_steps(steps, opt, lambda: nn.functional.cross_entropy(model.mlm_logits(model.encode(ids, torch.zeros_like(ids)), pos), labels))


def meta_step(second):
    """bench/gobench's metapt_first and metapt_second: one meta step with k = 1 on BERT with both
    pre-training heads: an inner SGD step (lr 1e-3) on batch 1's MLM loss with
    torch.autograd.grad (create_graph in second order), the MLM + NSP loss on batch 2 at the fast
    weights through functional_call, backward, AdamW."""
    from torch.nn.utils.stateless import functional_call  # torch.func.functional_call from 2.0
    V, H, L, A, I, B, S, steps = bert_sizes(10)

    class Pretraining(Bert):
        def forward(self, ids, types, labels, nsp, objectives):
            x = self.encode(ids, types)
            total = 0
            if "mlm" in objectives:
                flat = labels.reshape(-1)
                at = flat.ne(-100).nonzero().reshape(-1)
                total = total + nn.functional.cross_entropy(self.mlm_logits(x, at), flat.index_select(0, at))
            if "nsp" in objectives:
                total = total + nn.functional.cross_entropy(self.nsp_logits(x), nsp)
            return total

    model = Pretraining(V, H, L, A, I, nsp=True).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

    def batch():
        ids = torch.randint(V, (B, S), device=dev)
        types = (torch.arange(S, device=dev) >= S // 2).long().expand(B, S)
        labels = torch.full((B * S,), -100, device=dev, dtype=torch.long)
        labels[::7] = ids.reshape(-1)[::7]
        return ids, types, labels.reshape(B, S), (torch.arange(B, device=dev) % 2)

    b1, b2 = batch(), batch()
    names = [n for n, _ in model.named_parameters()]

    def meta_loss():
        params = [p for _, p in model.named_parameters()]
        inner = model(*b1, ("mlm",))
        grads = torch.autograd.grad(inner, params, create_graph=second, allow_unused=True)
        fast = {n: p if g is None else p - 1e-3 * g for n, p, g in zip(names, params, grads)}
        return functional_call(model, fast, (*b2, ("mlm", "nsp")))

    return timed_steps(steps, opt, meta_loss)


def llama_step():
    """bench/gobench's llama_lm: one causal-LM step of the transcription of HF's LlamaForCausalLM
    that torchmods' parity tests use (torchmods/testdata/gen_llama.py), AdamW."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "torchmods", "testdata"))
    from gen_llama import Config, ForCausalLM
    d = dict(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32, rms_norm_eps=1e-6, rope_theta=10000.0)
    B, S, steps = 8, 128, 2
    if dev.type == "cuda":
        d.update(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, head_dim=64)
        B, S, steps = 4, 512, 10
    model = ForCausalLM(Config(d)).to(dev)
    with torch.no_grad():  # HF's _init_weights: N(0, 0.02)
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0, 0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(d["vocab_size"], (B, S), device=dev)

    return timed_steps(steps, opt, lambda: model(ids, labels=ids)[1])


if args.workload == "bert_mlm":
    run = bert_step()
elif args.workload == "llama_lm":
    run = llama_step()
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
