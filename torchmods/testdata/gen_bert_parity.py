"""Makes bert_parity.safetensors, the PyTorch reference for torchmods' BERT, by running Hugging Face's
own modeling_bert.py (transformers v4.26.1) on Debian's python3-torch 1.13.1.

Sources, pinned (tags and commits of github.com/huggingface/*):
  transformers     v4.26.1  commit ae54e3c3b18bac0832ad62ea9b896dfd52a09850  (src/transformers)
  huggingface_hub  v0.12.1  commit 39b8a49448a3416705bf2e0be9eb28eb16fca69a  (src/huggingface_hub)
v4.26.1 supports torch >= 1.7 (setup.py: "torch>=1.7,!=1.12.0") and its optional backends are all guarded
by is_*_available(). huggingface_hub 0.12.1 (>= 0.11.0, as 4.26.1 requires) is pure Python.

Setup, once (any clone of each repository, or a fork with upstream's history, that has these commits; git archive
reads only the named paths; the fixture in this folder was made from a fork of transformers carrying upstream's
v4.26.1 tag object and commit):
  apt-get install python3-filelock        # transformers checks filelock's installed version at import
  git -C TRANSFORMERS archive ae54e3c3b18bac0832ad62ea9b896dfd52a09850 src/transformers | tar -x -C /tmp/hf426
  git -C HUGGINGFACE_HUB archive 39b8a49448a3416705bf2e0be9eb28eb16fca69a src/huggingface_hub | tar -x -C /tmp/hfhub
Run:
  /usr/bin/python3 torchmods/testdata/gen_bert_parity.py [--transformers /tmp/hf426/src] [--hub /tmp/hfhub/src]

What runs: the real `transformers` package is imported (its own __init__, dependency check, modeling_utils,
configuration_utils, activations, pytorch_utils, modeling_outputs, utils/*, configuration_bert) and the
models are transformers.BertForMaskedLM and transformers.BertForSequenceClassification built from a
transformers.BertConfig. Nothing is stubbed or patched. tokenizers, safetensors, accelerate, TF and Flax are
absent and transformers imports none of them (it checks and skips them); the script asserts that no
tokenizers or safetensors module was loaded, that the package versions are the pinned ones, and that the
files that compute (modeling_bert.py, configuration_bert.py, activations.py, modeling_utils.py,
modeling_outputs.py, pytorch_utils.py) have the git blob hashes of the v4.26.1 tree. Network access is
switched off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE); nothing is downloaded. The other Python packages are
Debian bookworm's: torch 1.13.1, numpy, requests, tqdm, regex, packaging, pyyaml, filelock.

The models run in eval mode (dropout off), with hidden_act "gelu" (exact, nn.functional.gelu), absolute
positions, the additive mask (1 - mask) * finfo.min from PreTrainedModel.get_extended_attention_mask, and
the decoder tied to the word embeddings by HF's own tie_weights. HF's weight init (post_init) runs but is
overwritten: every parameter is loaded (strict) from the draws below, so it changes no number.

Weights, inputs and g are drawn exactly as the earlier transcription-only version drew them (seed 5, the
same draws in the same order on the same parameter names), so the "sd", "ids", "mask", "types" and "g"
tensors are bit-identical to that version's and the folders gen_hf_bert.py derives from this file are
unchanged. The draws are made on the transcription below, whose modules carry HF's names; HF's models are
built inside torch.random.fork_rng, so building them consumes no draw. The transcription stays because
gen_hf_bert.py and check_hf_export.py import it (they run without transformers); main() checks it against
HF's run (logits and every gradient) and fails if they differ by more than 1e-5 relative.

Cases "mlm" (BertForMaskedLM) and "cls" (BertForSequenceClassification, 3 labels) store "<case>.sd.<name>"
(HF's state_dict: tied cls.predictions.decoder.{weight,bias} and the position_ids buffer included),
inputs "<case>.ids", "<case>.mask", "<case>.types", HF's outputs "<case>.logits" and, for
loss = sum(logits * "<case>.g"), HF's gradients "<case>.grad.<name>" for every named parameter.
"""
import argparse
import hashlib
import math
import os
import sys

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


TRANSFORMERS = ("4.26.1", "ae54e3c3b18bac0832ad62ea9b896dfd52a09850")
HUB = ("0.12.1", "39b8a49448a3416705bf2e0be9eb28eb16fca69a")
BLOBS = {  # git rev-parse v4.26.1:src/transformers/<path>
    "models/bert/modeling_bert.py": "61355216653cb0b34cb95f9bb00db367e78c507c",
    "models/bert/configuration_bert.py": "b2d64b7fde67dafa6e6a8455b48d20d1fd112ca1",
    "activations.py": "d9caf8763e4598605e1255e25ab8627aa6ff8464",
    "modeling_utils.py": "4017305842d5d867e99a3bef1fbec519587c7780",
    "modeling_outputs.py": "d41e5804fa02026d24379dba36e21385ea380cfb",
    "pytorch_utils.py": "647101d1e8662a426e2a50b5d217bee1398bccc8",
}


