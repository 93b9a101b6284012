"""Makes mae_parity.safetensors, the PyTorch reference for mae.Model, by RUNNING the official code.

Run from the repository root with Debian's python3-torch 1.13.1 (the libtorch the Go side links),
after checking out the official code and timm at the pinned commits:
    git clone https://github.com/facebookresearch/mae /tmp/mae
    git -C /tmp/mae checkout efb2a8062c206524e35e47d04501ed4f544c0ae8
    git clone https://github.com/huggingface/pytorch-image-models /tmp/timm
    git -C /tmp/timm checkout 1d01c2b68c90619b173d4675d9a283be2bd44a33    # tag v0.3.3
    /usr/bin/python3 mae/testdata/gen_mae_parity.py /tmp/mae /tmp/timm
    /usr/bin/python3 mae/testdata/gen_hf_vitmae.py     # the HF fixtures derive from this file's output

(gen_hf_vitmae.py imports CASES and hf_names from here without running main, so they need neither
checkout.)

The model is MaskedAutoencoderViT of facebookresearch/mae's models_mae.py at commit
efb2a8062c206524e35e47d04501ed4f544c0ae8 (main's head; models_mae.py and util/pos_embed.py are those
of 6a2ba40, unchanged since), imported from the first argument, with timm's PatchEmbed and Block from
pytorch-image-models v0.3.3 (1d01c2b68c90619b173d4675d9a283be2bd44a33), imported from the second.
MAE's README names timm 0.3.2; its timm/models/vision_transformer.py and timm/models/layers/helpers.py
are the same blobs as 0.3.3's (git diff 6504a428 v0.3.3 on them is empty). Nothing of either is copied here; the git blob ids of the files
used are checked before anything runs. norm_layer = partial(nn.LayerNorm, eps=1e-6), as
models_mae.py's own mae_vit_*_dec512d8b constructors pass it.

Two one-line patches, applied in memory before the import (the files are not touched):
  timm/models/layers/helpers.py:6  `from torch._six import container_abcs`: torch 1.13's torch._six
      has no container_abcs any more (it was collections.abc), so it is set to collections.abc on the
      module. helpers.py uses it only in `isinstance(x, container_abcs.Iterable)` (to_2tuple): the
      same class, the same answer.
  util/pos_embed.py:56  `np.arange(embed_dim // 2, dtype=np.float)`: numpy 1.24 removed the
      np.float alias (it was Python's float, which numpy makes float64), so np.float = np.float64:
      the same dtype, the same table.
Neither changes a number.

One departure, for the 1-channel case only: models_mae.py's patchify hard-codes 3 channels
(`imgs.reshape(shape=(N, 3, h, p, w, p))` and `p**2 * 3`), so forward_loss cannot run on a grey
image. The "grey" case uses a subclass whose patchify is the official body with 3 replaced by the
model's in_chans; on the "rgb" case that patchify is checked to equal the official one bit for bit,
and the "rgb" case itself runs the official patchify. Everything else (PatchEmbed,
random_masking, forward_encoder, forward_decoder, forward_loss, the sin-cos tables) is the
official code in both cases.

Masking: the official random_masking draws its noise with torch.rand(N, L). The generator draws
that noise itself, stores it as "<c>.noise", restores the RNG state, and runs the official
forward_encoder, forward_decoder and forward_loss (forward's body, called one by one so that
ids_restore is kept), which draws the same noise again; mask and ids_restore are checked to be what
argsort of the stored noise gives, and model(imgs, ratio) from the same RNG state to give the same
loss, pred and mask bit for bit. The Go side takes the stored noise.

Weights: torch.manual_seed(3) and the previous generator's order of draws: each case's modules'
default initialisation (nn.Linear/nn.Conv2d, made by the official constructor as by the
transcription), then randomise() (every trainable parameter random and non-trivial), the images and
the noise. The official initialize_weights() still runs, inside torch.random.fork_rng so that its
draws (overwritten by randomise() anyway) do not shift the stream. So the weights, images and noise
are bit for bit those the fixture held when it came from the transcription (mae_ref.py), and
official_full.pth, official_encoder.pth and the HF fixtures that imageclf and cmd/repro train from
keep their weights.

mae_ref.py, the transcription of models_mae.py written with torch alone, is no longer the parity
reference. It stays because bench/torch_bench.py runs it as the PyTorch side of the ViT-B MAE
benchmark without needing the two checkouts; this script checks it against the official model on
both cases (same weights, same noise: loss, pred, mask and every gradient) and fails if they differ.

Each case "<c>" stores the state_dict as "<c>.<name>", the images "<c>.imgs", the masking noise
"<c>.noise", the outputs "<c>.loss", "<c>.pred", "<c>.mask", "<c>.ids_restore" and the gradients
of the loss "<c>.grad.<name>" for every trainable parameter.
"""
import collections.abc
import hashlib
import os
import sys
from functools import partial

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402

