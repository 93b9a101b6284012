"""Fixtures for torchmods' Llama-family decoder (llama.go, llama_hf.go, generate.go).

Run with Debian's python3-torch 1.13:  /usr/bin/python3 torchmods/testdata/gen_llama.py

There is no transformers package here, so the forward pass is a transcription of Hugging Face's code,
read at these commits of github.com/huggingface/transformers:

  src/transformers/models/llama/modeling_llama.py      @ 5dd4a63548857797727ae73eeb6a6e886ea02a3e
      LlamaRMSNorm, LlamaRotaryEmbedding.forward, rotate_half, apply_rotary_pos_emb, LlamaMLP, repeat_kv,
      eager_attention_forward, LlamaAttention, LlamaDecoderLayer, LlamaModel.forward and
      _prepare_4d_causal_attention_mask_with_cache_position, LlamaForCausalLM, LlamaPreTrainedModel._init_weights
  src/transformers/modeling_rope_utils.py              @ 0044e3b3facff1a1ad60b235c69d5b45beae75a4
      _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters, _compute_llama3_parameters.
      The rotary dimension is head_dim when config.json sets it, as later releases compute it
      (`getattr(config, "head_dim", None) or hidden_size // num_attention_heads`); at this commit it was
      always hidden_size // num_attention_heads, which differs only for configs whose head_dim is not that.
  src/transformers/models/mistral/modeling_mistral.py  @ 005a187ea7c5a291ef79f737d47233641ac17f24
      the sliding-window term of MistralModel._prepare_4d_causal_attention_mask_with_cache_position, and
      MistralForCausalLM's loss (logits[..., :-1] against labels[..., 1:], mean over labels != -100), which
      is what Llama's ForCausalLMLoss computes too.
  GenerationMixin.prepare_inputs_for_generation (src/transformers/generation/utils.py): position ids of a
      left-padded batch are attention_mask.cumsum(-1) - 1, with 1 at the padding.
  src/transformers/generation/logits_process.py: TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
      (min_tokens_to_keep 1), applied in that order as generate() does.

Attention is HF's eager path (softmax in float32, mask added as the dtype's lowest value); on the CPU
HF's sdpa path computes the same numbers up to rounding.

It writes:

  llama_gqa/            a LlamaForCausalLM as save_pretrained writes it: config.json in transformers 4.x
                        spelling (grouped-query attention, 4 heads over 2 key/value heads, an explicit
                        head_dim of 24 that is not hidden_size / heads, untied lm_head, pad_token_id 0),
                        model.safetensors; inputs.safetensors and outputs.safetensors for `repro hf run`
                        (input_ids, attention_mask, labels -> logits, loss; HF's forward without
                        position_ids counts positions 0.. whatever the padding)
  llama_tied_sharded/   a second LlamaForCausalLM in transformers 5.x spelling (rope_parameters with
                        rope_type "linear", factor 2; dtype; no num_key_value_heads), tied embeddings (no
                        lm_head.weight in the files), saved as two safetensors shards with
                        model.safetensors.index.json; inputs add position_ids
  llama_mistral/        a MistralForCausalLM with sliding_window 3 (shorter than the batch, so it masks)
  llama_parity.safetensors
                        per case (gqa, tied, mistral): input_ids, attention_mask (left padding),
                        position_ids (from the mask, as generate derives them), labels (-100 at the
                        padding), logits and loss of the forward with those position ids, and grad.NAME,
                        the gradient of the loss for every parameter (named_parameters: the tied lm_head
                        is model.embed_tokens.weight); gqa.greedy, five greedy tokens per row, decoded
                        without a cache; rope.llama3.inv_freq_24 and _128 (Llama 3.1's rope_scaling);
                        filters.logits, filters.kept (temperature 0.7, top-k 20, top-p 0.9)
"""
import json
import math
import os
import shutil

import torch
from torch import nn

import st_write

here = os.path.dirname(os.path.abspath(__file__))


# ---- configuration --------------------------------------------------------------------------------------

