package torchmods

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/internal/testutil"
)

// Decoding against the key/value cache gives the tokens and, at every
// step, the logits (within 1e-5) of recomputing the whole sequence, for a
// left-padded batch; with grouped-query attention (gqa) and with a sliding
// window shorter than the sequence (mistral). A step leaves no tensor
// behind but the cache's, which Generate frees.
func TestGenerateCacheMatchesRecompute(t *testing.T) {
	ref := loadRef(t, "llama_parity.safetensors")
	for _, c := range []string{"gqa", "mistral"} {
		s := ts.NewScope()
		l, _ := openLlama(t, llamaFolders[c], "")
		ids, mask := ref[c+".input_ids"], ref[c+".attention_mask"]
		o := GenerateOptions{MaxNewTokens: 6, KeepLogits: true}
		live := frozenLive(t)
		cached, err := l.Model.Generate(ids, mask, o)
		require.NoError(t, err)
		assert.Equal(t, live+int64(len(cached.Logits)), ts.LiveTensors(), "%s: only the kept logits outlive Generate", c)
		o.NoCache = true
		full, err := l.Model.Generate(ids, mask, o)
		require.NoError(t, err)
		assert.Equal(t, full.Tokens, cached.Tokens, c)
		require.Len(t, cached.Logits, 6)
		for i := range cached.Logits {
			testutil.Close(t, cached.Logits[i], full.Logits[i], 1e-5, "%s step %d", c, i)
		}
		for r, toks := range cached.Tokens {
			assert.Len(t, toks, 6, "%s row %d runs to MaxNewTokens without stop tokens", c, r)
			assert.False(t, cached.Stopped[r])
		}
		s.Close()
	}
}

// Greedy decoding gives the tokens of PyTorch's greedy loop
// (gen_llama.py: HF's generate(do_sample=False) without a cache).
func TestGenerateGreedyMatchesPyTorch(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "llama_parity.safetensors")
	l, _ := openLlama(t, "testdata/llama_gqa", "")
	res, err := l.Model.Generate(ref["gqa.input_ids"], ref["gqa.attention_mask"], GenerateOptions{MaxNewTokens: 5})
	require.NoError(t, err)
	want := ref["gqa.greedy"].Int64Values()
	for r, toks := range res.Tokens {
		assert.Equal(t, want[r*5:(r+1)*5], toks, "row %d", r)
	}
}

// A left-padded row generates what it generates alone, unpadded: the same
// tokens, the same logits within 1e-5 at each step.
func TestGenerateLeftPaddingMatchesAlone(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	l, _ := openLlama(t, "testdata/llama_gqa", "")
	prompts := [][]int64{{5, 17, 42, 8, 91, 33, 12}, {64, 3}, {77, 21, 50, 9}}
	ids, mask := LeftPad(prompts, l.Model.Cfg.PadTokenID, gotch.CPU)
	assert.Equal(t, []int64{0, 0, 0, 0, 0, 64, 3}, ids.MustSelect(0, 1, false).Int64Values())
	o := GenerateOptions{MaxNewTokens: 6, KeepLogits: true}
	batch, err := l.Model.Generate(ids, mask, o)
	require.NoError(t, err)
	for r, p := range prompts {
		alone, err := l.Model.Generate(FromSlice(p, []int64{1, int64(len(p))}, gotch.CPU), nil, o)
		require.NoError(t, err)
		assert.Equal(t, alone.Tokens[0], batch.Tokens[r], "row %d", r)
		for i := range alone.Logits {
			testutil.Close(t, batch.Logits[i].MustSelect(0, int64(r), false), alone.Logits[i].MustSelect(0, 0, false), 1e-5, "row %d step %d", r, i)
		}
	}
}

