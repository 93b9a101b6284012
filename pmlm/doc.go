// Package pmlm is UniLMv2 (Bao et al., ICML 2020): pseudo-masked language
// models. One forward pass trains two objectives on a sequence whose
// masked blocks are predicted both at once (autoencoding, L_AE at the [M]
// slots, as BERT) and one block after another in a random factorisation
// order (partially autoregressive, L_PAR at appended [P] tokens), through
// an attention mask that lets each [P] see only the context and the
// blocks before it. Fine-tuning for generation follows microsoft/unilm's
// s2s-ft: the source attends bidirectionally, the target through pseudo
// masks, decoding by beam search.
//
// The parts: blocks.go (blockwise masking and the order), layout.go (the
// packed input and its mask, and the naive per-block inputs its test
// compares against), s2s.go (s2s-ft's fine-tuning layout), pretrain.go and
// finetune.go (the tasks pmlm.pretrain and pmlm.s2s), beam.go (decoding),
// rouge.go and bleu.go (the metrics), wordnet.go (the generation tasks
// built from WordNet). The model is torchmods' BERT with UniLMv2's
// relative position bias (model.rel_pos_bins). README.md lists where the
// code follows the paper, the official code, or neither.
package pmlm