class Config:
    def __init__(self, d):
        self.d = d
        g = d.get
        self.vocab_size = d["vocab_size"]
        self.hidden_size = d["hidden_size"]
        self.intermediate_size = d["intermediate_size"]
        self.num_hidden_layers = d["num_hidden_layers"]
        self.num_attention_heads = d["num_attention_heads"]
        self.num_key_value_heads = g("num_key_value_heads") or self.num_attention_heads
        self.head_dim = g("head_dim") or self.hidden_size // self.num_attention_heads
        self.rms_norm_eps = g("rms_norm_eps", 1e-6)
        rp = g("rope_parameters")  # transformers 5.x
        if rp is not None:
            self.rope_theta = rp.get("rope_theta", 10000.0)
            self.rope_scaling = rp if rp.get("rope_type", "default") != "default" else None
        else:
            self.rope_theta = g("rope_theta", 10000.0)
            self.rope_scaling = g("rope_scaling")
        self.tie_word_embeddings = g("tie_word_embeddings", False)
        self.pad_token_id = g("pad_token_id")
        self.sliding_window = g("sliding_window")


# ---- modeling_rope_utils ---------------------------------------------------------------------------------

def default_inv_freq(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_inv_freq(cfg):
    inv_freq = default_inv_freq(cfg.rope_theta, cfg.head_dim)
    rs = cfg.rope_scaling
    if rs is None:
        return inv_freq
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        inv_freq /= rs["factor"]
        return inv_freq
    if kind == "llama3":
        return llama3_inv_freq(inv_freq, rs)
    raise ValueError(kind)


def llama3_inv_freq(inv_freq, rs):
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


# ---- modeling_llama ----------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)
        self.attention_scaling = 1.0

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq_expanded = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].float()
        freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos = cos.unsqueeze(unsqueeze_dim)
    sin = sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


def repeat_kv(hidden_states, n_rep):
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.head_dim = cfg.head_dim
        self.num_key_value_groups = cfg.num_attention_heads // cfg.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        h = cfg.hidden_size
        self.q_proj = nn.Linear(h, cfg.num_attention_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(h, cfg.num_key_value_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(h, cfg.num_key_value_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * self.head_dim, h, bias=False)

    def forward(self, hidden_states, position_embeddings, attention_mask):
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key_states = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        # eager_attention_forward
        key_states = repeat_kv(key_states, self.num_key_value_groups)
        value_states = repeat_kv(value_states, self.num_key_value_groups)
        attn_weights = torch.matmul(query_states, key_states.transpose(2, 3)) * self.scaling
        if attention_mask is not None:
            attn_weights = attn_weights + attention_mask[:, :, :, : key_states.shape[-2]]
        attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query_states.dtype)
        attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return self.o_proj(attn_output)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, hidden_states, attention_mask, position_embeddings):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states = self.self_attn(hidden_states, position_embeddings, attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


def causal_mask_4d(attention_mask, sequence_length, target_length, dtype, cache_position, batch_size, sliding_window):
    """_prepare_4d_causal_attention_mask_with_cache_position (Llama's, plus Mistral's sliding window)."""
    min_dtype = torch.finfo(dtype).min
    dev = cache_position.device
    causal_mask = torch.full((sequence_length, target_length), fill_value=min_dtype, dtype=dtype, device=dev)
    diagonal_attend_mask = torch.arange(target_length, device=dev) > cache_position.reshape(-1, 1)
    if sliding_window is not None:
        sliding_attend_mask = torch.arange(target_length, device=dev) <= (cache_position.reshape(-1, 1) - sliding_window)
        diagonal_attend_mask.bitwise_or_(sliding_attend_mask)
    causal_mask *= diagonal_attend_mask
    causal_mask = causal_mask[None, None, :, :].expand(batch_size, 1, -1, -1)
    if attention_mask is not None:
        causal_mask = causal_mask.clone()
        mask_length = attention_mask.shape[-1]
        padding_mask = causal_mask[:, :, :, :mask_length] + attention_mask[:, None, None, :]
        padding_mask = padding_mask == 0
        causal_mask[:, :, :, :mask_length] = causal_mask[:, :, :, :mask_length].masked_fill(padding_mask, min_dtype)
    return causal_mask


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, cfg.pad_token_id)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        inputs_embeds = self.embed_tokens(input_ids)
        cache_position = torch.arange(0, inputs_embeds.shape[1], device=input_ids.device)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)
        target_length = attention_mask.shape[-1] if attention_mask is not None else inputs_embeds.shape[1] + 1
        mask = causal_mask_4d(attention_mask, inputs_embeds.shape[1], target_length, inputs_embeds.dtype,
                              cache_position, inputs_embeds.shape[0], self.cfg.sliding_window)
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, position_embeddings)
        return self.norm(hidden_states)


class ForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, attention_mask=None, position_ids=None, labels=None):
        logits = self.lm_head(self.model(input_ids, attention_mask, position_ids))
        loss = None
        if labels is not None:
            shift_logits = logits.float()[..., :-1, :].contiguous().view(-1, self.cfg.vocab_size)
            shift_labels = labels[..., 1:].contiguous().view(-1)
            loss = nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
        return logits, loss


def init_weights(model, cfg, std):
    """_init_weights with a larger std than HF's 0.02, so that attention is far from uniform, and norm
    weights moved off 1 so that a norm applied to the wrong tensor shows."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, RMSNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))


# ---- generation --------------------------------------------------------------------------------------------

def position_ids_from_mask(attention_mask):
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    return position_ids


@torch.no_grad()
def greedy(model, input_ids, attention_mask, steps):
    """generate(do_sample=False) without a cache: every step recomputes the whole sequence."""
    ids, mask, out = input_ids, attention_mask, []
    for _ in range(steps):
        logits, _ = model(ids, mask, position_ids_from_mask(mask))
        next_tokens = torch.argmax(logits[:, -1, :].float(), dim=-1)
        out.append(next_tokens)
        ids = torch.cat([ids, next_tokens[:, None]], dim=-1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
    return torch.stack(out, dim=1)


def warp(scores, temperature, top_k, top_p, min_tokens_to_keep=1):
    """TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, in generate()'s order."""
    filter_value = -float("inf")
    scores = scores / temperature
    top_k = min(max(top_k, min_tokens_to_keep), scores.size(-1))
    indices_to_remove = scores < torch.topk(scores, top_k)[0][..., -1, None]
    scores = scores.masked_fill(indices_to_remove, filter_value)
    sorted_logits, sorted_indices = torch.sort(scores, descending=False)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    sorted_indices_to_remove = cumulative_probs <= (1 - top_p)
    sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0
    indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
    return scores.masked_fill(indices_to_remove, filter_value)


# ---- cases -------------------------------------------------------------------------------------------------

V = 97

GQA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "transformers_version": "4.48.0",
    "vocab_size": V, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24, "hidden_act": "silu",
    "max_position_embeddings": 128, "initializer_range": 0.02, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "rope_scaling": None, "tie_word_embeddings": False,
    "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32", "use_cache": True,
}

TIED = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "transformers_version": "5.0.0",
    "vocab_size": V, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "hidden_act": "silu", "max_position_embeddings": 64,
    "initializer_range": 0.02, "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": 0,
    "dtype": "float32",
}

MISTRAL = {
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "transformers_version": "4.48.0",
    "vocab_size": V, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
    "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
    "sliding_window": 3, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    "pad_token_id": None, "torch_dtype": "float32",
}


def batch(seed, lengths, L, pad):
    """A left-padded batch: real tokens in [3, V), pad tokens before them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), L), pad, dtype=torch.int64)
    mask = torch.zeros((len(lengths), L), dtype=torch.int64)
    for r, n in enumerate(lengths):
        ids[r, L - n:] = torch.randint(3, V, (n,), generator=g)
        mask[r, L - n:] = 1
    labels = ids.clone()
    labels[mask == 0] = -100
    return ids, mask, labels


def write_config(folder, cfg):
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def state(model):
    """What save_pretrained writes: the state dict without the tied lm_head copy."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if model.cfg.tie_word_embeddings:
        del sd["lm_head.weight"]
    return sd