// Stop tokens end each row on its own: a row ends with the first stop
// token it generates, the others go on as they would have.
func TestGenerateStopTokensEndRowsIndependently(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	ref := loadRef(t, "llama_parity.safetensors")
	l, _ := openLlama(t, "testdata/llama_gqa", "")
	ids, mask := ref["gqa.input_ids"], ref["gqa.attention_mask"]
	free, err := l.Model.Generate(ids, mask, GenerateOptions{MaxNewTokens: 8})
	require.NoError(t, err)
	// Row 0 stops at its second token, row 2 at its fourth; row 1 must
	// generate neither, or it would stop too.
	stop := []int64{free.Tokens[0][1], free.Tokens[2][3]}
	for _, t1 := range free.Tokens[1] {
		require.NotContains(t, stop, t1, "the fixture's rows suit this test")
	}
	res, err := l.Model.Generate(ids, mask, GenerateOptions{MaxNewTokens: 8, StopTokens: stop})
	require.NoError(t, err)
	for r, toks := range free.Tokens {
		want := toks
		if i := slices.IndexFunc(toks, func(x int64) bool { return slices.Contains(stop, x) }); i >= 0 {
			want = toks[:i+1]
		}
		assert.Equal(t, want, res.Tokens[r], "row %d", r)
	}
	assert.Equal(t, []bool{true, false, true}, res.Stopped)
	assert.LessOrEqual(t, len(res.Tokens[0]), 2)
	assert.Len(t, res.Tokens[1], 8)

	// When every row has stopped, generation ends.
	all := []int64{free.Tokens[0][0], free.Tokens[1][0], free.Tokens[2][0]}
	res, err = l.Model.Generate(ids, mask, GenerateOptions{MaxNewTokens: 8, StopTokens: all, KeepLogits: true})
	require.NoError(t, err)
	assert.Len(t, res.Logits, 1)
	assert.Equal(t, [][]int64{{all[0]}, {all[1]}, {all[2]}}, res.Tokens)
}

// keptSets lists, per row, the token indices a warper left finite.
func keptSets(x *ts.Tensor) [][]int64 {
	s := x.MustSize()
	v := x.Float64Values()
	var out [][]int64
	for r := range s[0] {
		row := []int64{}
		for j := range s[1] {
			if v[r*s[1]+j] > -1e300 {
				row = append(row, j)
			}
		}
		out = append(out, row)
	}
	return out
}

// The warpers keep exactly the sets HF's keep, on logits made by hand and
// on PyTorch's result for random logits (temperature 0.7, top-k 20, top-p
// 0.9).
func TestWarpersKeepHFSets(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	logits := FromSlice([]float32{1, 3, 2, 5, 4, 0, 0, 0, 1, -1}, []int64{2, 5}, gotch.CPU)
	assert.Equal(t, [][]int64{{3, 4}, {0, 1, 2, 3}}, keptSets(TopKWarp(logits, 2)), "ties with the k-th stay")
	assert.Equal(t, [][]int64{{3}, {3}}, keptSets(TopKWarp(logits, 1)))
	assert.Equal(t, [][]int64{{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}}, keptSets(TopKWarp(logits, 50)), "k beyond the vocabulary keeps all")

	// Probabilities 0.5, 0.25, 0.15, 0.1: ascending cumulative 0.1, 0.25,
	// 0.5, 1; top-p 0.7 removes what is at most 0.3.
	probs := FromSlice([]float64{0.1, 0.5, 0.15, 0.25}, []int64{1, 4}, gotch.CPU).MustLog(true).MustTotype(gotch.Float, true)
	assert.Equal(t, [][]int64{{1, 3}}, keptSets(TopPWarp(probs, 0.7)))
	assert.Equal(t, [][]int64{{1, 2, 3}}, keptSets(TopPWarp(probs, 0.8)))
	assert.Equal(t, [][]int64{{1}}, keptSets(TopPWarp(probs, 1e-9)), "min_tokens_to_keep 1: the best token stays")
	// Temperature first: at 2 the probabilities flatten to about 0.37,
	// 0.26, 0.20, 0.17, and top-p 0.7 keeps three.
	o := GenerateOptions{Temperature: 2, TopP: 0.7}
	assert.Equal(t, [][]int64{{1, 2, 3}}, keptSets(WarpLogits(probs, o)))
	// Then top-k before top-p: top-k 2 leaves 0.5 and 0.25, renormalised
	// to 2/3 and 1/3; top-p 0.7 then keeps both.
	assert.Equal(t, [][]int64{{1, 3}}, keptSets(WarpLogits(probs, GenerateOptions{TopK: 2, TopP: 0.7})))
	assert.Equal(t, [][]int64{{1}}, keptSets(WarpLogits(probs, GenerateOptions{TopK: 2, TopP: 0.6})))

	ref := loadRef(t, "llama_parity.safetensors")
	got := WarpLogits(ref["filters.logits"], GenerateOptions{Temperature: 0.7, TopK: 20, TopP: 0.9})
	kept := got.MustGt(ts.FloatScalar(math.Inf(-1)), false).MustTotype(gotch.Int64, true).Int64Values()
	want := ref["filters.kept"].MustTotype(gotch.Int64, false).Int64Values()
	assert.Equal(t, want, kept)
	n := 0
	for _, k := range want {
		n += int(k)
	}
	assert.True(t, n > 4 && n < 4*20, "the fixture keeps some tokens of each row and removes others (%d kept)", n)
}

