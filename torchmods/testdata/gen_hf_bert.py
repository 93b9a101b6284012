"""Makes HF-style BERT folders from bert_parity.safetensors (written by gen_bert_parity.py).

Run with Debian's python3-torch 1.13.1:  /usr/bin/python3 torchmods/testdata/gen_hf_bert.py

It needs no transformers: the weights are the "mlm" case of gen_bert_parity.py, whose modules carry
HF's BertForMaskedLM names, and the reference logits are that case's.

  hf_bert_mlm/               what BertForMaskedLM.save_pretrained writes (transformers >= 4.31):
      config.json            the case's BertConfig
      model.safetensors      HF's names without the tied cls.predictions.decoder.{weight,bias} and
                             the non-persistent position_ids buffer; metadata format=pt
      inputs.safetensors     forward's arguments: input_ids, attention_mask, token_type_ids, labels
                             (the real tokens but the first, -100 elsewhere)
      outputs.safetensors    MaskedLMOutput: logits, and loss = cross_entropy(logits, labels)

  hf_bert_mlm_bin_sharded/   the same model as older checkpoints on the hub carry it (bert-base-uncased's
                             pytorch_model.bin): torch.save shards with a pytorch_model.bin.index.json,
                             LayerNorm.gamma/beta, the tied decoder copies and position_ids saved.
"""
import json
import os
import shutil

import torch

import st_write

here = os.path.dirname(os.path.abspath(__file__))


def config():
    from gen_bert_parity import EPS, H, HEADS, I, LAYERS, P, T, V
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert",
        "vocab_size": V, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "intermediate_size": I, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": P, "type_vocab_size": T, "initializer_range": 0.02, "layer_norm_eps": EPS,
        "pad_token_id": 0, "position_embedding_type": "absolute", "torch_dtype": "float32",
    }


def write_config(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config(), f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ref, _ = st_write.read(os.path.join(here, "bert_parity.safetensors"))
    sd = {k[len("mlm.sd."):]: v for k, v in ref.items() if k.startswith("mlm.sd.")}
    ids, mask, types, logits = ref["mlm.ids"], ref["mlm.mask"], ref["mlm.types"], ref["mlm.logits"]
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[:, 0] = -100
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    folder = os.path.join(here, "hf_bert_mlm")
    write_config(folder)
    saved = {k: v for k, v in sd.items()
             if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "bert.embeddings.position_ids")}
    st_write.write(os.path.join(folder, "model.safetensors"), saved, {"format": "pt"})
    st_write.write(os.path.join(folder, "inputs.safetensors"),
                   {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels})
    st_write.write(os.path.join(folder, "outputs.safetensors"), {"logits": logits, "loss": loss})
    print(f"wrote {folder}: {len(saved)} tensors, loss {loss.item():.4f}")

    folder = os.path.join(here, "hf_bert_mlm_bin_sharded")
    shutil.rmtree(folder, ignore_errors=True)
    write_config(folder)
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone()
              for k, v in sd.items()}
    names = sorted(legacy)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        torch.save({k: legacy[k] for k in keys}, os.path.join(folder, shard))
        weight_map.update({k: shard for k in keys})
    total = sum(v.numel() * v.element_size() for v in legacy.values())
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {folder}: {len(legacy)} tensors in {len(shards)} shards")


if __name__ == "__main__":
    main()
