"""Makes mae_parity.safetensors, the PyTorch reference for mae.Model.

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 mae/testdata/gen_mae_parity.py
(gen_hf_vitmae.py imports hf_names from here, without running it.)

The model is mae_ref.py's transcription of facebookresearch/mae's models_mae.py.

Each case "<c>" stores the state_dict as "<c>.<name>", the images "<c>.imgs", the masking noise
"<c>.noise", the outputs "<c>.loss", "<c>.pred", "<c>.mask", "<c>.ids_restore" and the gradients
of the loss "<c>.grad.<name>" for every parameter.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402
from mae_ref import MaskedAutoencoderViT  # noqa: E402


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


def main():
    torch.manual_seed(3)
    out = {}
    for case, (img, p, c, d, depth, h, dd, ddepth, dh, npl, ratio) in CASES.items():
        m = MaskedAutoencoderViT(img, p, c, d, depth, h, dd, ddepth, dh, 4.0, npl)
        randomise(m)
        imgs = torch.randn(3, c, img, img)
        noise = torch.rand(3, (img // p) ** 2)
        loss, pred, mask, ids = m(imgs, ratio, noise)
        loss.backward()
        for n, t in m.state_dict().items():
            out[f"{case}.{n}"] = t
        for n, prm in m.named_parameters():
            if prm.grad is not None:
                out[f"{case}.grad.{n}"] = prm.grad
        out.update({f"{case}.imgs": imgs, f"{case}.noise": noise, f"{case}.loss": loss.detach(),
                    f"{case}.pred": pred.detach(), f"{case}.mask": mask, f"{case}.ids_restore": ids})
        print(case, "loss", loss.item())

        if case == "grey":
            # The same weights as the published files carry them: the official {"model": state_dict}
            # torch.save files (with and without the decoder), and HF ViTMAE's names with q, k, v split.
            here = os.path.dirname(__file__)
            sd = m.state_dict()
            torch.save({"model": sd, "epoch": 1}, os.path.join(here, "official_full.pth"))
            enc = {k: v for k, v in sd.items() if not (k.startswith("decoder") or k == "mask_token")}
            torch.save({"model": enc}, os.path.join(here, "official_encoder.pth"))
            st_write.write(os.path.join(here, "hf_vitmae.safetensors"), hf_names(sd), {"format": "pt"})

    n, size = st_write.write(os.path.join(os.path.dirname(__file__), "mae_parity.safetensors"), out,
                             {"torch": torch.__version__})
    print(f"wrote {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
