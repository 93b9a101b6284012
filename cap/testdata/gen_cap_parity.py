"""Makes cap_parity.safetensors, the PyTorch reference for package cap (contrastive pruning,
Xu et al., AAAI 2022).

Run from the repository root with Debian's python3-torch (1.13.1, the libtorch the Go side links):
    /usr/bin/python3 cap/testdata/gen_cap_parity.py

The official modules import transformers, which Debian lacks, so the functions under test are
transcribed below from github.com/RunxinXu/ContrastivePruning at commit
eae11d63e417cace7ba7449ac3ac95901c211e61, line for line; only `random.sample` is replaced by an
input (`sampled`), and a method's `self` is a SimpleNamespace holding the same attributes:
  StructuredPruning/model/PruneBert.py: PruneBertForSequenceClassification.calculate_contrastive_loss
    (checked here against UnstructuredPruning/emmental/modeling_bert_masked.py:
    MaskedBertForSequenceClassification.calculate_contrastive_loss, which differs only in casting
    extra_idx / extra_labels with .long());
  UnstructuredPruning/emmental/modules/binarizer.py: ThresholdBinarizer, TopKBinarizer,
    MagnitudeBinarizer (whole classes);
  UnstructuredPruning/emmental/modules/masked_nn.py: MaskedLinear (whole class);
  UnstructuredPruning/masked_run_glue.py: schedule_threshold, regularization;
  StructuredPruning/prune/prune_utils.py: determine_pruning_sequence, what_to_prune_head,
    what_to_prune_mlp, and the normalize_scores_by_layer block of
    calculate_head_and_intermediate_importance (as normalize_by_layer).
float32 throughout, as in the official code; int64 indices; float64 for parameters.

Tensors:
Contrastive loss (alignrep 'cls'), case "cl.<case>", <case> in r1 (bank of rep_num 1, like PrC or
FiC) and r3 (rep_num 3, like SnC with three snapshots); B=5, H=8, N=20 bank rows, E=6 extra rows:
  "cl.<case>.z" [B,H] the raw pooled output (the function normalises it); "cl.<case>.idx" [B] and
  "cl.<case>.labels" [B] int64 (labels = bank_labels[idx]); "cl.<case>.bank" [N,R,H] (rows
  L2-normalised); "cl.<case>.bank_labels" [N] int64; "cl.<case>.extra_idx" [E] int64 (what
  random.sample returned; two of them are in idx); "cl.<case>.params" float64 [3] = (temperature,
  w_unsup, w_sup) = (0.1, 0.3, 3.0) for r1, (0.1, 0.1, 10.0) for r3 (extra_examples = E*R, so
  extra = E); "cl.<case>.loss" [] the returned loss; "cl.<case>.loss_unsup", "cl.<case>.loss_sup" []
  the two terms with their weights (each from a call with the other weight set to 0; loss equals
  their float32 sum exactly); "cl.<case>.grad.z" [B,H] = d loss / d z.
Binarizers, scores "bin.scores" [6,7] and weight "bin.weight" [6,7]:
  "bin.topk.<p>" = TopKBinarizer.apply(scores, th) and "bin.magnitude.<p>" =
  MagnitudeBinarizer.apply(weight, th) for (p, th) in (50, 0.5), (10, 0.1), (3, 0.03);
  "bin.sigmoid.<p>" = ThresholdBinarizer.apply(scores, th, True) for (50, 0.5), (10, 0.1), and
  "bin.sigmoid.fallback" for th 0.9999, where no sigmoid passes and the "keep at least
  int(0.005*numel)+1" branch (kthvalue on the raw scores) decides.
MaskedLinear, inputs "ml.x" [4,7], "ml.weight" [6,7], "ml.bias" [6], "ml.scores" [6,7] (the
mask_scores), "ml.g" [4,6]; for method in topk (pruning_method topK), sigmoid (sigmoied_threshold),
magnitude, all with threshold 0.1: "ml.<method>.y" [4,6] and, for loss = sum(y * g),
"ml.<method>.grad.x", "ml.<method>.grad.weight", "ml.<method>.grad.bias" and (not for magnitude,
which has no scores) "ml.<method>.grad.scores".
schedule_threshold: "sched.params" float64 [7] = (total_step 1000, warmup_steps 50,
initial_threshold 1.0, final_threshold 0.1, initial_warmup 2, final_warmup 3, final_lambda 5.0),
"sched.threshold" and "sched.lambda" float64 [1001] for step 0..1000; "sched2.*" the same with
initial_threshold 0.0, final_threshold 0.1, final_lambda 550.0 (run_glue_soft_kd.sh).
regularization over two mask_scores "reg.s0" [6,7] and "reg.s1" [3,5] (a third parameter not
named mask_scores is skipped): "reg.l1" [] and its gradients "reg.grad.s0", "reg.grad.s1";
"reg.l0" [] and its gradients "reg.l0.grad.s0", "reg.l0.grad.s1".
Structured pruning (n_layers 3, n_heads 4, n_intermediate 10): "prune.importance_head" [3,4] and
"prune.importance_ffn" [3,10] (positive); "prune.norm_head", "prune.norm_ffn" their per-layer
normalisation; "prune.percents" float64 [8] = 10,20,...,80 and "prune.sequence" int64 [2,8] =
determine_pruning_sequence(percents, n_heads=4, n_layers=3, n_intermediate=10) as rows (heads,
intermediate) (90 is left out: int(12*0.9) = 10 heads > 12 - 3 trips the official `assert False`);
"prune.n_round1" int64 [2] = (8, 12); "prune.head_mask_round1" [3,4] = what_to_prune_head(norm_head,
8, ones) (layer 0 is flat, so its four heads are among the eight lowest and only the
one-head-per-layer protection keeps its top head); "prune.ffn_mask_round1" [3,10] =
what_to_prune_mlp(norm_ffn, 12, ones). A second round from those masks: "prune.importance_head2",
"prune.importance_ffn2", "prune.norm_head2", "prune.norm_ffn2", "prune.n_round2" = (1, 6),
"prune.head_mask_round2" = what_to_prune_head(norm_head2, 1, head_mask_round1),
"prune.ffn_mask_round2" = what_to_prune_mlp(norm_ffn2, 6, ffn_mask_round1); in it an already
pruned head of layer 0 scores highest there, so the protection is spent on it and layer 0's one
live head is pruned (layer 0 ends with no heads, as the official code does).
Distillation (PruneBert.py's F.kl_div(log_softmax(s/T), softmax(t/T), batchmean) * T**2): student
logits "kd.s" [6,5], teacher logits "kd.t" [6,5], and for T = 1 and 2 "kd.T<T>.loss" [] and
"kd.T<T>.grad.s" [6,5].
"""
import math
import os
import random
import sys
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import torch
from torch import autograd, nn
from torch.nn import functional as F
from torch.nn import init

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "torchmods", "testdata"))
import st_write  # noqa: E402

