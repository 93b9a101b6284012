package metapt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// script is a Rand that replays fixed draws and checks their ranges.
type script struct {
	t     *testing.T
	f     []float64
	n     []int
	bound []int // the n of every IntN call, for checking
}

func (s *script) Float64() float64 {
	require.NotEmpty(s.t, s.f, "an unexpected Float64 draw")
	v := s.f[0]
	s.f = s.f[1:]
	return v
}

func (s *script) IntN(n int) int {
	require.NotEmpty(s.t, s.n, "an unexpected IntN draw")
	v := s.n[0]
	s.n = s.n[1:]
	require.Less(s.t, v, n)
	s.bound = append(s.bound, n)
	return v
}

func (s *script) done() {
	assert.Empty(s.t, s.f, "Float64 draws left over")
	assert.Empty(s.t, s.n, "IntN draws left over")
}

// A corpus of four documents: 3, 1, 2 and 2 sentences; the last held out.
func smallCorpus() *Corpus {
	return &Corpus{
		Docs: [][][]int64{
			{{10, 11}, {12}, {13, 14, 15}},
			{{20, 21, 22}},
			{{30}, {31, 32}},
			{{40}, {41}},
		},
		Heldout: []bool{false, false, false, true},
	}
}

func TestAnchorsAreSentencesWithASuccessor(t *testing.T) {
	c := smallCorpus()
	assert.Equal(t, []Anchor{{0, 0}, {0, 1}, {2, 0}}, c.Anchors(false), "document 1 has one sentence: no anchor")
	assert.Equal(t, []Anchor{{3, 0}}, c.Anchors(true))
	assert.Equal(t, []int{0, 1, 2}, c.Split(false))
	assert.Equal(t, []int{3}, c.Split(true))
}

func TestMakePairExactly(t *testing.T) {
	c := smallCorpus()
	docs := c.Split(false)

	// u = 0.5 is not below random_next 0.5: B is the next sentence, one draw only.
	s := &script{t: t, f: []float64{0.5}}
	p, err := c.MakePair(Anchor{0, 1}, docs, 0.5, s)
	require.NoError(t, err)
	assert.Equal(t, Pair{A: []int64{12}, B: []int64{13, 14, 15}}, p)
	s.done()

	// u below 0.5: a random document among the two others (IntN(2)); index 0
	// is document 1 (the anchor's document 0 is stepped over), then its
	// only sentence (IntN(1)).
	s = &script{t: t, f: []float64{0.49}, n: []int{0, 0}}
	p, err = c.MakePair(Anchor{0, 0}, docs, 0.5, s)
	require.NoError(t, err)
	assert.Equal(t, Pair{A: []int64{10, 11}, B: []int64{20, 21, 22}, Random: true}, p)
	assert.Equal(t, []int{2, 1}, s.bound, "two other documents, then the sentences of the one drawn")
	s.done()

	// Index 1 of the others, for an anchor in document 2, is document 1
	// (others: 0, 1); then sentence 0 of it.
	s = &script{t: t, f: []float64{0}, n: []int{1, 0}}
	p, err = c.MakePair(Anchor{2, 0}, docs, 0.5, s)
	require.NoError(t, err)
	assert.Equal(t, Pair{A: []int64{30}, B: []int64{20, 21, 22}, Random: true}, p)
	s.done()

	// For an anchor in document 0, index 1 of the others is document 2, and
	// its second sentence.
	s = &script{t: t, f: []float64{0.1}, n: []int{1, 1}}
	p, err = c.MakePair(Anchor{0, 1}, docs, 0.5, s)
	require.NoError(t, err)
	assert.Equal(t, Pair{A: []int64{12}, B: []int64{31, 32}, Random: true}, p)
	assert.Equal(t, []int{2, 2}, s.bound)
	s.done()

	// random_next 0 and 1 always and never take the next sentence.
	s = &script{t: t, f: []float64{0}}
	p, _ = c.MakePair(Anchor{0, 0}, docs, 0, s)
	assert.False(t, p.Random)
	s = &script{t: t, f: []float64{0.999}, n: []int{0, 0}}
	p, _ = c.MakePair(Anchor{0, 0}, docs, 1, s)
	assert.True(t, p.Random)

	// A random sentence needs another document in the split.
	_, err = c.MakePair(Anchor{3, 0}, c.Split(true), 1, &script{t: t, f: []float64{0}})
	assert.ErrorContains(t, err, "no document other than 3")
}

