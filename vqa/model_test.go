package vqa

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/mlm"
	"github.com/reprolab/repro/torchmods"
	"github.com/reprolab/repro/torchmods/safetensors"
)

// The momentum copies start equal to their modules, are frozen, and move
// by m·copy + (1-m)·online at each update.
func TestMomentumUpdate(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	root := store.Root()
	on := torchmods.NewLinear(root.Sub("proj"), torchmods.LinearOptions{In: 2, Out: 1})
	off := torchmods.NewLinear(root.Sub("proj_m"), torchmods.LinearOptions{In: 2, Out: 1})
	ts.NoGrad(func() {
		on.Weight.Copy_(torchmods.FromSlice([]float32{1, 2}, []int64{1, 2}, gotch.CPU))
		on.Bias.Copy_(torchmods.FromSlice([]float32{4}, []int64{1}, gotch.CPU))
	})
	m, err := NewMomentum(root, 0.9, "proj")
	require.NoError(t, err)
	assert.Equal(t, []string{"proj.weight", "proj.bias"}, m.Names)
	assert.Equal(t, []float64{1, 2}, floats(off.Weight))
	assert.False(t, off.Weight.MustRequiresGrad(), "the copy is not trained")
	assert.True(t, on.Weight.MustRequiresGrad())
	ts.NoGrad(func() {
		on.Weight.Copy_(torchmods.FromSlice([]float32{11, 12}, []int64{1, 2}, gotch.CPU))
		on.Bias.Copy_(torchmods.FromSlice([]float32{14}, []int64{1}, gotch.CPU))
	})
	m.Update()
	assert.InDeltaSlice(t, []float64{0.9*1 + 0.1*11, 0.9*2 + 0.1*12}, floats(off.Weight), 1e-6)
	assert.InDeltaSlice(t, []float64{0.9*4 + 0.1*14}, floats(off.Bias), 1e-6)
	m.Update()
	assert.InDeltaSlice(t, []float64{0.9*2 + 0.1*11}, floats(off.Weight)[:1], 1e-6)

	_, err = NewMomentum(root, 0.9, "missing")
	assert.ErrorContains(t, err, "no parameters under missing")
	_, err = NewMomentum(root, 1.5, "proj")
	assert.ErrorContains(t, err, "momentum 1.5")
}

// The queue writes each batch's features as columns from the pointer on
// and wraps at the end; a batch that does not divide the size is refused.
func TestQueueEnqueueWraps(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	q := NewQueue(store.Root(), 2, 4)
	norms := q.Image.MustNormScalaroptDim(ts.FloatScalar(2), []int64{0}, false, false)
	assert.InDeltaSlice(t, []float64{1, 1, 1, 1}, floats(norms), 1e-5, "random unit columns")
	feats := func(v ...float32) *ts.Tensor { return torchmods.FromSlice(v, []int64{int64(len(v) / 2), 2}, gotch.CPU) }
	q.Enqueue(feats(1, 2, 3, 4), feats(-1, -2, -3, -4))
	assert.Equal(t, []int64{2}, q.Ptr.Int64Values())
	q.Enqueue(feats(5, 6, 7, 8), feats(-5, -6, -7, -8))
	assert.Equal(t, []int64{0}, q.Ptr.Int64Values(), "wrapped to the start")
	assert.Equal(t, []float64{1, 3, 5, 7, 2, 4, 6, 8}, floats(q.Image), "[dim, size]: one feature per column")
	q.Enqueue(feats(9, 10, 11, 12), feats(0, 0, 0, 0))
	assert.Equal(t, []float64{9, 11, 5, 7, 10, 12, 6, 8}, floats(q.Image), "the oldest columns replaced")
	assert.Equal(t, []float64{0, 0, -5, -7, 0, 0, -6, -8}, floats(q.Text))
	assert.PanicsWithError(t, "vqa: queue_size 4 is not a multiple of the batch 3 (the official code asserts it too)", func() {
		q.Enqueue(feats(1, 2, 3, 4, 5, 6), feats(1, 2, 3, 4, 5, 6))
	})
}

