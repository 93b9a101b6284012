"""Makes the fixtures of torchmods' CLIP (clip*.go) with OpenAI's own clip/model.py.

The official code is not part of this repository. Export model.py of github.com/openai/CLIP at commit
d05afc436d78f1c48dc0dbf8e5980a9d471f35f6 (git blob 232b7792eb97440642547bd462cf128df9243933, checked
below) into a directory and pass it; run with Debian's python3-torch 1.13.1:

    d=$(mktemp -d)
    git -C /path/to/CLIP show d05afc436d78f1c48dc0dbf8e5980a9d471f35f6:clip/model.py > "$d/model.py"
    /usr/bin/python3 torchmods/testdata/gen_clip.py "$d"

Models, built with model.py's classes, random weights (seed 0), computed in float64 from float32 weights
(what is stored is float32, so Go loads exactly the weights Python used):

  ViT: model.CLIP(embed_dim 24, image 32, vision layers 2, vision width 40, patch 8, context 16, vocab 100,
       text width 32, text heads 2, text layers 2) with its visual replaced by
       model.VisionTransformer(32, 8, 40, 2, heads=4, 24): CLIP itself gives a ViT width // 64 heads, 0 here,
       and one head would not test how heads are split.
  RN:  model.CLIP(embed_dim 24, image 64, vision layers (2, 1, 1, 1), vision width 4, context 8, vocab 50,
       text width 16, text heads 2, text layer 1): a ModifiedResNet with 2 attention-pool heads of 64,
       BatchNorm running statistics randomised, in eval mode (train mode forward stored too).

model.LayerNorm is made to cast only fp16 inputs to float32 (it casts every input, float64 included).
Every parameter is randomised around model.py's initialisation (LayerNorm and BatchNorm weights 1 + N(0, .2),
biases N(0, .1), ResNet convolutions He-normal) so that no term is trivially 0 or 1. Token ids: <sot> = vocab - 2 first, <eot> = vocab - 1,
zeros after it, as clip.tokenize pads; one row holds <eot> twice (argmax picks the first, as HF's padding
with <eot> makes it).

Files:
  clip_vit_parity.safetensors, clip_rn_parity.safetensors:
      "sd.<name>" the state dict; "image", "text"; "image_features", "text_features", "logits_per_image",
      "logits_per_text"; for loss = sum(logits_per_image * g.logits) + sum(image_features * g.image)
      + sum(text_features * g.text), "grad.<name>" for every parameter; "build_model.<arg>" the arguments
      build_model(state_dict) passes to CLIP (caught before it builds anything: for these widths its
      width // 64 heads are 0, which nn.MultiheadAttention refuses), as int64.
      ViT only: "jit.image_features", "jit.text_features": the model with convert_weights' fp16 rounding
      (weights rounded to fp16, computed in float64), what clip_vit_jit.pt must give once read.
      RN only: "train.image_features", the image features with BatchNorm in training mode.
  clip_vit_jit.pt: the ViT model traced with torch.jit.trace and its weights converted as convert_weights
      converts them (fp16 Conv/Linear/MultiheadAttention/proj/text_projection), with input_resolution,
      context_length and vocab_size as buffers: the layout of OpenAI's released archives (ViT-B-16.pt, ...).
  clip_hf_vit/: the ViT model as transformers' CLIPModel.save_pretrained writes it: model.safetensors under
      HF's names (mapped here as transformers' convert_clip_original_pytorch_to_hf.py maps them: in_proj
      split into q/k/v_proj, projections transposed; position_ids buffers included, as files written before
      transformers 4.31 hold them) and config.json in transformers 4.x spelling.
"""
import copy
import hashlib
import importlib.util
import json
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import st_write  # noqa: E402

COMMIT = "d05afc436d78f1c48dc0dbf8e5980a9d471f35f6"
BLOB = "232b7792eb97440642547bd462cf128df9243933"


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

    # model.LayerNorm runs fp16 inputs in float32 by casting every input to float32, which would also
    # cast the float64 computation here down; it is made to cast fp16 only, the same for every other dtype.
    def layer_norm(self, x):
        orig = x.dtype
        return torch.nn.LayerNorm.forward(self, x.float() if orig == torch.float16 else x).type(orig)

    m.LayerNorm.forward = layer_norm
    return m


def randomise(model):
    resnet = hasattr(model.visual, "attnpool")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif "ln_" in n or ".bn" in n or n.endswith("downsample.1.weight") or n.startswith("ln_final"):
                p.copy_(1 + torch.randn_like(p) * 0.2)
            elif resnet and p.dim() == 4:
                # He-normal ResNet convolutions: nn.Conv2d's default shrinks the signal through a dozen
                # layers until the image features are the attention pool's biases alone.
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (2 / fan_in) ** 0.5)
        for n, b in model.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            elif n.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)


