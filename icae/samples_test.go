package icae

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const X = IgnoreLabel

func seq(from, n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = from + int64(i)
	}
	return out
}

// compute_num_segments and the encoder loop's cut: ceil(L/(mem·rate))
// segments of ceil(L/n) tokens, the last shorter; together they cover the
// context, none is empty or longer than mem·rate.
func TestSegmentsCountsAndBoundaries(t *testing.T) {
	assert.Equal(t, [][2]int{{0, 512}}, Segments(512, 128, 4), "512 tokens: one segment of 128 slots")
	assert.Equal(t, [][2]int{{0, 257}, {257, 513}}, Segments(513, 128, 4))
	assert.Equal(t, [][2]int{{0, 342}, {342, 684}, {684, 1025}}, Segments(1025, 128, 4))
	assert.Len(t, Segments(5120, 128, 4), 10, "v2's longest input: 10 segments, 1280 slots")
	assert.Equal(t, [][2]int{{0, 1}}, Segments(1, 16, 4))
	assert.Equal(t, [][2]int{{0, 64}}, Segments(64, 16, 4))
	assert.Equal(t, [][2]int{{0, 33}, {33, 65}}, Segments(65, 16, 4))
	for mem := 1; mem <= 5; mem++ {
		for rate := 1; rate <= 5; rate++ {
			for n := 1; n <= 200; n++ {
				sp := Segments(n, mem, rate)
				require.Len(t, sp, (n+mem*rate-1)/(mem*rate), "L=%d mem=%d rate=%d", n, mem, rate)
				next := 0
				for _, s := range sp {
					require.Equal(t, next, s[0])
					require.Greater(t, s[1], s[0], "L=%d mem=%d rate=%d: empty segment", n, mem, rate)
					require.LessOrEqual(t, s[1]-s[0], mem*rate)
					next = s[1]
				}
				require.Equal(t, n, next)
			}
		}
	}
	assert.Panics(t, func() { Segments(0, 4, 4) })
}

// The AE sample of pretrain_tokenize_function: [m]·k [AE] a [EOS], loss on
// a [EOS] (each label is the token at its own position; the loss shifts).
func TestAESampleLossMask(t *testing.T) {
	l := Layout{Vocab: 100, Mem: 2}
	o := PretrainOptions{MaxLen: 8, MinTokensForLM: 4, LeaveTokens: 2, Compression: 2, EOS: 2}
	rng := rand.New(rand.NewPCG(1, 1))
	ctx := seq(10, 4) // shorter than max_len: kept whole; one segment of 2 slots
	s := PretrainSample(ctx, o, l, rng)
	m, ae := l.MemID(0), l.AE()
	assert.Equal(t, Sample{Context: ctx, Objective: ObjectiveAE,
		PromptAnswer: []int64{m, m, ae, 10, 11, 12, 13, 2},
		Labels:       []int64{X, X, X, 10, 11, 12, 13, 2}}, s)
	require.NoError(t, s.Check(l, 2))

	long := seq(10, 20) // a window of 8 tokens: 2 segments of 4, 4 slots
	s = PretrainSample(long, o, l, rng)
	require.Len(t, s.Context, 8)
	start := s.Context[0] - 10
	assert.Equal(t, seq(10+start, 8), s.Context, "a contiguous window")
	assert.Equal(t, append([]int64{m, m, m, m, ae}, append(seq(10+start, 8), 2)...), s.PromptAnswer)
	assert.Equal(t, append([]int64{X, X, X, X, X}, append(seq(10+start, 8), 2)...), s.Labels)
	require.NoError(t, s.Check(l, 2))
}

