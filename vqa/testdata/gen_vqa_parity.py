"""Makes vqa_parity.safetensors, the PyTorch reference for package vqa (MUMC medical VQA, ALBEF-style).

Run from the repository root with Debian's python3-torch (1.13.1, the libtorch the Go side links),
after checking out the official code at the pinned commit:
    git clone https://github.com/pengfeiliHEU/MUMC /tmp/mumc
    git -C /tmp/mumc checkout 27b544d025901945006113012adfc7d755cd196e
    /usr/bin/python3 vqa/testdata/gen_vqa_parity.py /tmp/mumc

This RUNS the official code of github.com/pengfeiliHEU/MUMC at commit
27b544d025901945006113012adfc7d755cd196e, imported from the checkout given as the argument (nothing
of it is copied here):
  models/xbert.py      BertForMaskedLM (the pre-training text/fusion encoder: BertModel with
                       fusion_layer, mode 'text' / 'fusion' / 'multi_modal', is_decoder, MLM loss with
                       soft_labels/alpha distillation) and BertLMHeadModel (the VQA answer decoder:
                       shifted LM loss with reduction, soft_labels/alpha);
  models/model.py      MUMCBASE.get_contrastive_loss and MUMCBASE._dequeue_and_enqueue;
  models/model_vqa.py  MUMC_VQA.rank_answer and tile.
The MUMCBASE / MUMC_VQA methods are called unbound on a SimpleNamespace that carries the attributes
they read (the real constructors build ViTs and load checkpoints).

float32 throughout, eval mode (no dropout), torch.manual_seed(0). Every parameter is random (weights
normal std 0.3, biases std 0.1, LayerNorm weights 1 + 0.1*randn), so that mistakes show.

Fusion BERT (BertForMaskedLM): vocab 40, hidden 16, 4 layers, 2 heads, intermediate 24, gelu,
max_position 16, type_vocab 2, pad 0, eps 1e-12, fusion_layer 2, encoder_width 12.
Answer decoder (BertLMHeadModel): the same with 2 layers, fusion_layer 0, encoder_width 16.
Both have cls.predictions.decoder.weight tied to bert.embeddings.word_embeddings.weight and
cls.predictions.decoder.bias = cls.predictions.bias (as transformers' tie_weights does); the file holds
each tied tensor once, under the word-embedding / predictions.bias name.

Tensors (F32 unless said; ids and masks I64):
 1. "mlm.<name>" every BertForMaskedLM parameter (state_dict names, no position_ids buffer, no tied
    cls.predictions.decoder.*). Inputs "mlm.in.input_ids" [2,6] (row 1 ends in 2 pads),
    "mlm.in.attention_mask" [2,6], "mlm.in.image_embeds" [2,3,12], "mlm.in.image_atts" [2,3] (one 0 in
    row 1), "mlm.in.w_text|w_fusion|w_mm|w_causal" [2,6,16]. Outputs (model.bert as model.py calls it)
    "mlm.out.text" (mode 'text'), "mlm.out.fusion" (encoder_embeds = out.text, mode 'fusion'),
    "mlm.out.mm" (mode 'multi_modal'), "mlm.out.causal" (mode 'multi_modal', is_decoder=True), each
    [2,6,16]; "mlm.out.sum" [] = sum of each output times its w; its gradients "grad.mlm.<name>" and
    "grad.mlm.in.image_embeds" (zeros for parameters outside the graph: cls.*).
    MLM loss: "mlm.in.labels" [2,6] (-100 but 3 positions), "mlm.in.logits_m" [2,6,40]
    (soft_labels = softmax), "mlm.in.alpha" [1] = 0.4, "mlm.out.mlm_loss" [] = model(...).loss, and
    its gradients "gradmlm.mlm.<name>", "gradmlm.mlm.in.image_embeds".
 2. Contrastive loss, batch 4, embed 8, queue 12: "ita.in.image_feat", "ita.in.text_feat",
    "ita.in.image_feat_m", "ita.in.text_feat_m" [4,8] (rows L2-normalised), "ita.in.image_queue",
    "ita.in.text_queue" [8,12] (columns normalised; the queues BEFORE the call), "ita.in.queue_ptr" [1]
    = 8, "ita.in.temp" [1] = 0.07 (a 0-dim Parameter in the call), "ita.in.alpha" [1] = 0.4.
    "ita.out.loss" [1], "ita.grad.image_feat", "ita.grad.text_feat" [4,8], "ita.grad.temp" [1], and the
    state after the call's enqueue "ita.out.image_queue", "ita.out.text_queue" [8,12],
    "ita.out.queue_ptr" [1] (= 0).
 3. "dec.<name>" every BertLMHeadModel parameter (same exclusions). rank_answer inputs
    "dec.in.question_states" [2,6,16], "dec.in.question_atts" [2,6] (row 1 ends in 2 pads),
    "dec.in.answer_ids" [5,4] ([CLS]=1 first, [SEP]=2, pads 0; distinct first tokens),
    "dec.in.answer_atts" [5,4], "dec.in.k" [1] = 3; outputs "dec.out.topk_ids" [2,3] I64,
    "dec.out.topk_probs" [2,3]. Training loss as MUMC_VQA.forward computes it: "dec.in.train_ids" [2,4],
    "dec.in.train_atts" [2,4], "dec.in.logits_m" [2,3,40] (soft_labels = softmax), alpha 0.4 (the same
    "mlm.in.alpha"), "dec.out.train_loss" [2] (reduction 'none'); gradients of train_loss.sum()/2:
    "grad.dec.<name>", "grad.dec.in.question_states".

---- Stubs. Debian has neither transformers nor timm; these stand in, and none changes a number:
 transformers.activations.ACT2FN: {"gelu": F.gelu, ...}. transformers 4.8.1 (MUMC's requirements.txt
   pin) maps "gelu" to nn.functional.gelu (exact erf GELU) for torch >= 1.4; same function here.
 transformers.file_utils: add_start_docstrings* / add_code_sample_docstrings /
   replace_return_docstrings are docstring-only decorators -> identity; ModelOutput -> see below.
 transformers.modeling_outputs: output containers; attribute access and outputs[i] (the i-th non-None
   field in declaration order, as HF's ModelOutput.to_tuple) -- containers only, no arithmetic.
 transformers.modeling_utils.PreTrainedModel: nn.Module holding `config`; init_weights() applies the
   official _init_weights then ties weights as 4.8.1's tie_weights/_tie_or_clone_weights (output
   embedding weight IS the input embedding weight; the bias pad is a no-op here); every parameter is
   overwritten with random values afterwards anyway. get_head_mask(None, n) = [None]*n (the only case
   used). dtype = dtype of the first parameter (float32). invert_attention_mask reproduces 4.8.1's
   ModuleUtilsMixin.invert_attention_mask: mask[:, None, None, :] (or [:, None] for 3-D), cast to
   self.dtype, then (1 - m) * -1e9 for float32 (-1e4 only for float16). That -1e9 is what 4.8.1
   has (introduced by transformers PR #4436 in 2020, replaced by finfo.min in PR #17306 in 2022); the
   -10000.0 of the self-attention mask comes from xbert.py's own get_extended_attention_mask, which
   the official code overrides and which runs unchanged. In float32 exp(-1e4 + s) and exp(-1e9 + s)
   are both exactly 0 after softmax's max-subtraction, so either constant gives the same bits here
   (checked below, see INVERT_CHECK).
   apply_chunking_to_forward: chunk size 0 -> forward_fn(*inputs), as 4.8.1 does.
   find_pruneable_heads_and_indices / prune_linear_layer: only for head pruning, never called -> raise.
 transformers.utils.logging: get_logger -> the standard logging module; set_verbosity_error no-op.
 transformers.models.bert.configuration_bert.BertConfig: plain attribute holder with 4.8.1's
   BertConfig/PretrainedConfig defaults (chunk_size_feed_forward 0, output_attentions False,
   output_hidden_states False, use_return_dict True, use_cache True, add_cross_attention False,
   tie_word_embeddings True, position_embedding_type "absolute", gradient_checkpointing False, ...).
 transformers.BertTokenizer, transformers.tokenization_utils: imported by model.py but unused here
   (ids are given directly; pad_token_id 0 is set on the namespace rank_answer reads).
 timm.models.{layers,vision_transformer,registry}: trunc_normal_, DropPath, PatchEmbed, Block, _cfg,
   register_model -- used only by the ViT/MAE image encoders, which are never built here.
"""
import dataclasses
import importlib
import importlib.util
import json
import logging as _pylogging
import os
import sys
import types
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

