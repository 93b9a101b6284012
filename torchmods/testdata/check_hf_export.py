"""Checks a HF folder exported by repro against a fixture folder written by a gen_hf_*.py script.

Run by the Go export tests:  /usr/bin/python3 torchmods/testdata/check_hf_export.py EXPORTED REFERENCE

It exits 0 when EXPORTED's model.safetensors has exactly REFERENCE's tensor names, with equal shapes,
dtypes and values, and metadata format=pt (what from_pretrained requires); when every key of
REFERENCE's config.json is in EXPORTED's with an equal value; and, for model_type "bert", when the
exported weights load into gen_bert_parity.py's BertForMaskedLM (HF's module names; only the tied
decoder copies and the position_ids buffer may be missing, as from_pretrained ties and makes them)
and reproduce REFERENCE's logits from its inputs within 1e-5. Otherwise it prints every difference
and exits 1.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_write  # noqa: E402


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    return a == b


def main(exported, reference):
    problems = []
    got, meta = st_write.read(os.path.join(exported, "model.safetensors"))
    want, _ = st_write.read(os.path.join(reference, "model.safetensors"))
    if (meta or {}).get("format") != "pt":
        problems.append(f"metadata {meta}, want format=pt")
    for name in sorted(set(got) | set(want)):
        if name not in got:
            problems.append(f"missing tensor {name}")
        elif name not in want:
            problems.append(f"extra tensor {name}")
        elif got[name].shape != want[name].shape or got[name].dtype != want[name].dtype:
            problems.append(f"{name}: {got[name].dtype} {list(got[name].shape)}, want {want[name].dtype} {list(want[name].shape)}")
        elif not torch.equal(got[name], want[name]):
            problems.append(f"{name}: values differ by {(got[name].double() - want[name].double()).abs().max().item():.3g}")
    with open(os.path.join(exported, "config.json")) as f:
        gc = json.load(f)
    with open(os.path.join(reference, "config.json")) as f:
        wc = json.load(f)
    for k, v in sorted(wc.items()):
        if k not in gc:
            problems.append(f"config.json lacks {k}")
        elif not same(gc[k], v):
            problems.append(f"config.json {k}: {gc[k]!r}, want {v!r}")
    if gc.get("model_type") == "bert" and not problems:
        from gen_bert_parity import BertForMaskedLM
        model = BertForMaskedLM()
        res = model.load_state_dict(got, strict=False)
        allowed = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "bert.embeddings.position_ids"}
        if set(res.missing_keys) - allowed or res.unexpected_keys:
            problems.append(f"load_state_dict: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
        else:
            inputs, _ = st_write.read(os.path.join(reference, "inputs.safetensors"))
            outputs, _ = st_write.read(os.path.join(reference, "outputs.safetensors"))
            with torch.no_grad():
                logits = model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
            err = (logits - outputs["logits"]).abs().max().item() / outputs["logits"].abs().max().item()
            if not err < 1e-5:
                problems.append(f"logits of the exported weights differ by {err:.3g} (relative)")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"ok: {len(got)} tensors and config.json match {reference}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
