package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
	"github.com/reprolab/repro/train"
	"github.com/reprolab/repro/vqa"
)

// vqaAlpha is the distillation weight of the step: VQA.yaml's alpha, as
// train_vqa.py runs it after the first epoch's warm-up.
const vqaAlpha = 0.4

// vqaSizes is the MUMC VQA model the vqa_step workload trains, its batch,
// question and answer lengths and steps per repetition. On CUDA the
// paper's fine-tuning shape: ViT-B/16 at 384 px (VQA.yaml's image_res),
// bert-base-uncased with fusion_layer 6 (config_bert.json) and the
// 6-layer answer decoder, batch 8 (batch_size_train), questions of 25
// tokens (the tokenizer's max_length in MUMC_VQA.forward), 10 steps. On
// the CPU a small model of the same structure whose step takes a fraction
// of a second: image 64 px, patch 8 (64 patches), ViT width 64, 2 blocks,
// 4 heads; BERT width 64, 4 layers of which the last 2 cross-attend to
// the image (fusion_layer 2), 4 heads, feed-forward 256, a 300-token
// vocabulary, a 2-layer decoder; batch 32, questions of 12 tokens. Answers
// are padded to 4 tokens on both, [CLS], one or two words and [SEP], as
// VQA-RAD's are mostly short (vqaBatch). No dropout (config_bert.json has
// 0.1), so that the two sides compute the same numbers.
func vqaSizes(dev gotch.Device) (cfg vqa.ModelConfig, batch, qLen, aLen int64, steps int) {
	if dev.IsCuda() {
		t := torchmods.BertBase()
		t.HiddenDropout, t.AttentionDropout = 0, 0
		t.CrossAttention, t.FusionLayer, t.EncoderWidth = true, 6, 768
		return vqa.ModelConfig{ImageRes: 384, Patch: 16, InChans: 3, VisionWidth: 768, VisionDepth: 12, VisionHeads: 12,
			Text: t, DecoderLayers: 6, EmbedDim: 256}, 8, 25, 4, 10
	}
	t := torchmods.BertConfig{VocabSize: 300, HiddenSize: 64, NumHiddenLayers: 4, NumAttentionHeads: 4, IntermediateSize: 256,
		HiddenAct: "gelu", MaxPositionEmbeddings: 512, TypeVocabSize: 2, LayerNormEps: 1e-12, InitializerRange: 0.02,
		CrossAttention: true, FusionLayer: 2, EncoderWidth: 64}
	return vqa.ModelConfig{ImageRes: 64, Patch: 8, InChans: 3, VisionWidth: 64, VisionDepth: 2, VisionHeads: 4,
		Text: t, DecoderLayers: 2, EmbedDim: 256}, 32, 12, 4, 5
}

// vqaBatch draws a batch of token ids from a fixed generator, laid out
// as MUMC's tokenizer leaves them (models/tokenization_bert.py, ALBEF's
// BertTokenizer: [CLS] text, no [SEP], padding='longest'; [PAD] 0, [CLS]
// 101, [SEP] 102 as bert-base-uncased's; words uniform over the ids after
// [MASK] 103): questions [CLS] words then [PAD]s, the first filling all
// qLen positions, the others 4 to qLen tokens; answers [CLS] words [SEP]
// (the eos "[SEP]" train_vqa.py appends) of one or two words, padded to
// aLen 4 (the first row has two). With their attention masks.
func vqaBatch(batch, qLen, aLen, vocab int64) (qIDs, qMask, aIDs, aMask []int64) {
	rng := rand.New(rand.NewPCG(0, 25))
	word := func() int64 { return pmlmMask + 1 + rng.Int64N(vocab-pmlmMask-1) }
	qIDs, qMask = make([]int64, batch*qLen), make([]int64, batch*qLen)
	aIDs, aMask = make([]int64, batch*aLen), make([]int64, batch*aLen)
	fill := func(ids, mask []int64, n int64, eos bool) {
		ids[0] = pmlmCLS
		for i := range n {
			mask[i] = 1
			if i > 0 {
				ids[i] = word()
			}
		}
		if eos {
			ids[n-1] = pmlmSEP
		}
	}
	for b := range batch {
		nq, na := qLen, aLen
		if b > 0 {
			nq, na = 4+rng.Int64N(qLen-3), aLen-rng.Int64N(2)
		}
		fill(qIDs[b*qLen:(b+1)*qLen], qMask[b*qLen:(b+1)*qLen], nq, false)
		fill(aIDs[b*aLen:(b+1)*aLen], aMask[b*aLen:(b+1)*aLen], na, true)
	}
	return qIDs, qMask, aIDs, aMask
}