COMMIT = "27b544d025901945006113012adfc7d755cd196e"
INVERT_NEG = {"value": -1e9}  # transformers 4.8.1 invert_attention_mask, float32


# ---------------------------------------------------------------- safetensors writer/reader
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402  the fixture scripts' shared writer (Debian has no safetensors package)


# ---------------------------------------------------------------- stubs
def _identity_decorator(*args, **kwargs):
    return lambda fn: fn


class ModelOutput:
    """Container as HF's ModelOutput: attributes, ["name"], and [i] over the non-None fields."""

    def to_tuple(self):
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def __getitem__(self, k):
        if isinstance(k, str):
            return getattr(self, k)
        return self.to_tuple()[k]


def _output_class(name, fields):
    return dataclasses.make_dataclass(name, [(f, object, dataclasses.field(default=None)) for f in fields],
                                      bases=(ModelOutput,))


class BertConfig:
    def __init__(self, **kw):
        d = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=2,
                 initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, gradient_checkpointing=False,
                 position_embedding_type="absolute", use_cache=True,
                 # PretrainedConfig
                 return_dict=True, output_hidden_states=False, output_attentions=False, torchscript=False,
                 use_bfloat16=False, pruned_heads={}, tie_word_embeddings=True, is_encoder_decoder=False,
                 is_decoder=False, add_cross_attention=False, tie_encoder_decoder=False,
                 chunk_size_feed_forward=0)
        d.update(kw)
        self.__dict__.update(d)

    @property
    def use_return_dict(self):
        return self.return_dict and not self.torchscript

    @classmethod
    def from_json_file(cls, path):
        with open(path) as f:
            return cls(**json.load(f))