def tokens(batch, ctx, vocab, eots, gen):
    """Rows of <sot> random ids <eot> 0..., <eot> at the given positions; the last row gets a second <eot>."""
    ids = torch.zeros(batch, ctx, dtype=torch.long)
    for b, e in enumerate(eots):
        ids[b, 0] = vocab - 2
        ids[b, 1:e] = torch.randint(1, vocab - 2, (e - 1,), generator=gen)
        ids[b, e] = vocab - 1
    last = eots[-1]
    ids[-1, last + 2] = vocab - 1  # a second <eot> (a padded row): argmax must take the first
    return ids


def build_model_args(official, sd):
    """build_model's arguments to CLIP, caught before CLIP is built."""
    class Caught(Exception):
        pass

    def catch(*args):
        raise Caught(args)

    names = ["embed_dim", "image_resolution", "vision_layers", "vision_width", "vision_patch_size",
             "context_length", "vocab_size", "transformer_width", "transformer_heads", "transformer_layers"]
    orig = official.CLIP
    official.CLIP = catch
    try:
        official.build_model(dict(sd))
    except Caught as c:
        args = c.args[0]
    finally:
        official.CLIP = orig
    out = {}
    for n, a in zip(names, args):
        if a is None:
            continue
        out["build_model." + n] = torch.tensor(list(a) if isinstance(a, (tuple, list)) else [a], dtype=torch.long)
    return out


def run(model, image, text, g):
    """Features, logits and the loss's gradients, in float64."""
    model.zero_grad()
    img = model.encode_image(image)
    txt = model.encode_text(text)
    lpi, lpt = model(image, text)
    loss = (lpi * g["logits"]).sum() + (img * g["image"]).sum() + (txt * g["text"]).sum()
    loss.backward()
    out = {"image_features": img, "text_features": txt, "logits_per_image": lpi, "logits_per_text": lpt}
    out = {k: v.detach().float() for k, v in out.items()}
    out.update({"grad." + n: p.grad.float() for n, p in model.named_parameters()})
    return out


def fixture(official, model, image, text, gen):
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {"sd." + k: v for k, v in sd.items()}
    out.update(build_model_args(official, sd))
    d = copy.deepcopy(model).double().eval()
    emb = d.text_projection.shape[1]
    g = {"logits": torch.randn(image.shape[0], text.shape[0], generator=gen, dtype=torch.float64),
         "image": torch.randn(image.shape[0], emb, generator=gen, dtype=torch.float64),
         "text": torch.randn(text.shape[0], emb, generator=gen, dtype=torch.float64)}
    out.update(run(d, image.double(), text, g))
    out.update({"g." + k: v.float() for k, v in g.items()})
    out.update({"image": image, "text": text})
    return out, d


def convert_half(official, model):
    """convert_weights' fp16 rounding, kept in float64 for computing."""
    h = copy.deepcopy(model).float()
    official.convert_weights(h)
    return h.double().eval()