// The sampler is seeded: a seed repeats its tokens; it draws only kept
// tokens, and every kept token in time; top-k 1 sampling is greedy.
func TestSamplerSeeded(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	logits := FromSlice([]float32{2, 0.5, 1.5, -1, 1, 0.2}, []int64{1, 6}, gotch.CPU)
	warped := TopKWarp(logits, 3) // tokens 0, 2, 4
	draw := func(seed uint64) []int64 {
		sm := NewSampler(seed)
		var out []int64
		for range 200 {
			out = append(out, sm.Sample(warped)[0])
		}
		return out
	}
	a, b := draw(1), draw(1)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, draw(2))
	seen := map[int64]int{}
	for _, x := range a {
		seen[x]++
	}
	assert.Len(t, seen, 3)
	for _, x := range []int64{0, 2, 4} {
		assert.Positive(t, seen[x], "token %d", x)
	}
	assert.Greater(t, seen[0], seen[4], "the likeliest token is drawn most")

	ref := loadRef(t, "llama_parity.safetensors")
	l, _ := openLlama(t, "testdata/llama_gqa", "")
	ids, mask := ref["gqa.input_ids"], ref["gqa.attention_mask"]
	greedy, err := l.Model.Generate(ids, mask, GenerateOptions{MaxNewTokens: 5})
	require.NoError(t, err)
	top1, err := l.Model.Generate(ids, mask, GenerateOptions{MaxNewTokens: 5, DoSample: true, TopK: 1, Seed: 9})
	require.NoError(t, err)
	assert.Equal(t, greedy.Tokens, top1.Tokens)
	o := GenerateOptions{MaxNewTokens: 5, DoSample: true, Temperature: 1.5, TopP: 0.95, Seed: 3}
	s1, err := l.Model.Generate(ids, mask, o)
	require.NoError(t, err)
	s2, err := l.Model.Generate(ids, mask, o)
	require.NoError(t, err)
	assert.Equal(t, s1.Tokens, s2.Tokens)
}

// Bad options and inputs are errors naming them.
func TestGenerateErrors(t *testing.T) {
	s := ts.NewScope()
	defer s.Close()
	l, _ := openLlama(t, "testdata/llama_gqa", "")
	ids := FromSlice([]int64{5, 6, 0}, []int64{1, 3}, gotch.CPU)
	right := FromSlice([]int64{1, 1, 0}, []int64{1, 3}, gotch.CPU)
	for _, c := range []struct {
		o   GenerateOptions
		msg string
	}{
		{GenerateOptions{}, "MaxNewTokens 0, want at least 1"},
		{GenerateOptions{MaxNewTokens: 2, Temperature: -1}, "Temperature -1"},
		{GenerateOptions{MaxNewTokens: 2, TopP: 1.5}, "TopP 1.5"},
		{GenerateOptions{MaxNewTokens: 2, TopK: -3}, "TopK -3"},
		{GenerateOptions{MaxNewTokens: 2, DoSample: true}, "row 0 ends in padding: a decoder-only model needs its prompts padded on the left"},
	} {
		_, err := l.Model.Generate(ids, right, c.o)
		assert.ErrorContains(t, err, c.msg)
	}
	_, err := l.Model.Generate(FromSlice([]int64{5, 600}, []int64{1, 2}, gotch.CPU), nil, GenerateOptions{MaxNewTokens: 1})
	assert.ErrorContains(t, err, "row 0 has token 600 outside the vocabulary of 97")
	_, err = l.Model.Generate(ids, FromSlice([]int64{1, 1}, []int64{1, 2}, gotch.CPU), GenerateOptions{MaxNewTokens: 1})
	assert.ErrorContains(t, err, "attention_mask of shape [1 2], input_ids [1 3]")
}
