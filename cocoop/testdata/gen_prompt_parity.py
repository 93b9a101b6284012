"""Makes prompt_parity.safetensors: CoOp's and CoCoOp's prompt learners and logits on a tiny CLIP, for
cocoop/parity_test.go.

The CLIP is OpenAI's clip/model.py of github.com/openai/CLIP at commit d05afc436d78f1c48dc0dbf8e5980a9d471f35f6
(git blob 232b7792eb97440642547bd462cf128df9243933, checked below), which is not part of this repository: export
it into a directory and pass the directory; run with Debian's python3-torch 1.13.1:

    d=$(mktemp -d)
    git -C /path/to/CLIP show d05afc436d78f1c48dc0dbf8e5980a9d471f35f6:clip/model.py > "$d/model.py"
    /usr/bin/python3 cocoop/testdata/gen_prompt_parity.py "$d"

The prompt learners are a TRANSCRIPTION of KaiyangZhou/CoOp at commit ff61507c790454bce7c5052c3ac39e60772f1f89,
whose trainers import Dassl and the clip package (not installed here):

  - TextEncoder:                 trainers/coop.py lines 37-57 (cocoop.py's is the same, lines 39-59)
  - CoOp's PromptLearner:        trainers/coop.py lines 60-182
  - CoOp's CustomCLIP:           trainers/coop.py lines 185-208
  - CoCoOp's PromptLearner:      trainers/cocoop.py lines 62-161
  - CoCoOp's CustomCLIP:         trainers/cocoop.py lines 164-194

copied line for line except: cfg.TRAINER.COOP.* and cfg.TRAINER.COCOOP.* become arguments, and CustomCLIP takes
the prompt learner it would build;
clip.tokenize and _tokenizer.encode become a word-level tokenizer (WordTokenizer below, the same rules as
cocoop/tokenizer.go's: ids 1..n for the words, n+1 start, n+2 end, 0 padding), since the tiny CLIP's vocabulary
is not BPE's; the image-size assertion, the prints, some comments and the fp16 branch (meta_net.half() under
PREC fp16) are dropped. Everything runs in float64 after the
learners are built in float32 (their state, stored float32, is what Go loads).

model.LayerNorm is made to cast only fp16 inputs to float32 (it casts every input, float64 included), as
torchmods/testdata/gen_clip.py does.

The CLIP: model.CLIP(embed_dim 48, image 16, vision layers 1, vision width 64, patch 8, context 16, vocab
len(WORDS)+3, text width 32, text heads 2, text layers 2) with its visual replaced by
model.VisionTransformer(16, 8, 32, 1, heads=2, 48) (CLIP gives a ViT width // 64 heads), every parameter
randomised around its initialisation (seed 0) so that no term is trivially 0 or 1.

Cases (classes: "red circle", "blue_striped square", "green big dark triangle"; 2 images; labels 2, 0):
  coop_end_init     CoOp, ctx_init "a photo of a", class token at the end
  coop_middle_rand  CoOp, random init, n_ctx 3 (an odd count: 1 before the name, 2 after), middle
  coop_front_csc    CoOp, random init, n_ctx 4, class-specific context, front
  coop_end_csc      CoOp, random init, n_ctx 2, class-specific context, end
  cocoop_init       CoCoOp, ctx_init "a photo of a" (the paper's setting)
  cocoop_rand       CoCoOp, random init, n_ctx 2

Per case "<case>.": "sd.<name>" the prompt learner's state dict (float32); "prompts" its forward output;
"logits" CustomCLIP's logits (eval mode); "loss" F.cross_entropy(logits, labels) (CoCoOp: CustomCLIP in training
mode, which returns it); "grad.<name>" the loss's gradient of every prompt-learner parameter. Shared: "sd.<name>"
the CLIP's state dict; "image" [2, 3, 16, 16]; "labels"; "official.<name>" the state dict saved in
official_output/prompt_learner/model.pth.tar-5, as float32. Metadata "words": the vocabulary, JSON.

official_output/prompt_learner/model.pth.tar-5: a CoCoOp prompt learner ("a photo of a", fp16, ctx moved off its
initialisation, one SGD step) saved as Dassl's save_checkpoint saves one: {"state_dict", "epoch", "optimizer",
"scheduler", "val_result"}, in the folder layout base2new_test.sh's --model-dir points at.
"""
import copy
import hashlib
import importlib.util
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from torch.nn import functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402

