package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
)

// CLIP's tokenizer's start- and end-of-text ids, the vocabulary's last two
// (cliptok's; clip.tokenize pads a row with zeros after its end-of-text).
const (
	clipSOT, clipEOT = 49406, 49407
	clipVocab        = 49408
	clipContext      = 77
)

// clipSizes is the CLIP the clip workload trains, its batch and its steps
// per repetition. On CUDA ViT-B/16 as OpenAI released it (image 224,
// patch 16, vision 768 wide, 12 layers, 12 heads; text 512 wide, 12
// layers, 8 heads; embedding 512) at batch 128, 10 steps. On the CPU a
// reduced ViT CLIP whose step takes seconds, not minutes: image 112
// (a 7 x 7 grid, ViT-B/32's at 224), patch 16, vision 384 wide, 6 layers,
// 6 heads (model.py's width/64); text 256 wide, 4 layers, 4 heads;
// embedding 256; batch 32, one step a repetition. Context and vocabulary
// are CLIP's own (77, 49,408) at every size: the token embedding is
// 12.6M of the CPU model's 27M parameters, and AdamW updates all of it.
func clipSizes(dev gotch.Device) (torchmods.CLIPConfig, int64, int) {
	if dev.IsCuda() {
		return torchmods.CLIPConfig{EmbedDim: 512, ImageResolution: 224, VisionLayers: []int64{12}, VisionWidth: 768,
			VisionPatchSize: 16, VisionHeads: 12, ContextLength: clipContext, VocabSize: clipVocab,
			TransformerWidth: 512, TransformerHeads: 8, TransformerLayers: 12}, 128, 10
	}
	return torchmods.CLIPConfig{EmbedDim: 256, ImageResolution: 112, VisionLayers: []int64{6}, VisionWidth: 384,
		VisionPatchSize: 16, VisionHeads: 6, ContextLength: clipContext, VocabSize: clipVocab,
		TransformerWidth: 256, TransformerHeads: 4, TransformerLayers: 4}, 32, 1
}

// clipTokens draws batch rows of clip.tokenize's layout from a fixed
// generator: <sot>, ids uniform in [0, <sot>), <eot> at a random position
// (the first row's at the last, a caption filling the context), zeros
// after it. The end-of-text falls anywhere, so that the pooling at
// argmax(ids) reads a different position in every row, as on captions;
// the zeros after it still run through the causal transformer, as they
// do in CLIP's training, where every row is padded to 77.
func clipTokens(batch int64) []int64 {
	rng := rand.New(rand.NewPCG(0, 23))
	out := make([]int64, batch*clipContext)
	for b := range batch {
		row := out[b*clipContext : (b+1)*clipContext]
		eot := int64(clipContext - 1)
		if b > 0 {
			eot = 1 + rng.Int64N(clipContext-1)
		}
		row[0] = clipSOT
		for i := int64(1); i < eot; i++ {
			row[i] = rng.Int64N(clipSOT)
		}
		row[eot] = clipEOT
	}
	return out
}

// clipStep: one CLIP pre-training step of torchmods' CLIP (NewCLIP, as
// clip/model.py builds it and initialises it): EncodeImage and
// EncodeText through CLIP.Forward (features normalised, logits
// logit_scale.exp() * image @ textᵀ), the symmetric contrastive loss of
// OpenAI's training code and open_clip's ClipLoss (the mean of the
// cross-entropy of logits_per_image and of logits_per_text, each against
// arange(B): image i's caption is text i), backward, and AdamW with the
// CLIP paper's betas 0.9/0.98, eps 1e-6 and weight decay 0.2, not on
// gains, biases, class_embedding or logit_scale (train.NewAdamW's groups,
// open_clip's exclusion by ndim < 2). CLIP has no dropout. Left out: the
// clamp of logit_scale to ln 100 after each step (a no-op this far from
// it, 2.66 at initialisation) and the all-gather of features across
// devices. Sizes: clipSizes. Images are N(0, 1) (what CLIP's
// normalisation leaves is about that), ids clipTokens'. The batch goes to
// inputs (if set) for bench/torch_bench.py --inputs; with weights set the
// initial parameters go there too, for --weights, and the step-0 loss is
// printed to stderr, as pmlm does, so that the two sides can be checked
// to compute the same loss.
func clipStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, batch, steps := clipSizes(dev)
	r := cfg.ImageResolution
	images := ts.MustRandn([]int64{batch, 3, r, r}, gotch.Float, dev)
	tokens := clipTokens(batch)
	text := torchmods.FromSlice(tokens, []int64{batch, clipContext}, dev)
	if inputs != "" {
		im, err := torchmods.ToSafetensors("images", images, gotch.Float)
		if err != nil {
			panic(err)
		}
		if err := safetensors.Write(inputs, []safetensors.Tensor{im, i64("text", tokens, batch, clipContext)},
			map[string]string{"workload": "clip"}); err != nil {
			panic(err)
		}
	}
	store := torchmods.NewStore(dev)
	m := torchmods.NewCLIP(store.Root(), cfg)
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	opt := train.NewAdamW(store, 0.9, 0.98, 1e-6, 0.2)
	labels := make([]int64, batch)
	for i := range labels {
		labels[i] = int64(i)
	}
	target := torchmods.FromSlice(labels, []int64{batch}, dev)
	loss := func() *ts.Tensor {
		perImage, perText := m.Forward(images, text, true)
		li := torchmods.CrossEntropy(perImage, target, torchmods.CEOptions{})
		lt := torchmods.CrossEntropy(perText, target, torchmods.CEOptions{})
		return li.MustAdd(lt, true).MustDivScalar(ts.FloatScalar(2), true)
	}
	if weights != "" {
		step0("clip", fmt.Sprintf("%d images of %d px and %d texts of %d", batch, r, batch, clipContext), loss)
	}
	return timedSteps(steps, check, opt, loss)
}
