package pmlm

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/BurntSushi/toml"
)

// Token ids of the hand-built step functions: 0 is EOS so that the
// tie-breaking rule (lower id first) is visible in the worked examples.
const (
	tEOS int64 = 0
	tA   int64 = 1
	tB   int64 = 2
	tC   int64 = 3
)

// beamTableStep answers from a table keyed by the whole prefix; a prefix not
// in the table falls back to the row keyed by its last token ("last:N"), then
// to "*".
func beamTableStep(t *testing.T, table map[string][]float32) StepFunc {
	return func(prefixes [][]int64) ([][]float32, error) {
		out := make([][]float32, len(prefixes))
		for i, p := range prefixes {
			keys := []string{fmt.Sprint(p)}
			if len(p) > 0 {
				keys = append(keys, fmt.Sprintf("last:%d", p[len(p)-1]))
			}
			keys = append(keys, "*")
			for _, k := range keys {
				if r, ok := table[k]; ok {
					out[i] = r
					break
				}
			}
			if out[i] == nil {
				t.Fatalf("no row for prefix %v", p)
			}
		}
		return out, nil
	}
}

// beamRandomStep is a deterministic pseudo-model: the log-softmax of logits
// drawn from a generator seeded by (seed, prefix), with EOS made likelier as
// the prefix grows so that hypotheses of many lengths occur.
func beamRandomStep(seed uint64, vocab int) StepFunc {
	return func(prefixes [][]int64) ([][]float32, error) {
		out := make([][]float32, len(prefixes))
		for i, p := range prefixes {
			h := fnv.New64a()
			for _, w := range p {
				fmt.Fprintf(h, "%d,", w)
			}
			r := rand.New(rand.NewPCG(seed, h.Sum64()))
			logits := make([]float64, vocab)
			for j := range logits {
				logits[j] = 2 * r.NormFloat64()
			}
			logits[tEOS] += -2 + 0.4*float64(len(p))
			m := slices.Max(logits)
			var z float64
			for _, l := range logits {
				z += math.Exp(l - m)
			}
			row := make([]float32, vocab)
			for j, l := range logits {
				row[j] = float32(l - m - math.Log(z))
			}
			out[i] = row
		}
		return out, nil
	}
}

func beamOpts(k, maxLen int) BeamOptions {
	o := DefaultBeamOptions()
	o.BeamSize = k
	o.MaxTgtLength = maxLen
	o.MinLen = 0
	o.EOSID = tEOS
	return o
}

func beamBest(t *testing.T, step StepFunc, o BeamOptions) BeamHypothesis {
	t.Helper()
	hs, err := BeamSearch(step, o)
	if err != nil {
		t.Fatal(err)
	}
	return hs[0]
}