def case(name, cfg_dict, std, seed, lengths, L, parity, hf_inputs_with_positions):
    torch.manual_seed(seed)
    cfg = Config(cfg_dict)
    model = ForCausalLM(cfg)
    init_weights(model, cfg, std)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids, mask, labels = batch(seed, lengths, L, pad)
    pos = position_ids_from_mask(mask)

    logits, loss = model(ids, mask, pos, labels)
    model.zero_grad()
    loss.backward()
    parity.update({f"{name}.input_ids": ids, f"{name}.attention_mask": mask, f"{name}.position_ids": pos,
                   f"{name}.labels": labels, f"{name}.logits": logits.detach(), f"{name}.loss": loss.detach()})
    for pname, p in model.named_parameters():
        parity[f"{name}.grad.{pname}"] = p.grad.detach().clone()

    # `repro hf run`'s inputs and HF forward's outputs on them
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        if hf_inputs_with_positions:
            inputs["position_ids"] = pos
            out_logits, out_loss = model(ids, mask, pos, labels)
        else:
            out_logits, out_loss = model(ids, mask, None, labels)
    return model, inputs, {"logits": out_logits, "loss": out_loss}


def main():
    parity = {}

    model, inputs, outputs = case("gqa", GQA, 0.15, 0, [7, 5, 3], 7, parity, False)
    folder = os.path.join(here, "llama_gqa")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write_config(folder, GQA)
    st_write.write(os.path.join(folder, "model.safetensors"), state(model), {"format": "pt"})
    st_write.write(os.path.join(folder, "inputs.safetensors"), inputs)
    st_write.write(os.path.join(folder, "outputs.safetensors"), outputs)
    parity["gqa.greedy"] = greedy(model, parity["gqa.input_ids"], parity["gqa.attention_mask"], 5)

    model, inputs, outputs = case("tied", TIED, 0.15, 1, [6, 2, 4], 6, parity, True)
    folder = os.path.join(here, "llama_tied_sharded")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write_config(folder, TIED)
    sd = state(model)
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        st_write.write(os.path.join(folder, shard), {k: sd[k] for k in keys}, {"format": "pt"})
        weight_map.update({k: shard for k in keys})
    total = sum(v.numel() * v.element_size() for v in sd.values())
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    st_write.write(os.path.join(folder, "inputs.safetensors"), inputs)
    st_write.write(os.path.join(folder, "outputs.safetensors"), outputs)

    model, inputs, outputs = case("mistral", MISTRAL, 0.2, 2, [6, 4], 6, parity, False)
    folder = os.path.join(here, "llama_mistral")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    write_config(folder, MISTRAL)
    st_write.write(os.path.join(folder, "model.safetensors"), state(model), {"format": "pt"})
    st_write.write(os.path.join(folder, "inputs.safetensors"), inputs)
    st_write.write(os.path.join(folder, "outputs.safetensors"), outputs)

    llama31 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    for dim in (24, 128):
        parity[f"rope.llama3.inv_freq_{dim}"] = llama3_inv_freq(default_inv_freq(500000.0, dim), llama31)

    g = torch.Generator().manual_seed(7)
    logits = torch.randn((4, V), generator=g) * 3
    parity["filters.logits"] = logits
    parity["filters.kept"] = (warp(logits, 0.7, 20, 0.9) > -float("inf")).to(torch.uint8)

    n, size = st_write.write(os.path.join(here, "llama_parity.safetensors"), parity)
    print(f"wrote llama_gqa, llama_tied_sharded, llama_mistral, llama_parity.safetensors ({n} tensors, {size} bytes); "
          f"losses gqa {parity['gqa.loss'].item():.4f} tied {parity['tied.loss'].item():.4f} "
          f"mistral {parity['mistral.loss'].item():.4f}; greedy {parity['gqa.greedy'].tolist()}")


if __name__ == "__main__":
    main()
