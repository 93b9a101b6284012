// Package icae is the In-context Autoencoder (Ge et al., "In-context
// Autoencoder for Context Compression in a Large Language Model", ICLR
// 2024), after the official code getao/icae (v1 and v2): a frozen
// Llama-family LLM with LoRA on its attention projections compresses a
// context into memory slots (the encoder), and the same LLM without LoRA
// reads them as input embeddings (the decoder), trained to reconstruct the
// context (AE), continue it (LM) or answer prompts about it (FT).
//
// Files:
//
//   - layout.go: the extra tokens' ids (memory tokens, [AE], [LM], [FT])
//     and v2's multi-span segmentation;
//   - samples.go: the training examples exactly as training_utils.py
//     builds them (text_extraction, pretrain_tokenize_function,
//     instruct_ft_tokenize_function): decoder ids and loss masks;
//   - model.go: the module (memory table, LoRA, encoder, decoder, loss);
//   - llm.go: running the frozen LLM on input embeddings with LoRA on or
//     off;
//   - generate.go, eval.go, metrics.go: decoding from slots, the held-out
//     evaluation (reconstruction against truncation, continuation
//     perplexity), BLEU;
//   - tokenizer.go, corpus.go: tokenizers and the corpus as token streams;
//   - lm.go, pretrain.go, finetune.go: the tasks icae.lm (the small LLM
//     the experiment freezes), icae.pretrain and icae.finetune;
//   - config.go: their shared config sections; inference.go: a trained
//     ICAE for `repro icae compress|generate`.
//
// Errors and tensor lifetimes follow torchmods' rule (torchmods/doc.go):
// tensor code panics with errors, the tasks and Inference are boundaries.
// README.md says where the paper and the code differ and which option each
// config key picks.
package icae
