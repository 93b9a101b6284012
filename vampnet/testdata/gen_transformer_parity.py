"""Makes transformer_parity.safetensors, the PyTorch reference for vampnet's transformer (VampNet).

Run from the repository root with Debian's python3-torch (1.13.1, the libtorch the Go side links),
after checking out the official code and its two pure-Python dependencies at pinned commits:
    mkdir -p /tmp/vn/vampnet /tmp/vn/lora /tmp/vn/einops
    git clone -b ismir-2023 https://github.com/hugofloresgarcia/vampnet /tmp/vn/src
    git -C /tmp/vn/src archive dce1655ecd9f6044ce9e13e95e1423a50837a615 | tar -x -C /tmp/vn/vampnet
    git clone https://github.com/microsoft/LoRA /tmp/vn/lorasrc
    git -C /tmp/vn/lorasrc archive c4593f060e6a368d7bb5af5273b8e42810cdef90 loralib | tar -x -C /tmp/vn/lora
    git clone https://github.com/arogozhnikov/einops /tmp/vn/einopssrc
    git -C /tmp/vn/einopssrc archive v0.6.1 einops | tar -x -C /tmp/vn/einops
    /usr/bin/python3 vampnet/testdata/gen_transformer_parity.py /tmp/vn/vampnet /tmp/vn/lora /tmp/vn/einops

This RUNS the official code: vampnet/modules/transformer.py (VampNet, TransformerStack,
TransformerLayer, MultiHeadRelativeAttention, RMSNorm, FeedForward), vampnet/modules/layers.py
(CodebookEmbedding, WNConv1d, FiLM, SequentialWithFiLM) and vampnet/modules/activations.py
(GatedGELU, NewGELU) of github.com/hugofloresgarcia/vampnet at dce1655ecd9f6044ce9e13e95e1423a50837a615
(branch ismir-2023), with loralib from github.com/microsoft/LoRA at c4593f06 (the Linear that
transformer.py uses; its code is the same as loralib 0.1.1/0.1.2 on PyPI) and einops 0.6.1.
Nothing of them is copied here.

---- Stubs. Debian has no descript-audiotools; transformer.py and mask.py import it, and the only
parts on the path of these tensors are at.ml.BaseModel (a torch.nn.Module with save/load helpers:
stubbed as an nn.Module subclass with the INTERN/EXTERN lists vampnet/modules/__init__.py appends to) and AudioSignal (only used by to_signal, not called). Nothing stubbed
changes a number.

float32, torch.manual_seed(0), dropout 0.1 in the constructor but model.train() with the dropout
modules' p set to 0 (so the forward is loralib's unmerged training path, deterministic).
Every lora_B is set to randn*0.1 (loralib initialises it to zero, which would make every lora_A
gradient zero and hide mistakes). The codec is replaced by its only part the model reads,
codec.quantizer.quantizers[i].codebook.weight: 3 random tables [vocab, latent_dim].

Config: n_heads 2, n_layers 3, n_codebooks 3, n_conditioning_codebooks 1, latent_dim 4,
embedding_dim 16, vocab_size 10, flash_attn False, dropout 0.1 (off as said).

Tensors:
  "<name>"          every model parameter (state_dict names)
  "codebook.<i>"    the codec codebook tables [10, 4]
  "in.codes" I64    [2, 3, 7] codes, some equal to the MASK token (10) in codebooks 1 and 2
  "in.mask"  I64    [2, 3, 7] the mask applied (1 = masked; codebook 0 never)
  "in.target" I64   [2, 3, 7] the codes before masking (the loss's targets)
  "out.latents"     [2, 12, 7] model.embedding.from_codes(codes, codec)
  "out.logits"      [2, 10, 14] model(latents): b vocab (t c), c = 2 predicted codebooks
  "out.logits_eval" [2, 10, 14] the same in eval mode (loralib's merged weights)
  "out.loss"        []  CrossEntropyLoss(label_smoothing=0.1) as train.py computes it
  "grad.<name>"     d loss / d parameter for every parameter with requires_grad (loralib
                    freezes the base weight of each lora.Linear: no grad.<name> for those)
  "grad.codebook.<i>" d loss / d codebook table (the codec's tables are leaves with grad)
  "gen.in.codes" I64 [1, 3, 7], "gen.in.mask" I64 [1, 3, 7]: model.generate's start tokens and mask
  "gen.out.<case>" I64 [1, 3, 7] model.generate(codec, ...) in eval mode after torch.manual_seed(5), with
                    (steps, temperature, top_p, sample_cutoff) = "sample" (6, 1.0, None, 1.0),
                    "topp_cutoff" (5, 0.8, 0.9, 0.5), "one_step" (1, 1.0, None, 1.0), mask_temperature 10.5
  "buckets" I64     [64, 64] MultiHeadRelativeAttention._relative_position_bucket over
                    positions 0..63 with 32 buckets and max distance 128 (bidirectional), and
  "buckets_long" I64 [1, 700] the buckets of relative positions -350..349
"""
import os
import sys
import types

import torch