// Hard negatives never pick the example itself, even when its weight
// dominates, and follow the weights otherwise.
func TestHardNegativesNeverPickThePositive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := [][]float64{{0.97, 0.01, 0.02}, {0.5, 0.5, 0}, {0, 0, 1}}
	counts := make([][3]int, 3)
	for range 4000 {
		neg, err := HardNegatives(w, rng)
		require.NoError(t, err)
		for i, j := range neg {
			require.NotEqual(t, i, j)
			counts[i][j]++
		}
	}
	// Row 0: 0.01+1e-4 against 0.02+1e-4, about 1:2.
	assert.InDelta(t, 1.0/3, float64(counts[0][1])/4000, 0.03)
	// Row 1: all but the positive's weight on 0; example 2 keeps 1e-4 of a chance.
	assert.Greater(t, counts[1][0], 3990)
	// Row 2: the weights of the others are 0 + 1e-4 each: even.
	assert.InDelta(t, 0.5, float64(counts[2][0])/4000, 0.03)
	_, err := HardNegatives([][]float64{{1}}, rng)
	assert.ErrorContains(t, err, "at least 2")
	_, err = HardNegatives([][]float64{{1, 0}, {1}}, rng)
	assert.ErrorContains(t, err, "row 1 has 1 entries")
}

// Masking skips [PAD] and [CLS] (not [SEP]), labels exactly the chosen
// tokens, and splits them about 80/10/10.
func TestMaskTokens(t *testing.T) {
	sp := Special{PAD: 0, CLS: 1, MASK: 4}
	const sep, vocab = 2, 50
	var ids [][]int64
	for range 400 {
		ids = append(ids, []int64{1, 10, 11, 12, 13, 14, 15, sep, 0, 0})
	}
	in, labels := MaskTokens(ids, 0.5, vocab, sp, rand.New(rand.NewPCG(3, 4)))
	var chosen, masked, kept, sepChosen int
	for i := range ids {
		for j, id := range ids[i] {
			if id == 0 || id == 1 {
				require.Equal(t, int64(-100), labels[i][j], "pad and cls are never chosen")
				require.Equal(t, id, in[i][j])
				continue
			}
			if labels[i][j] == -100 {
				require.Equal(t, id, in[i][j], "unchosen tokens stay")
				continue
			}
			require.Equal(t, id, labels[i][j])
			chosen++
			if id == sep {
				sepChosen++
			}
			switch in[i][j] {
			case sp.MASK:
				masked++
			case id:
				kept++
			}
		}
	}
	assert.InDelta(t, 0.5, float64(chosen)/(400*7), 0.03)
	assert.Greater(t, sepChosen, 100, "[SEP] is maskable, as in the official code")
	assert.InDelta(t, 0.8, float64(masked)/float64(chosen), 0.03)
	// Kept: 10% left, plus random ids that happen to equal the token.
	assert.InDelta(t, 0.1+0.1/vocab, float64(kept)/float64(chosen), 0.03)
	assert.Equal(t, [][]int64{{1, 10, 11, 12, 13, 14, 15, sep, 0, 0}}, ids[:1], "the input is not modified")
}

// The learning rate of pretrain.py: warm-up inside epoch 0 only, then
// decay by epoch with a floor.
func TestPretrainSchedule(t *testing.T) {
	o := OptimConfig{LR: 1e-3, MinLR: 5e-4, WarmupLR: 1e-5, WarmupSteps: 4, DecayRate: 0.9}
	lr := o.pretrainSchedule(10)
	assert.InDelta(t, 1e-5, lr(0), 1e-12)
	assert.InDelta(t, 1e-5+(1e-3-1e-5)*2/4, lr(2), 1e-12)
	assert.InDelta(t, 1e-3, lr(4), 1e-12)
	assert.InDelta(t, 1e-3, lr(9), 1e-12)
	assert.InDelta(t, 9e-4, lr(10), 1e-12)
	assert.InDelta(t, 8.1e-4, lr(25), 1e-12)
	assert.InDelta(t, 5e-4, lr(100), 1e-12, "min_lr is the floor")
}

