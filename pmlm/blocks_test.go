package pmlm

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/reprolab/repro/internal/config"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newRng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// randomMaskable is a sequence of n flags as a tokenized pair gives them:
// [CLS] and [SEP] at the ends never maskable, and inside, now and then, a
// [SEP] or a short run of other special tokens.
func randomMaskable(n int, rng *rand.Rand) []bool {
	m := make([]bool, n)
	for i := range m {
		m[i] = true
	}
	m[0], m[n-1] = false, false
	for i := 1; i < n-1; i++ {
		if rng.Float64() < 0.05 {
			for k := i; k < min(n-1, i+1+rng.IntN(3)); k++ {
				m[k] = false
			}
		}
	}
	return m
}

func count(b []bool) int {
	c := 0
	for _, x := range b {
		if x {
			c++
		}
	}
	return c
}

func TestDefaultMaskOptionsArePaper(t *testing.T) {
	o := DefaultMaskOptions()
	assert.Equal(t, MaskOptions{MaskProb: 0.15, SpanProb: 0.4, MinSpan: 2, MaxSpan: 6, MaskTokenProb: 0.8, RandomTokenProb: 0.1}, o)
	require.NoError(t, o.Validate())
}

func TestMaskOptionsValidate(t *testing.T) {
	for key, bad := range map[string][]func(*MaskOptions){
		"mask_prob":         {func(o *MaskOptions) { o.MaskProb = 0 }, func(o *MaskOptions) { o.MaskProb = -0.1 }, func(o *MaskOptions) { o.MaskProb = 1.01 }},
		"span_prob":         {func(o *MaskOptions) { o.SpanProb = -0.01 }, func(o *MaskOptions) { o.SpanProb = 1.5 }},
		"min_span":          {func(o *MaskOptions) { o.MinSpan = 1 }, func(o *MaskOptions) { o.MinSpan = 0 }},
		"max_span":          {func(o *MaskOptions) { o.MaxSpan = 1 }, func(o *MaskOptions) { o.MinSpan, o.MaxSpan = 4, 3 }},
		"mask_token_prob":   {func(o *MaskOptions) { o.MaskTokenProb = -1 }, func(o *MaskOptions) { o.MaskTokenProb = 2 }},
		"random_token_prob": {func(o *MaskOptions) { o.RandomTokenProb = -0.1 }, func(o *MaskOptions) { o.MaskTokenProb, o.RandomTokenProb = 0.8, 0.3 }},
	} {
		for i, f := range bad {
			o := DefaultMaskOptions()
			f(&o)
			err := o.Validate()
			var fe *config.FieldError
			require.True(t, errors.As(err, &fe), "%s case %d: %v", key, i, err)
			assert.Equal(t, key, fe.Key, "case %d: %v", i, err)
		}
	}
	// Edges that are fine.
	for _, f := range []func(*MaskOptions){
		func(o *MaskOptions) { o.MaskProb = 1 },
		func(o *MaskOptions) { o.SpanProb = 0 },
		func(o *MaskOptions) { o.SpanProb = 1 },
		func(o *MaskOptions) { o.MinSpan, o.MaxSpan = 3, 3 },
		func(o *MaskOptions) { o.MaskTokenProb, o.RandomTokenProb = 1, 0 },
		func(o *MaskOptions) { o.MaskTokenProb, o.RandomTokenProb = 0, 0 },
	} {
		o := DefaultMaskOptions()
		f(&o)
		assert.NoError(t, o.Validate(), "%+v", o)
	}
}

// The TOML names are the ones Validate reports, and unset keys keep the
// defaults.
func TestMaskOptionsTOML(t *testing.T) {
	o := DefaultMaskOptions()
	md, err := toml.Decode("mask_prob = 0.2\nspan_prob = 0.5\nmin_span = 3\nmax_span = 10\nmask_token_prob = 0.7\nrandom_token_prob = 0.2\n", &o)
	require.NoError(t, err)
	assert.Empty(t, md.Undecoded())
	assert.Equal(t, MaskOptions{MaskProb: 0.2, SpanProb: 0.5, MinSpan: 3, MaxSpan: 10, MaskTokenProb: 0.7, RandomTokenProb: 0.2}, o)
	o = DefaultMaskOptions()
	_, err = toml.Decode("max_span = 4\n", &o)
	require.NoError(t, err)
	assert.Equal(t, 4, o.MaxSpan)
	assert.Equal(t, 0.15, o.MaskProb)
}

// Budget is ceil(15% of the maskable count): by hand, then against the
// exact integer ceiling for every n up to 2000 (no float drift at whole
// numbers such as 0.15 * 20 = 3).
func TestBudget(t *testing.T) {
	o := DefaultMaskOptions()
	for n, want := range map[int]int{0: 0, 1: 1, 6: 1, 7: 2, 20: 3, 21: 4, 40: 6, 100: 15, 101: 16, 510: 77, 512: 77} {
		assert.Equal(t, want, o.Budget(n), "n=%d", n)
	}
	for n := range 2001 {
		require.Equal(t, (15*n+99)/100, o.Budget(n), "n=%d", n)
	}
	o.MaskProb = 1
	assert.Equal(t, 37, o.Budget(37))
	assert.Equal(t, 0, o.Budget(-3))
}

