package mlm

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every schedule at t = 0, T/2 and T, against its formula by hand (p = 0.15, T = 1000).
func TestScheduleFormulas(t *testing.T) {
	const T = 1000
	want := map[string][3]float64{
		"constant":     {0.15, 0.15, 0.15},
		"cosine":       {0.32, 0.17, 0.02}, // p(1+cos(pi t/T)) + 0.02
		"linear":       {0.30, 0.15, 0},    // 2p(1 - t/T)
		"asc":          {0, 0.15, 0.30},
		"square_above": {0.31, 0.31 - 0.075, 0.01},         // -(t/T sqrt(2p))² + 2p + 0.01
		"square_below": {0.30, 0.075, 0},                   // 2p/T² (t-T)²
		"poly_asc":     {0, 0.30, 0},                       // 4p t/T up to T/2, then 4p(1 - t/T)
		"poly_desc":    {0.31, 0.01, 0.31},                 // 2p(1-2t/T) + 0.01, then 2p(2t-T)/T + 0.01
		"cos_quad":     {0.30, -0.0025 + 0.1, -0.09 + 0.1}, // 0.2+0.1cos(pi t/0.4T), then 0.1 - (0.5/T)²(t-0.4T)²
	}
	for mode, w := range want {
		for i, step := range []int64{0, T / 2, T} {
			got, err := Ratio(mode, 0.15, step, T, 0)
			require.NoError(t, err)
			assert.InDelta(t, w[i], got, 1e-12, "%s at t=%d", mode, step)
		}
	}
	// lin_warm_decay with a 200-step warm-up: 0 -> 2p at 200, then linearly to 0 at T.
	for step, w := range map[int64]float64{0: 0, 100: 0.15, 200: 0.30, 600: 0.15, 1000: 0} {
		got, _ := Ratio("lin_warm_decay", 0.15, step, T, 200)
		assert.InDelta(t, w, got, 1e-12, "lin_warm_decay at %d", step)
	}
	_, err := Ratio("exponential", 0.15, 0, T, 0)
	assert.ErrorContains(t, err, "masking mode")
}

// Over a large sample: 15% of ordinary tokens are chosen, of those 80%
// become [MASK], 10% a random id and 10% stay; special tokens never.
func TestMaskTokensProportions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n, mask, vocab = 400000, 4, 1000
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = 5 + int64(i%900)
		if i%10 == 0 {
			ids[i] = 2 // [CLS], special
		}
	}
	special := func(id int64) bool { return id < 5 }
	in, lab := MaskTokens(ids, 0.15, mask, vocab, special, rng)
	var chosen, masked, random, kept, ordinary float64
	for i := range ids {
		if special(ids[i]) {
			require.Equal(t, int64(Ignore), lab[i])
			require.Equal(t, ids[i], in[i])
			continue
		}
		ordinary++
		if lab[i] == Ignore {
			require.Equal(t, ids[i], in[i])
			continue
		}
		chosen++
		switch {
		case in[i] == mask:
			masked++
		case in[i] == ids[i]:
			kept++
		default:
			random++
		}
	}
	assert.InDelta(t, 0.15, chosen/ordinary, 0.01*0.15)
	assert.InDelta(t, 0.80, masked/chosen, 0.01)
	// A random id can equal the original (1 in 1000): that counts as kept.
	assert.InDelta(t, 0.10, random/chosen, 0.01)
	assert.InDelta(t, 0.10, kept/chosen, 0.01)
}

// The running per-tag loss and the weights on a hand-computed example.
func TestPTWUpdateByHand(t *testing.T) {
	p := NewPTW(3)
	w := p.Weights()
	assert.Equal(t, []float64{0.5, 0.5, 0.5}, w, "all losses 0: std 0 -> 1e-4, every weight sigmoid(0)")
	// Tag 0 tokens lose 2 and 4 (mean 3), tag 2 loses 6; tag 1 has none.
	p.Update([]int{0, 0, 2}, []float64{2, 4, 6})
	assert.InDeltaSlice(t, []float64{0.003, 0, 0.006}, p.Loss, 1e-15)
	p.Update([]int{1}, []float64{9})
	assert.InDeltaSlice(t, []float64{0.003, 0.009, 0.006}, p.Loss, 1e-15)
	// mean 0.006, unbiased std = sqrt((9e-6 + 9e-6 + 0)/2) = 0.003
	w = p.Weights()
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	assert.InDeltaSlice(t, []float64{sig(-2), sig(2), sig(0)}, w, 1e-12)
}

func TestWholeWordMaskKeepsWordsAndCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	// [CLS] w0 w0 w1 w2 w2 w2 w3 [SEP]
	ids := []int64{2, 10, 11, 12, 13, 14, 15, 16, 3}
	words := []int{-1, 0, 0, 1, 2, 2, 2, 3, -1}
	tags := []int{0, 1, 0, 1}
	special := func(id int64) bool { return id < 5 }
	for range 200 {
		_, lab := WholeWordMask(ids, words, tags, []float64{1, 1}, 0.3, 4, 100, special, rng)
		chosen := 0
		for w := range 4 {
			in, all := 0, 0
			for i := range ids {
				if words[i] == w {
					all++
					if lab[i] != Ignore {
						in++
					}
				}
			}
			assert.True(t, in == 0 || in == all, "word %d partly masked", w)
			chosen += in
		}
		// round(9 * 0.3) = round(2.7) = 3 tokens at most; words are accepted whole.
		assert.LessOrEqual(t, chosen, 3)
		assert.Positive(t, chosen)
		assert.Equal(t, int64(Ignore), lab[0])
		assert.Equal(t, int64(Ignore), lab[8])
	}
	// Weight 0 for tag 1: words 1 and 3 are never chosen.
	for range 200 {
		_, lab := WholeWordMask(ids, words, tags, []float64{1, 0}, 0.5, 4, 100, special, rng)
		assert.Equal(t, int64(Ignore), lab[3])
		assert.Equal(t, int64(Ignore), lab[7])
	}
}

// "linear" is the paper's 2p(1 - t/T) (the official "desc"); the official
// code has no "linear" branch, so `--masking_mode linear` runs its else
// branch, cos_quad, which "official_linear" reproduces.
func TestLinearAndOfficialLinear(t *testing.T) {
	const T = 1000
	for _, step := range []int64{0, 100, 399, 400, 401, 700, 1000} {
		lin, _ := Ratio("linear", 0.15, step, T, 0)
		desc, _ := Ratio("desc", 0.15, step, T, 0)
		assert.InDelta(t, 0.3*(1-float64(step)/T), lin, 1e-12)
		assert.Equal(t, desc, lin)
		off, err := Ratio("official_linear", 0.15, step, T, 0)
		require.NoError(t, err)
		cq, _ := Ratio("cos_quad", 0.15, step, T, 0)
		assert.Equal(t, cq, off, "step %d", step)
	}
	off, _ := Ratio("official_linear", 0.15, 1000, T, 0)
	assert.InDelta(t, 0.01, off, 1e-12, "the official curve ends at 0.01, not 0")
}

// lin_warm_decay warms up over 80,000 steps unless a config says
// otherwise, as the official code hard-codes; a config without
// masking.warmup keeps that default.
func TestLinWarmDecayDefaultWarmup(t *testing.T) {
	c := PretrainTask.Default()
	assert.Equal(t, int64(80000), c.Masking.Warmup)
	_, err := toml.DecodeFile("../configs/mlm/wordnet_fixed.toml", c)
	require.NoError(t, err)
	assert.Equal(t, int64(LinWarmDecayWarmup), c.Masking.Warmup)
	r, _ := Ratio("lin_warm_decay", 0.15, 40000, 1000000, c.Masking.Warmup)
	assert.InDelta(t, 0.15, r, 1e-12, "half-way through the warm-up: p")
	c.Masking.Warmup = -1
	assert.ErrorContains(t, c.Masking.validate(), "masking.warmup")
}