COMMIT = "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"
BLOB = "232b7792eb97440642547bd462cf128df9243933"
WORDS = ["a", "photo", "of", "x", ".", ",", "red", "blue", "green", "circle", "square", "striped", "big", "dark",
         "triangle"]
CLASSNAMES = ["red circle", "blue_striped square", "green big dark triangle"]
CONTEXT = 16


def load_official(d):
    path = os.path.join(d, "model.py")
    with open(path, "rb") as f:
        src = f.read()
    blob = hashlib.sha1(b"blob %d\0" % len(src) + src).hexdigest()
    if blob != BLOB:
        sys.exit(f"{path} is git blob {blob}, not clip/model.py at {COMMIT} ({BLOB})")
    spec = importlib.util.spec_from_file_location("clip_model", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)

    def layer_norm(self, x):
        orig = x.dtype
        return torch.nn.LayerNorm.forward(self, x.float() if orig == torch.float16 else x).type(orig)

    m.LayerNorm.forward = layer_norm
    return m


class WordTokenizer:
    """clip.tokenize and SimpleTokenizer.encode for a word vocabulary (cocoop/tokenizer.go's rules)."""

    def __init__(self, words):
        self.ids = {w: i + 1 for i, w in enumerate(words)}
        self.sot, self.eot = len(words) + 1, len(words) + 2

    def encode(self, text):
        import re
        return [self.ids[w] for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())]

    def tokenize(self, text, context_length=CONTEXT):
        ids = [self.sot] + self.encode(text) + [self.eot]
        assert len(ids) <= context_length
        out = torch.zeros(1, context_length, dtype=torch.long)
        out[0, :len(ids)] = torch.tensor(ids)
        return out


_tokenizer = WordTokenizer(WORDS)


class clip:  # noqa: N801 - stands in for `from clip import clip`
    tokenize = staticmethod(_tokenizer.tokenize)


# ---- transcription of trainers/coop.py (ff61507c) ----

class TextEncoder(nn.Module):
    def __init__(self, clip_model):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype

    def forward(self, prompts, tokenized_prompts):
        x = prompts + self.positional_embedding.type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        x = self.ln_final(x).type(self.dtype)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x


class CoOpPromptLearner(nn.Module):
    def __init__(self, n_ctx, ctx_init, csc, class_token_position, classnames, clip_model):
        super().__init__()
        n_cls = len(classnames)
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]

        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            prompt = clip.tokenize(ctx_init)
            with torch.no_grad():
                embedding = clip_model.token_embedding(prompt).type(dtype)
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            if csc:
                ctx_vectors = torch.empty(n_cls, n_ctx, ctx_dim, dtype=dtype)
            else:
                ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)

        self.ctx = nn.Parameter(ctx_vectors)

        classnames = [name.replace("_", " ") for name in classnames]
        name_lens = [len(_tokenizer.encode(name)) for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]

        tokenized_prompts = torch.cat([clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)

        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # CLS, EOS

        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.tokenized_prompts = tokenized_prompts  # torch.Tensor
        self.name_lens = name_lens
        self.class_token_position = class_token_position

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)

        prefix = self.token_prefix
        suffix = self.token_suffix

        if self.class_token_position == "end":
            prompts = torch.cat([prefix, ctx, suffix], dim=1)

        elif self.class_token_position == "middle":
            half_n_ctx = self.n_ctx // 2
            prompts = []
            for i in range(self.n_cls):
                name_len = self.name_lens[i]
                prefix_i = prefix[i : i + 1, :, :]
                class_i = suffix[i : i + 1, :name_len, :]
                suffix_i = suffix[i : i + 1, name_len:, :]
                ctx_i_half1 = ctx[i : i + 1, :half_n_ctx, :]
                ctx_i_half2 = ctx[i : i + 1, half_n_ctx:, :]
                prompt = torch.cat([prefix_i, ctx_i_half1, class_i, ctx_i_half2, suffix_i], dim=1)
                prompts.append(prompt)
            prompts = torch.cat(prompts, dim=0)

        elif self.class_token_position == "front":
            prompts = []
            for i in range(self.n_cls):
                name_len = self.name_lens[i]
                prefix_i = prefix[i : i + 1, :, :]
                class_i = suffix[i : i + 1, :name_len, :]
                suffix_i = suffix[i : i + 1, name_len:, :]
                ctx_i = ctx[i : i + 1, :, :]
                prompt = torch.cat([prefix_i, class_i, ctx_i, suffix_i], dim=1)
                prompts.append(prompt)
            prompts = torch.cat(prompts, dim=0)

        else:
            raise ValueError

        return prompts


