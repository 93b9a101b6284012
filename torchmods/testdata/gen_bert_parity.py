"""Makes bert_parity.safetensors, the PyTorch reference for torchmods' BERT.

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 torchmods/testdata/gen_bert_parity.py
(gen_hf_bert.py and check_hf_export.py import its modules without running it.)

Debian has no transformers, so HF's BertForMaskedLM and BertForSequenceClassification are written
out here from modeling_bert.py with its parameter names: BertEmbeddings (word + token type +
absolute positions, LayerNorm, dropout), BertSelfAttention with the additive extended attention
mask (1 - mask) * finfo.min, BertSelfOutput / BertIntermediate / BertOutput (post-norm, exact
GELU), BertPooler (tanh), BertLMPredictionHead (dense, GELU, LayerNorm, decoder tied to the word
embeddings plus a bias). The state dict is saved as HF saves it, with the tied
cls.predictions.decoder.{weight,bias} and the position_ids buffer.

Cases "mlm" and "cls" store "<case>.sd.<name>", inputs "<case>.ids", "<case>.mask",
"<case>.types", outputs "<case>.logits" and, for loss = sum(logits * "<case>.g"), the gradients
"<case>.grad.<name>".
"""
import math
import os

import torch
from torch import nn

import st_write

V, H, LAYERS, HEADS, I, P, T, EPS = 50, 32, 2, 4, 64, 16, 2, 1e-12


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(V, H, padding_idx=0)
        self.position_embeddings = nn.Embedding(P, H)
        self.token_type_embeddings = nn.Embedding(T, H)
        self.LayerNorm = nn.LayerNorm(H, eps=EPS)
        self.register_buffer("position_ids", torch.arange(P).expand((1, -1)))

    def forward(self, ids, types):
        pos = self.position_ids[:, :ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos))


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(H, H), nn.Linear(H, H), nn.Linear(H, H)

    def forward(self, x, ext_mask):
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, HEADS, H // HEADS).permute(0, 2, 1, 3)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(H // HEADS) + ext_mask
        ctx = scores.softmax(-1) @ v
        return ctx.permute(0, 2, 1, 3).reshape(B, L, H)


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

    def forward(self, x, ext_mask):
        a = self.attention.output(self.attention.self(x, ext_mask), x)
        return self.output(nn.functional.gelu(self.intermediate.dense(a)), a)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])


class Pooler(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(H, H)


class Bert(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()
        if pool:
            self.pooler = Pooler()

    def forward(self, ids, mask, types):
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = self.embeddings(ids, types)
        for layer in self.encoder.layer:
            x = layer(x, ext)
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
        self.decoder = nn.Linear(H, V, bias=False)
        self.decoder.weight = word.weight  # tied
        self.bias = nn.Parameter(torch.zeros(V))
        self.decoder.bias = self.bias


class Cls(nn.Module):
    def __init__(self, word):
        super().__init__()
        self.predictions = Predictions(word)


class BertForMaskedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = Bert(pool=False)
        self.cls = Cls(self.bert.embeddings.word_embeddings)

    def forward(self, ids, mask, types):
        h = self.bert(ids, mask, types)
        t = self.cls.predictions.transform
        h = t.LayerNorm(nn.functional.gelu(t.dense(h)))
        return self.cls.predictions.decoder(h)


class BertForSequenceClassification(nn.Module):
    def __init__(self):
        super().__init__()
        self.bert = Bert(pool=True)
        self.classifier = nn.Linear(H, 3)

    def forward(self, ids, mask, types):
        h = self.bert(ids, mask, types)
        pooled = torch.tanh(self.bert.pooler.dense(h[:, 0]))
        return self.classifier(pooled)


def randomise(m):
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "LayerNorm.weight" in n else 0.0))


def main():
    torch.manual_seed(5)
    out = {}
    ids = torch.tensor([[2, 7, 9, 11, 4, 3, 1], [2, 5, 6, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    for case, model in (("mlm", BertForMaskedLM()), ("cls", BertForSequenceClassification())):
        randomise(model)
        logits = model(ids, mask, types)
        g = torch.randn_like(logits)
        (logits * g).sum().backward()
        for n, t in model.state_dict().items():
            out[f"{case}.sd.{n}"] = t
        for n, p in model.named_parameters():
            out[f"{case}.grad.{n}"] = p.grad
        out.update({f"{case}.ids": ids, f"{case}.mask": mask, f"{case}.types": types, f"{case}.logits": logits.detach(), f"{case}.g": g})

    n, size = st_write.write(os.path.join(os.path.dirname(__file__), "bert_parity.safetensors"), out, {"torch": torch.__version__})
    print(f"wrote {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