def git_blob(path):
    with open(path, "rb") as f:
        b = f.read()
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


def import_transformers(transformers_src, hub_src):
    """Imports the real transformers package from transformers_src and checks that it is the pinned one."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    sys.path[:0] = [transformers_src, hub_src]
    import huggingface_hub
    import transformers
    from transformers.models.bert import modeling_bert
    assert transformers.__version__ == TRANSFORMERS[0], transformers.__version__
    assert huggingface_hub.__version__ == HUB[0], huggingface_hub.__version__
    root = os.path.dirname(transformers.__file__)
    assert os.path.samefile(modeling_bert.__file__, os.path.join(root, "models/bert/modeling_bert.py"))
    assert os.path.dirname(huggingface_hub.__file__) == os.path.join(os.path.abspath(hub_src), "huggingface_hub")
    for rel, blob in BLOBS.items():
        got = git_blob(os.path.join(root, rel))
        assert got == blob, f"{rel}: git blob {got}, want {blob} (transformers v{TRANSFORMERS[0]})"
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tokenizers", "safetensors"))
    assert not loaded, f"compiled optional dependencies were imported: {loaded}"
    return transformers


def rel_err(got, want):
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--transformers", default=os.environ.get("HF_TRANSFORMERS_SRC", "/tmp/hf426/src"),
                    help="folder holding transformers v4.26.1's transformers/ package")
    ap.add_argument("--hub", default=os.environ.get("HF_HUB_SRC", "/tmp/hfhub/src"),
                    help="folder holding huggingface_hub v0.12.1's huggingface_hub/ package")
    args = ap.parse_args()
    transformers = import_transformers(args.transformers, args.hub)

    torch.manual_seed(5)
    out = {}
    ids = torch.tensor([[2, 7, 9, 11, 4, 3, 1], [2, 5, 6, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0]])
    common = dict(vocab_size=V, hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=I,
                  hidden_act="gelu", max_position_embeddings=P, type_vocab_size=T, layer_norm_eps=EPS, pad_token_id=0,
                  position_embedding_type="absolute")
    hf_classes = {"mlm": (transformers.BertForMaskedLM, {}),
                  "cls": (transformers.BertForSequenceClassification, {"num_labels": 3})}
    worst = 0.0
    for case, drawn in (("mlm", BertForMaskedLM()), ("cls", BertForSequenceClassification())):
        randomise(drawn)
        cls, extra = hf_classes[case]
        with torch.random.fork_rng(devices=[]):
            model = cls(transformers.BertConfig(**common, **extra))
        res = model.load_state_dict(drawn.state_dict(), strict=True)
        assert not res.missing_keys and not res.unexpected_keys, res
        model.eval()
        sd = model.state_dict()
        if case == "mlm":
            assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight, "HF's tie_weights"
            assert model.cls.predictions.decoder.bias is model.cls.predictions.bias

        logits = model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        g = torch.randn_like(logits)
        (logits * g).sum().backward()
        for n, t in sd.items():
            out[f"{case}.sd.{n}"] = t
        grads = dict(model.named_parameters())
        for n, p in grads.items():
            out[f"{case}.grad.{n}"] = p.grad
        out.update({f"{case}.ids": ids, f"{case}.mask": mask, f"{case}.types": types, f"{case}.logits": logits.detach(), f"{case}.g": g})

        # The transcription (imported by gen_hf_bert.py and check_hf_export.py) against HF's run.
        tl = drawn(ids, mask, types)
        (tl * g).sum().backward()
        errs = {"logits": rel_err(tl.detach(), logits.detach())}
        tgrads = dict(drawn.named_parameters())
        assert set(tgrads) == set(grads), (sorted(set(tgrads) ^ set(grads)))
        for n, p in grads.items():
            if not n.endswith("attention.self.key.bias"):  # 0 up to rounding on both sides
                errs[n] = rel_err(tgrads[n].grad, p.grad)
        name = max(errs, key=errs.get)
        print(f"{case}: transcription vs HF {len(errs)} tensors, max relative error {errs[name]:.2e} ({name})")
        worst = max(worst, errs[name])
    assert worst < 1e-5, worst

    meta = {"torch": torch.__version__, "transformers": "v%s %s" % TRANSFORMERS, "huggingface_hub": "v%s %s" % HUB}
    n, size = st_write.write(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bert_parity.safetensors"), out, meta)
    print(f"wrote {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
