"""Makes unilm_parity.safetensors, the PyTorch reference for torchmods' UniLMv2 BERT.

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 torchmods/testdata/gen_unilm.py

A hand transcription (Debian has no transformers) of microsoft/unilm
s2s-ft/s2s_ft/modeling.py at commit 16ae6ece69f8863486576886e6999bdbf3ea54fe, the stored
version that has UniLMv2's relative position bias (the older 8ab6abbca9b5afa759cee0813439438358a454cf
has none): BertEmbeddings with explicit position_ids (words + positions, then token types,
LayerNorm), BertSelfAttention adding the extended mask (1 - mask) * -10000 and then rel_pos to
the scores, BertModel computing rel_pos_bias(one_hot(relative_position_bucket(pos_j - pos_i)))
once for all layers, BertLMPredictionHead (F.linear with the tied decoder_weight plus bias), and
the transformers 2.x pieces it imports (BertSelfOutput, BertIntermediate, BertOutput,
BertPredictionHeadTransform: post-norm, exact GELU). Parameter and buffer names are those of
BertForSequenceToSequence, so the state dict is what s2s-ft's save_pretrained writes, tied
cls.predictions.decoder_weight and LabelSmoothingLoss's crit_mask_lm_smoothed.one_hot included.
split_lengths is not used: it only cuts the same masked attention into blocks.

Example 0 of the batch is a pseudo-masked input built as BertForSequenceToSequenceWithPseudoMask
builds it (create_mask_and_position_ids, create_attention_mask: source, target, pseudo [MASK]
tokens sharing the target's positions, padding in source and target); example 1 has random
repeating positions and a random 0/1 mask with at least one allowed key per row.

Stores "sd.<name>" (the state dict), "ids", "types", "positions", "mask" [B, L, L], "buckets",
"hidden", "logits" and, for loss = sum(logits * "g"), "grad.<name>" for every parameter;
"plain.mask" [B, L] and "plain.hidden" for default positions with a key padding mask; and
"bucket.rel" with "bucket.<bi|uni>.<bins>.<max_distance>" for relative_position_bucket alone.
"""
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

import st_write

V, H, LAYERS, HEADS, I, P, T, EPS = 50, 32, 2, 4, 48, 32, 2, 1e-12
BINS, MAX_REL = 32, 128
MASK_ID = 3


def bucket(rel, bidirectional=True, num_buckets=32, max_distance=128):
    """relative_position_bucket: half the buckets exact, the rest logarithmic up to max_distance."""
    out = 0
    if bidirectional:
        num_buckets //= 2
        out += (rel > 0).long() * num_buckets
        n = torch.abs(rel)
    else:
        n = torch.max(-rel, torch.zeros_like(rel))
    exact = num_buckets // 2
    large = exact + (torch.log(n.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return out + torch.where(n < exact, n, large)


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(V, H, padding_idx=0)
        self.position_embeddings = nn.Embedding(P, H)
        self.token_type_embeddings = nn.Embedding(T, H)
        self.LayerNorm = nn.LayerNorm(H, eps=EPS)

    def forward(self, ids, types, pos):
        if pos is None:
            pos = torch.arange(ids.shape[1]).unsqueeze(0).expand(ids.shape)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)
        x = x + self.token_type_embeddings(types)
        return self.LayerNorm(x), pos


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

    def forward(self, x, ext_mask, rel_pos):
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, HEADS, H // HEADS).permute(0, 2, 1, 3)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(H // HEADS)
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
        self.self = SelfAttention()
        self.output = DenseNorm(H)


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(H, I)


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = DenseNorm(I)

    def forward(self, x, ext_mask, rel_pos):
        a = self.attention.output(self.attention.self(x, ext_mask, rel_pos), x)
        return self.output(F.gelu(self.intermediate.dense(a)), a)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])


class Bert(nn.Module):  # s2s-ft's BertModel with a BertForSeq2SeqConfig: no pooler
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()
        self.rel_pos_bias = nn.Linear(BINS, HEADS, bias=False)

    def buckets(self, pos):
        return bucket(pos.unsqueeze(-2) - pos.unsqueeze(-1), num_buckets=BINS, max_distance=MAX_REL)

    def forward(self, ids, types, pos, mask):
        ext = mask[:, None, :, :] if mask.dim() == 3 else mask[:, None, None, :]
        ext = (1.0 - ext.float()) * -10000.0
        x, pos = self.embeddings(ids, types, pos)
        rel = F.one_hot(self.buckets(pos), num_classes=BINS).type_as(x)
        rel = self.rel_pos_bias(rel).permute(0, 3, 1, 2)
        for layer in self.encoder.layer:
            x = layer(x, ext, rel)
        return x