// train_vqa.py's renaming: the encoder drops bert., the decoder gets the
// embeddings, the layers from fusion_layer on (renumbered) and the MLM
// head, momentum copies likewise; other names are kept.
func TestPretrainedToVQA(t *testing.T) {
	names := []string{"text_encoder.bert.embeddings.word_embeddings.weight", "text_encoder.bert.encoder.layer.1.output.dense.weight",
		"text_encoder.bert.encoder.layer.2.crossattention.self.key.weight", "text_encoder.bert.encoder.layer.3.output.dense.bias",
		"text_encoder.cls.predictions.bias", "text_encoder_m.bert.encoder.layer.2.attention.self.query.weight",
		"visual_encoder.pos_embed", "temp"}
	var in []safetensors.Tensor
	for _, n := range names {
		in = append(in, safetensors.Tensor{Name: n})
	}
	var got []string
	for _, t := range PretrainedToVQA(in, 2) {
		got = append(got, t.Name)
	}
	assert.Equal(t, []string{
		"text_encoder.embeddings.word_embeddings.weight", "text_decoder.bert.embeddings.word_embeddings.weight",
		"text_encoder.encoder.layer.1.output.dense.weight",
		"text_encoder.encoder.layer.2.crossattention.self.key.weight", "text_decoder.bert.encoder.layer.0.crossattention.self.key.weight",
		"text_encoder.encoder.layer.3.output.dense.bias", "text_decoder.bert.encoder.layer.1.output.dense.bias",
		"text_decoder.cls.predictions.bias",
		"text_encoder_m.encoder.layer.2.attention.self.query.weight", "text_decoder_m.bert.encoder.layer.0.attention.self.query.weight",
		"visual_encoder.pos_embed", "temp"}, got)
}

// The fusion BERT refuses what would otherwise compute garbage or crash:
// cross-attention layers without image tokens, image tokens of another
// batch or width, a layer range outside the model, a causal model with a
// 3-D mask; a config whose fusion layer leaves no text or no fusion layer.
func TestFusionBertErrors(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	b := torchmods.NewBert(store.Root(), parityBert(4, 2, 12), false)
	ids := torchmods.FromSlice([]int64{1, 2, 3, 4, 5, 6}, []int64{2, 3}, gotch.CPU)
	img := ts.MustZeros([]int64{2, 5, 12}, gotch.Float, gotch.CPU)
	run := func(in torchmods.BertInput) error {
		return torchmods.Try(func() { b.ForwardInput(in, false) })
	}
	assert.NoError(t, run(torchmods.BertInput{IDs: ids, To: 2}), "the text layers need no image")
	assert.ErrorContains(t, run(torchmods.BertInput{IDs: ids}), "layer 2 has cross-attention (fusion_layer 2) but no context")
	assert.ErrorContains(t, run(torchmods.BertInput{IDs: ids, Context: img.MustNarrow(0, 0, 1, false)}), "context of shape [1 5 12] for a batch of 2")
	assert.ErrorContains(t, run(torchmods.BertInput{IDs: ids, Context: ts.MustZeros([]int64{2, 5, 16}, gotch.Float, gotch.CPU)}), "want last dimension 12")
	assert.ErrorContains(t, run(torchmods.BertInput{IDs: ids, Context: img, From: 3, To: 5}), "layers [3, 5) of a model with 4")
	assert.ErrorContains(t, run(torchmods.BertInput{IDs: ids, Context: img, Causal: true, Mask: ts.MustOnes([]int64{2, 3, 3}, gotch.Int64, gotch.CPU)}), "causal model takes a padding mask")
	assert.ErrorContains(t, run(torchmods.BertInput{Context: img}), "neither input ids nor input embeddings")

	c := tinyModel()
	c.Text.FusionLayer = 4
	assert.ErrorContains(t, c.Validate(), "model.text.fusion_layer")
	c = tinyModel()
	c.Text.EncoderWidth = 32
	assert.ErrorContains(t, c.Validate(), "encoder_width 32 must equal vision_width 64")
}

