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
p.add_argument("--workload", default="smallop", choices=["smallop", "mlp", "encoder", "mae_vitb", "bert_mlm", "metapt_first", "metapt_second", "llama_lm", "pmlm",
                                                  "dense_biencoder", "monobert", "clip", "bert_dense_infer", "bert_pruned_infer", "vqa_step",
                                                  "vampnet_step"])
p.add_argument("--device", default="cpu")
p.add_argument("--reps", type=int, default=7)
p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
               help="bf16: the forward pass under torch.autocast to bfloat16 (mlp, encoder, mae_vitb, bert_mlm, llama_lm)")
p.add_argument("--inputs", help="pmlm, dense_biencoder, monobert, clip, bert_*_infer, vqa_step, vampnet_step: the batch bench/gobench -inputs wrote (safetensors)")
p.add_argument("--weights", help="pmlm, dense_biencoder, monobert, clip, bert_*_infer, vqa_step, vampnet_step: start from the weights bench/gobench -weights wrote and print the step-0 loss to stderr")
p.add_argument("--mumc", help="vqa_step: a checkout of github.com/pengfeiliHEU/MUMC at 27b544d0 whose models/ is run "
                              "(default: $MUMC_DIR)")
p.add_argument("--vampnet", help="vampnet_step: a checkout of github.com/hugofloresgarcia/vampnet at dce1655e (branch "
                                 "ismir-2023) whose vampnet/modules/transformer.py is run (default: $VAMPNET_DIR)")
p.add_argument("--loralib", help="vampnet_step: a folder holding loralib/ of github.com/microsoft/LoRA at c4593f06 "
                                 "(default: $LORALIB_DIR)")
p.add_argument("--einops", help="vampnet_step: a folder holding einops/ of github.com/arogozhnikov/einops v0.6.1 "
                                "(default: $EINOPS_DIR)")
args = p.parse_args()
if args.precision == "bf16" and args.workload not in ("mlp", "encoder", "mae_vitb", "bert_mlm", "llama_lm"):
    p.error(f"--precision bf16 applies to mlp, encoder, mae_vitb, bert_mlm and llama_lm, not {args.workload}")
dev = torch.device("cuda:0" if args.device == "cuda" else "cpu")
torch.manual_seed(0)
check = [0.0]


def sync(x):
    return x.reshape(-1)[0].item()  # a device-to-host copy waits for the device


def timed_steps(steps, opt, loss_fn, clip=None, after_step=None):
    """bench/gobench's timedSteps: a repetition of steps training steps (loss_fn's loss, backward,
    with clip the gradients' global norm clipped to it as train.Session does, opt's step, then
    after_step() if given, e.g. a scheduler's step), seconds per step; the last loss is read back."""
    params = [p for g in opt.param_groups for p in g["params"]]

    def run():
        start = time.perf_counter()
        for i in range(steps):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            if after_step is not None:
                after_step()
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


def bucket(rel, bins, max_rel):
    """UniLMv2's relative_position_bucket, bidirectional (torchmods.RelativePositionBucket)."""
    import math
    half = bins // 2
    out = (rel > 0).long() * half
    n = torch.abs(rel)
    exact = half // 2
    large = exact + (torch.log(n.float() / exact) / math.log(max_rel / exact) * (half - exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, half - 1))
    return out + torch.where(n < exact, n, large)


