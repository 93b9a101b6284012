// Package vqa implements MUMC (masked image and text modelling with
// unimodal and multimodal contrastive losses, MICCAI 2023) for medical
// visual question answering: the dataset readers, the text normalisation
// and the scoring of the official code, so that results are comparable
// with the published numbers.
package vqa