// A causal decoder's outputs at a position do not depend on later tokens.
func TestCausalDecoderIgnoresTheFuture(t *testing.T) {
	sc := ts.NewScope()
	defer sc.Close()
	store := torchmods.NewStore(gotch.CPU)
	dec := torchmods.NewBertForMaskedLM(store.Root(), parityBert(2, 0, 16))
	q := ts.MustRandn([]int64{1, 3, 16}, gotch.Float, gotch.CPU)
	a := DecoderLogits(dec, torchmods.FromSlice([]int64{1, 7, 8, 9}, []int64{1, 4}, gotch.CPU), nil, q, nil, false)
	b := DecoderLogits(dec, torchmods.FromSlice([]int64{1, 7, 30, 31}, []int64{1, 4}, gotch.CPU), nil, q, nil, false)
	assert.InDeltaSlice(t, floats(a.MustNarrow(1, 0, 2, false)), floats(b.MustNarrow(1, 0, 2, false)), 1e-6)
	diff := floats(a.MustNarrow(1, 2, 2, false).MustSub(b.MustNarrow(1, 2, 2, false), false).MustAbs(true).MustMax(true))[0]
	assert.Greater(t, diff, 1e-3, "later positions do see the changed tokens")
	assert.False(t, math.IsNaN(diff))
}

// A BERT checkpoint initialises the VQA text encoder (every layer) and
// the decoder (embeddings, its first layers, the MLM head), as
// model_vqa.py's from_pretrained calls; the pooler has no place.
func TestBertToVQA(t *testing.T) {
	var in []safetensors.Tensor
	for _, n := range []string{"bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.1.output.dense.weight",
		"bert.pooler.dense.weight", "cls.predictions.transform.dense.weight"} {
		in = append(in, safetensors.Tensor{Name: n})
	}
	var got []string
	for _, x := range BertToVQA(in, 1) {
		got = append(got, x.Name)
	}
	assert.Equal(t, []string{"text_encoder.embeddings.LayerNorm.weight", "text_decoder.bert.embeddings.LayerNorm.weight",
		"text_encoder.encoder.layer.0.output.dense.weight", "text_decoder.bert.encoder.layer.0.output.dense.weight",
		"text_encoder.encoder.layer.1.output.dense.weight", "text_decoder.cls.predictions.transform.dense.weight"}, got)
}

// Questions and answers are tokenised as ALBEF's tokenizer does for one
// text, [CLS] and no [SEP]: a question is [CLS] words (cut at max_len),
// an answer with train_vqa.py's eos "[SEP]" is [CLS] words [SEP].
func TestALBEFTokens(t *testing.T) {
	vocab := filepath.Join(t.TempDir(), "vocab.txt")
	require.NoError(t, os.WriteFile(vocab, []byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nis\nthere\na\nlesion\nyes\nleft\nkidney\n"), 0o644))
	tok, err := mlm.LoadTokenizer(vocab)
	require.NoError(t, err)
	q, err := albefTokens(tok, []string{"is there a lesion", "is there"}, 4, false)
	require.NoError(t, err)
	assert.Equal(t, [][]int64{{2, 5, 6, 7}, {2, 5, 6, 0}}, q.ids, "[CLS] and three words of the four; no [SEP]")
	assert.Equal(t, [][]int64{{1, 1, 1, 1}, {1, 1, 1, 0}}, q.mask)
	a, err := answerTokens(tok, []string{"yes", "left kidney"}, "[SEP]")
	require.NoError(t, err)
	assert.Equal(t, [][]int64{{2, 9, 3, 0}, {2, 10, 11, 3}}, a.ids)
	a, err = answerTokens(tok, []string{"yes"}, "")
	require.NoError(t, err)
	assert.Equal(t, [][]int64{{2, 9}}, a.ids)
}
