"""Makes the HF ViTMAE fixtures from mae_parity.safetensors (written by gen_mae_parity.py).

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 mae/testdata/gen_hf_vitmae.py

It needs no transformers: the weights are gen_mae_parity.py's models_mae.py weights under HF's names
(gen_mae_parity.hf_names), and the reference outputs are gen_mae_parity.py's, which HF's
ViTMAEForPreTraining computes too given the same noise (same embeddings, masking by argsort of the
noise, pre-norm layers, decoder and loss; the mask ratio comes from config.json).

  hf_vitmae_<case>/   for cases "grey" (1 channel, pixel loss) and "rgb" (3 channels, norm_pix_loss):
      config.json         the case's ViTMAEConfig (layer_norm_eps 1e-6 as MAE, heads and all)
      model.safetensors   what save_pretrained writes: transformers 4.x names, metadata format=pt
      inputs.safetensors  forward's arguments: pixel_values, noise
      outputs.safetensors ViTMAEForPreTrainingOutput: loss, logits, mask, ids_restore

  vitmae_v5_state_dict.pt                  torch.save(model.state_dict()) of a transformers 5.x model
                                           (grey): vit.layers.N, attention.{q,k,v,o}_proj, mlp.fc{1,2},
                                           decoder.decoder_layers.N with the same module names.
  vitmae_v5_save_pretrained.safetensors    5.x save_pretrained (grey): 4.x module names, but the
                                           decoder layers under decoder.decoder_encoder.layer.N.
"""
import json
import os
import re
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
sys.path.insert(0, here)
import st_write  # noqa: E402
from gen_mae_parity import CASES, hf_names  # noqa: E402

OUTPUTS = {"loss": "loss", "logits": "pred", "mask": "mask", "ids_restore": "ids_restore"}
STATE = ("imgs", "noise", "loss", "pred", "mask", "ids_restore")

V5_SUB = [("attention.attention.query", "attention.q_proj"), ("attention.attention.key", "attention.k_proj"),
          ("attention.attention.value", "attention.v_proj"), ("attention.output.dense", "attention.o_proj"),
          ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2")]


def v5_state_dict(hf):
    """4.x names -> the module names of transformers 5.x's ViTMAE."""
    out = {}
    for k, v in hf.items():
        m = re.match(r"^(vit\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.*)$", k)
        if m:
            prefix = "vit.layers" if m.group(1) == "vit.encoder.layer" else "decoder.decoder_layers"
            rest = m.group(3)
            for old, new in V5_SUB:
                if rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            k = f"{prefix}.{m.group(2)}.{rest}"
        out[k] = v
    return out


def v5_save_pretrained(hf):
    """4.x names with the decoder layers where 5.x's save_pretrained puts them."""
    return {re.sub(r"^decoder\.decoder_layers\.", "decoder.decoder_encoder.layer.", k): v for k, v in hf.items()}


def main():
    ref, _ = st_write.read(os.path.join(here, "mae_parity.safetensors"))
    for case, (img, p, c, d, depth, h, dd, ddepth, dh, npl, ratio) in CASES.items():
        sd = {k[len(case) + 1:]: v for k, v in ref.items()
              if k.startswith(case + ".") and not k.startswith(case + ".grad.") and k[len(case) + 1:] not in STATE}
        hf = hf_names(sd)
        folder = os.path.join(here, f"hf_vitmae_{case}")
        os.makedirs(folder, exist_ok=True)
        config = {
            "architectures": ["ViTMAEForPreTraining"], "model_type": "vit_mae",
            "image_size": img, "patch_size": p, "num_channels": c,
            "hidden_size": d, "num_hidden_layers": depth, "num_attention_heads": h, "intermediate_size": 4 * d,
            "decoder_hidden_size": dd, "decoder_num_hidden_layers": ddepth, "decoder_num_attention_heads": dh,
            "decoder_intermediate_size": 4 * dd,
            "hidden_act": "gelu", "qkv_bias": True, "layer_norm_eps": 1e-6,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
            "mask_ratio": ratio, "norm_pix_loss": npl, "torch_dtype": "float32",
        }
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        st_write.write(os.path.join(folder, "model.safetensors"), hf, {"format": "pt"})
        st_write.write(os.path.join(folder, "inputs.safetensors"),
                       {"pixel_values": ref[f"{case}.imgs"], "noise": ref[f"{case}.noise"]})
        st_write.write(os.path.join(folder, "outputs.safetensors"), {k: ref[f"{case}.{v}"] for k, v in OUTPUTS.items()})
        print(f"wrote {folder}: {len(hf)} tensors")
        if case == "grey":
            torch.save(v5_state_dict(hf), os.path.join(here, "vitmae_v5_state_dict.pt"))
            st_write.write(os.path.join(here, "vitmae_v5_save_pretrained.safetensors"), v5_save_pretrained(hf), {"format": "pt"})
            print("wrote the transformers 5.x naming variants of grey")


if __name__ == "__main__":
    main()
