// Package cap is CAP, contrastive pruning of pre-trained language models
// (Xu et al., "From Dense to Sparse: Contrastive Pruning for Better
// Pre-trained Language Model Compression", AAAI 2022), on torchmods' BERT.
// The reference is the official code, RunxinXu/ContrastivePruning at
// eae11d63e417cace7ba7449ac3ac95901c211e61, for schedules and details,
// and the paper for the loss.
//
// One task, "cap.prune", prunes a pre-trained BERT while fine-tuning it on
// a classification task (text.classify's data formats, GLUE's included),
// distilled from a fine-tuned teacher:
//
//   - structured (CAP-f, StructuredPruning/): attention heads and
//     feed-forward neurons, by importance, the accumulated |dL/dmask| of
//     masks of ones (HF's head_mask, CAP's intermediate_mask), normalised
//     per layer; in rounds, 10% more sparsity each, each round retrained
//     with a fresh optimizer and schedule. At the end the model is really
//     pruned (Shrink): the kept rows and columns move into smaller
//     matrices, written to the run's pruned/ with config.json (HF's
//     pruned_heads, repro's intermediate_sizes), which text.classify's
//     Open and `repro predict` load. The official code only masks.
//   - unstructured (UnstructuredPruning/, emmental's MaskedLinear):
//     movement pruning with top-k masks (CAP-m, "topK"), soft movement
//     with sigmoid thresholds and an L1 penalty (CAP-soft,
//     "sigmoied_threshold"), and magnitude pruning, with the cubic
//     threshold schedule and its warm-up and cool-down.
//   - the contrastive framework: memory banks of the training examples'
//     normalised representations from the pre-trained model (PrC), from
//     snapshots taken during pruning (SnC) and from the teacher (FiC);
//     unsupervised (same example) and supervised (same label) terms at
//     temperature 0.1 against the batch, the banks' rows of the batch and
//     extra_examples / R randomly drawn rows; any bank can be switched
//     off. The total is ce_weight * CE + distill_weight * KD(T) + each
//     bank's terms.
//
// Checkpoints hold the masks, mask scores (they are parameters), banks,
// the rounds' results and the loader's position; a resumed run ends with
// the same weights, byte for byte (TestResumesExactly).
//
// # Where repro and the official code differ, and where the code and the paper do
//
//   - Loss normalisation (code vs paper). The code divides each anchor's
//     positive log-probabilities by its number of positives and then the
//     sum over anchors by the number of positives in the whole batch, so
//     the unsupervised term is the paper's divided by about R and the
//     supervised one shrinks with the number of same-label candidates.
//     repro follows the code (contrastive.normalise = "code", the
//     parity-tested default); "paper" averages per anchor, then over
//     anchors.
//   - Head protection (a bug in the code). what_to_prune_head protects
//     each layer's highest scoring heads before it removes the heads
//     already pruned, so a protection can be spent on a pruned head and a
//     layer can lose all its live heads, against the paper's and the
//     code's own intent of keeping at least one. repro protects live heads
//     (prune.head_protection = "live"); "official" reproduces the code (a
//     layer left without heads is pruned to its attention output's bias).
//   - Round 1's importance has no contrastive term in the code (the banks
//     are handed to the model after it) but has the distillation term;
//     repro does the same.
//   - The contrastive representation with alignrep "cls" is the pooler's
//     output after the classifier's dropout in training, as the code
//     passes it; the banks hold it before dropout (encode_example).
//   - Unstructured snapshots are encoded in training mode, dropout on, in
//     the code (nothing calls model.eval() before them); repro does the
//     same. Structured snapshots are encoded in evaluation mode, as there.
//   - The unstructured code takes a snapshot at the start of every epoch
//     after the first; prune.snapshot_every = 0 does that, a positive value
//     takes one every that many steps (for short runs).
//   - KD temperature: the unstructured scripts leave it at masked_run_glue's
//     default, 2.0; the structured script sets 1.0. The configs say which.
//   - The magnitude "binarizer" passes no gradient through its mask (it is
//     not an autograd function), so the weights get mask * dL/dW' only;
//     repro's does the same.
//   - Sampled negatives: random.sample in Python, a Go permutation here:
//     the same law, not the same rows; the parity test passes the rows in.
//   - The learning-rate schedule is repro's linear warm-up and decay
//     (train.WarmupSchedule, as text.classify's), whose warm-up starts at
//     lr/warmup on the first step where HF's starts at 0.
//   - determine_pruning_sequence is called with the layers and heads
//     swapped in run_glue.py (harmless for bert-base's 12 x 12); repro
//     passes them the right way round, which matters for other shapes
//     (the lexname BERT's 2 layers of 4 heads).
//   - The official scripts use transformers.AdamW, which adds eps before
//     the bias correction and decays weights after the update; repro's is
//     torch.optim.AdamW's arithmetic. The difference is of the order of
//     eps.
//   - Batches are padded to their longest example, not to max_len as the
//     official scripts pad; with the attention mask the results are the
//     same.
//   - SQuAD (the paper's fourth task) is not built: repro has no extractive
//     question-answering head or SQuAD reader yet.
package cap