MAE_COMMIT = "efb2a8062c206524e35e47d04501ed4f544c0ae8"
TIMM_COMMIT = "1d01c2b68c90619b173d4675d9a283be2bd44a33"  # v0.3.3
# git blob ids at those commits (git ls-tree COMMIT PATH)
BLOBS = {
    ("mae", "models_mae.py"): "880e28f8225fa9b56d7ba2963c2cb2c9d6f3d896",
    ("mae", "util/pos_embed.py"): "6acf8bd3b3af48702648792cc84bdbc9472b94fd",
    ("timm", "timm/models/vision_transformer.py"): "72f3a61a63bb2163bfbb7884907fb2a76cd258ca",
    ("timm", "timm/models/layers/helpers.py"): "8d7b559b12702329dc061a146fbb0427ce0aaa70",
    ("timm", "timm/version.py"): "80eb7f98f4cb71200c816fc60695b1028924b01b",
}
# the lines the two in-memory patches stand in for: (checkout, file, line number, text)
PATCHED = [("timm", "timm/models/layers/helpers.py", 6, "from torch._six import container_abcs"),
           ("mae", "util/pos_embed.py", 56, "omega = np.arange(embed_dim // 2, dtype=np.float)")]


def randomise(m):
    """Random but non-trivial values everywhere (the test loads them, so the init does not matter here)."""
    with torch.no_grad():
        for n, prm in m.named_parameters():
            if prm.requires_grad:
                prm.copy_(torch.randn_like(prm) * (0.3 if prm.dim() > 1 else 0.1) + (1.0 if "norm" in n and n.endswith("weight") else 0.0))


def hf_names(sd):
    """The official state_dict under HF ViTMAE's names as transformers 4.x (and the hub) has them, q, k, v split."""
    hf = {}
    for k, v in sd.items():
        pre, rest = ("vit.", k) if not (k.startswith("decoder") or k == "mask_token") else ("decoder.", k)
        parts = rest.split(".")
        if parts[0] in ("blocks", "decoder_blocks"):
            layer = ("vit.encoder.layer." if parts[0] == "blocks" else "decoder.decoder_layers.") + parts[1] + "."
            sub = ".".join(parts[2:])
            if sub.startswith("attn.qkv."):
                wb = sub.split(".")[-1]
                q, kk, vv = v.chunk(3, dim=0)
                for nm, t in (("query", q), ("key", kk), ("value", vv)):
                    hf[layer + "attention.attention." + nm + "." + wb] = t.clone()
                continue
            table = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
                     "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
            mod, wb = sub.rsplit(".", 1)
            hf[layer + table[mod] + "." + wb] = v
            continue
        named = {"cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
                 "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
                 "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
                 "norm.weight": "vit.layernorm.weight", "norm.bias": "vit.layernorm.bias"}
        hf[named.get(k, "decoder." + k if pre == "decoder." else k)] = v
    return hf


CASES = {
    # name: (img, patch, chans, dim, depth, heads, dec_dim, dec_depth, dec_heads, norm_pix, ratio)
    "rgb": (16, 4, 3, 32, 2, 4, 24, 2, 4, True, 0.75),
    "grey": (28, 7, 1, 16, 1, 2, 8, 1, 2, False, 0.6),
}


def git_blob(path):
    with open(path, "rb") as f:
        data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def import_official(mae_dir, timm_dir):
    """models_mae from mae_dir and timm from timm_dir, at the pinned blobs, with the two patches."""
    roots = {"mae": mae_dir, "timm": timm_dir}
    for (which, rel), blob in BLOBS.items():
        got = git_blob(os.path.join(roots[which], rel))
        if got != blob:
            sys.exit(f"{roots[which]}/{rel}: blob {got}, want {blob} (mae {MAE_COMMIT}, timm {TIMM_COMMIT})")
    for which, rel, no, text in PATCHED:
        with open(os.path.join(roots[which], rel)) as f:
            line = f.read().splitlines()[no - 1]
        assert line.strip() == text, (rel, no, line)

    import torch._six
    assert not hasattr(torch._six, "container_abcs")
    torch._six.container_abcs = collections.abc  # helpers.py:6
    assert "float" not in np.__dict__
    np.float = np.float64  # pos_embed.py:56

    sys.path[:0] = [mae_dir, timm_dir]
    import models_mae
    import timm
    import timm.models.vision_transformer as vt
    assert timm.__version__ == "0.3.3"
    assert os.path.samefile(os.path.dirname(models_mae.__file__), mae_dir), models_mae.__file__
    assert os.path.samefile(os.path.dirname(os.path.dirname(timm.__file__)), timm_dir), timm.__file__
    assert models_mae.Block is vt.Block and models_mae.PatchEmbed is vt.PatchEmbed
    return models_mae


def pinned(official, grey):
    """The official class, initialize_weights' draws kept off the global stream; for grey, patchify
    with in_chans channels instead of 3 (the official body otherwise)."""
    class Pinned(official):
        def initialize_weights(self):
            with torch.random.fork_rng():
                super().initialize_weights()

    class AnyChannels(Pinned):
        def patchify(self, imgs):
            p = self.patch_embed.patch_size[0]
            c = self.patch_embed.proj.in_channels
            assert imgs.shape[2] == imgs.shape[3] and imgs.shape[2] % p == 0

            h = w = imgs.shape[2] // p
            x = imgs.reshape(shape=(imgs.shape[0], c, h, p, w, p))
            x = torch.einsum('nchpwq->nhwpqc', x)
            x = x.reshape(shape=(imgs.shape[0], h * w, p**2 * c))
            return x
    return AnyChannels if grey else Pinned