// The LM sample: [m]·k then the continuation b (cut to max_len), no loss
// on b's first leave_tokens_for_lm tokens, no EOS; [LM] after the slots
// only with add_special_token_for_lm. A continuation of at most
// min_tokens_for_lm tokens makes an AE sample of the context instead.
func TestLMSampleLossMask(t *testing.T) {
	l := Layout{Vocab: 100, Mem: 2}
	o := PretrainOptions{MaxLen: 4, LMRatio: 1, MinTokensForLM: 3, LeaveTokens: 2, Compression: 2, EOS: 2}
	rng := rand.New(rand.NewPCG(2, 2))
	m := l.MemID(0)
	for range 50 {
		s := PretrainSample(seq(10, 12), o, l, rng) // a window of 4, then up to 8 tokens
		require.NoError(t, s.Check(l, 2))
		require.Len(t, s.Context, 4)
		start := s.Context[0] - 10
		rest := 12 - start - 4
		if rest <= 3 {
			assert.Equal(t, ObjectiveAE, s.Objective, "a continuation of %d tokens is too short", rest)
			assert.Equal(t, append([]int64{m, m, l.AE()}, append(slices.Clone(s.Context), 2)...), s.PromptAnswer)
			continue
		}
		b := seq(10+start+4, min(rest, 4)) // cut to max_len
		assert.Equal(t, ObjectiveLM, s.Objective)
		assert.Equal(t, append([]int64{m, m}, b...), s.PromptAnswer)
		assert.Equal(t, append([]int64{X, X, X, X}, b[2:]...), s.Labels)
	}

	o.LMSpecialToken = true
	var s Sample
	for s.Objective != ObjectiveLM {
		s = PretrainSample(seq(10, 12), o, l, rng)
	}
	b := s.PromptAnswer[3:]
	assert.Equal(t, []int64{m, m, l.LM()}, s.PromptAnswer[:3])
	assert.Equal(t, append([]int64{X, X, X, X, X}, b[2:]...), s.Labels)

	// A text no longer than max_len: a random prefix and its remainder.
	o = PretrainOptions{MaxLen: 64, LMRatio: 1, MinTokensForLM: 3, LeaveTokens: 1, Compression: 2, EOS: 2}
	seen := map[int]bool{}
	for range 200 {
		s := PretrainSample(seq(10, 10), o, l, rng)
		require.NoError(t, s.Check(l, 2))
		seen[len(s.Context)] = true
		if s.Objective == ObjectiveLM {
			assert.Greater(t, 10-len(s.Context), 3)
			assert.Equal(t, seq(10+int64(len(s.Context)), int64(10-len(s.Context))), s.PromptAnswer[len(s.PromptAnswer)-(10-len(s.Context)):])
		}
	}
	assert.Len(t, seen, 10, "prefixes of every length 1..10")
}