func beamHasRepeatedNgram(seq []int64, n int) bool {
	seen := map[string]bool{}
	for i := 0; i+n <= len(seq); i++ {
		k := fmt.Sprint(seq[i : i+n])
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// With one beam, the official beam search is the argmax path: each step's
// top-1 of one row plus the same carried score. Checked on many random
// pseudo-models and every option that changes the path.
func TestBeamSizeOneEqualsGreedy(t *testing.T) {
	variants := []func(*BeamOptions){
		func(o *BeamOptions) {},
		func(o *BeamOptions) { o.MinLen = 3 },
		func(o *BeamOptions) { o.ForbidDuplicateNgrams, o.NgramSize = true, 2 },
		func(o *BeamOptions) { o.ForbidDuplicateNgrams, o.NgramSize = true, 3; o.MinLen = 1 },
		func(o *BeamOptions) {
			o.ForbidDuplicateNgrams, o.NgramSize, o.ForbidIgnoreIDs = true, 2, []int64{1, 4}
		},
		func(o *BeamOptions) { o.ForbidDuplicateNgrams, o.NgramSize = true, 1 },
		func(o *BeamOptions) { o.LengthPenalty = 1.2; o.MinLen = 2 },
	}
	lengths := map[int]bool{}
	for seed := uint64(1); seed <= 200; seed++ {
		for vi, v := range variants {
			o := beamOpts(1, 12)
			v(&o)
			step := beamRandomStep(seed, 7)
			b := beamBest(t, step, o)
			g, err := Greedy(step, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.Tokens, g.Tokens) || b.Finished != g.Finished || b.Steps != g.Steps ||
				b.Score != g.Score || b.NormScore != g.NormScore {
				t.Fatalf("seed %d variant %d: beam %+v greedy %+v", seed, vi, b, g)
			}
			lengths[len(g.Tokens)] = true
		}
	}
	if len(lengths) < 5 {
		t.Fatalf("random step functions produced too few lengths: %v", lengths)
	}
}

// Greedy on a step function whose best continuation alternates a b a b ...:
//
//	[]     : a -0.5, b -2,   c -3, EOS -5
//	last a : b -0.25, c -2,  a -3, EOS -4
//	last b : a -0.25, c -2,  b -3, EOS -4
//	last c : EOS -0.5, a -2, b -3, c -3
//
// No blocking: a b a b a b (6 steps, never EOS).
// Bigram blocking: after [a b a] the context [a] already occurred followed by
// b, so b gets -10000 and c (-2) wins; then EOS: [a b a c], score
// -0.5-0.25-0.25-2-0.5 = -3.5.
// Trigram blocking: after [a b a b] the context [a b] occurred followed by a,
// so a is banned and c wins: [a b a b c], score -0.5-0.25*3-2-0.5 = -3.75.
// Ignoring a (as --forbid_ignore_word): a context holding a bans nothing and
// a is never banned, so bigram blocking never fires.
func TestBeamNgramBlocking(t *testing.T) {
	table := map[string][]float32{
		"[]":     {-5, -0.5, -2, -3},
		"last:1": {-4, -3, -0.25, -2},
		"last:2": {-4, -0.25, -3, -2},
		"last:3": {-0.5, -2, -3, -3},
		"last:0": {-1, -1, -1, -1}, // a finished beam extended by the beam search
	}
	step := beamTableStep(t, table)
	cases := []struct {
		name   string
		n      int
		ignore []int64
		want   []int64
		fin    bool
		score  float64
	}{
		{"none", 0, nil, []int64{tA, tB, tA, tB, tA, tB}, false, -0.5 - 0.25*5},
		{"bigram", 2, nil, []int64{tA, tB, tA, tC}, true, -3.5},
		{"trigram", 3, nil, []int64{tA, tB, tA, tB, tC}, true, -3.75},
		{"bigram-ignore-a", 2, []int64{tA}, []int64{tA, tB, tA, tB, tA, tB}, false, -1.75},
		{"bigram-ignore-b", 2, []int64{tB}, []int64{tA, tB, tA, tB, tA, tB}, false, -1.75},
	}
	for _, c := range cases {
		for _, k := range []int{0, 1} { // 0: Greedy, 1: BeamSearch with one beam
			o := beamOpts(1, 6)
			o.ForbidDuplicateNgrams = c.n > 0
			if c.n > 0 {
				o.NgramSize = c.n
			}
			o.ForbidIgnoreIDs = c.ignore
			var h BeamHypothesis
			if k == 0 {
				var err error
				if h, err = Greedy(step, o); err != nil {
					t.Fatal(err)
				}
			} else {
				h = beamBest(t, step, o)
			}
			if !slices.Equal(h.Tokens, c.want) || h.Finished != c.fin || h.Score != c.score {
				t.Errorf("%s (beam=%d): got %v fin=%v score=%v, want %v fin=%v score=%v",
					c.name, k, h.Tokens, h.Finished, h.Score, c.want, c.fin, c.score)
			}
		}
	}
	// With two beams the winner must not repeat a trigram either.
	o := beamOpts(2, 8)
	o.ForbidDuplicateNgrams, o.NgramSize = true, 3
	h := beamBest(t, step, o)
	if beamHasRepeatedNgram(h.Tokens, 3) || h.Score < -5000 {
		t.Errorf("beam 2 trigram blocking: %+v", h)
	}
}

// On random pseudo-models with a vocabulary large enough that a banned token
// never has to be taken, no returned hypothesis repeats an n-gram.
func TestBeamNgramBlockingRandom(t *testing.T) {
	for seed := uint64(1); seed <= 60; seed++ {
		for _, n := range []int{2, 3} {
			o := beamOpts(3, 10)
			o.ForbidDuplicateNgrams, o.NgramSize = true, n
			hs, err := BeamSearch(beamRandomStep(seed, 9), o)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hs {
				if h.Score > -5000 && beamHasRepeatedNgram(h.Tokens, n) {
					t.Fatalf("seed %d n %d: %+v repeats an n-gram", seed, n, h)
				}
			}
		}
	}
}

func TestBeamDupNgrams(t *testing.T) {
	cases := []struct {
		seq    []int64
		n      int
		ignore []int64
		want   []int64
	}{
		{[]int64{1, 2, 1}, 2, nil, []int64{2}},
		{[]int64{1, 2, 1, 3, 1}, 2, nil, []int64{2, 3}},
		{[]int64{1, 2, 3, 1, 2}, 3, nil, []int64{3}},
		{[]int64{1, 2}, 3, nil, nil},           // shorter than n
		{[]int64{1, 2, 1}, 2, []int64{1}, nil}, // context holds an ignored token
		{[]int64{1, 2, 1}, 2, []int64{2}, nil}, // the banned token is ignored
		// n == 1: official seq[-0:] is the whole sequence, so every token
		// seen is banned, unless any of them is ignored.
		{[]int64{4, 5, 4}, 1, nil, []int64{4, 5}},
		{[]int64{4, 5, 4}, 1, []int64{5}, nil},
	}
	for _, c := range cases {
		got := beamDupNgrams(c.seq, c.n, beamIgnoreSet(c.ignore))
		if !slices.Equal(got, c.want) {
			t.Errorf("beamDupNgrams(%v, %d, %v) = %v, want %v", c.seq, c.n, c.ignore, got, c.want)
		}
	}
}

// EOS is the best token everywhere (-0.1; a -3, b -4, c -5).
// min_len 0: the output is empty ([SEP] at step 1).
// min_len 2: EOS is set to -10000 at steps 1 and 2, so greedy takes a, a, then
// EOS: [a a], score -3-3-0.1 = -6.1.
// Beam 2, min_len 2: step 1 keeps a(-3), b(-4); step 2 candidates
// aa -6, ab -7, ba -7, bb -8 keep aa, ab (tie to the lower index); step 3
// both take EOS: aa -6.1, ab -7.1; every beam ended so the search stops.
func TestBeamMinLen(t *testing.T) {
	step := beamTableStep(t, map[string][]float32{"*": {-0.1, -3, -4, -5}})
	o := beamOpts(1, 10)
	if h, _ := Greedy(step, o); len(h.Tokens) != 0 || !h.Finished || h.Steps != 1 {
		t.Errorf("min_len 0: %+v", h)
	}
	o.MinLen = 2
	want := float64(float32(-3) + float32(-3) + float32(-0.1))
	if h, _ := Greedy(step, o); !slices.Equal(h.Tokens, []int64{tA, tA}) || h.Score != want {
		t.Errorf("greedy min_len 2: %+v", h)
	}
	o.BeamSize = 2
	hs, err := BeamSearch(step, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || !slices.Equal(hs[0].Tokens, []int64{tA, tA}) || !slices.Equal(hs[1].Tokens, []int64{tA, tB}) ||
		hs[0].Score != want || !hs[0].Finished || !hs[1].Finished {
		t.Errorf("beam 2 min_len 2: %+v", hs)
	}
	// decode_seq2seq.py with --beam_size 1 runs the argmax loop, which has no
	// min_len: the empty output comes back.
	o.BeamSize = 1
	if h, _ := DecodeLikeS2SFT(step, o); len(h.Tokens) != 0 {
		t.Errorf("DecodeLikeS2SFT beam 1 min_len 2: %+v", h)
	}
	o.BeamSize = 2
	if h, _ := DecodeLikeS2SFT(step, o); !slices.Equal(h.Tokens, []int64{tA, tA}) {
		t.Errorf("DecodeLikeS2SFT beam 2 min_len 2: %+v", h)
	}
}

// EOS is never likely (a -0.5, b -1, c -1.5, EOS -20): no beam finishes, the
// last step's beams compete unfinished, and the best is a a a a (-2) with
// MaxTgtLength 4 steps.
func TestBeamMaxLength(t *testing.T) {
	step := beamTableStep(t, map[string][]float32{"*": {-20, -0.5, -1, -1.5}})
	for _, k := range []int{1, 2, 3} {
		o := beamOpts(k, 4)
		h := beamBest(t, step, o)
		if !slices.Equal(h.Tokens, []int64{tA, tA, tA, tA}) || h.Finished || h.Steps != 4 || h.Score != -2 {
			t.Errorf("beam %d: %+v", k, h)
		}
	}
	// With EOS at -2.25 from the empty prefix, below the top 2 at step 1
	// (a -0.5, b -1), the empty hypothesis never enters the beam, and aaaa
	// (-2) wins.
	step = beamTableStep(t, map[string][]float32{"[]": {-2.25, -0.5, -1, -1.5}, "*": {-20, -0.5, -1, -1.5}})
	o := beamOpts(2, 4)
	if h := beamBest(t, step, o); !slices.Equal(h.Tokens, []int64{tA, tA, tA, tA}) {
		t.Errorf("no penalty: %+v", h)
	}
}

// Hand-worked beam of 2 over {EOS, x, y} with MaxTgtLength 3:
//
//	[]    : EOS -8,    x -1,   y -1.5
//	[x]   : EOS -0.75, x -4,   y -4
//	[y]   : x -0.125,  EOS -4, y -4
//	[y x] : EOS -0.25, x -4,   y -4
//	[x EOS] (extended after finishing): everything -1
//
// Step 1 keeps x (-1), y (-1.5).
// Step 2: from x: x EOS -1.75, x x -5; from y: y x -1.625, y EOS -5.5;
// keeps y x (-1.625) and x EOS (-1.75): a finished candidate of 2 steps.
// Step 3: from y x: y x EOS -1.875, y x x -5.625; from x EOS: -1.75-10000-1;
// keeps y x EOS, y x x; it is the last step, so both are candidates.
// alpha 0: x EOS (-1.75) beats y x EOS (-1.875) -> output [x].
// alpha 1: x EOS: -1.75/((5+2)/6) = -1.5; y x EOS: -1.875/((5+3)/6) = -1.40625;
// y x x: -5.625*6/8 = -4.21875 -> output [y x].
func TestBeamLengthPenaltyChangesWinner(t *testing.T) {
	const x, y = tA, tB
	step := beamTableStep(t, map[string][]float32{
		"[]":    {-8, -1, -1.5},
		"[1]":   {-0.75, -4, -4},
		"[2]":   {-4, -0.125, -4},
		"[2 1]": {-0.25, -4, -4},
		"[1 0]": {-1, -1, -1},
	})
	o := beamOpts(2, 3)
	hs, err := BeamSearch(step, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []BeamHypothesis{
		{Tokens: []int64{x}, Finished: true, Steps: 2, Score: -1.75, NormScore: -1.75},
		{Tokens: []int64{y, x}, Finished: true, Steps: 3, Score: -1.875, NormScore: -1.875},
		{Tokens: []int64{y, x, x}, Finished: false, Steps: 3, Score: -5.625, NormScore: -5.625},
	}
	beamCheckHyps(t, "alpha 0", hs, want)

	o.LengthPenalty = 1
	hs, err = BeamSearch(step, o)
	if err != nil {
		t.Fatal(err)
	}
	want = []BeamHypothesis{
		{Tokens: []int64{y, x}, Finished: true, Steps: 3, Score: -1.875, NormScore: -1.40625},
		{Tokens: []int64{x}, Finished: true, Steps: 2, Score: -1.75, NormScore: -1.5},
		{Tokens: []int64{y, x, x}, Finished: false, Steps: 3, Score: -5.625, NormScore: -4.21875},
	}
	beamCheckHyps(t, "alpha 1", hs, want)

	// Greedy follows x then EOS whatever the penalty.
	if g, _ := Greedy(step, o); !slices.Equal(g.Tokens, []int64{x}) || math.Abs(g.NormScore+1.5) > 1e-12 {
		t.Errorf("greedy: %+v", g)
	}
}

func beamCheckHyps(t *testing.T, name string, got, want []BeamHypothesis) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d hypotheses %+v, want %+v", name, len(got), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !slices.Equal(g.Tokens, w.Tokens) || g.Finished != w.Finished || g.Steps != w.Steps ||
			g.Score != w.Score || math.Abs(g.NormScore-w.NormScore) > 1e-12 {
			t.Errorf("%s #%d: got %+v, want %+v", name, i, g, w)
		}
	}
}

// The search hands the step function one empty prefix, then BeamSize
// prefixes of length t-1 at step t, and stops as soon as every beam ended.
func TestBeamStepCalls(t *testing.T) {
	inner := beamRandomStep(7, 8)
	var sizes []int
	step := func(p [][]int64) ([][]float32, error) {
		sizes = append(sizes, len(p))
		for _, q := range p {
			if len(q) != len(sizes)-1 {
				t.Fatalf("call %d got prefix %v", len(sizes), q)
			}
		}
		return inner(p)
	}
	o := beamOpts(3, 30)
	hs, err := BeamSearch(step, o)
	if err != nil {
		t.Fatal(err)
	}
	if sizes[0] != 1 || len(sizes) > 30 {
		t.Fatalf("call sizes %v", sizes)
	}
	for _, s := range sizes[1:] {
		if s != 3 {
			t.Fatalf("call sizes %v", sizes)
		}
	}
	for i := 1; i < len(hs); i++ {
		if hs[i].NormScore > hs[i-1].NormScore {
			t.Fatalf("not sorted: %+v", hs)
		}
	}
}

func TestBeamDegenerate(t *testing.T) {
	inf := float32(math.Inf(-1))
	step := beamTableStep(t, map[string][]float32{"*": {inf, inf, inf}})
	hs, err := BeamSearch(step, beamOpts(2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || len(hs[0].Tokens) != 0 || hs[0].Finished || !math.IsInf(hs[0].Score, -1) {
		t.Errorf("all -Inf: %+v", hs)
	}

	good := beamTableStep(t, map[string][]float32{"*": {-1, -2, -3}})
	bad := []struct {
		name      string
		step      StepFunc
		o         BeamOptions
		beamsOnly bool // Greedy ignores BeamSize
	}{
		{"beam 0", good, beamOpts(0, 3), true},
		{"max len 0", good, beamOpts(1, 0), false},
		{"vocab < beam", good, beamOpts(4, 3), true},
		{"ngram 0", good, func() BeamOptions { o := beamOpts(1, 3); o.ForbidDuplicateNgrams, o.NgramSize = true, 0; return o }(), false},
		{"eos outside vocab", good, func() BeamOptions { o := beamOpts(1, 3); o.EOSID = 3; return o }(), false},
		{"row count", func([][]int64) ([][]float32, error) { return nil, nil }, beamOpts(1, 3), false},
		{"ragged", func(p [][]int64) ([][]float32, error) {
			if len(p) == 1 {
				return [][]float32{{-1, -2, -3}}, nil
			}
			return [][]float32{{-1, -2, -3}, {-1, -2}}, nil
		}, beamOpts(2, 3), true},
		{"step error", func([][]int64) ([][]float32, error) { return nil, errors.New("boom") }, beamOpts(1, 3), false},
		{"nil step", nil, beamOpts(1, 3), false},
	}
	for _, c := range bad {
		if _, err := BeamSearch(c.step, c.o); err == nil {
			t.Errorf("%s: BeamSearch accepted it", c.name)
		}
		if _, err := Greedy(c.step, c.o); err == nil && !c.beamsOnly {
			t.Errorf("%s: Greedy accepted it", c.name)
		}
	}
}

// A recipe's [decode] table only lists what differs from decode_seq2seq.py's
// defaults (here the s2s-ft XSum recipe).
func TestBeamOptionsTOML(t *testing.T) {
	o := DefaultBeamOptions()
	src := `
beam_size = 5
length_penalty = 0.0
forbid_duplicate_ngrams = true
forbid_ignore_ids = [1012]
max_tgt_length = 48
`
	if _, err := toml.Decode(src, &o); err != nil {
		t.Fatal(err)
	}
	want := BeamOptions{BeamSize: 5, ForbidDuplicateNgrams: true, NgramSize: 3, ForbidIgnoreIDs: []int64{1012},
		MinLen: 1, MaxTgtLength: 48, EOSID: 102}
	if fmt.Sprint(o) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
}