class HFBert(nn.Module):
    """HF's BertModel with HF's parameter names, which are torchmods' too, so that --weights loads
    gobench's initial weights (load_state_dict, strict): embeddings, post-norm GELU layers, no
    dropout; with pooler, BertPooler (pooler.dense); with rel_bins, UniLMv2's relative position
    bias (rel_pos_bias, as s2s-ft's BertModel; the transcription of torchmods/testdata/gen_unilm.py).
    The maths is torchmods' op for op where it matters: q is scaled before q k^T, a [B, L] padding
    mask fills the scores of padded keys with -inf, a [B, L, L] mask adds (1 - mask) * -10000
    (UniLM's), and the bias is looked up in rel_pos_bias.weight^T rather than multiplied with
    one_hot(buckets). Initialised as HF's _init_weights and torchmods' BertInit: N(0, 0.02)
    weights, zero biases, the [PAD] row zero."""

    class Embeddings(nn.Module):
        def __init__(self, V, H):
            super().__init__()
            self.word_embeddings = nn.Embedding(V, H, padding_idx=0)
            self.position_embeddings = nn.Embedding(512, H)
            self.token_type_embeddings = nn.Embedding(2, H)
            self.LayerNorm = nn.LayerNorm(H, eps=1e-12)

        def forward(self, ids, types, pos):
            return self.LayerNorm(self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos))

    class SelfAttention(nn.Module):
        def __init__(self, H, A):
            super().__init__()
            self.H, self.A = H, A
            self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

        def forward(self, x, mask, rel_pos):
            import math
            B, L, H = x.shape
            split = lambda t: t.view(B, L, self.A, H // self.A).permute(0, 2, 1, 3)
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            scores = (q / math.sqrt(H // self.A)) @ k.transpose(-1, -2)
            if rel_pos is not None:
                scores = scores + rel_pos
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
            ctx = scores.softmax(-1) @ v
            return ctx.permute(0, 2, 1, 3).contiguous().view(B, L, H)

    class DenseNorm(nn.Module):  # BertSelfOutput and BertOutput
        def __init__(self, inp, H):
            super().__init__()
            self.dense = nn.Linear(inp, H)
            self.LayerNorm = nn.LayerNorm(H, eps=1e-12)

        def forward(self, h, res):
            return self.LayerNorm(self.dense(h) + res)

    class Layer(nn.Module):
        def __init__(self, H, A, I):
            super().__init__()
            self.attention = nn.Module()
            self.attention.self, self.attention.output = HFBert.SelfAttention(H, A), HFBert.DenseNorm(H, H)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(H, I)
            self.output = HFBert.DenseNorm(I, H)

        def forward(self, x, mask, rel_pos):
            a = self.attention.output(self.attention.self(x, mask, rel_pos), x)
            return self.output(nn.functional.gelu(self.intermediate.dense(a)), a)

    def __init__(self, V, H, L, A, I, pooler=False, rel_bins=0, max_rel=0):
        super().__init__()
        self.embeddings = HFBert.Embeddings(V, H)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([HFBert.Layer(H, A, I) for _ in range(L)])
        if pooler:
            self.pooler = nn.Module()
            self.pooler.dense = nn.Linear(H, H)
        self.rel = (rel_bins, max_rel)
        if rel_bins:
            self.rel_pos_bias = nn.Linear(rel_bins, A, bias=False)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            self.embeddings.word_embeddings.weight[0].zero_()

    def forward(self, ids, types=None, pos=None, mask=None):
        """The hidden states [B, L, H] of ids [B, L]; types None for zeros, pos None for 0..L-1,
        mask None, [B, L] (nonzero = a real token) or [B, L, L] (nonzero = query i may attend key j)."""
        if types is None:
            types = torch.zeros_like(ids)
        if pos is None:
            pos = torch.arange(ids.shape[1], device=ids.device)[None]
        if mask is not None:
            if mask.dim() == 2:
                mask = (mask == 0)[:, None, None, :]
            else:
                mask = (1.0 - mask[:, None, :, :].float()) * -10000.0
        x = self.embeddings(ids, types, pos)
        rel = None
        if self.rel[0]:
            rel = nn.functional.embedding(bucket(pos.unsqueeze(-2) - pos.unsqueeze(-1), *self.rel), self.rel_pos_bias.weight.t())
            rel = rel.permute(0, 3, 1, 2)
        for layer in self.encoder.layer:
            x = layer(x, mask, rel)
        return x

    def pool(self, x):
        return torch.tanh(self.pooler.dense(x[:, 0]))


def adamw(model, eps=1e-8, weight_decay=0.01, betas=(0.9, 0.999)):
    """AdamW at lr 1e-4 (gobench's timedSteps') over torchmods' groups, as train.NewAdamW makes
    them: no weight decay on biases and norms (parameters of one dimension)."""
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1]},
                              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                             lr=1e-4, betas=betas, eps=eps, weight_decay=weight_decay)


def need_inputs(workload):
    """The batch gobench wrote with -inputs, on the device."""
    if not args.inputs:
        raise SystemExit(f"torch_bench: {workload} needs --inputs FILE, the batch `gobench -workload {workload} -inputs FILE` writes")
    return {k: v.to(dev) for k, v in read_safetensors(args.inputs).items()}


def load_weights(model, workload, shape, loss_fn, may_miss=None):
    """With --weights: gobench's initial weights into model, and the step-0 loss to stderr. Every name
    must match (strict), but those for which may_miss(name) is true may be absent from the file."""
    if args.weights:
        import sys
        if may_miss is None:
            model.load_state_dict(read_safetensors(args.weights))
        else:
            res = model.load_state_dict(read_safetensors(args.weights), strict=False)
            bad = [k for k in res.missing_keys if not may_miss(k)] + list(res.unexpected_keys)
            if bad:
                raise SystemExit(f"torch_bench {workload}: --weights does not match the model: {bad[:8]}")
        with torch.no_grad():
            print(f"torch_bench {workload}: {shape}, step-0 loss {loss_fn().item():.6f}", file=sys.stderr)