// Over many seeds, lengths and special-token patterns: exactly Budget
// tokens masked, blocks sorted, disjoint, inside maskable runs, and each
// 1..MaxSpan long; at most one block (the cut last one) is a "span" shorter
// than MinSpan.
func TestSampleBlocksProperties(t *testing.T) {
	for _, o := range []MaskOptions{DefaultMaskOptions(), {MaskProb: 0.4, SpanProb: 0.9, MinSpan: 3, MaxSpan: 8, MaskTokenProb: 0.8, RandomTokenProb: 0.1}} {
		for seed := range uint64(400) {
			rng := newRng(seed)
			n := 2 + rng.IntN(300)
			maskable := randomMaskable(n, rng)
			blocks := o.SampleBlocks(maskable, rng)
			masked := make([]bool, n)
			total, short := 0, 0
			for k, b := range blocks {
				require.True(t, b.Len() >= 1 && b.Len() <= o.MaxSpan, "seed %d block %v", seed, b)
				if b.Len() > 1 && b.Len() < o.MinSpan {
					short++
				}
				if k > 0 {
					require.Less(t, blocks[k-1].Start, b.Start, "sorted")
				}
				for i := b.Start; i < b.End; i++ {
					require.True(t, maskable[i], "seed %d: block %v covers special position %d", seed, b, i)
					require.False(t, masked[i], "seed %d: overlap at %d", seed, i)
					masked[i] = true
				}
				total += b.Len()
			}
			require.Equal(t, o.Budget(count(maskable)), total, "seed %d n %d", seed, n)
			require.LessOrEqual(t, short, 1, "seed %d", seed)
		}
	}
}

// lengthShares samples blocks over seeds x 20000 maskable tokens and
// returns the share of blocks of each length.
func lengthShares(o MaskOptions, seeds uint64) (map[int]float64, int) {
	hist := map[int]int{}
	blocks := 0
	for seed := range seeds {
		maskable := make([]bool, 20000)
		for i := range maskable {
			maskable[i] = true
		}
		for _, b := range o.SampleBlocks(maskable, newRng(seed)) {
			hist[b.Len()]++
			blocks++
		}
	}
	shares := map[int]float64{}
	for l, c := range hist {
		shares[l] = float64(c) / float64(blocks)
	}
	return shares, blocks
}

// The draw distribution: 60% of blocks are single tokens and each span
// length 2..6 takes 40%/5 = 8%, and nothing is longer than 6. At a low
// masking ratio almost no draw is rejected, so the shares are the draw's.
func TestSpanLengthDistribution(t *testing.T) {
	o := DefaultMaskOptions()
	o.MaskProb = 0.01
	shares, blocks := lengthShares(o, 200)
	t.Logf("mask_prob 0.01: %d blocks, shares %v", blocks, shares)
	assert.InDelta(t, 0.6, shares[1], 0.015)
	for l := 2; l <= 6; l++ {
		assert.InDelta(t, 0.08, shares[l], 0.01, "length %d", l)
	}
	for l := range shares {
		assert.True(t, l >= 1 && l <= 6, "length %d", l)
	}
}

// At the default 15%, a span that hits an already masked token is redrawn
// (with a new length, as in Algorithm 1), which moves ~3 points of share
// to single tokens and away from the longest spans: the bands say so.
func TestSpanLengthDistributionAtDefault(t *testing.T) {
	shares, blocks := lengthShares(DefaultMaskOptions(), 10)
	t.Logf("mask_prob 0.15: %d blocks, shares %v", blocks, shares)
	assert.True(t, shares[1] >= 0.6 && shares[1] <= 0.66, "single tokens %v", shares[1])
	for l := 2; l <= 6; l++ {
		assert.True(t, shares[l] >= 0.06 && shares[l] <= 0.085, "length %d: %v", l, shares[l])
	}
	assert.Greater(t, shares[2], shares[6], "longer spans are rejected more often")
	for l := range shares {
		assert.True(t, l >= 1 && l <= 6, "length %d", l)
	}
}

func TestSampleBlocksOptionsRespected(t *testing.T) {
	rng := newRng(3)
	all := make([]bool, 200)
	for i := range all {
		all[i] = true
	}
	// Only singles.
	o := DefaultMaskOptions()
	o.SpanProb = 0
	for _, b := range o.SampleBlocks(all, rng) {
		assert.Equal(t, 1, b.Len())
	}
	// Only trigrams: budget 30 is a multiple of 3, so no block is cut.
	o = DefaultMaskOptions()
	o.SpanProb, o.MinSpan, o.MaxSpan = 1, 3, 3
	bs := o.SampleBlocks(all, rng)
	assert.Len(t, bs, 10)
	for _, b := range bs {
		assert.Equal(t, 3, b.Len())
	}
	// Budget 31 (mask_prob 0.155): ten trigrams and one cut to a single token.
	o.MaskProb = 0.155
	lens := map[int]int{}
	for _, b := range o.SampleBlocks(all, rng) {
		lens[b.Len()]++
	}
	assert.Equal(t, map[int]int{3: 10, 1: 1}, lens)
}

