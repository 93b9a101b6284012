// Package mlm is "Learning Better Masking for Better Language Model
// Pre-training" (Yang, Zhang, Zhao, ACL 2023), following its official code
// mutonix/better_masking: time-variant masking for BERT pre-training, as
// masking-ratio decay (MRD, Ratio in masking.go) and POS-tagging weighted
// masking (PTW, also masking.go), on torchmods' BERT with a WordPiece tokenizer
// (tokenizer.go, wordpiece.go), a WordNet-derived POS tagger (pos.go) and
// the official data pipeline's packing (pack.go). The pre-training and
// lexname fine-tuning tasks are in tasks.go; the departures from the
// official code that remain are listed in the README's MLM section.
package mlm