def pmlm_step():
    """bench/gobench's pmlm: one UniLMv2 pre-training step on the packed pseudo-masked batch gobench
    wrote (--inputs): the forward pass of s2s-ft's BertModel with relative position bias (32 bins,
    max distance 128; HFBert, at bert_mlm's sizes, no dropout) with explicit positions and the 2-D
    mask, L_AE + L_PAR (each the mean cross-entropy over its positions, the vocabulary projection
    there only), backward, AdamW with torchmods' groups (no decay on biases and norms). Parameter
    names are torchmods' (HF's), so --weights loads gobench's initial weights."""
    V, H, LAYERS, A, I, _, _, steps = bert_sizes(20)
    batch = need_inputs("pmlm")

    class ForMaskedLM(nn.Module):  # BertForMaskedLM: the LM head's decoder tied to the word embeddings
        def __init__(self):
            super().__init__()
            self.bert = HFBert(V, H, LAYERS, A, I, rel_bins=32, max_rel=128)
            self.cls = nn.Module()
            self.cls.predictions = nn.Module()
            self.cls.predictions.transform = nn.Module()
            self.cls.predictions.transform.dense = nn.Linear(H, H)
            self.cls.predictions.transform.LayerNorm = nn.LayerNorm(H, eps=1e-12)
            self.cls.predictions.bias = nn.Parameter(torch.zeros(V))
            with torch.no_grad():
                self.cls.predictions.transform.dense.weight.normal_(0, 0.02)
                self.cls.predictions.transform.dense.bias.zero_()

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

    model = ForMaskedLM().to(dev)
    load_weights(model, "pmlm", f"batch {tuple(batch['ids'].shape)} packed", lambda: model(batch))
    opt = adamw(model)

    return timed_steps(steps, opt, lambda: model(batch))


def dense_step():
    """bench/gobench's dense_biencoder: one ir.dense step of DPR's bi-encoder on the batch gobench
    wrote (--inputs): two HFBert towers named as ir's separate towers (HF's DPRQuestionEncoder and
    DPRContextEncoder: question_encoder.bert_model.*, ctx_encoder.bert_model.*), [CLS] vectors, dot
    product, every query against every passage, the excluded columns (but a query's own positive)
    at -inf, cross-entropy with each query's positive as target (DPR's BiEncoderNllLoss, ir's
    ContrastiveLoss at temperature 1), backward, clip_grad_norm_ at 2.0 and AdamW (eps 1e-8, no
    weight decay): ir.DefaultDense's optimisation. One step a repetition on CPU, as gobench's."""
    V, H, LAYERS, A, I, _, _, steps = bert_sizes(20)
    steps = steps if dev.type == "cuda" else 1
    b = need_inputs("dense_biencoder")
    exclude = b["exclude"].bool()
    exclude[torch.arange(exclude.shape[0], device=dev), b["positives"]] = False

    class BiEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.question_encoder, self.ctx_encoder = nn.Module(), nn.Module()
            self.question_encoder.bert_model = HFBert(V, H, LAYERS, A, I)
            self.ctx_encoder.bert_model = HFBert(V, H, LAYERS, A, I)

        def forward(self):
            q = self.question_encoder.bert_model(b["q_ids"], mask=b["q_mask"])[:, 0]
            p = self.ctx_encoder.bert_model(b["p_ids"], mask=b["p_mask"])[:, 0]
            scores = (q @ p.t()).masked_fill(exclude, float("-inf"))
            return nn.functional.cross_entropy(scores, b["positives"])

    model = BiEncoder().to(dev)
    load_weights(model, "dense_biencoder", f"{tuple(b['q_ids'].shape)} queries against {tuple(b['p_ids'].shape)} passages", model)
    opt = adamw(model, eps=1e-8, weight_decay=0.0)

    return timed_steps(steps, opt, model, clip=2.0)


def monobert_step():
    """bench/gobench's monobert: one ir.rerank step of monoBERT's cross-encoder on the pairs gobench
    wrote (--inputs, [CLS] q [SEP] p [SEP] with segment ids and padding): HF's
    BertForSequenceClassification with 2 labels (bert.* with the pooler, classifier.*), the
    pointwise loss (cross-entropy over not relevant, relevant), backward, clip_grad_norm_ at 1.0
    and AdamW (betas 0.9/0.999, eps 1e-6, weight decay 0.01 but not on biases and norms):
    ir.DefaultRerankConfig's optimisation."""
    V, H, LAYERS, A, I, _, _, steps = bert_sizes(20)
    b = need_inputs("monobert")

    class CrossEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = HFBert(V, H, LAYERS, A, I, pooler=True)
            self.classifier = nn.Linear(H, 2)
            with torch.no_grad():
                self.classifier.weight.normal_(0, 0.02)
                self.classifier.bias.zero_()

        def forward(self):
            logits = self.classifier(self.bert.pool(self.bert(b["ids"], b["types"], mask=b["mask"])))
            return nn.functional.cross_entropy(logits, b["labels"])

    model = CrossEncoder().to(dev)
    load_weights(model, "monobert", f"{tuple(b['ids'].shape)} pairs", model)
    opt = adamw(model, eps=1e-6, weight_decay=0.01)

    return timed_steps(steps, opt, model, clip=1.0)


# OpenAI's CLIP, the parts of clip/model.py (github.com/openai/CLIP at commit
# d05afc436d78f1c48dc0dbf8e5980a9d471f35f6, MIT licence, Copyright (c) 2021 OpenAI) that a ViT CLIP
# trained in float32 needs, transcribed: the same classes, parameter names and initialisation, so
# that --weights loads gobench's initial weights (torchmods' CLIP keeps model.py's names) and, without
# it, the model starts as model.py's would. Left out: ModifiedResNet and its AttentionPool2d,
# convert_weights and build_model (fp16 and loading released archives), and the dtype casts, which
# do nothing in float32.