class CoOpCustomCLIP(nn.Module):
    def __init__(self, prompt_learner, clip_model):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def forward(self, image):
        image_features = self.image_encoder(image.type(self.dtype))

        prompts = self.prompt_learner()
        tokenized_prompts = self.tokenized_prompts
        text_features = self.text_encoder(prompts, tokenized_prompts)

        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)

        logit_scale = self.logit_scale.exp()
        logits = logit_scale * image_features @ text_features.t()

        return logits


# ---- transcription of trainers/cocoop.py (ff61507c) ----

class CoCoOpPromptLearner(nn.Module):
    def __init__(self, n_ctx, ctx_init, classnames, clip_model):
        super().__init__()
        n_cls = len(classnames)
        dtype = clip_model.dtype
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim

        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            prompt = clip.tokenize(ctx_init)
            with torch.no_grad():
                embedding = clip_model.token_embedding(prompt).type(dtype)
            ctx_vectors = embedding[0, 1 : 1 + n_ctx, :]
            prompt_prefix = ctx_init
        else:
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)

        self.ctx = nn.Parameter(ctx_vectors)

        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim))
        ]))

        classnames = [name.replace("_", " ") for name in classnames]
        name_lens = [len(_tokenizer.encode(name)) for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]

        tokenized_prompts = torch.cat([clip.tokenize(p) for p in prompts])  # (n_cls, n_tkn)
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)

        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # CLS, EOS

        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.tokenized_prompts = tokenized_prompts  # torch.Tensor
        self.name_lens = name_lens

    def construct_prompts(self, ctx, prefix, suffix, label=None):
        if label is not None:
            prefix = prefix[label]
            suffix = suffix[label]

        prompts = torch.cat([prefix, ctx, suffix], dim=1)

        return prompts

    def forward(self, im_features):
        prefix = self.token_prefix
        suffix = self.token_suffix
        ctx = self.ctx                     # (n_ctx, ctx_dim)
        bias = self.meta_net(im_features)  # (batch, ctx_dim)
        bias = bias.unsqueeze(1)           # (batch, 1, ctx_dim)
        ctx = ctx.unsqueeze(0)             # (1, n_ctx, ctx_dim)
        ctx_shifted = ctx + bias           # (batch, n_ctx, ctx_dim)

        prompts = []
        for ctx_shifted_i in ctx_shifted:
            ctx_i = ctx_shifted_i.unsqueeze(0).expand(self.n_cls, -1, -1)
            pts_i = self.construct_prompts(ctx_i, prefix, suffix)  # (n_cls, n_tkn, ctx_dim)
            prompts.append(pts_i)
        prompts = torch.stack(prompts)

        return prompts


class CoCoOpCustomCLIP(nn.Module):
    def __init__(self, prompt_learner, clip_model):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_model.dtype

    def forward(self, image, label=None):
        tokenized_prompts = self.tokenized_prompts
        logit_scale = self.logit_scale.exp()

        image_features = self.image_encoder(image.type(self.dtype))
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)

        prompts = self.prompt_learner(image_features)

        logits = []
        for pts_i, imf_i in zip(prompts, image_features):
            text_features = self.text_encoder(pts_i, tokenized_prompts)
            text_features = text_features / text_features.norm(dim=-1, keepdim=True)
            l_i = logit_scale * imf_i @ text_features.t()
            logits.append(l_i)
        logits = torch.stack(logits)

        if self.prompt_learner.training:
            return F.cross_entropy(logits, label)

        return logits


# ---- the fixture ----

