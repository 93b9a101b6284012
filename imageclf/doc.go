// Package imageclf is the "image.classify" task: fine-tuning a ViT
// checkpoint (timm, HF ViT or ViTMAE, MAE's official files, a repro
// mae.pretrain or image.classify run) on your own labelled images, an
// ImageNet-style folder or a CSV of paths and labels, with MAE's
// fine-tuning recipe (main_finetune.py) or a simple one; and the Go API
// that opens a trained run to classify images.
//
// The package is named imageclf rather than image so that programs using
// it keep the standard library's image package.
package imageclf