class CLIPLayerNorm(nn.LayerNorm):
    """model.py's LayerNorm: computed in float32 (fp16 inputs are cast; float32 ones are unchanged)."""

    def forward(self, x):
        orig_type = x.dtype
        ret = super().forward(x.type(torch.float32))
        return ret.type(orig_type)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask=None):
        super().__init__()
        from collections import OrderedDict
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = CLIPLayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, d_model * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(d_model * 4, d_model))
        ]))
        self.ln_2 = CLIPLayerNorm(d_model)
        self.attn_mask = attn_mask

    def attention(self, x):
        self.attn_mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
        return self.attn(x, x, x, need_weights=False, attn_mask=self.attn_mask)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class CLIPTransformer(nn.Module):  # model.py's Transformer
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(in_channels=3, out_channels=width, kernel_size=patch_size, stride=patch_size, bias=False)

        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = CLIPLayerNorm(width)

        self.transformer = CLIPTransformer(width, layers, heads)

        self.ln_post = CLIPLayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)  # shape = [*, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1)  # shape = [*, width, grid ** 2]
        x = x.permute(0, 2, 1)  # shape = [*, grid ** 2, width]
        x = torch.cat([self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device), x], dim=1)  # shape = [*, grid ** 2 + 1, width]
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)

        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD

        x = self.ln_post(x[:, 0, :])

        if self.proj is not None:
            x = x @ self.proj

        return x


class CLIP(nn.Module):
    """model.py's CLIP with a vision transformer (vision_layers an int; width // 64 heads)."""

    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                 context_length, vocab_size, transformer_width, transformer_heads, transformer_layers):
        super().__init__()
        import numpy as np

        self.context_length = context_length

        vision_heads = vision_width // 64
        self.visual = VisionTransformer(
            input_resolution=image_resolution,
            patch_size=vision_patch_size,
            width=vision_width,
            layers=vision_layers,
            heads=vision_heads,
            output_dim=embed_dim
        )

        self.transformer = CLIPTransformer(
            width=transformer_width,
            layers=transformer_layers,
            heads=transformer_heads,
            attn_mask=self.build_attention_mask()
        )

        self.vocab_size = vocab_size
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(self.context_length, transformer_width))
        self.ln_final = CLIPLayerNorm(transformer_width)

        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))

        self.initialize_parameters()

    def initialize_parameters(self):
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

        proj_std = (self.transformer.width ** -0.5) * ((2 * self.transformer.layers) ** -0.5)
        attn_std = self.transformer.width ** -0.5
        fc_std = (2 * self.transformer.width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)

        if self.text_projection is not None:
            nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

    def build_attention_mask(self):
        # lazily create causal attention mask, with full attention between the vision tokens
        # pytorch uses additive attention mask; fill with -inf
        mask = torch.empty(self.context_length, self.context_length)
        mask.fill_(float("-inf"))
        mask.triu_(1)  # zero out the lower diagonal
        return mask

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(image.type(self.dtype))

    def encode_text(self, text):
        x = self.token_embedding(text).type(self.dtype)  # [batch_size, n_ctx, d_model]

        x = x + self.positional_embedding.type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)

        # x.shape = [batch_size, n_ctx, transformer.width]
        # take features from the eot embedding (eot_token is the highest number in each sequence)
        x = x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

        return x

    def forward(self, image, text):
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)

        # normalized features
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)

        # cosine similarity as logits
        logit_scale = self.logit_scale.exp()
        logits_per_image = logit_scale * image_features @ text_features.t()
        logits_per_text = logits_per_image.t()

        # shape = [global_batch_size, global_batch_size]
        return logits_per_image, logits_per_text


def clip_sizes():
    """bench/gobench's clipSizes: (CLIP's arguments, batch, steps per repetition)."""
    if dev.type == "cuda":  # ViT-B/16
        return dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=16,
                    context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12), 128, 10
    return dict(embed_dim=256, image_resolution=112, vision_layers=6, vision_width=384, vision_patch_size=16,
                context_length=77, vocab_size=49408, transformer_width=256, transformer_heads=4, transformer_layers=4), 32, 1


def clip_step():
    """bench/gobench's clip: one CLIP pre-training step on the images and token ids gobench wrote
    (--inputs): model.py's CLIP forward, the symmetric contrastive loss of OpenAI's training code and
    open_clip's ClipLoss ((cross_entropy(logits_per_image, arange(B)) + cross_entropy(logits_per_text,
    arange(B))) / 2), backward, AdamW with the paper's betas 0.9/0.98, eps 1e-6 and weight decay 0.2,
    none on parameters of fewer than two dimensions (open_clip's exclusion; train.NewAdamW's groups).
    No logit_scale clamp after the step, as gobench (a no-op this far from ln 100)."""
    kw, B, steps = clip_sizes()
    b = need_inputs("clip")
    model = CLIP(**kw).to(dev)
    labels = torch.arange(B, device=dev)

    def loss():
        logits_per_image, logits_per_text = model(b["images"], b["text"])
        return (nn.functional.cross_entropy(logits_per_image, labels) + nn.functional.cross_entropy(logits_per_text, labels)) / 2

    r = kw["image_resolution"]
    load_weights(model, "clip", f"{B} images of {r} px and {B} texts of {kw['context_length']}", loss)
    opt = adamw(model, eps=1e-6, weight_decay=0.2, betas=(0.9, 0.98))

    return timed_steps(steps, opt, loss)