class PreTrainedModel(nn.Module):
    config_class = None
    base_model_prefix = ""

    def __init__(self, config, *inputs, **kwargs):
        super().__init__()
        self.config = config

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    @property
    def device(self):
        return next(self.parameters()).device

    def get_input_embeddings(self):
        base = getattr(self, self.base_model_prefix, self)
        if base is not self:
            return base.get_input_embeddings()
        raise NotImplementedError

    def get_output_embeddings(self):
        return None

    def init_weights(self):
        if self.config.pruned_heads:
            raise NotImplementedError("head pruning")
        self.apply(self._init_weights)
        self.tie_weights()

    def tie_weights(self):
        out = self.get_output_embeddings()
        if out is not None and self.config.tie_word_embeddings:
            inp = self.get_input_embeddings()
            out.weight = inp.weight  # _tie_or_clone_weights, not torchscript
            if getattr(out, "bias", None) is not None:
                out.bias.data = F.pad(out.bias.data, (0, out.weight.shape[0] - out.bias.shape[0]), "constant", 0)
            if hasattr(out, "out_features") and hasattr(inp, "num_embeddings"):
                out.out_features = inp.num_embeddings

    def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
        if head_mask is not None:
            raise NotImplementedError("head_mask")
        return [None] * num_hidden_layers

    def invert_attention_mask(self, encoder_attention_mask):
        if encoder_attention_mask.dim() == 3:
            ext = encoder_attention_mask[:, None, :, :]
        if encoder_attention_mask.dim() == 2:
            ext = encoder_attention_mask[:, None, None, :]
        ext = ext.to(dtype=self.dtype)
        if self.dtype == torch.float16:
            return (1.0 - ext) * -1e4
        if self.dtype == torch.float32:
            return (1.0 - ext) * INVERT_NEG["value"]
        raise ValueError(f"{self.dtype} not recognized")


def apply_chunking_to_forward(forward_fn, chunk_size, chunk_dim, *input_tensors):
    if chunk_size > 0:
        raise NotImplementedError("chunked feed-forward")
    return forward_fn(*input_tensors)