def run_official(m, imgs, ratio, rng):
    """forward's body, one call at a time (forward does not return ids_restore)."""
    torch.set_rng_state(rng)
    latent, mask, ids_restore = m.forward_encoder(imgs, ratio)
    pred = m.forward_decoder(latent, ids_restore)
    loss = m.forward_loss(imgs, pred, mask)
    return loss, pred, mask, ids_restore


def check_transcription(sd, case, imgs, noise, ratio, ref):
    """mae_ref.py (bench/torch_bench.py's model) against the official outputs: the same numbers."""
    from mae_ref import MaskedAutoencoderViT as Transcribed
    img, p, c, d, depth, h, dd, ddepth, dh, npl, _ = CASES[case]
    t = Transcribed(img, p, c, d, depth, h, dd, ddepth, dh, 4.0, npl)
    t.load_state_dict(sd, strict=True)
    loss, pred, mask, ids = t(imgs, ratio, noise)
    loss.backward()
    worst = max(rel(loss, ref[f"{case}.loss"]), rel(pred, ref[f"{case}.pred"]))
    assert torch.equal(mask, ref[f"{case}.mask"]) and torch.equal(ids, ref[f"{case}.ids_restore"])
    for n, prm in t.named_parameters():
        if prm.requires_grad:
            worst = max(worst, rel(prm.grad, ref[f"{case}.grad.{n}"]))
    assert worst < 1e-5, (case, worst)
    print(f"{case}: mae_ref.py agrees with the official model, max relative difference {worst:.2e}")


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    mae_dir, timm_dir = (os.path.abspath(a) for a in sys.argv[1:])
    models_mae = import_official(mae_dir, timm_dir)
    sys.path.insert(0, here)

    torch.manual_seed(3)
    out = {}
    for case, (img, p, c, d, depth, h, dd, ddepth, dh, npl, ratio) in CASES.items():
        cls = pinned(models_mae.MaskedAutoencoderViT, grey=c != 3)
        m = cls(img_size=img, patch_size=p, in_chans=c, embed_dim=d, depth=depth, num_heads=h,
                decoder_embed_dim=dd, decoder_depth=ddepth, decoder_num_heads=dh, mlp_ratio=4.,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), norm_pix_loss=npl)
        randomise(m)
        imgs = torch.randn(3, c, img, img)
        rng = torch.get_rng_state()
        noise = torch.rand(3, (img // p) ** 2)
        after = torch.get_rng_state()

        if c == 3:
            ours = pinned(models_mae.MaskedAutoencoderViT, grey=True).patchify(m, imgs)
            assert torch.equal(ours, m.patchify(imgs)), "patchify with in_chans is the official one at 3 channels"
        with torch.no_grad():
            torch.set_rng_state(rng)
            whole = m(imgs, ratio)  # the official forward, from the same RNG state
        loss, pred, mask, ids = run_official(m, imgs, ratio, rng)
        assert torch.equal(torch.get_rng_state(), after), "random_masking drew exactly the stored noise"
        assert all(torch.equal(a, b) for a, b in zip(whole, (loss, pred, mask)))
        keep = int(noise.shape[1] * (1 - ratio))
        assert torch.equal(ids, torch.argsort(torch.argsort(noise, dim=1), dim=1))
        assert torch.equal(mask, (ids >= keep).float())
        loss.backward()

        for n, t in m.state_dict().items():
            out[f"{case}.{n}"] = t
        for n, prm in m.named_parameters():
            if prm.requires_grad:
                assert prm.grad is not None, n
                out[f"{case}.grad.{n}"] = prm.grad
        out.update({f"{case}.imgs": imgs, f"{case}.noise": noise, f"{case}.loss": loss.detach(),
                    f"{case}.pred": pred.detach(), f"{case}.mask": mask, f"{case}.ids_restore": ids})
        print(case, "loss", loss.item())
        with torch.random.fork_rng():  # its constructor's draws must not shift the stream
            check_transcription(m.state_dict(), case, imgs, noise, ratio, out)

        if case == "grey":
            # The same weights as the published files carry them: the official {"model": state_dict}
            # torch.save files (with and without the decoder), and HF ViTMAE's names with q, k, v split.
            sd = m.state_dict()
            torch.save({"model": sd, "epoch": 1}, os.path.join(here, "official_full.pth"))
            enc = {k: v for k, v in sd.items() if not (k.startswith("decoder") or k == "mask_token")}
            torch.save({"model": enc}, os.path.join(here, "official_encoder.pth"))
            st_write.write(os.path.join(here, "hf_vitmae.safetensors"), hf_names(sd), {"format": "pt"})

    n, size = st_write.write(os.path.join(here, "mae_parity.safetensors"), out,
                             {"torch": torch.__version__, "mae": MAE_COMMIT, "timm": TIMM_COMMIT})
    print(f"wrote {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