# bench/gobench's cap.go: BERT-base inference before and after CAP's structured pruning at 90%
# sparsity (capKeptHeads, capKeptFFN: 15 of 144 heads, 3,687 of 36,864 neurons, at least one head a
# layer, as cap.PruningSequence([90]) leaves them).
CAP_KEPT_HEADS = [2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1]
CAP_KEPT_FFN = [520, 480, 450, 420, 390, 350, 310, 270, 220, 160, 80, 37]


class CapBert(nn.Module):
    """HF's BertModel with the pooler after prune_heads, and with feed-forwards narrowed as cap.Shrink
    narrows them: layer l has heads[l] heads of width H // A (query, key and value H -> heads[l] * 64,
    the attention output heads[l] * 64 -> H) and a feed-forward of inters[l] neurons; post-norm,
    GELU, no dropout. HF's (and torchmods') parameter names, so that --weights loads gobench's initial
    weights; HFBert's embeddings, output blocks and initialisation. Attention is
    scaled_dot_product_attention where torch has it (2.0 on), as torchmods' Attention uses the fused op
    where libtorch has it, else HFBert's matmul path (q scaled first, padded keys at -inf)."""

    class SelfAttention(nn.Module):
        def __init__(self, H, A, hd):
            super().__init__()
            self.A, self.hd = A, hd
            self.query, self.key, self.value = nn.Linear(H, A * hd), nn.Linear(H, A * hd), nn.Linear(H, A * hd)

        def forward(self, x, pad):
            import math
            B, L, _ = x.shape
            split = lambda t: t.view(B, L, self.A, self.hd).permute(0, 2, 1, 3)
            q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
            if hasattr(nn.functional, "scaled_dot_product_attention"):
                ctx = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=~pad)
            else:
                scores = (q / math.sqrt(self.hd)) @ k.transpose(-1, -2)
                ctx = scores.masked_fill(pad, float("-inf")).softmax(-1) @ v
            return ctx.permute(0, 2, 1, 3).contiguous().view(B, L, self.A * self.hd)

    class Layer(nn.Module):
        def __init__(self, H, A, hd, I):
            super().__init__()
            self.attention = nn.Module()
            self.attention.self, self.attention.output = CapBert.SelfAttention(H, A, hd), HFBert.DenseNorm(A * hd, H)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(H, I)
            self.output = HFBert.DenseNorm(I, H)

        def forward(self, x, pad):
            a = self.attention.output(self.attention.self(x, pad), x)
            return self.output(nn.functional.gelu(self.intermediate.dense(a)), a)

    def __init__(self, V, H, A, heads, inters):
        super().__init__()
        self.embeddings = HFBert.Embeddings(V, H)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([CapBert.Layer(H, a, H // A, i) for a, i in zip(heads, inters)])
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(H, H)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    m.bias.zero_()
            self.embeddings.word_embeddings.weight[0].zero_()

    def forward(self, ids, mask):
        """The pooled output [B, H] of ids [B, L] with HF's attention_mask [B, L] (nonzero = a real token)."""
        pad = (mask == 0)[:, None, None, :]
        pos = torch.arange(ids.shape[1], device=ids.device)[None]
        x = self.embeddings(ids, torch.zeros_like(ids), pos)
        for layer in self.encoder.layer:
            x = layer(x, pad)
        return torch.tanh(self.pooler.dense(x[:, 0]))


def cap_infer_step(pruned):
    """bench/gobench's bert_dense_infer and bert_pruned_infer: BERT-base inference (eval mode, no
    gradients; the encoder with the padding mask and the pooler) on the batch gobench wrote
    (--inputs), dense or with CAP's pruned shapes; on CPU one forward a repetition, on CUDA 20.
    With --weights, gobench's weights and the pooled output's sums to stderr, as gobench prints them."""
    import sys
    workload = "bert_pruned_infer" if pruned else "bert_dense_infer"
    b = need_inputs(workload)
    heads, inters = (CAP_KEPT_HEADS, CAP_KEPT_FFN) if pruned else ([12] * 12, [3072] * 12)
    model = CapBert(30522, 768, 12, heads, inters)
    if args.weights:
        model.load_state_dict(read_safetensors(args.weights))  # strict: every name and shape as gobench's
    model = model.to(dev).eval()
    steps = 20 if dev.type == "cuda" else 1
    if args.weights:
        with torch.no_grad():
            pooled = model(b["ids"], b["mask"]).double()
        print(f"torch_bench {workload}: {b['ids'].shape[0]} x {b['ids'].shape[1]}, pooled sum {pooled.sum().item():.6f}, "
              f"sum of squares {(pooled * pooled).sum().item():.6f}", file=sys.stderr)

    def run():
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(steps):
                out = model(b["ids"], b["mask"])
                if i == steps - 1:
                    check[0] = sync(out)
        return (time.perf_counter() - start) / steps

    return run


# bench/gobench's vqa_step: one training step of MUMC's VQA fine-tuning, run through the OFFICIAL model code
# of github.com/pengfeiliHEU/MUMC (commit 27b544d025901945006113012adfc7d755cd196e), imported from a checkout
# (--mumc or $MUMC_DIR; nothing of it is copied here): models/model_vqa.py's MUMC_VQA (forward with train=True,
# copy_params, _momentum_update), models/xbert.py's BertModel and BertLMHeadModel and models/vision/vit.py's
# VisionTransformer. Debian has neither transformers nor timm: vqa/testdata/gen_vqa_parity.py's
# load_official installs the stubs its parity fixtures use (none changes a number), and vit.py's two timm
# names that build a ViT, PatchEmbed and trunc_normal_, are set in its module to TimmPatchEmbed below and
# torch.nn.init.trunc_normal_ (timm's trunc_normal_ is a copy of it).
MUMC_COMMIT = "27b544d025901945006113012adfc7d755cd196e"


class TimmPatchEmbed(nn.Module):
    """timm 0.4.12's PatchEmbed (MUMC's requirements.txt pin), the only timm module vit.py's ViT builds: a
    patch-sized, patch-strided Conv2d (proj), flattened to [B, patches, embed_dim]; no norm_layer."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True):
        super().__init__()
        self.img_size, self.patch_size = (img_size, img_size), (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x):
        B, C, H, W = x.shape
        assert H == self.img_size[0] and W == self.img_size[1], f"input image size ({H}*{W}) doesn't match model {self.img_size}"
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # BCHW -> BNC
        return self.norm(x)


class Pretokenized:
    """Stands in for MUMC_VQA's BertTokenizer: forward calls self.tokenizer(texts, padding='longest', ...) on
    the question and answer strings; here it is called with the name of a batch ("question", "answer") and
    returns gobench's ids and attention mask for it, already tokenised and padded (so, as on the Go side,
    no tokenising is timed). pad_token_id is [PAD]'s, 0."""
    pad_token_id = 0

    class Encoding:
        def __init__(self, ids, mask):
            self.input_ids, self.attention_mask = ids, mask

        def to(self, device):
            return self

    def __init__(self, batch):
        self.batch = batch

    def __call__(self, name, **kwargs):
        return Pretokenized.Encoding(self.batch[name + "_ids"], self.batch[name + "_mask"])


def vqa_sizes():
    """bench/gobench's vqaSizes: (ViT, BERT and decoder sizes, batch, steps per repetition)."""
    if dev.type == "cuda":  # the paper's: ViT-B/16 at 384 px, bert-base with fusion_layer 6, a 6-layer decoder
        return dict(img_size=384, patch_size=16, embed_dim=768, depth=12, num_heads=12), \
            dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 fusion_layer=6, encoder_width=768), 6, 8, 10
    return dict(img_size=64, patch_size=8, embed_dim=64, depth=2, num_heads=4), \
        dict(vocab_size=300, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256,
             fusion_layer=2, encoder_width=64), 2, 32, 5


def vqa_step():
    """bench/gobench's vqa_step: one step of train_vqa.py's train() on the batch gobench wrote (--inputs):
    loss = MUMC_VQA.forward(image, question, answer, alpha=0.4, train=True) with distill True (the ViT, the
    text encoder over the image tokens, then under no_grad _momentum_update and the momentum ViT, text
    encoder and decoder, whose softmaxed logits are the decoder's soft labels; the decoder's loss with
    reduction 'none', summed and divided by the batch), backward, and train_vqa.py's optimizer,
    torch.optim.AdamW(model.parameters(), weight_decay=0.05) (every parameter decayed; the frozen momentum
    copies get no gradient and are skipped), at lr 1e-4 (gobench: train.NewAdamWDecayAll). The model is MUMC_VQA.__init__'s body with the sizes of
    vqa_sizes (it hard-codes ViT-B/16) and fresh modules for from_pretrained's checkpoints; no dropout."""
    import os
    import sys
    from functools import partial
    checkout = args.mumc or os.environ.get("MUMC_DIR")
    if not checkout or not os.path.isfile(os.path.join(checkout, "models", "model_vqa.py")):
        raise SystemExit("torch_bench: vqa_step runs the official MUMC code: set MUMC_DIR (or --mumc) to a checkout of "
                         f"github.com/pengfeiliHEU/MUMC at {MUMC_COMMIT}, e.g.\n"
                         "  git clone https://github.com/pengfeiliHEU/MUMC /tmp/mumc && "
                         f"git -C /tmp/mumc checkout {MUMC_COMMIT}\n"
                         f"(MUMC_DIR is {checkout!r})")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vqa", "testdata"))
    from gen_vqa_parity import load_official
    xbert, _, model_vqa = load_official(checkout)
    vit = sys.modules["models.vision.vit"]
    vit.PatchEmbed, vit.trunc_normal_ = TimmPatchEmbed, nn.init.trunc_normal_
    vit_kw, bert_kw, dec_layers, B, steps = vqa_sizes()
    b = need_inputs("vqa_step")

    def bert_config():  # config_bert.json's keys at vqa_sizes' sizes, without dropout
        return xbert.BertConfig(hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                max_position_embeddings=512, type_vocab_size=2, pad_token_id=0, initializer_range=0.02,
                                layer_norm_eps=1e-12, **bert_kw)

    model = model_vqa.MUMC_VQA.__new__(model_vqa.MUMC_VQA)
    nn.Module.__init__(model)
    model.tokenizer = Pretokenized(b)
    model.distill = True
    config_encoder, config_decoder = bert_config(), bert_config()
    config_decoder.fusion_layer = 0
    config_decoder.num_hidden_layers = dec_layers

    def vit_encoder():
        return vit.VisionTransformer(**vit_kw, mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))

    model.visual_encoder = vit_encoder()
    model.text_encoder = xbert.BertModel(config_encoder, add_pooling_layer=False)
    model.text_decoder = xbert.BertLMHeadModel(config_decoder)
    model.visual_encoder_m = vit_encoder()
    model.text_encoder_m = xbert.BertModel(config_encoder, add_pooling_layer=False)
    model.text_decoder_m = xbert.BertLMHeadModel(config_decoder)
    model.model_pairs = [[model.visual_encoder, model.visual_encoder_m],
                         [model.text_encoder, model.text_encoder_m],
                         [model.text_decoder, model.text_decoder_m]]
    model.copy_params()
    model.momentum = 0.995
    model = model.to(dev).train()
    image = b["images"]

    def loss():
        return model(image, "question", "answer", alpha=0.4, train=True)

    # gobench holds neither the position_ids buffers nor the decoders' cls.predictions.decoder, tied to the
    # word embeddings and to cls.predictions.bias (xbert's BertLMPredictionHead)
    load_weights(model, "vqa_step", f"{B} images of {vit_kw['img_size']} px, questions of {b['question_ids'].shape[1]}, "
                                    f"answers of {b['answer_ids'].shape[1]}", loss,
                 may_miss=lambda k: k.endswith("embeddings.position_ids") or ".cls.predictions.decoder." in k)
    opt = torch.optim.AdamW(params=model.parameters(), lr=1e-4, weight_decay=0.05)

    return timed_steps(steps, opt, loss)