// lm_ratio 0 never draws LM (random() >= 0 always holds), as the code's
// default; lm_ratio 0.5 draws about half.
func TestLMRatio(t *testing.T) {
	l := Layout{Vocab: 100, Mem: 2}
	o := PretrainOptions{MaxLen: 8, MinTokensForLM: 2, LeaveTokens: 1, Compression: 2, EOS: 2}
	rng := rand.New(rand.NewPCG(4, 4))
	count := func(ratio float64) int {
		o.LMRatio = ratio
		n := 0
		for range 2000 {
			if PretrainSample(seq(10, 40), o, l, rng).Objective == ObjectiveLM {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 0, count(0))
	// Half draw LM; of those, a window starting at 30..32 (3 of 33) leaves
	// at most 2 tokens and falls back to AE: 2000 · 0.5 · 30/33 ≈ 909.
	assert.InDelta(t, 909, count(0.5), 120)
}

// The FT sample (instruct_ft_tokenize_function): the loss is on the answer
// and its EOS only. v2 wraps slots, [FT] and the prompt in the
// instruction template; v1 puts the prompt between two [FT].
func TestFTSampleLossMask(t *testing.T) {
	l := Layout{Vocab: 100, Mem: 2}
	m, ft := l.MemID(0), l.FT()
	o := FinetuneOptions{Format: "v2", Prefix: []int64{1, 50}, Suffix: []int64{51}, MaxContext: 16, Compression: 2, EOS: 2}
	s := FinetuneSample(seq(10, 3), []int64{60, 61}, []int64{70, 71, 72}, o, l)
	assert.Equal(t, Sample{Context: seq(10, 3), Objective: ObjectiveFT,
		PromptAnswer: []int64{1, 50, m, m, ft, 60, 61, 51, 70, 71, 72, 2},
		Labels:       []int64{X, X, X, X, X, X, X, X, 70, 71, 72, 2}}, s)
	require.NoError(t, s.Check(l, 2))

	o.Format = "v1"
	s = FinetuneSample(seq(10, 20), []int64{60}, []int64{70}, o, l) // cut to 16 tokens: 4 segments... 16/(2·2) = 4
	assert.Equal(t, seq(10, 16), s.Context)
	assert.Equal(t, []int64{m, m, m, m, m, m, m, m, ft, 60, ft, 70, 2}, s.PromptAnswer)
	assert.Equal(t, []int64{X, X, X, X, X, X, X, X, X, X, X, 70, 2}, s.Labels)
	require.NoError(t, s.Check(l, 2))
}

// Check catches what would break the decoder: placeholders that do not
// match the slots, labels out of step.
func TestSampleCheck(t *testing.T) {
	l := Layout{Vocab: 100, Mem: 2}
	ok := Sample{Context: seq(10, 3), PromptAnswer: []int64{100, 100, 102, 10}, Labels: []int64{X, X, X, 10}}
	require.NoError(t, ok.Check(l, 2))
	bad := ok
	bad.PromptAnswer = []int64{100, 102, 102, 10}
	assert.ErrorContains(t, bad.Check(l, 2), "1 slot placeholders")
	bad = ok
	bad.Labels = bad.Labels[:3]
	assert.ErrorContains(t, bad.Check(l, 2), "3 labels for 4")
	bad = ok
	bad.Labels = []int64{X, X, X, 100}
	assert.ErrorContains(t, bad.Check(l, 2), "label 100 outside")
}

// The training texts: pieces of the stream, or whole documents ([BOS]
// text, without the stream's EOS) with doc_len 0.
func TestStreamTexts(t *testing.T) {
	s := &Streams{Train: []int64{2, 5, 6, 3, 2, 7, 3}, TrainStarts: []int{0, 4}}
	assert.Equal(t, [][]int64{{2, 5, 6}, {2, 7}}, s.Texts(0))
	assert.Equal(t, [][]int64{{2, 5, 6}, {3, 2, 7}}, s.Texts(3))
	assert.Equal(t, [][]int64{{2, 5, 6, 3, 2, 7}}, s.Texts(6))
}

// BLEU-4 and token accuracy on known cases.
func TestBLEUAndTokenAccuracy(t *testing.T) {
	ref := [][]int64{seq(1, 10)}
	assert.InDelta(t, 1.0, BLEU(ref, ref), 1e-12)
	assert.Equal(t, 1.0, TokenAccuracy(ref, ref))
	assert.Equal(t, 0.0, BLEU([][]int64{{1, 2, 3}}, ref), "no 4-gram: 0, unsmoothed")
	// Half the reference: every n-gram matches, brevity penalty exp(1 - 10/5).
	assert.InDelta(t, math.Exp(-1), BLEU([][]int64{seq(1, 5)}, ref), 1e-12)
	assert.Equal(t, 0.5, TokenAccuracy([][]int64{seq(1, 5)}, ref))
	// One wrong token in the middle: 1-grams 9/10, 2-grams 7/9, 3-grams 5/8, 4-grams 3/7.
	hyp := seq(1, 10)
	hyp[4] = 99
	want := math.Pow(9.0/10*7.0/9*5.0/8*3.0/7, 0.25)
	assert.InDelta(t, want, BLEU([][]int64{hyp}, ref), 1e-12)
	assert.Equal(t, 0.9, TokenAccuracy([][]int64{hyp}, ref))
}