func TestEncodePairExactly(t *testing.T) {
	const cls, sep = 2, 3
	e, err := Encode(Pair{A: []int64{10, 11}, B: []int64{20}}, 16, cls, sep)
	require.NoError(t, err)
	assert.Equal(t, Encoded{IDs: []int64{2, 10, 11, 3, 20, 3}, Types: []int64{0, 0, 0, 0, 1, 1}}, e)

	e, err = Encode(Pair{A: []int64{10, 11}, B: []int64{20}, Random: true}, 16, cls, sep)
	require.NoError(t, err)
	assert.Equal(t, int64(1), e.NSP)

	// Truncation takes from the end of the longer segment (A on ties) until
	// 3 + |A| + |B| <= max_len: 5+4 -> 4+4 -> 3+4 -> 3+3 at max_len 9.
	e, err = Encode(Pair{A: []int64{10, 11, 12, 13, 14}, B: []int64{20, 21, 22, 23}}, 9, cls, sep)
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 10, 11, 12, 3, 20, 21, 22, 3}, e.IDs)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 1, 1, 1, 1}, e.Types)

	e, err = Encode(Pair{A: []int64{10}, B: []int64{20, 21, 22, 23, 24, 25}}, 6, cls, sep)
	require.NoError(t, err)
	assert.Equal(t, []int64{2, 10, 3, 20, 21, 3}, e.IDs, "the longer B is cut, A keeps its token")

	_, err = Encode(Pair{A: []int64{1}, B: []int64{2}}, 4, cls, sep)
	assert.ErrorContains(t, err, "max_len >= 5")
}

func TestSplitSentences(t *testing.T) {
	assert.Equal(t, []string{"A cat sat.", "Did it?", `He said "go!"`, "x.y stays", "last"},
		SplitSentences(`A cat sat. Did it?  He said "go!" x.y stays`+"\nlast"))
	assert.Empty(t, SplitSentences(" \n "))
}

func TestSamplerDrawsExactly(t *testing.T) {
	s := Sampler{Weights: []float64{1, 1}}
	// One Float64 per draw, scaled by the total weight 2: 0.2 -> 0.4 < 1 is
	// task 0; 0.5 -> 1.0 is not below 1, task 1; 0.99 -> task 1.
	r := &script{t: t, f: []float64{0.2, 0.5, 0.99}}
	assert.Equal(t, []int{0, 1, 1}, s.Draw(3, r))
	r.done()
	assert.Empty(t, s.Draw(0, r), "k = 0 draws nothing")

	// Weights 1:3: u*4 below 1 is task 0.
	s = Sampler{Weights: []float64{1, 3}}
	r = &script{t: t, f: []float64{0.24, 0.25, 0}}
	assert.Equal(t, []int{0, 1, 0}, s.Draw(3, r))

	// A zero weight is never drawn, even at the ends of [0, 1).
	s = Sampler{Weights: []float64{0, 1, 0}}
	r = &script{t: t, f: []float64{0, 0.5, math.Nextafter(1, 0)}}
	assert.Equal(t, []int{1, 1, 1}, s.Draw(3, r))
}

func TestSamplerStreamIsFixedPerStep(t *testing.T) {
	s := Sampler{Weights: []float64{1, 1}, Seed: 7}
	a := s.Draw(64, s.Rand(3))
	assert.Equal(t, a, s.Draw(64, s.Rand(3)), "a step's draws depend on the seed and the step only (so resuming redraws them)")
	assert.NotEqual(t, a, s.Draw(64, s.Rand(4)))
	assert.NotEqual(t, a, Sampler{Weights: []float64{1, 1}, Seed: 8}.Draw(64, Sampler{Seed: 8}.Rand(3)))

	// Frequencies over many steps follow the weights 1:3 (20,000 draws:
	// the share of task 0 is 0.25 within 4 standard deviations, 0.012).
	s = Sampler{Weights: []float64{1, 3}, Seed: 1}
	n0 := 0
	for step := range int64(5000) {
		for _, k := range s.Draw(4, s.Rand(step)) {
			if k == 0 {
				n0++
			}
		}
	}
	assert.InDelta(t, 0.25, float64(n0)/20000, 0.012)
}

func TestExamplesMaskPairsDeterministically(t *testing.T) {
	c := smallCorpus()
	tok := testTokenizer(t)
	o := PairOptions{MaxLen: 8, RandomNext: 0.5, MaskRatio: 0.5, Tok: tok}
	anchors := c.Anchors(false)
	a, err := c.Examples(anchors, c.Split(false), o, rand.New(rand.NewPCG(1, 2)))
	require.NoError(t, err)
	b, err := c.Examples(anchors, c.Split(false), o, rand.New(rand.NewPCG(1, 2)))
	require.NoError(t, err)
	assert.Equal(t, a, b)
	require.Len(t, a, 3)
	for _, e := range a {
		require.Equal(t, len(e.Input), len(e.Types))
		require.Equal(t, len(e.Input), len(e.Labels))
		assert.LessOrEqual(t, len(e.Input), 8)
		assert.Equal(t, tok.CLS, e.Input[0], "special tokens are never masked")
		assert.Equal(t, tok.SEP, e.Input[len(e.Input)-1])
		for _, l := range e.Labels {
			if l != -100 {
				assert.False(t, tok.IsSpecial(l), "a label is an original, non-special token")
			}
		}
	}
}