def randomise(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "ln_" in n or n.startswith("ln_final"):
                p.copy_(1 + torch.randn_like(p) * 0.2)
        model.token_embedding.weight.mul_(10)  # N(0, 0.2): prompts far enough apart that logits differ


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    official = load_official(sys.argv[1])
    torch.manual_seed(0)
    model = official.CLIP(48, 16, 1, 64, 8, CONTEXT, len(WORDS) + 3, 32, 2, 2)
    model.visual = official.VisionTransformer(input_resolution=16, patch_size=8, width=32, layers=1, heads=2, output_dim=48)
    randomise(model)
    model.eval()
    freeze(model)
    d = copy.deepcopy(model).double().eval()
    freeze(d)

    gen = torch.Generator().manual_seed(1)
    image = torch.randn(2, 3, 16, 16, generator=gen)
    labels = torch.tensor([2, 0])
    out = {"sd." + k: v.detach().clone() for k, v in model.state_dict().items()}
    out["image"], out["labels"] = image, labels

    cases = {
        "coop_end_init": ("coop", dict(n_ctx=16, ctx_init="a photo of a", csc=False, class_token_position="end")),
        "coop_middle_rand": ("coop", dict(n_ctx=3, ctx_init="", csc=False, class_token_position="middle")),
        "coop_front_csc": ("coop", dict(n_ctx=4, ctx_init="", csc=True, class_token_position="front")),
        "coop_end_csc": ("coop", dict(n_ctx=2, ctx_init="", csc=True, class_token_position="end")),
        "cocoop_init": ("cocoop", dict(n_ctx=4, ctx_init="a photo of a")),
        "cocoop_rand": ("cocoop", dict(n_ctx=2, ctx_init="")),
    }
    for name, (method, kw) in cases.items():
        # Built from the float32 CLIP (what Go loads), then run in float64.
        if method == "coop":
            pl = CoOpPromptLearner(classnames=CLASSNAMES, clip_model=model, **kw)
        else:
            pl = CoCoOpPromptLearner(classnames=CLASSNAMES, clip_model=model, **kw)
            with torch.no_grad():  # no term trivially small: the Meta-Net's output matters
                pl.meta_net.linear1.weight.mul_(4)
                pl.meta_net.linear2.weight.mul_(4)
        for k, v in pl.state_dict().items():
            out[f"{name}.sd.{k}"] = v.detach().clone().float()
        pl = pl.double()
        if method == "coop":
            m = CoOpCustomCLIP(pl, d)
            prompts = pl()
            logits = m(image.double())
            loss = F.cross_entropy(logits, labels)
        else:
            m = CoCoOpCustomCLIP(pl, d)
            pl.eval()
            with torch.no_grad():
                imf = d.visual(image.double())
                imf = imf / imf.norm(dim=-1, keepdim=True)
                prompts = pl(imf)
                logits = m(image.double())
            pl.train()
            loss = m(image.double(), labels)
        loss.backward()
        out[f"{name}.prompts"] = prompts.detach().float()
        out[f"{name}.logits"] = logits.detach().float()
        out[f"{name}.loss"] = loss.detach().float().reshape(1)
        for k, p in pl.named_parameters():
            out[f"{name}.grad.{k}"] = p.grad.float()
    # The official output layout of the paper's case, as Dassl's save_checkpoint writes it after epoch 5 of a
    # CoCoOp run in fp16 (TRAINER.COCOOP.PREC "fp16": the learner half precision): the learner's state dict under
    # "state_dict" (token_prefix and token_suffix included), the epoch, and SGD's and the scheduler's state.
    pl = CoCoOpPromptLearner(classnames=CLASSNAMES, clip_model=model, n_ctx=4, ctx_init="a photo of a").half()
    with torch.no_grad():
        pl.ctx.add_(0.5)  # not the initialisation, so that a load is seen
    optim = torch.optim.SGD(pl.parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4)
    for p in pl.parameters():
        p.grad = torch.ones_like(p)
    optim.step()
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, 10)
    ckpt_dir = os.path.join(here, "official_output", "prompt_learner")
    os.makedirs(ckpt_dir, exist_ok=True)
    torch.save({"state_dict": pl.state_dict(), "epoch": 5, "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
                "val_result": None}, os.path.join(ckpt_dir, "model.pth.tar-5"))
    for k, v in pl.state_dict().items():
        out[f"official.{k}"] = v.detach().clone().float()
    print(f"{ckpt_dir}/model.pth.tar-5: {os.path.getsize(os.path.join(ckpt_dir, 'model.pth.tar-5'))} bytes")

    meta = {"torch": torch.__version__, "clip_commit": COMMIT, "coop_commit": "ff61507c790454bce7c5052c3ac39e60772f1f89",
            "words": json.dumps(WORDS), "classnames": json.dumps(CLASSNAMES)}
    path = os.path.join(here, "prompt_parity.safetensors")
    n, size = st_write.write(path, out, meta)
    print(f"{path}: {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