here = os.path.dirname(os.path.abspath(__file__))
vampnet_dir, lora_dir, einops_dir = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [vampnet_dir, lora_dir, einops_dir, os.path.join(here, "..", "..", "torchmods", "testdata")]

at = types.ModuleType("audiotools")
at.ml = types.ModuleType("audiotools.ml")
at.ml.BaseModel = type("BaseModel", (torch.nn.Module,), {
    "INTERN": [], "EXTERN": [], "device": property(lambda self: next(self.parameters()).device)})
at.AudioSignal = object
at.util = types.ModuleType("audiotools.util")
sys.modules["audiotools"] = at
sys.modules["audiotools.ml"] = at.ml

# vampnet/__init__.py imports interface.py (the app: audiotools, the codec, samplers); the package is
# entered without it, and its modules are imported from the checkout as they are.
pkg = types.ModuleType("vampnet")
pkg.__path__ = [os.path.join(vampnet_dir, "vampnet")]
sys.modules["vampnet"] = pkg

from st_write import write  # noqa: E402
from vampnet.modules.transformer import VampNet  # noqa: E402

torch.manual_seed(0)
V, C, NC, L = 10, 3, 1, 4
model = VampNet(n_heads=2, n_layers=3, n_codebooks=C, n_conditioning_codebooks=NC, latent_dim=L,
                embedding_dim=16, vocab_size=V, flash_attn=False, dropout=0.1)
for m in model.modules():
    if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("lora_B"):
            p.copy_(torch.randn_like(p) * 0.1)
model.train()

codebooks = [torch.randn(V, L, requires_grad=True) for _ in range(C)]
codec = types.SimpleNamespace(quantizer=types.SimpleNamespace(quantizers=[
    types.SimpleNamespace(codebook=types.SimpleNamespace(weight=w)) for w in codebooks]))

z = torch.randint(0, V, (2, C, 7))
mask = (torch.rand(2, C, 7) < 0.5).long()
mask[:, :NC, :] = 0
mask[0, 1, 0] = 1  # at least one masked token per predicted codebook
mask[1, 2, 6] = 1
z_mask = z.masked_fill(mask.bool(), model.mask_token)

latents = model.embedding.from_codes(z_mask, codec)
logits = model(latents)
# train.py: target = codebook_flatten(z[:, n_cond:]), flat_mask likewise, t_masked = target where masked
target = z[:, NC:, :].permute(0, 2, 1).reshape(2, -1)
flat_mask = mask[:, NC:, :].permute(0, 2, 1).reshape(2, -1)
t_masked = target.masked_fill(~flat_mask.bool(), -100)
loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(logits, t_masked)
loss.backward()

# clones: .eval() below merges each lora update into its weight in place
out = {name: p.detach().clone() for name, p in model.state_dict().items()}
for name, p in model.named_parameters():
    if p.grad is not None:
        out["grad." + name] = p.grad
for i, w in enumerate(codebooks):
    out["codebook.%d" % i] = w.detach()
    out["grad.codebook.%d" % i] = w.grad
out["in.codes"] = z_mask
out["in.target"] = z
out["in.mask"] = mask
out["out.latents"] = latents.detach()
out["out.logits"] = logits.detach()
out["out.loss"] = loss.detach()

# generate (eval mode: loralib merges the updates into the weights), batch 1 as the app runs it,
# on the first row's codes with a new mask (never on the conditioning codebook)
model.eval()
with torch.no_grad():
    out["out.logits_eval"] = model(latents.detach())
gz = z[:1]
gmask = (torch.rand(1, C, 7) < 0.6).long()
gmask[:, :NC, :] = 0
gmask[0, 1, :2] = 1
out["gen.in.codes"] = gz
out["gen.in.mask"] = gmask
for name, kw in [("sample", dict(sampling_steps=6, sampling_temperature=1.0, top_p=None, sample_cutoff=1.0)),
                 ("topp_cutoff", dict(sampling_steps=5, sampling_temperature=0.8, top_p=0.9, sample_cutoff=0.5)),
                 ("one_step", dict(sampling_steps=1, sampling_temperature=1.0, top_p=None, sample_cutoff=1.0))]:
    torch.manual_seed(5)
    out["gen.out." + name] = model.generate(codec, time_steps=7, start_tokens=gz.clone(), mask=gmask.clone(),
                                            mask_temperature=10.5, return_signal=False, **kw)

attn = model.transformer.layers[0].self_attn
pos = torch.arange(64)
out["buckets"] = attn._relative_position_bucket(pos[None, :] - pos[:, None])
out["buckets_long"] = attn._relative_position_bucket(torch.arange(-350, 350)[None, :])

n, size = write(os.path.join(here, "transformer_parity.safetensors"), out,
                {"vampnet": "dce1655ecd9f6044ce9e13e95e1423a50837a615", "loralib": "c4593f060e6a368d7bb5af5273b8e42810cdef90",
                 "einops": "v0.6.1"})
print("wrote %d tensors, %d bytes; loss %.6f" % (n, size, loss.item()))
print("parameters:", ", ".join("%s%s" % (k, list(v.shape)) for k, v in model.state_dict().items()))