def _unused(*a, **k):
    raise NotImplementedError("not used by the parts run here")


def install_stubs():
    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    logging_mod = mod("transformers.utils.logging", get_logger=_pylogging.getLogger,
                      set_verbosity_error=lambda: None)
    outs = {
        "BaseModelOutputWithPastAndCrossAttentions":
            ["last_hidden_state", "past_key_values", "hidden_states", "attentions", "cross_attentions"],
        "BaseModelOutputWithPoolingAndCrossAttentions":
            ["last_hidden_state", "pooler_output", "hidden_states", "past_key_values", "attentions",
             "cross_attentions"],
        "CausalLMOutputWithCrossAttentions":
            ["loss", "logits", "past_key_values", "hidden_states", "attentions", "cross_attentions"],
        "MaskedLMOutput": ["loss", "logits", "hidden_states", "attentions"],
        "MultipleChoiceModelOutput": ["loss", "logits", "hidden_states", "attentions"],
        "NextSentencePredictorOutput": ["loss", "logits", "hidden_states", "attentions"],
        "QuestionAnsweringModelOutput": ["loss", "start_logits", "end_logits", "hidden_states", "attentions"],
        "SequenceClassifierOutput": ["loss", "logits", "hidden_states", "attentions"],
        "TokenClassifierOutput": ["loss", "logits", "hidden_states", "attentions"],
    }
    tr = mod("transformers", logging=logging_mod, BertTokenizer=type("BertTokenizer", (), {}), __version__="4.8.1")
    tr.activations = mod("transformers.activations",
                         ACT2FN={"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh, "silu": F.silu})
    tr.file_utils = mod("transformers.file_utils", ModelOutput=ModelOutput,
                        add_code_sample_docstrings=_identity_decorator, add_start_docstrings=_identity_decorator,
                        add_start_docstrings_to_model_forward=_identity_decorator,
                        replace_return_docstrings=_identity_decorator)
    tr.modeling_outputs = mod("transformers.modeling_outputs", **{k: _output_class(k, v) for k, v in outs.items()})
    tr.modeling_utils = mod("transformers.modeling_utils", PreTrainedModel=PreTrainedModel,
                            apply_chunking_to_forward=apply_chunking_to_forward,
                            find_pruneable_heads_and_indices=_unused, prune_linear_layer=_unused)
    tr.utils = mod("transformers.utils", logging=logging_mod)
    tr.tokenization_utils = mod("transformers.tokenization_utils", PreTrainedTokenizer=object,
                                _is_control=_unused, _is_punctuation=_unused, _is_whitespace=_unused)
    tr.models = mod("transformers.models")
    tr.models.bert = mod("transformers.models.bert")
    tr.models.bert.configuration_bert = mod("transformers.models.bert.configuration_bert", BertConfig=BertConfig)

    timm = mod("timm")
    timm.models = mod("timm.models")
    timm.models.layers = mod("timm.models.layers", trunc_normal_=_unused,
                             DropPath=type("DropPath", (nn.Module,), {}))
    timm.models.vision_transformer = mod("timm.models.vision_transformer", _cfg=_unused,
                                         PatchEmbed=type("PatchEmbed", (nn.Module,), {}),
                                         Block=type("Block", (nn.Module,), {}))
    timm.models.registry = mod("timm.models.registry", register_model=lambda fn: fn)


def load_official(checkout):
    """Imports <checkout>/models as the package `models` and returns (xbert, model, model_vqa)."""
    install_stubs()
    pkg_dir = os.path.join(checkout, "models")
    spec = importlib.util.spec_from_file_location("models", os.path.join(pkg_dir, "__init__.py"),
                                                  submodule_search_locations=[pkg_dir])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["models"] = pkg
    spec.loader.exec_module(pkg)
    return (importlib.import_module("models.xbert"), importlib.import_module("models.model"),
            importlib.import_module("models.model_vqa"))


# ---------------------------------------------------------------- helpers
def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def param_names(model):
    """state_dict names of the parameters, without buffers and without the tied duplicates."""
    params = dict(model.named_parameters())  # deduplicated: tied tensors appear once
    sd = model.state_dict()
    names = [k for k in sd if k in params]
    dropped = sorted(set(sd) - set(names))
    assert dropped == ["bert.embeddings.position_ids", "cls.predictions.decoder.bias",
                       "cls.predictions.decoder.weight"], dropped
    assert sorted(names) == sorted(params)
    return names, params


def check_tied(model):
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias


def grads(prefix, names, params, out):
    zero = []
    for n in names:
        g = params[n].grad
        if g is None:
            zero.append(n)
            g = torch.zeros_like(params[n])
        out[prefix + n] = g.detach().clone()
    return zero


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_vqa_parity.py <MUMC checkout at %s>" % COMMIT)
    xbert, model_mod, model_vqa = load_official(sys.argv[1])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    T = {}

    # ------------------------------------------------ 1. fusion encoder (BertForMaskedLM)
    cfg = xbert.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                           intermediate_size=24, hidden_act="gelu", max_position_embeddings=16, type_vocab_size=2,
                           pad_token_id=0, layer_norm_eps=1e-12, fusion_layer=2, encoder_width=12)
    mlm = xbert.BertForMaskedLM(cfg)
    mlm.eval()
    check_tied(mlm)
    randomize(mlm)
    check_tied(mlm)
    names, params = param_names(mlm)
    for n in names:
        T["mlm." + n] = params[n].detach().clone()

    input_ids = torch.randint(1, 40, (2, 6))
    input_ids[1, 4:] = 0
    attention_mask = (input_ids != 0).long()
    image_embeds = torch.randn(2, 3, 12).requires_grad_()
    image_atts = torch.ones(2, 3, dtype=torch.long)
    image_atts[1, 1] = 0
    w = {k: torch.randn(2, 6, 16) for k in ("text", "fusion", "mm", "causal")}
    T.update({"mlm.in.input_ids": input_ids, "mlm.in.attention_mask": attention_mask,
              "mlm.in.image_embeds": image_embeds.detach().clone(), "mlm.in.image_atts": image_atts})
    for k, v in w.items():
        T["mlm.in.w_" + k] = v

    def run_bert():
        out_text = mlm.bert(input_ids, attention_mask=attention_mask, return_dict=True,
                            mode="text").last_hidden_state
        out_fusion = mlm.bert(encoder_embeds=out_text, attention_mask=attention_mask,
                              encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts,
                              return_dict=True, mode="fusion").last_hidden_state
        out_mm = mlm.bert(input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                          encoder_attention_mask=image_atts, return_dict=True, mode="multi_modal").last_hidden_state
        out_causal = mlm.bert(input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                              encoder_attention_mask=image_atts, return_dict=True, is_decoder=True,
                              mode="multi_modal").last_hidden_state
        return out_text, out_fusion, out_mm, out_causal

    out_text, out_fusion, out_mm, out_causal = run_bert()
    total = ((out_text * w["text"]).sum() + (out_fusion * w["fusion"]).sum() + (out_mm * w["mm"]).sum()
             + (out_causal * w["causal"]).sum())
    mlm.zero_grad(set_to_none=True)
    total.backward()
    T.update({"mlm.out.text": out_text.detach(), "mlm.out.fusion": out_fusion.detach(),
              "mlm.out.mm": out_mm.detach(), "mlm.out.causal": out_causal.detach(),
              "mlm.out.sum": total.detach()})
    zero_sum = grads("grad.mlm.", names, params, T)
    T["grad.mlm.in.image_embeds"] = image_embeds.grad.detach().clone()

    labels = torch.full((2, 6), -100, dtype=torch.long)
    for b, i in ((0, 1), (0, 4), (1, 2)):
        labels[b, i] = int(torch.randint(1, 40, ()))
    logits_m = torch.randn(2, 6, 40)
    alpha = 0.4
    T.update({"mlm.in.labels": labels, "mlm.in.logits_m": logits_m, "mlm.in.alpha": torch.tensor([alpha])})
    mlm.zero_grad(set_to_none=True)
    image_embeds.grad = None
    mlm_loss = mlm(input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                   encoder_attention_mask=image_atts, return_dict=True, labels=labels,
                   soft_labels=F.softmax(logits_m, dim=-1), alpha=alpha).loss
    mlm_loss.backward()
    T["mlm.out.mlm_loss"] = mlm_loss.detach()
    zero_mlm = grads("gradmlm.mlm.", names, params, T)
    T["gradmlm.mlm.in.image_embeds"] = image_embeds.grad.detach().clone()

    # the invert_attention_mask constant: -1e4 instead of -1e9 gives the same bits (fp32 exp underflow)
    INVERT_NEG["value"] = -10000.0
    with torch.no_grad():
        alt = run_bert()
    INVERT_NEG["value"] = -1e9
    invert_check = all(torch.equal(a, b) for a, b in zip(alt, (out_text, out_fusion, out_mm, out_causal)))

    # ------------------------------------------------ 2. contrastive loss
    MUMCBASE = model_mod.MUMCBASE
    nrm = lambda x, d: F.normalize(x, dim=d)
    image_feat = nrm(torch.randn(4, 8), -1).requires_grad_()
    text_feat = nrm(torch.randn(4, 8), -1).requires_grad_()
    image_feat_m, text_feat_m = nrm(torch.randn(4, 8), -1), nrm(torch.randn(4, 8), -1)
    image_queue, text_queue = nrm(torch.randn(8, 12), 0), nrm(torch.randn(8, 12), 0)
    queue_ptr = torch.tensor([8], dtype=torch.long)
    temp = nn.Parameter(torch.ones([]) * 0.07)
    T.update({"ita.in.image_feat": image_feat.detach().clone(), "ita.in.text_feat": text_feat.detach().clone(),
              "ita.in.image_feat_m": image_feat_m.clone(), "ita.in.text_feat_m": text_feat_m.clone(),
              "ita.in.image_queue": image_queue.clone(), "ita.in.text_queue": text_queue.clone(),
              "ita.in.queue_ptr": queue_ptr.clone(), "ita.in.temp": temp.detach().reshape(1).clone(),
              "ita.in.alpha": torch.tensor([alpha])})
    ita = SimpleNamespace(temp=temp, image_queue=image_queue, text_queue=text_queue, queue_ptr=queue_ptr,
                          queue_size=12, _momentum_update=lambda: None)
    ita._dequeue_and_enqueue = lambda *a: MUMCBASE._dequeue_and_enqueue(ita, *a)
    loss_ita = MUMCBASE.get_contrastive_loss(ita, image_feat, text_feat, image_feat_m, text_feat_m, alpha=alpha)
    loss_ita.backward()
    T.update({"ita.out.loss": loss_ita.detach().reshape(1), "ita.grad.image_feat": image_feat.grad.clone(),
              "ita.grad.text_feat": text_feat.grad.clone(), "ita.grad.temp": temp.grad.reshape(1).clone(),
              "ita.out.image_queue": ita.image_queue.clone(), "ita.out.text_queue": ita.text_queue.clone(),
              "ita.out.queue_ptr": ita.queue_ptr.clone()})
    assert int(ita.queue_ptr) == 0
    assert torch.equal(ita.image_queue[:, 8:], image_feat_m.T) and torch.equal(ita.image_queue[:, :8],
                                                                               T["ita.in.image_queue"][:, :8])

    # ------------------------------------------------ 3. answer decoder (BertLMHeadModel)
    dcfg = xbert.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=24, hidden_act="gelu", max_position_embeddings=16, type_vocab_size=2,
                            pad_token_id=0, layer_norm_eps=1e-12, fusion_layer=0, encoder_width=16)
    dec = xbert.BertLMHeadModel(dcfg)
    dec.eval()
    check_tied(dec)
    randomize(dec)
    check_tied(dec)
    dnames, dparams = param_names(dec)
    for n in dnames:
        T["dec." + n] = dparams[n].detach().clone()

    question_states = torch.randn(2, 6, 16).requires_grad_()
    question_atts = torch.ones(2, 6, dtype=torch.long)
    question_atts[1, 4:] = 0
    # [CLS] answer tokens [SEP] (the eos appended by train_vqa) [SEP] (the tokenizer's), pads; each
    # candidate has its own first token so that the first-token top-k has no ties
    answer_ids = torch.tensor([[1, 17, 2, 2],
                               [1, 9, 23, 2],
                               [1, 31, 2, 0],
                               [1, 6, 2, 2],
                               [1, 12, 2, 0]])
    answer_atts = (answer_ids != 0).long()
    k = 3
    T.update({"dec.in.question_states": question_states.detach().clone(), "dec.in.question_atts": question_atts,
              "dec.in.answer_ids": answer_ids, "dec.in.answer_atts": answer_atts,
              "dec.in.k": torch.tensor([k])})
    vqa = SimpleNamespace(text_decoder=dec, tokenizer=SimpleNamespace(pad_token_id=0))
    with torch.no_grad():
        topk_ids, topk_probs = model_vqa.MUMC_VQA.rank_answer(vqa, question_states, question_atts, answer_ids,
                                                              answer_atts, k)
    T["dec.out.topk_ids"], T["dec.out.topk_probs"] = topk_ids, topk_probs
    # margins, so that a Go top-k cannot differ by a tie
    with torch.no_grad():
        start = dec(answer_ids[0, 0].repeat(2, 1), encoder_hidden_states=question_states,
                    encoder_attention_mask=question_atts, return_dict=True).logits[:, 0, :]
        first = F.softmax(start, 1).index_select(1, answer_ids[:, 1]).sort(1, descending=True).values[:, :k + 1]
    gap_first = float((first[:, :-1] - first[:, 1:]).min())  # among the top k and the (k+1)-th
    gap_rerank = float((topk_probs[:, :-1] - topk_probs[:, 1:]).min())

    train_ids = torch.tensor([[1, 14, 2, 2], [1, 8, 2, 0]])
    train_atts = (train_ids != 0).long()
    dlogits_m = torch.randn(2, 3, 40)
    T.update({"dec.in.train_ids": train_ids, "dec.in.train_atts": train_atts, "dec.in.logits_m": dlogits_m})
    answer_targets = train_ids.masked_fill(train_ids == 0, -100)
    dec.zero_grad(set_to_none=True)
    train_loss = dec(train_ids, attention_mask=train_atts, encoder_hidden_states=question_states,
                     encoder_attention_mask=question_atts, labels=answer_targets, return_dict=True,
                     soft_labels=F.softmax(dlogits_m, dim=-1), alpha=alpha, reduction="none").loss
    (train_loss.sum() / 2).backward()
    T["dec.out.train_loss"] = train_loss.detach()
    zero_dec = grads("grad.dec.", dnames, dparams, T)
    T["grad.dec.in.question_states"] = question_states.grad.detach().clone()

    # ------------------------------------------------ write and verify
    for name, t in T.items():
        assert t.dtype in (torch.float32, torch.int64), (name, t.dtype)
        if t.dtype == torch.float32:
            assert torch.isfinite(t).all(), name
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "vqa_parity.safetensors")
    st_write.write(path, T, {"source": "github.com/pengfeiliHEU/MUMC@" + COMMIT, "torch": torch.__version__})
    back, _ = st_write.read(path)
    assert sorted(back) == sorted(T)
    for name, t in T.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t.detach().contiguous()), name
    print("wrote %s: %d tensors, %d bytes" % (path, len(T), os.path.getsize(path)))
    print("mlm params %d, dec params %d" % (len(names), len(dnames)))
    print("grad zero (not in graph) for mlm.out.sum: %s" % zero_sum)
    print("grad zero for mlm loss: %s; for dec loss: %s" % (zero_mlm, zero_dec))
    print("mlm.out.sum %.6f  mlm_loss %.6f  ita loss %.6f  dec train_loss %s"
          % (total.item(), mlm_loss.item(), loss_ita.item(), train_loss.tolist()))
    print("rank_answer topk_ids %s topk_probs %s" % (topk_ids.tolist(), topk_probs.tolist()))
    print("min gaps: first-token probs (top k+1) %.3g, re-ranked probs %.3g" % (gap_first, gap_rerank))
    print("INVERT_CHECK (-1e4 vs -1e9 cross-attention mask give identical outputs): %s" % invert_check)


if __name__ == "__main__":
    main()
