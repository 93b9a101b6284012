package mlm

import (
	"math"
	"math/rand/v2"
	"testing"

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