class Transform(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(H, H)
        self.LayerNorm = nn.LayerNorm(H, eps=EPS)


class Predictions(nn.Module):
    def __init__(self, word):
        super().__init__()
        self.transform = Transform()
        self.decoder_weight = word.weight  # an attribute that is a Parameter: saved under this name too
        self.bias = nn.Parameter(torch.zeros(V))

    def forward(self, h):
        h = self.transform.LayerNorm(F.gelu(self.transform.dense(h)))
        return F.linear(h, self.decoder_weight, self.bias)


class Cls(nn.Module):
    def __init__(self, word):
        super().__init__()
        self.predictions = Predictions(word)


class SmoothedLoss(nn.Module):  # LabelSmoothingLoss(0.1, V, ignore_index=0): only its buffer matters here
    def __init__(self, smoothing=0.1):
        super().__init__()
        one_hot = torch.full((V,), smoothing / (V - 2))
        one_hot[0] = 0
        self.register_buffer("one_hot", one_hot.unsqueeze(0))


class BertForSequenceToSequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = Bert()
        self.cls = Cls(self.bert.embeddings.word_embeddings)
        self.crit_mask_lm_smoothed = SmoothedLoss()


def mask_and_positions(num_tokens, max_len, offset=None):  # create_mask_and_position_ids
    base = torch.arange(max_len).view(1, -1)
    mask = (base < num_tokens.view(-1, 1)).long()
    if offset is not None:
        base = base + offset.view(-1, 1)
    return mask, base * mask


def pseudo_mask(source_mask, target_mask, source_pos, span_ids):  # create_attention_mask
    weight = torch.cat((torch.zeros_like(source_pos), span_ids, -span_ids), dim=1)
    frm, to = weight.unsqueeze(-1), weight.unsqueeze(1)
    real = (0 <= to) & (torch.cat((source_mask, target_mask, target_mask), dim=1) == 1).unsqueeze(1)
    true_rows = (frm >= 0) & real & (to <= frm)
    pseudo_rows = ((frm < 0) & real & (-to > frm)) | ((frm < 0) & (to == frm))
    return (true_rows | pseudo_rows).long()


def randomise(m):
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n == "bert.rel_pos_bias.weight":
                p.copy_(torch.randn_like(p))  # large enough to matter beside the content scores
            else:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "LayerNorm.weight" in n else 0.0))


def main():
    torch.manual_seed(20)
    S, TL = 5, 4
    L = S + 2 * TL
    model = BertForSequenceToSequence()
    randomise(model)

    # Example 0: a pseudo-masked seq2seq input with one padded source and one padded target token.
    ns, nt = torch.tensor([4]), torch.tensor([3])
    smask, spos = mask_and_positions(ns, S)
    tmask, tpos = mask_and_positions(nt, TL, offset=ns)
    src = torch.randint(4, V, (1, S)) * smask
    tgt = torch.randint(4, V, (1, TL)) * tmask
    ids0 = torch.cat((src, tgt, torch.full((1, TL), MASK_ID) * tmask), dim=1)
    types0 = torch.cat((torch.zeros(1, S), torch.ones(1, 2 * TL)), dim=1).long()
    pos0 = torch.cat((spos, tpos, tpos), dim=1)
    mask0 = pseudo_mask(smask, tmask, spos, tpos)

    # Example 1: random repeating positions and a random mask, no row empty.
    ids1 = torch.randint(1, V, (1, L))
    types1 = torch.randint(0, T, (1, L))
    pos1 = torch.randint(0, P, (1, L))
    pos1[0, 3] = pos1[0, 9]
    mask1 = (torch.rand(1, L, L) < 0.4).long()
    for i in range(L):
        if mask1[0, i].sum() == 0:
            mask1[0, i, torch.randint(0, L, ())] = 1

    ids, types = torch.cat((ids0, ids1)), torch.cat((types0, types1))
    pos, mask = torch.cat((pos0, pos1)), torch.cat((mask0, mask1))
    assert (mask.sum(-1) > 0).all() and (pos[0, S:S + TL] == pos[0, S + TL:]).all()

    hidden = model.bert(ids, types, pos, mask)
    logits = model.cls.predictions(hidden)
    g = torch.randn_like(logits)
    (logits * g).sum().backward()

    out = {f"sd.{n}": t for n, t in model.state_dict().items()}
    out.update({f"grad.{n}": p.grad for n, p in model.named_parameters()})
    out.update({"ids": ids, "types": types, "positions": pos, "mask": mask, "buckets": model.bert.buckets(pos),
                "hidden": hidden.detach(), "logits": logits.detach(), "g": g})
    with torch.no_grad():
        plain_mask = (ids != 0).long()
        out["plain.mask"] = plain_mask
        out["plain.hidden"] = model.bert(ids, types, None, plain_mask)

    rel = torch.arange(-140, 141)
    out["bucket.rel"] = rel
    for bi, bins, dist in ((True, 32, 128), (False, 32, 128), (True, 8, 20)):
        out[f"bucket.{'bi' if bi else 'uni'}.{bins}.{dist}"] = bucket(rel, bi, bins, dist)

    n, size = st_write.write(os.path.join(os.path.dirname(__file__), "unilm_parity.safetensors"), out, {"torch": torch.__version__})
    print(f"wrote {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