// With span_prob 1 and no two adjacent maskable positions no span ever
// fits: sampling still ends, with single tokens, at the exact budget.
func TestSampleBlocksTerminatesWhenNoSpanFits(t *testing.T) {
	maskable := make([]bool, 101)
	for i := range maskable {
		maskable[i] = i%2 == 1
	}
	o := DefaultMaskOptions()
	o.SpanProb, o.MaskProb = 1, 1
	bs := o.SampleBlocks(maskable, newRng(1))
	assert.Len(t, bs, 50)
	for _, b := range bs {
		assert.Equal(t, 1, b.Len())
		assert.Equal(t, 1, b.Start%2)
	}
	// Nothing maskable: nothing masked.
	assert.Empty(t, o.SampleBlocks(make([]bool, 10), newRng(1)))
	assert.Empty(t, o.SampleBlocks(nil, newRng(1)))
}

// 80/10/10 per masked token (not per block): over a large sample ~80% of
// masked positions hold [M], ~10% a random id, ~10% the original; tokens
// outside blocks never change; and spans mix the three.
func TestCorruptPerToken(t *testing.T) {
	const mask, vocab, n = 1, 1 << 20, 100000
	o := DefaultMaskOptions()
	rng := newRng(7)
	tokens := make([]int64, n)
	for i := range tokens {
		tokens[i] = 1000 + int64(i) // distinct, never the mask id
	}
	maskable := make([]bool, n)
	for i := range maskable {
		maskable[i] = true
	}
	blocks := o.SampleBlocks(maskable, rng)
	out := o.Corrupt(tokens, blocks, mask, vocab, rng)
	inBlock := make([]bool, n)
	var nm, nr, nk, mixed float64
	for _, b := range blocks {
		kinds := map[string]bool{}
		for i := b.Start; i < b.End; i++ {
			inBlock[i] = true
			switch out[i] {
			case mask:
				nm++
				kinds["m"] = true
			case tokens[i]:
				nk++
				kinds["k"] = true
			default:
				require.True(t, out[i] >= 0 && out[i] < vocab)
				nr++
				kinds["r"] = true
			}
		}
		if len(kinds) > 1 {
			mixed++
		}
	}
	for i := range tokens {
		if !inBlock[i] {
			require.Equal(t, tokens[i], out[i], "position %d outside the blocks", i)
		}
	}
	tot := nm + nr + nk
	require.Equal(t, float64(o.Budget(n)), tot)
	assert.InDelta(t, 0.8, nm/tot, 0.01)
	assert.InDelta(t, 0.1, nr/tot, 0.01)
	assert.InDelta(t, 0.1, nk/tot, 0.01)
	assert.Greater(t, mixed, 100.0, "blocks whose tokens were treated differently")
	// The input is not modified.
	assert.Equal(t, int64(1000), tokens[0])
}

func TestSampleReproducibleAndOrder(t *testing.T) {
	o := DefaultMaskOptions()
	tokens := make([]int64, 120)
	for i := range tokens {
		tokens[i] = int64(10 + i%50)
	}
	maskable := randomMaskable(len(tokens), newRng(99))
	a, err := o.Sample(tokens, maskable, 3, 60, newRng(5))
	require.NoError(t, err)
	b, err := o.Sample(tokens, maskable, 3, 60, newRng(5))
	require.NoError(t, err)
	assert.Equal(t, a, b, "same seed, same masking")
	c, err := o.Sample(tokens, maskable, 3, 60, newRng(6))
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "another seed, another masking")

	// Order is a permutation, and every block comes first about equally often.
	first := map[int]int{}
	for seed := range uint64(3000) {
		m, err := o.Sample(tokens[:20], nil20(), 3, 60, newRng(seed))
		require.NoError(t, err)
		require.Len(t, m.Blocks, len(m.Order))
		sorted := slices.Clone(m.Order)
		slices.Sort(sorted)
		for i, v := range sorted {
			require.Equal(t, i, v)
		}
		if len(m.Blocks) == 2 {
			first[m.Order[0]]++
		}
	}
	require.Greater(t, first[0]+first[1], 500)
	share := float64(first[0]) / float64(first[0]+first[1])
	assert.InDelta(t, 0.5, share, 0.05, "the first step is either block equally often: %v", first)
}

// nil20 is 20 maskable positions: budget 3.
func nil20() []bool {
	m := make([]bool, 20)
	for i := range m {
		m[i] = true
	}
	return m
}

func TestSampleErrors(t *testing.T) {
	o := DefaultMaskOptions()
	_, err := o.Sample([]int64{1, 2}, []bool{true}, 3, 10, newRng(1))
	assert.ErrorContains(t, err, "maskable")
	_, err = o.Sample([]int64{1, 2}, []bool{true, true}, 3, 0, newRng(1))
	assert.ErrorContains(t, err, "vocabulary")
	o.MaxSpan = 1
	_, err = o.Sample([]int64{1, 2}, []bool{true, true}, 3, 10, newRng(1))
	assert.ErrorContains(t, err, "max_span")
}