// The official whole-word masking lets an [UNK] word take masking budget,
// and HF's torch_mask_tokens then unmasks it (it zeroes every special id):
// in [CLS] a b [UNK] c [SEP] at 15% the budget is round(0.9) = 1 token, so
// a quarter of the time [UNK] is drawn first and nothing is masked. The
// mean is 0.75 masked tokens (it was 1 when [UNK] was no candidate).
func TestWholeWordMaskUnkTakesBudget(t *testing.T) {
	const unk = 1
	ids := []int64{2, 10, 11, unk, 12, 3}
	words := []int{-1, 0, 1, 2, 3, -1}
	special := func(id int64) bool { return id < 5 }
	rng := rand.New(rand.NewPCG(9, 9))
	const n = 20000
	var masked, none float64
	for range n {
		in, lab := WholeWordMask(ids, words, []int{0, 0, 0, 0}, []float64{1}, 0.15, 4, 100, special, rng)
		assert.Equal(t, int64(Ignore), lab[3], "[UNK] is never a prediction")
		assert.Equal(t, int64(unk), in[3], "[UNK] is never replaced")
		k := 0
		for _, l := range lab {
			if l != Ignore {
				k++
			}
		}
		masked += float64(k)
		if k == 0 {
			none++
		}
	}
	assert.InDelta(t, 0.75, masked/n, 0.015)
	assert.InDelta(t, 0.25, none/n, 0.015)
}

// PTW keeps spaCy's 17 tags in the official order; the three the WordNet
// tagger never emits keep their initial loss 0 and count in the weights'
// mean and std, as a class absent from every official batch does.
func TestPTWSeventeenTags(t *testing.T) {
	assert.Equal(t, []string{"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"}, Tags)
	assert.Equal(t, 16, TagID("X"))
	assert.Equal(t, 16, TagID("nonsense"))
	p := NewPTW(len(Tags))
	var tags []int
	var losses []float64
	for i, tg := range Tags {
		if !slices.Contains(Untagged, tg) {
			tags, losses = append(tags, i), append(losses, float64(i+1))
		}
	}
	p.Update(tags, losses)
	var mean float64
	for _, l := range p.Loss {
		mean += l / 17
	}
	for _, tg := range Untagged {
		assert.Zero(t, p.Loss[TagID(tg)], tg)
	}
	w := p.Weights()
	assert.Less(t, w[TagID("INTJ")], 0.5, "an unseen class sits at the bottom, below the mean")
	assert.InDelta(t, 1/(1+math.Exp(-2*(p.Loss[0]-mean)/stdev(p.Loss))), w[0], 1e-12)
	p.OnlyWWM = true
	for _, v := range p.Weights() {
		assert.Equal(t, 1.0, v, "only_wwm: every weight 1")
	}

	tg, err := NewTagger("")
	if err != nil {
		t.Skip("wordnet-base not installed")
	}
	for _, w := range strings.Fields("oh wow hello John Paris $ % + = ok yes the of and ran dog quickly 1990 ; xqzt") {
		assert.NotContains(t, Untagged, tg.Tag(w), w)
	}
}

func stdev(x []float64) float64 {
	var m, v float64
	for _, a := range x {
		m += a / float64(len(x))
	}
	for _, a := range x {
		v += (a - m) * (a - m)
	}
	return math.Sqrt(v / float64(len(x)-1))
}

// PTW's running loss is updated once per optimizer step on the step's
// whole batch (every micro-batch's masked tokens), as officially, not once
// per micro-batch: the per-tag mean is over the step's tokens.
func TestPTWUpdatesOncePerStep(t *testing.T) {
	var step StepLosses
	step.Add([]int{0, 1}, []float64{2, 6}) // micro-batch 1
	step.Add([]int{0}, []float64{4})       // micro-batch 2
	p := NewPTW(3)
	step.Flush(p)
	assert.InDeltaSlice(t, []float64{0.001 * 3, 0.001 * 6, 0}, p.Loss, 1e-15)
	assert.Empty(t, step.Tags, "flushed")
	perMicro := NewPTW(3)
	perMicro.Update([]int{0, 1}, []float64{2, 6})
	perMicro.Update([]int{0}, []float64{4})
	assert.NotEqual(t, perMicro.Loss[0], p.Loss[0], "two updates a step would weight the second micro-batch's tokens differently")
	step.Flush(p) // an empty step leaves the losses alone
	assert.InDeltaSlice(t, []float64{0.003, 0.006, 0}, p.Loss, 1e-15)
}

func TestOnlyWWMNeedsPTW(t *testing.T) {
	m := MaskingConfig{Mode: "constant", Ratio: 0.15, OnlyWWM: true}
	assert.ErrorContains(t, m.validate(), "masking.only_wwm")
	m.PTW = true
	assert.NoError(t, m.validate())
}