def hf_state_dict(sd, vision_layers, text_layers, ctx, grid):
    """OpenAI's names -> transformers' CLIPModel names (convert_clip_original_pytorch_to_hf.py)."""
    out = {}

    def layer(src, dst):
        q, k, v = sd[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = sd[src + "attn.in_proj_bias"].chunk(3, dim=0)
        for name, w, b in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            out[f"{dst}self_attn.{name}.weight"], out[f"{dst}self_attn.{name}.bias"] = w, b
        for wb in ("weight", "bias"):
            out[f"{dst}self_attn.out_proj.{wb}"] = sd[f"{src}attn.out_proj.{wb}"]
            out[f"{dst}layer_norm1.{wb}"] = sd[f"{src}ln_1.{wb}"]
            out[f"{dst}layer_norm2.{wb}"] = sd[f"{src}ln_2.{wb}"]
            out[f"{dst}mlp.fc1.{wb}"] = sd[f"{src}mlp.c_fc.{wb}"]
            out[f"{dst}mlp.fc2.{wb}"] = sd[f"{src}mlp.c_proj.{wb}"]

    for i in range(text_layers):
        layer(f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}.")
    for i in range(vision_layers):
        layer(f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}.")
    out["text_model.embeddings.token_embedding.weight"] = sd["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = sd["positional_embedding"]
    out["text_model.embeddings.position_ids"] = torch.arange(ctx).unsqueeze(0)
    out["vision_model.embeddings.patch_embedding.weight"] = sd["visual.conv1.weight"]
    out["vision_model.embeddings.class_embedding"] = sd["visual.class_embedding"]
    out["vision_model.embeddings.position_embedding.weight"] = sd["visual.positional_embedding"]
    out["vision_model.embeddings.position_ids"] = torch.arange(grid * grid + 1).unsqueeze(0)
    for wb in ("weight", "bias"):
        out[f"text_model.final_layer_norm.{wb}"] = sd[f"ln_final.{wb}"]
        out[f"vision_model.pre_layrnorm.{wb}"] = sd[f"visual.ln_pre.{wb}"]
        out[f"vision_model.post_layernorm.{wb}"] = sd[f"visual.ln_post.{wb}"]
    out["visual_projection.weight"] = sd["visual.proj"].t().contiguous()
    out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    out["logit_scale"] = sd["logit_scale"]
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    official = load_official(sys.argv[1])
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    meta = {"torch": torch.__version__, "clip_commit": COMMIT}

    # --- ViT ---
    vit = official.CLIP(24, 32, 2, 64, 8, 16, 100, 32, 2, 2)  # vision width 64 so that CLIP builds (1 head)
    vit.visual = official.VisionTransformer(input_resolution=32, patch_size=8, width=40, layers=2, heads=4, output_dim=24)
    randomise(vit)
    vit.eval()
    image = torch.randn(2, 3, 32, 32, generator=gen)
    text = tokens(3, 16, 100, [5, 15, 9], gen)
    out, _ = fixture(official, vit, image, text, gen)
    h = convert_half(official, vit)
    with torch.no_grad():
        out["jit.image_features"] = h.encode_image(image.double()).float()
        out["jit.text_features"] = h.encode_text(text).float()
    n, size = st_write.write(os.path.join(here, "clip_vit_parity.safetensors"), out, meta)
    print(f"clip_vit_parity.safetensors: {n} tensors, {size} bytes")

    # The released archives: a traced model, fp16 weights, three int attributes the state dict carries.
    traced_src = copy.deepcopy(vit).float().eval()
    for name, v in (("input_resolution", 32), ("context_length", 16), ("vocab_size", 100)):
        if hasattr(traced_src, name):
            delattr(traced_src, name)  # a Python int in model.py, a tensor in the archives
        traced_src.register_buffer(name, torch.tensor(v))
    traced = torch.jit.trace(traced_src, (image, text), check_trace=False)
    hsd = copy.deepcopy(vit).float()
    official.convert_weights(hsd)
    halved = {k for k, v in hsd.state_dict().items() if v.dtype == torch.float16}
    with torch.no_grad():
        for n_, p in traced.named_parameters():
            if n_ in halved:
                p.data = p.data.half()
    assert halved, "convert_weights converted nothing"
    traced.save(os.path.join(here, "clip_vit_jit.pt"))
    print(f"clip_vit_jit.pt: {len(halved)} fp16 tensors, {os.path.getsize(os.path.join(here, 'clip_vit_jit.pt'))} bytes")

    # --- HF CLIPModel folder of the same weights ---
    hd = os.path.join(here, "clip_hf_vit")
    os.makedirs(hd, exist_ok=True)
    hsd = hf_state_dict(vit.state_dict(), 2, 2, 16, 4)
    st_write.write(os.path.join(hd, "model.safetensors"), hsd, {"format": "pt"})
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592, "projection_dim": 24, "torch_dtype": "float32",
        "transformers_version": "4.44.0",
        "text_config": {"model_type": "clip_text_model", "hidden_size": 32, "intermediate_size": 128,
                        "num_attention_heads": 2, "num_hidden_layers": 2, "max_position_embeddings": 16,
                        "vocab_size": 100, "projection_dim": 24, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                        "bos_token_id": 98, "eos_token_id": 2, "pad_token_id": 1},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 40, "intermediate_size": 160,
                          "num_attention_heads": 4, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8,
                          "num_channels": 3, "projection_dim": 24, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
    }
    with open(os.path.join(hd, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"clip_hf_vit/: {len(hsd)} tensors")

    # --- ModifiedResNet ---
    torch.manual_seed(2)
    rn = official.CLIP(24, 64, (2, 1, 1, 1), 4, None, 8, 50, 16, 2, 1)
    randomise(rn)
    rn.eval()
    image = torch.randn(2, 3, 64, 64, generator=gen)
    text = tokens(3, 8, 50, [3, 7, 2], gen)
    out, d = fixture(official, rn, image, text, gen)
    d.train()
    with torch.no_grad():
        out["train.image_features"] = d.encode_image(image.double()).float()
    n, size = st_write.write(os.path.join(here, "clip_rn_parity.safetensors"), out, meta)
    print(f"clip_rn_parity.safetensors: {n} tensors, {size} bytes")


if __name__ == "__main__":
    main()