// vqaStep: one step of MUMC's VQA fine-tuning (train_vqa.py's train(),
// MUMC_VQA.forward with train=True and distill True) on vqa.NewVQAModel:
// the image tokens of the ViT, the question through the text encoder's
// text and multimodal layers over them, then under no_grad the momentum
// update of the three momentum copies (0.995) and the momentum model's
// answer logits (its ViT, text encoder and decoder), whose softmax is the
// soft target; the answer decoder's loss per question, (1-alpha)·CE +
// alpha·distillation at alpha 0.4, summed per question and over the batch,
// divided by the batch; backward; AdamW as vqa.finetune's and
// train_vqa.py's (betas 0.9/0.999, eps 1e-8, weight decay 0.05 on every
// parameter: train.NewAdamWDecayAll, torch's AdamW(model.parameters())) at
// lr 1e-4.
// The loss is (*vqa.VQAModel).loss's body (unexported) through the
// exported calls it makes (ImageTokens, FuseQuestion, Momentum.Update,
// DecoderLogits, DecoderLoss) on ids already tokenised (vqaBatch) rather
// than strings: the tokenizer is left out of the step on both sides.
// Sizes: vqaSizes; images N(0, 1). The batch goes to inputs (if set) for
// bench/torch_bench.py --inputs, which runs the official MUMC_VQA.forward;
// with weights set the initial parameters (the momentum copies too) go
// there, for --weights, and the step-0 loss is printed to stderr.
func vqaStep(dev gotch.Device, check *float64, inputs, weights string) func() float64 {
	cfg, batch, qLen, aLen, steps := vqaSizes(dev)
	r := cfg.ImageRes
	images := ts.MustRandn([]int64{batch, 3, r, r}, gotch.Float, dev)
	qv, qmv, av, amv := vqaBatch(batch, qLen, aLen, cfg.Text.VocabSize)
	if inputs != "" {
		im, err := torchmods.ToSafetensors("images", images, gotch.Float)
		if err != nil {
			panic(err)
		}
		if err := safetensors.Write(inputs, []safetensors.Tensor{im, i64("question_ids", qv, batch, qLen), i64("question_mask", qmv, batch, qLen),
			i64("answer_ids", av, batch, aLen), i64("answer_mask", amv, batch, aLen)}, map[string]string{"workload": "vqa_step"}); err != nil {
			panic(err)
		}
	}
	store := torchmods.NewStore(dev)
	m, err := vqa.NewVQAModel(store.Root(), cfg, true, 0.995)
	if err != nil {
		panic(err)
	}
	if weights != "" {
		writeStoreWeights(store, weights)
	}
	opt := train.NewAdamWDecayAll(store, 0.9, 0.999, 1e-8, 0.05)
	qIDs, qMask := torchmods.FromSlice(qv, []int64{batch, qLen}, dev), torchmods.FromSlice(qmv, []int64{batch, qLen}, dev)
	aIDs, aMask := torchmods.FromSlice(av, []int64{batch, aLen}, dev), torchmods.FromSlice(amv, []int64{batch, aLen}, dev)
	targets := aIDs.MustMaskedFill(aIDs.MustEq(ts.IntScalar(pmlmPad), false), ts.IntScalar(-100), false)
	loss := func() *ts.Tensor {
		image := vqa.ImageTokens(m.Visual, images, 0, nil, true)
		states := vqa.FuseQuestion(m.Text, qIDs, qMask, image, true)
		var soft *ts.Tensor
		ts.NoGrad(func() {
			m.Momentum.Update()
			imageM := vqa.ImageTokens(m.VisualM, images, 0, nil, true)
			statesM := vqa.FuseQuestion(m.TextM, qIDs, qMask, imageM, true)
			l := vqa.DecoderLogits(m.DecoderM, aIDs, aMask, statesM, qMask, true)
			soft = l.MustNarrow(1, 0, l.MustSize()[1]-1, true).MustSoftmax(-1, gotch.Float, true)
		})
		per := vqa.DecoderLoss(vqa.DecoderLogits(m.Decoder, aIDs, aMask, states, qMask, true), targets, soft, vqaAlpha)
		return per.MustSum(gotch.Float, true).MustDivScalar(ts.FloatScalar(float64(batch)), true)
	}
	if weights != "" {
		step0("vqa_step", fmt.Sprintf("%d images of %d px, questions of %d, answers of %d", batch, r, qLen, aLen), loss)
	}
	return timedSteps(steps, check, opt, loss)
}