# bench/gobench's vampnet_step: one training step of VampNet's coarse transformer as scripts/exp/train.py's
# train_loop runs it, through the OFFICIAL code of github.com/hugofloresgarcia/vampnet (branch ismir-2023,
# commit dce1655ecd9f6044ce9e13e95e1423a50837a615): vampnet/modules/transformer.py's VampNet (with layers.py
# and activations.py), mask.py's apply_mask and scheduler.py's NoamScheduler, with loralib (microsoft/LoRA
# c4593f06, loralib/) and einops v0.6.1, all imported from checkouts (--vampnet/$VAMPNET_DIR,
# --loralib/$LORALIB_DIR, --einops/$EINOPS_DIR; nothing of them is copied here), as
# vampnet/testdata/gen_transformer_parity.py imports them: Debian has no descript-audiotools, so
# audiotools is a stub (at.ml.BaseModel an nn.Module, AudioSignal unused), and vampnet/__init__.py (the
# app's interface.py) is not run. Nothing stubbed changes a number.
VAMPNET_COMMIT = "dce1655ecd9f6044ce9e13e95e1423a50837a615"
LORALIB_COMMIT = "c4593f060e6a368d7bb5af5273b8e42810cdef90"


def load_vampnet():
    """The official vampnet.modules.transformer, vampnet.mask and vampnet.scheduler modules."""
    import os
    import sys
    import types
    dirs = {"vampnet": (args.vampnet or os.environ.get("VAMPNET_DIR"), "vampnet/modules/transformer.py"),
            "loralib": (args.loralib or os.environ.get("LORALIB_DIR"), "loralib/layers.py"),
            "einops": (args.einops or os.environ.get("EINOPS_DIR"), "einops/__init__.py")}
    for name, (d, probe) in dirs.items():
        if not d or not os.path.isfile(os.path.join(d, probe)):
            raise SystemExit(
                f"torch_bench: vampnet_step runs the official VampNet code: set {name.upper()}_DIR (or --{name}) to a "
                f"folder holding {probe} (is {d!r}); see scripts/bench_vs_pytorch.sh for the checkouts "
                f"(vampnet {VAMPNET_COMMIT}, loralib {LORALIB_COMMIT}, einops v0.6.1)")
    sys.path[:0] = [dirs["vampnet"][0], dirs["loralib"][0], dirs["einops"][0]]
    at = types.ModuleType("audiotools")
    at.ml = types.ModuleType("audiotools.ml")
    at.ml.BaseModel = type("BaseModel", (nn.Module,), {
        "INTERN": [], "EXTERN": [], "device": property(lambda self: next(self.parameters()).device)})
    at.AudioSignal = object
    at.util = types.ModuleType("audiotools.util")
    sys.modules["audiotools"] = at
    sys.modules["audiotools.ml"] = at.ml
    pkg = types.ModuleType("vampnet")
    pkg.__path__ = [os.path.join(dirs["vampnet"][0], "vampnet")]
    sys.modules["vampnet"] = pkg
    import importlib
    return (importlib.import_module("vampnet.modules.transformer"), importlib.import_module("vampnet.mask"),
            importlib.import_module("vampnet.scheduler"))