COMMIT = "eae11d63e417cace7ba7449ac3ac95901c211e61"


# ---- StructuredPruning/model/PruneBert.py, PruneBertForSequenceClassification.calculate_contrastive_loss
def calculate_contrastive_loss(
    self,
    idx,
    global_representations_bank,
    global_labels_bank,
    all_output,
    pooled_output,
    attention_mask,
    labels,
    sampled,  # what random.sample(range(global_representations_bank.size(0)), k=extra) returned
):
    loss = 0
    if idx is not None and global_representations_bank is not None:
        # representations: bsz * rep_num * hidden_state
        # labels: bsz
        representations = torch.index_select(global_representations_bank, dim=0, index=idx.cpu()).to(pooled_output)
        bsz, rep_num, hid_size = representations.size()

        if self.alignrep == 'mean-pooling':
            pooled_output = torch.sum(all_output * (attention_mask.unsqueeze(-1) == 1), dim=1) / torch.sum(attention_mask, dim=1, keepdim=True)
        else:
            pooled_output = pooled_output
        pooled_output = torch.nn.functional.normalize(pooled_output, p=2, dim=-1) # bsz * hidden_state

        # also add current data
        representations = torch.cat((pooled_output.unsqueeze(1).detach(), representations), dim=1) # bsz * (rep_num+1) * hidden_state
        representations = representations.reshape(bsz*(rep_num+1), hid_size)

        # sample more examples
        extra = self.extra_examples // global_representations_bank.size(1)
        assert len(sampled) == extra
        extra_idx = torch.LongTensor(sampled)
        extra_labels = torch.index_select(global_labels_bank, dim=0, index=extra_idx).to(pooled_output) # extra
        extra_representations = torch.index_select(global_representations_bank, dim=0, index=extra_idx).view(-1, hid_size).to(pooled_output) # (extra * rep_num) * hidden_state
        extra_idx = extra_idx.to(pooled_output)

        representations = torch.cat((representations, extra_representations), dim=0)
        contrastive_score = torch.mm(pooled_output, representations.t()) # bsz * (bsz*(rep_num+1)+(extra * rep_num))

        # exclude choosing myself
        # contrastive_mask: choosing myself -> 1，e.g., contrastive_mask[0,0] = contrastive_mask[1, rep_num] = contrastive_mask[2, 2*rep_num] = 1
        contrastive_mask = torch.unbind(torch.eye(bsz).to(contrastive_score), dim=1)
        contrastive_mask = [torch.cat((m.unsqueeze(1), torch.zeros(bsz, rep_num).to(contrastive_score)), dim=1) for m in contrastive_mask]
        contrastive_mask = torch.cat(contrastive_mask, dim=1) # bsz * (bsz*(rep_num+1))
        contrastive_mask = torch.cat((contrastive_mask, torch.zeros(bsz, extra * rep_num).to(contrastive_mask)), dim=1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        contrastive_score /= self.contrastive_temperature
        contrastive_score = contrastive_score.masked_fill(contrastive_mask==1, -1e6)
        contrastive_score = torch.nn.functional.log_softmax(contrastive_score, dim=-1)

        # calculate unsupervised_mask, only maintain the positive positives (belonging to the same instance) log_softmax
        all_idx = torch.cat((idx.unsqueeze(1).repeat(1, rep_num+1).view(-1), extra_idx.unsqueeze(1).repeat(1, rep_num).view(-1)), dim=0) # (bsz*(rep_num+1)+(extra * rep_num))
        all_idx = all_idx.unsqueeze(0).expand(bsz, -1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        positive_mask = (idx.unsqueeze(1) == all_idx) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        mask_contrastive_score = contrastive_score.masked_fill( (positive_mask==0) | (contrastive_mask==1), 0)
        positive_num = torch.sum(positive_mask, dim=1, keepdim=True) - 1
        loss += - self.cl_unsupervised_loss_weight * torch.sum(mask_contrastive_score / positive_num) / torch.sum(mask_contrastive_score!=0)

        # supervised_mask
        all_labels = torch.cat((labels.unsqueeze(1).repeat(1, rep_num+1).view(-1), extra_labels.unsqueeze(1).repeat(1, rep_num).view(-1)), dim=0) # (bsz*(rep_num+1)+(extra * rep_num))
        all_labels = all_labels.unsqueeze(0).expand(bsz, -1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        positive_mask = (labels.unsqueeze(1) == all_labels) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        mask_contrastive_score = contrastive_score.masked_fill( (positive_mask==0) | (contrastive_mask==1), 0)
        positive_num = torch.sum(positive_mask, dim=1, keepdim=True) - 1
        loss += - self.cl_supervised_loss_weight * torch.sum(mask_contrastive_score / positive_num) / torch.sum(mask_contrastive_score!=0)

    return loss


# ---- UnstructuredPruning/emmental/modeling_bert_masked.py,
# MaskedBertForSequenceClassification.calculate_contrastive_loss (a cross-check only)
def calculate_contrastive_loss_unstructured(
    self,
    idx,
    global_representations_bank,
    global_labels_bank,
    all_output,
    pooled_output,
    attention_mask,
    labels,
    sampled,
):
    loss = 0
    if idx is not None and global_representations_bank is not None:
        # representations: bsz * rep_num * hidden_state
        # labels: bsz
        representations = torch.index_select(global_representations_bank, dim=0, index=idx.cpu()).to(pooled_output)
        bsz, rep_num, hid_size = representations.size()

        if self.alignrep == 'mean-pooling':
            pooled_output = torch.sum(all_output * (attention_mask.unsqueeze(-1) == 1), dim=1) / torch.sum(attention_mask, dim=1, keepdim=True)
        else:
            pooled_output = pooled_output
        pooled_output = torch.nn.functional.normalize(pooled_output, p=2, dim=-1) # bsz * hidden_state

        representations = torch.cat((pooled_output.unsqueeze(1).detach(), representations), dim=1) # bsz * (rep_num+1) * hidden_state
        representations = representations.reshape(bsz*(rep_num+1), hid_size)

        # sample more examples
        extra = self.extra_examples // global_representations_bank.size(1)
        assert len(sampled) == extra
        extra_idx = torch.LongTensor(sampled)
        extra_labels = torch.index_select(global_labels_bank, dim=0, index=extra_idx).to(pooled_output).long() # extra
        extra_representations = torch.index_select(global_representations_bank, dim=0, index=extra_idx).view(-1, hid_size).to(pooled_output) # (extra * rep_num) * hidden_state
        extra_idx = extra_idx.to(pooled_output).long()

        representations = torch.cat((representations, extra_representations), dim=0)
        contrastive_score = torch.mm(pooled_output, representations.t()) # bsz * (bsz*(rep_num+1)+(extra * rep_num))

        contrastive_mask = torch.unbind(torch.eye(bsz).to(contrastive_score), dim=1)
        contrastive_mask = [torch.cat((m.unsqueeze(1), torch.zeros(bsz, rep_num).to(contrastive_score)), dim=1) for m in contrastive_mask]
        contrastive_mask = torch.cat(contrastive_mask, dim=1) # bsz * (bsz*(rep_num+1))
        contrastive_mask = torch.cat((contrastive_mask, torch.zeros(bsz, extra * rep_num).to(contrastive_mask)), dim=1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        contrastive_score /= self.contrastive_temperature
        contrastive_score = contrastive_score.masked_fill(contrastive_mask==1, -1e6)
        contrastive_score = torch.nn.functional.log_softmax(contrastive_score, dim=-1)

        # unsupervised contrastive loss
        all_idx = torch.cat((idx.unsqueeze(1).repeat(1, rep_num+1).view(-1), extra_idx.unsqueeze(1).repeat(1, rep_num).view(-1)), dim=0) # (bsz*(rep_num+1)+(extra * rep_num))
        all_idx = all_idx.unsqueeze(0).expand(bsz, -1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        positive_mask = (idx.unsqueeze(1) == all_idx) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        mask_contrastive_score = contrastive_score.masked_fill( (positive_mask==0) | (contrastive_mask==1), 0)
        positive_num = torch.sum(positive_mask, dim=1, keepdim=True) - 1
        loss += - self.cl_unsupervised_loss_weight * torch.sum(mask_contrastive_score / positive_num) / torch.sum(mask_contrastive_score!=0)

        # supervised contrastive loss
        all_labels = torch.cat((labels.unsqueeze(1).repeat(1, rep_num+1).view(-1), extra_labels.unsqueeze(1).repeat(1, rep_num).view(-1)), dim=0) # (bsz*(rep_num+1)+(extra * rep_num))
        all_labels = all_labels.unsqueeze(0).expand(bsz, -1) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        positive_mask = (labels.unsqueeze(1) == all_labels) # bsz * (bsz*(rep_num+1)+(extra * rep_num))
        mask_contrastive_score = contrastive_score.masked_fill( (positive_mask==0) | (contrastive_mask==1), 0)
        positive_num = torch.sum(positive_mask, dim=1, keepdim=True) - 1
        loss += - self.cl_supervised_loss_weight * torch.sum(mask_contrastive_score / positive_num) / torch.sum(mask_contrastive_score!=0)
    return loss


# ---- UnstructuredPruning/emmental/modules/binarizer.py (docstrings shortened)
class ThresholdBinarizer(autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.tensor, threshold: float, sigmoid: bool):
        nb_elems = inputs.numel()
        nb_min = int(0.005 * nb_elems) + 1
        if sigmoid:
            mask = (torch.sigmoid(inputs) > threshold).type(inputs.type())
        else:
            mask = (inputs > threshold).type(inputs.type())
        if mask.sum() < nb_min:
            # We limit the pruning so that at least 0.5% (half a percent) of the weights are remaining
            k_threshold = inputs.flatten().kthvalue(max(nb_elems - nb_min, 1)).values
            mask = (inputs > k_threshold).type(inputs.type())
        return mask

    @staticmethod
    def backward(ctx, gradOutput):
        return gradOutput, None, None


class TopKBinarizer(autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.tensor, threshold: float):
        # Get the subnetwork by sorting the inputs and using the top threshold %
        mask = inputs.clone()
        _, idx = inputs.flatten().sort(descending=True)
        j = int(threshold * inputs.numel())

        # flat_out and mask access the same memory.
        flat_out = mask.flatten()
        flat_out[idx[j:]] = 0
        flat_out[idx[:j]] = 1
        return mask

    @staticmethod
    def backward(ctx, gradOutput):
        return gradOutput, None


class MagnitudeBinarizer(object):
    @staticmethod
    def apply(inputs: torch.tensor, threshold: float):
        # Get the subnetwork by sorting the inputs and using the top threshold %
        mask = inputs.clone()
        _, idx = inputs.abs().flatten().sort(descending=True)
        j = int(threshold * inputs.numel())

        # flat_out and mask access the same memory.
        flat_out = mask.flatten()
        flat_out[idx[j:]] = 0
        flat_out[idx[:j]] = 1
        return mask


# ---- UnstructuredPruning/emmental/modules/masked_nn.py (docstrings shortened)
class MaskedLinear(nn.Linear):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        mask_init: str = "constant",
        mask_scale: float = 0.0,
        pruning_method: str = "topK",
    ):
        super(MaskedLinear, self).__init__(in_features=in_features, out_features=out_features, bias=bias)
        assert pruning_method in ["topK", "threshold", "sigmoied_threshold", "magnitude", "l0"]
        self.pruning_method = pruning_method

        if self.pruning_method in ["topK", "threshold", "sigmoied_threshold", "l0"]:
            self.mask_scale = mask_scale
            self.mask_init = mask_init
            self.mask_scores = nn.Parameter(torch.empty(self.weight.size()))
            self.init_mask()

    def init_mask(self):
        if self.mask_init == "constant":
            init.constant_(self.mask_scores, val=self.mask_scale)
        elif self.mask_init == "uniform":
            init.uniform_(self.mask_scores, a=-self.mask_scale, b=self.mask_scale)
        elif self.mask_init == "kaiming":
            init.kaiming_uniform_(self.mask_scores, a=math.sqrt(5))

    def forward(self, input: torch.tensor, threshold: float):
        # Get the mask
        if self.pruning_method == "topK":
            mask = TopKBinarizer.apply(self.mask_scores, threshold)
        elif self.pruning_method in ["threshold", "sigmoied_threshold"]:
            sig = "sigmoied" in self.pruning_method
            mask = ThresholdBinarizer.apply(self.mask_scores, threshold, sig)
        elif self.pruning_method == "magnitude":
            mask = MagnitudeBinarizer.apply(self.weight, threshold)
        elif self.pruning_method == "l0":
            l, r, b = -0.1, 1.1, 2 / 3
            if self.training:
                u = torch.zeros_like(self.mask_scores).uniform_().clamp(0.0001, 0.9999)
                s = torch.sigmoid((u.log() - (1 - u).log() + self.mask_scores) / b)
            else:
                s = torch.sigmoid(self.mask_scores)
            s_bar = s * (r - l) + l
            mask = s_bar.clamp(min=0.0, max=1.0)
        # Mask weights with computed mask
        weight_thresholded = mask * self.weight
        # Compute output (linear layer) with masked weights
        return F.linear(input, weight_thresholded, self.bias)


# ---- UnstructuredPruning/masked_run_glue.py
def schedule_threshold(
    step: int,
    total_step: int,
    warmup_steps: int,
    initial_threshold: float,
    final_threshold: float,
    initial_warmup: int,
    final_warmup: int,
    final_lambda: float,
):
    if step <= initial_warmup * warmup_steps:
        threshold = initial_threshold
    elif step > (total_step - final_warmup * warmup_steps):
        threshold = final_threshold
    else:
        spars_warmup_steps = initial_warmup * warmup_steps
        spars_schedu_steps = (final_warmup + initial_warmup) * warmup_steps
        mul_coeff = 1 - (step - spars_warmup_steps) / (total_step - spars_schedu_steps)
        threshold = final_threshold + (initial_threshold - final_threshold) * (mul_coeff ** 3)
    regu_lambda = final_lambda * threshold / final_threshold
    return threshold, regu_lambda


def regularization(model: nn.Module, mode: str):
    regu, counter = 0, 0
    for name, param in model.named_parameters():
        if "mask_scores" in name:
            if mode == "l1":
                regu += torch.norm(torch.sigmoid(param), p=1) / param.numel()
            elif mode == "l0":
                regu += torch.sigmoid(param - 2 / 3 * np.log(0.1 / 1.1)).sum() / param.numel()
            else:
                ValueError("Don't know this mode.")
            counter += 1
    return regu / counter


# ---- StructuredPruning/prune/prune_utils.py
def determine_pruning_sequence(
    prune_percents,
    n_heads,
    n_layers,
    n_intermediate,
    at_least_x_heads_per_layer=1,
):
    '''
    Same ratio for attention heads and MLPs
    '''

    # Compute the number of heads to prune on percentage if needed
    all_n_to_prune = []
    for prune_percent in prune_percents:
        total_heads = n_heads * n_layers
        n_to_prune = int(total_heads * prune_percent / 100)
        # Make sure we keep at least one head per layer
        if at_least_x_heads_per_layer > 0:
            if n_to_prune > total_heads - at_least_x_heads_per_layer * n_layers:
                assert False
        all_n_to_prune.append(n_to_prune)

    # We'll incrementally prune layers and evaluate
    all_n_to_prune = sorted(all_n_to_prune)
    n_to_prune_sequence_head = all_n_to_prune[:]
    for idx in range(1, len(all_n_to_prune)):
        n_to_prune_sequence_head[idx] = all_n_to_prune[idx] - all_n_to_prune[idx-1]
    # Verify that the total number of heads pruned stayed the same
    assert all_n_to_prune[-1] == sum(n_to_prune_sequence_head)

    # MLP
    all_n_to_prune = []
    for prune_percent in prune_percents:
        total_intermediate = n_layers * n_intermediate
        n_to_prune = int(total_intermediate * prune_percent / 100)
        all_n_to_prune.append(n_to_prune)
    n_to_prune_sequence_intermediate  = [0 for _ in range(len(all_n_to_prune))]
    n_to_prune_sequence_intermediate[0] = all_n_to_prune[0]
    for idx in range(1, len(all_n_to_prune)):
        n_to_prune_sequence_intermediate[idx] = all_n_to_prune[idx] - all_n_to_prune[idx-1]
    assert len(n_to_prune_sequence_head) == len(n_to_prune_sequence_intermediate)
    return n_to_prune_sequence_head, n_to_prune_sequence_intermediate


def normalize_by_layer(head_importance, intermediate_importance):
    # calculate_head_and_intermediate_importance, the `if normalize_scores_by_layer:` block
    exponent = 2
    norm_by_layer = torch.pow(torch.pow(head_importance, exponent).sum(-1), 1/exponent)
    head_importance /= norm_by_layer.unsqueeze(-1) + 1e-20
    norm_by_layer = torch.pow(torch.pow(intermediate_importance, exponent).sum(-1), 1/exponent)
    intermediate_importance /= norm_by_layer.unsqueeze(-1) + 1e-20
    return head_importance, intermediate_importance


def what_to_prune_head(
    head_importance,
    n_to_prune,
    old_head_mask,
    at_least_x_heads_per_layer=1,
):
    head_importance = head_importance.clone()
    n_layers, n_heads = head_importance.size()

    already_prune = {}
    for layer in range(old_head_mask.size(0)):
        for head in range(old_head_mask.size(1)):
            if old_head_mask[layer][head].item() == 0:
                if layer not in already_prune:
                    already_prune[layer] = []
                already_prune[layer].append(head)

    # Sort heads by score
    heads_and_score = [
        ((layer, head), head_importance[layer][head].item())
        for layer in range(n_layers)
        for head in range(n_heads)
    ]
    heads_and_score = sorted(heads_and_score, key=lambda x: x[1])
    sorted_heads = [head_and_score[0]
                    for head_and_score in heads_and_score]
    # Ensure we don't delete all heads in a layer
    if at_least_x_heads_per_layer:
        # Remove the top scoring head in each layer
        to_protect = {l: 0 for l in range(n_layers)}
        filtered_sorted_heads = []
        for layer, head in reversed(sorted_heads):
            if layer in to_protect:
                if to_protect[layer] < at_least_x_heads_per_layer:
                    to_protect[layer] += 1
                    continue
                else:
                    to_protect.pop(layer)
            filtered_sorted_heads.insert(0, (layer, head))
        sorted_heads = filtered_sorted_heads
    # layer/heads that were already pruned
    # Prune the lowest scoring heads
    sorted_heads = [
        (layer, head)
        for (layer, head) in sorted_heads
        if layer not in already_prune or head not in already_prune[layer]
    ]

    old_head_mask = old_head_mask.clone()
    new_head_mask = old_head_mask.clone()
    # Update heads to prune
    for layer, head in sorted_heads[:n_to_prune]:
        new_head_mask[layer][head] = 0
    return new_head_mask


def what_to_prune_mlp(
    intermediate_importance,
    n_to_prune,
    old_intermediate_mask
):
    intermediate_importance = intermediate_importance.clone()
    n_layers, n_intermediate = intermediate_importance.size()

    already_prune = defaultdict(list)
    for layer in range(n_layers):
        for intermediate_idx in range(n_intermediate):
            if old_intermediate_mask[layer][intermediate_idx].item() == 0:
                already_prune[layer].append(intermediate_idx)

    score = [
        ((layer, intermediate_idx), intermediate_importance[layer][intermediate_idx].item())
        for layer in range(n_layers) for intermediate_idx in range(n_intermediate)
    ]
    score.sort(key=lambda x:x[-1])
    filter_score = [
        ((layer, intermediate_idx), score)
        for ((layer, intermediate_idx), score) in score
        if layer not in already_prune or intermediate_idx not in already_prune[layer]
    ]

    old_intermediate_mask = old_intermediate_mask.clone()
    new_intermediate_mask = old_intermediate_mask.clone()
    for (layer, intermediate_idx), _ in filter_score[:n_to_prune]:
        new_intermediate_mask[layer][intermediate_idx] = 0
    return new_intermediate_mask


# =====================================================================================
torch.manual_seed(2022)
out = {}

# ---- contrastive loss
B, H, N, E = 5, 8, 20, 6
for case, R, w_u, w_s in (("r1", 1, 0.3, 3.0), ("r3", 3, 0.1, 10.0)):
    while True:  # every class at least twice in the bank
        bank_labels = torch.randint(0, 3, (N,))
        if all(int((bank_labels == c).sum()) >= 2 for c in range(3)):
            break
    perm = torch.randperm(N)
    idx = perm[:B].clone()
    labels = bank_labels[idx].clone()
    # random.sample's answer: two batch examples and four others, in a shuffled order
    sampled = torch.cat((idx[[1, 3]], perm[B:B + E - 2]))[torch.randperm(E)]
    assert len(set(sampled.tolist())) == E and len(set(sampled.tolist()) & set(idx.tolist())) == 2
    z = torch.randn(B, H) * 2
    bank = F.normalize(torch.randn(N, R, H), p=2, dim=-1)
    # a bank row of a batch example lies near its current representation, as it would in training
    bank[idx] = F.normalize(z.unsqueeze(1) + 0.7 * torch.randn(B, R, H), p=2, dim=-1)

    def run(wu, ws, fn=calculate_contrastive_loss):
        me = SimpleNamespace(contrastive_temperature=0.1, cl_unsupervised_loss_weight=wu,
                             cl_supervised_loss_weight=ws, extra_examples=E * R, alignrep='cls')
        zz = z.clone().requires_grad_(True)
        loss = fn(me, idx, bank, bank_labels, None, zz, None, labels, sampled.tolist())
        loss.backward()
        return loss.detach(), zz.grad

    loss, gz = run(w_u, w_s)
    lu, _ = run(w_u, 0.0)
    ls, _ = run(0.0, w_s)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert torch.equal(loss, lu + ls), (loss, lu + ls)
    l2, g2 = run(w_u, w_s, calculate_contrastive_loss_unstructured)
    assert torch.equal(loss, l2) and torch.equal(gz, g2)
    p = f"cl.{case}."
    out.update({p + "z": z, p + "idx": idx, p + "labels": labels, p + "bank": bank, p + "bank_labels": bank_labels,
                p + "extra_idx": sampled, p + "params": torch.tensor([0.1, w_u, w_s], dtype=torch.float64),
                p + "loss": loss, p + "loss_unsup": lu, p + "loss_sup": ls, p + "grad.z": gz})
    print(f"cl.{case}: loss {loss.item():.6f} = unsup {lu.item():.6f} + sup {ls.item():.6f}")

# ---- binarizers
scores = torch.randn(6, 7) * 2  # some below logit(0.1)
weight = torch.randn(6, 7)
out["bin.scores"], out["bin.weight"] = scores, weight
for p, th in (("50", 0.5), ("10", 0.1), ("3", 0.03)):
    out[f"bin.topk.{p}"] = TopKBinarizer.apply(scores, th)
    out[f"bin.magnitude.{p}"] = MagnitudeBinarizer.apply(weight, th)
    assert out[f"bin.topk.{p}"].sum() == int(th * 42)
for p, th in (("50", 0.5), ("10", 0.1), ("fallback", 0.9999)):
    out[f"bin.sigmoid.{p}"] = ThresholdBinarizer.apply(scores, th, True)
assert (torch.sigmoid(scores) > 0.9999).sum() == 0 and out["bin.sigmoid.fallback"].sum() == int(0.005 * 42) + 1

# ---- MaskedLinear
x = torch.randn(4, 7)
w = torch.randn(6, 7)
b = torch.randn(6)
s = torch.randn(6, 7) * 2
g = torch.randn(4, 6)
out.update({"ml.x": x, "ml.weight": w, "ml.bias": b, "ml.scores": s, "ml.g": g})
for name, method in (("topk", "topK"), ("sigmoid", "sigmoied_threshold"), ("magnitude", "magnitude")):
    m = MaskedLinear(7, 6, pruning_method=method, mask_init="constant", mask_scale=0.0)
    with torch.no_grad():
        m.weight.copy_(w)
        m.bias.copy_(b)
        if hasattr(m, "mask_scores"):
            m.mask_scores.copy_(s)
    xx = x.clone().requires_grad_(True)
    y = m(xx, 0.1)
    (y * g).sum().backward()
    p = f"ml.{name}."
    out[p + "y"], out[p + "grad.x"] = y.detach(), xx.grad
    out[p + "grad.weight"], out[p + "grad.bias"] = m.weight.grad, m.bias.grad
    if hasattr(m, "mask_scores"):
        out[p + "grad.scores"] = m.mask_scores.grad
    # the mask carries no gradient to the weight, even for magnitude (its forward overwrites every entry)
    mask = {"topK": lambda: TopKBinarizer.apply(s, 0.1),
            "sigmoied_threshold": lambda: ThresholdBinarizer.apply(s, 0.1, True),
            "magnitude": lambda: MagnitudeBinarizer.apply(w, 0.1)}[method]()
    assert torch.allclose(m.weight.grad, mask * (g.t() @ x), atol=1e-6)
    if hasattr(m, "mask_scores"):
        assert torch.allclose(m.mask_scores.grad, w * (g.t() @ x), atol=1e-6)

# ---- schedule_threshold
for key, (it, ft, fl) in (("sched", (1.0, 0.1, 5.0)), ("sched2", (0.0, 0.1, 550.0))):
    params = (1000, 50, it, ft, 2, 3, fl)
    th, lam = zip(*[schedule_threshold(step=st, total_step=1000, warmup_steps=50, initial_threshold=it,
                                       final_threshold=ft, initial_warmup=2, final_warmup=3, final_lambda=fl)
                    for st in range(1001)])
    out[key + ".params"] = torch.tensor(params, dtype=torch.float64)
    out[key + ".threshold"] = torch.tensor(th, dtype=torch.float64)
    out[key + ".lambda"] = torch.tensor(lam, dtype=torch.float64)

# ---- regularization
s0, s1 = torch.randn(6, 7) * 2, torch.randn(3, 5) * 2
out["reg.s0"], out["reg.s1"] = s0, s1
for mode, key in (("l1", "reg.l1"), ("l0", "reg.l0")):
    holder = nn.Module()
    holder.a, holder.b = nn.Module(), nn.Module()
    holder.a.mask_scores = nn.Parameter(s0.clone())
    holder.a.weight = nn.Parameter(torch.randn(6, 7))  # not a mask_scores: skipped
    holder.b.mask_scores = nn.Parameter(s1.clone())
    r = regularization(holder, mode)
    r.backward()
    assert r.dtype == torch.float32 and r.shape == ()
    gkey = "reg.grad." if mode == "l1" else "reg.l0.grad."
    out[key], out[gkey + "s0"], out[gkey + "s1"] = r.detach(), holder.a.mask_scores.grad, holder.b.mask_scores.grad

# ---- structured pruning
NL, NH, NI = 3, 4, 10
percents = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
try:
    determine_pruning_sequence(percents + [90.0], n_heads=NH, n_layers=NL, n_intermediate=NI)
    raise SystemExit("expected the official assert to trip at 90%")
except AssertionError:
    pass
seq_h, seq_i = determine_pruning_sequence(percents, n_heads=NH, n_layers=NL, n_intermediate=NI)
out["prune.percents"] = torch.tensor(percents, dtype=torch.float64)
out["prune.sequence"] = torch.tensor([seq_h, seq_i], dtype=torch.int64)

# layer 0 flat (all four near 1/2 once normalised), layers 1 and 2 peaked; raw scales differ per layer
pattern = torch.tensor([[0.50, 0.49, 0.51, 0.495], [0.95, 0.18, 0.17, 0.19], [0.60, 0.55, 0.56, 0.16]])
imp_h = (pattern + 0.004 * torch.rand(NL, NH)) * torch.tensor([[3.0], [0.2], [1.5]])
imp_f = (torch.rand(NL, NI) + 0.05) * torch.tensor([[1.0], [5.0], [0.3]])
norm_h, norm_f = normalize_by_layer(imp_h.clone(), imp_f.clone())
hm1 = what_to_prune_head(norm_h, n_to_prune=8, old_head_mask=torch.ones(NL, NH), at_least_x_heads_per_layer=1)
fm1 = what_to_prune_mlp(norm_f, n_to_prune=12, old_intermediate_mask=torch.ones(NL, NI))
assert hm1.sum() == 4 and (hm1.sum(1) >= 1).all() and fm1.sum() == 18
lowest8 = norm_h.flatten().argsort()[:8]
assert (lowest8 // NH == 0).sum() == 4, "layer 0 should be entirely among the eight lowest"
out.update({"prune.importance_head": imp_h, "prune.importance_ffn": imp_f, "prune.norm_head": norm_h,
            "prune.norm_ffn": norm_f, "prune.n_round1": torch.tensor([8, 12]),
            "prune.head_mask_round1": hm1, "prune.ffn_mask_round1": fm1})

# round 2: in layer 0 a pruned head scores highest and the live one lowest overall
imp_h2 = torch.rand(NL, NH) + 0.2
live0 = int(hm1[0].nonzero()[0])
dead0 = int((hm1[0] == 0).nonzero()[0])
imp_h2[0, dead0] = 5.0
imp_h2[0, live0] = 0.01
imp_f2 = torch.rand(NL, NI) + 0.05
norm_h2, norm_f2 = normalize_by_layer(imp_h2.clone(), imp_f2.clone())
hm2 = what_to_prune_head(norm_h2, n_to_prune=1, old_head_mask=hm1, at_least_x_heads_per_layer=1)
fm2 = what_to_prune_mlp(norm_f2, n_to_prune=6, old_intermediate_mask=fm1)
assert hm2[0].sum() == 0 and hm2.sum() == 3 and fm2.sum() == 12
out.update({"prune.importance_head2": imp_h2, "prune.importance_ffn2": imp_f2, "prune.norm_head2": norm_h2,
            "prune.norm_ffn2": norm_f2, "prune.n_round2": torch.tensor([1, 6]),
            "prune.head_mask_round2": hm2, "prune.ffn_mask_round2": fm2})

# Distillation (PruneBertForSequenceClassification.forward, PruneBert.py 135-143), T = 1 and 2:
# kd.s (student logits, requires grad), kd.t (teacher logits), kd.T<t>.loss and kd.T<t>.grad.s
torch.manual_seed(2023)
kd_s, kd_t = torch.randn(6, 5) * 2, torch.randn(6, 5) * 2
out["kd.s"], out["kd.t"] = kd_s.clone(), kd_t
for T in (1.0, 2.0):
    s_ = kd_s.clone().requires_grad_(True)
    loss_logits = (
        F.kl_div(
            input=F.log_softmax(s_ / T, dim=-1),
            target=F.softmax(kd_t / T, dim=-1),
            reduction="batchmean",
        )
        * (T ** 2)
    )
    loss_logits.backward()
    out[f"kd.T{int(T)}.loss"], out[f"kd.T{int(T)}.grad.s"] = loss_logits.detach(), s_.grad

n, size = st_write.write(os.path.join(here, "cap_parity.safetensors"), out,
                         {"torch": torch.__version__, "script": "gen_cap_parity.py",
                          "official": "RunxinXu/ContrastivePruning@" + COMMIT})
print(f"wrote cap_parity.safetensors: {n} tensors, {size} bytes of data")
