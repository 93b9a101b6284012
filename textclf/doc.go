// Package textclf is the "text.classify" task: fine-tuning a BERT-family
// checkpoint (a HF folder, hf:ORG/NAME, a repro mlm.pretrain or
// text.classify run) to classify or score single texts or pairs, read from
// CSV, TSV or JSONL files or GLUE's files as distributed, with the recipe
// of HF's run_glue.py and GLUE's metrics; and the Go API that opens such a
// model to embed or classify text, also from concurrent goroutines (see
// the package examples, and the tensor-lifetime rule in torchmods/doc.go).
//
// The package is named textclf rather than text so that programs using it
// keep the standard library's text/... names free.
package textclf