def vampnet_sizes():
    """bench/gobench's vampnetSizes: (VampNet kwargs, steps per repetition); the batch and frames come with
    gobench's inputs."""
    kw = dict(n_codebooks=4, n_conditioning_codebooks=0, latent_dim=8, vocab_size=1024, r_cond_dim=0,
              noise_mode="mask", flash_attn=False, dropout=0.1)  # conf/vampnet.yml
    if dev.type == "cuda":  # the paper's coarse model
        return dict(kw, n_heads=20, n_layers=20, embedding_dim=1280), 10
    return dict(kw, n_heads=8, n_layers=4, embedding_dim=256), 1


def vampnet_step():
    """bench/gobench's vampnet_step: train.py's train_loop after the codec, on the codes, mask and codebook
    tables gobench wrote (--inputs): z_mask = mask.apply_mask(z, mask, mask_token); latents =
    model.embedding.from_codes(z_mask, codec) (codec a namespace holding the tables as
    quantizer.quantizers[i].codebook.weight; they require grad, as the codec's weights do in train.py, and
    their gradients accumulate unstepped); z_hat = model(latents) in train mode (dropout 0.1);
    CrossEntropyLoss(label_smoothing=0.1) on the targets with the unmasked positions set to -100; backward;
    clip_grad_norm_(model.parameters(), 5); AdamW(model.parameters()) with its defaults (betas 0.9/0.999,
    eps 1e-8, weight decay 0.01 on every parameter); NoamScheduler(optimizer, d_model=width) (factor 2.0 and
    warmup 10,000 from conf/vampnet.yml), stepped once before training as load() does and after every step.
    train.py wraps the model in torch.compile, which torch 1.13 does not have: eager here, as in Go.
    With --weights, the step-0 loss with the dropout modules' p set to 0 (eval() would merge loralib's
    updates into the weights)."""
    import types
    transformer, pmask, scheduler = load_vampnet()
    kw, steps = vampnet_sizes()
    b = need_inputs("vampnet_step")
    z, mask = b["codes"], b["mask"]
    tables = [b[f"codebook.{i}"].clone().requires_grad_(True) for i in range(kw["n_codebooks"])]
    codec = types.SimpleNamespace(quantizer=types.SimpleNamespace(quantizers=[
        types.SimpleNamespace(codebook=types.SimpleNamespace(weight=w)) for w in tables]))
    model = transformer.VampNet(**kw).to(dev).train()
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    nc = model.n_conditioning_codebooks

    def flatten(x):  # vampnet/util.py's codebook_flatten, "b c t -> b (t c)"
        return x.permute(0, 2, 1).reshape(x.shape[0], -1)

    def loss():
        z_mask, m = pmask.apply_mask(z, mask, model.mask_token)
        z_hat = model(model.embedding.from_codes(z_mask, codec))
        target = flatten(z[:, nc:, :])
        flat_mask = flatten(m[:, nc:, :])
        return criterion(z_hat, target.masked_fill(~flat_mask.bool(), -100))

    if args.weights:
        drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        for m in drops:
            m.p = 0.0
        load_weights(model, "vampnet_step", f"batch {z.shape[0]} x {z.shape[1]} codebooks x {z.shape[2]} frames, "
                                            f"{kw['n_layers']} layers of width {kw['embedding_dim']}", loss)
        for m in drops:
            m.p = kw["dropout"]
    opt = torch.optim.AdamW(model.parameters())
    sched = scheduler.NoamScheduler(opt, d_model=kw["embedding_dim"], factor=2.0, warmup=10000)
    sched.step()

    return timed_steps(steps, opt, loss, clip=5.0, after_step=sched.step)


if args.workload == "vampnet_step":
    run = vampnet_step()
elif args.workload == "vqa_step":
    run = vqa_step()
elif args.workload == "clip":
    run = clip_step()
elif args.workload in ("bert_dense_infer", "bert_pruned_infer"):
    run = cap_infer_step(args.workload == "bert_pruned_infer")
elif args.workload == "pmlm":
    run = pmlm_step()
elif args.workload == "dense_biencoder":
    run = dense_step()
elif args.workload == "monobert":
    run = monobert_step()
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
                  "median_s": times[len(times) // 2], "peak_rss": peak, "check": check[0],
                  "precision": args.precision}))
