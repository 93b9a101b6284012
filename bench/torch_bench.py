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
p.add_argument("--workload", default="smallop", choices=["smallop", "mlp", "encoder", "mae_vitb", "bert_mlm", "metapt_first", "metapt_second", "llama_lm", "pmlm"])
p.add_argument("--device", default="cpu")
p.add_argument("--reps", type=int, default=7)
p.add_argument("--inputs", help="pmlm: the packed batch bench/gobench -inputs wrote (safetensors)")
p.add_argument("--weights", help="pmlm: start from the weights bench/gobench -weights wrote and print the step-0 loss to stderr")
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


def read_safetensors(path):
    """{name: tensor} of a safetensors file (Debian has no safetensors package): an 8-byte
    little-endian header length, the JSON header, the raw little-endian data."""
    import struct
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for name, e in header.items():
        start, end = e["data_offsets"]
        raw = bytearray(b[8 + n + start:8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=torch.uint8).view(dtypes[e["dtype"]]).reshape(e["shape"])
    return out


def pmlm_step():
    """bench/gobench's pmlm: one UniLMv2 pre-training step on the packed pseudo-masked batch gobench
    wrote (--inputs): the forward pass of s2s-ft's BertModel with relative position bias (32 bins,
    max distance 128; the transcription of torchmods/testdata/gen_unilm.py, at bert_mlm's sizes,
    no dropout) with explicit positions and the 2-D mask applied as (1 - mask) * -10000, L_AE + L_PAR
    (each the mean cross-entropy over its positions, the vocabulary projection there only),
    backward, AdamW with torchmods' groups (no decay on biases and norms). Two rewrites equal in
    maths to s2s-ft's and the same ops as torchmods': q is scaled before q k^T, and the bias is
    looked up in rel_pos_bias.weight^T rather than multiplied with one_hot(buckets). Parameter
    names are torchmods' (HF's), so --weights loads gobench's initial weights."""
    import math
    if not args.inputs:
        raise SystemExit("torch_bench: pmlm needs --inputs FILE, the batch `gobench -workload pmlm -inputs FILE` writes")
    V, H, LAYERS, A, I, _, _, steps = bert_sizes(20)
    BINS, MAX_REL, EPS = 32, 128, 1e-12
    batch = {k: v.to(dev) for k, v in read_safetensors(args.inputs).items()}

    def bucket(rel):  # relative_position_bucket, bidirectional
        half = BINS // 2
        out = (rel > 0).long() * half
        n = torch.abs(rel)
        exact = half // 2
        large = exact + (torch.log(n.float() / exact) / math.log(MAX_REL / exact) * (half - exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, half - 1))
        return out + torch.where(n < exact, n, large)

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.word_embeddings = nn.Embedding(V, H, padding_idx=0)
            self.position_embeddings = nn.Embedding(512, H)
            self.token_type_embeddings = nn.Embedding(2, H)
            self.LayerNorm = nn.LayerNorm(H, eps=EPS)

        def forward(self, ids, types, pos):
            x = self.word_embeddings(ids) + self.position_embeddings(pos)
            return self.LayerNorm(x + self.token_type_embeddings(types))

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

        def forward(self, x, ext_mask, rel_pos):
            B, L, _ = x.shape
            split = lambda t: t.view(B, L, A, H // A).permute(0, 2, 1, 3)
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = (q / math.sqrt(H // A)) @ k.transpose(-1, -2)
            scores = scores + ext_mask
            scores = scores + rel_pos
            ctx = scores.softmax(-1) @ v
            return ctx.permute(0, 2, 1, 3).contiguous().view(B, L, H)

    class DenseNorm(nn.Module):  # BertSelfOutput and BertOutput
        def __init__(self, inp):
            super().__init__()
            self.dense = nn.Linear(inp, H)
            self.LayerNorm = nn.LayerNorm(H, eps=EPS)

        def forward(self, h, res):
            return self.LayerNorm(self.dense(h) + res)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.self, self.output = SelfAttention(), DenseNorm(H)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention, self.output = Attention(), DenseNorm(I)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(H, I)

        def forward(self, x, ext_mask, rel_pos):
            a = self.attention.output(self.attention.self(x, ext_mask, rel_pos), x)
            return self.output(nn.functional.gelu(self.intermediate.dense(a)), a)

    class Bert(nn.Module):  # s2s-ft's BertModel, no pooler
        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])
            self.rel_pos_bias = nn.Linear(BINS, A, bias=False)

        def forward(self, ids, types, pos, mask):
            ext = (1.0 - mask[:, None, :, :].float()) * -10000.0
            x = self.embeddings(ids, types, pos)
            rel = nn.functional.embedding(bucket(pos.unsqueeze(-2) - pos.unsqueeze(-1)), self.rel_pos_bias.weight.t())
            rel = rel.permute(0, 3, 1, 2)
            for layer in self.encoder.layer:
                x = layer(x, ext, rel)
            return x

    class ForMaskedLM(nn.Module):  # BertForMaskedLM: the LM head's decoder tied to the word embeddings
        def __init__(self):
            super().__init__()
            self.bert = Bert()
            self.cls = nn.Module()
            self.cls.predictions = nn.Module()
            self.cls.predictions.transform = nn.Module()
            self.cls.predictions.transform.dense = nn.Linear(H, H)
            self.cls.predictions.transform.LayerNorm = nn.LayerNorm(H, eps=EPS)
            self.cls.predictions.bias = nn.Parameter(torch.zeros(V))

        def logits(self, h):
            t = self.cls.predictions.transform
            h = t.LayerNorm(nn.functional.gelu(t.dense(h)))
            return nn.functional.linear(h, self.bert.embeddings.word_embeddings.weight, self.cls.predictions.bias)

        def forward(self, b):
            hidden = self.bert(b["ids"], b["types"], b["positions"], b["mask"]).reshape(-1, H)
            total = 0
            for lab in (b["ae"], b["par"]):
                at = lab.ne(-100).nonzero().reshape(-1)
                total = total + nn.functional.cross_entropy(self.logits(hidden.index_select(0, at)), lab.index_select(0, at))
            return total

    model = ForMaskedLM()
    with torch.no_grad():  # HF's _init_weights, as torchmods' BertInit
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
        model.bert.embeddings.word_embeddings.weight[0].zero_()
    if args.weights:
        model.load_state_dict(read_safetensors(args.weights))
    model = model.to(dev)
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1]},
                             {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}], lr=1e-4, weight_decay=0.01)
    if args.weights:
        import sys
        with torch.no_grad():
            print(f"torch_bench pmlm: batch {tuple(batch['ids'].shape)} packed, step-0 loss {model(batch).item():.6f}", file=sys.stderr)

    return timed_steps(steps, opt, lambda: model(batch))


if args.workload == "pmlm":
    run = pmlm_step()
elif args.workload == "bert_mlm":
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
