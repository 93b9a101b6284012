package icae

import (
	"fmt"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/reprolab/repro/torchmods"
)

// GenerateFrom continues prefix embeddings [B, P, hidden] (no padding: the
// rows share their length) with the decoder, the frozen LLM without LoRA,
// as the official inference scripts do: one pass over the prefix that
// fills a key/value cache, then one token at a time, each fed back through
// embed_tokens. Decoding is greedy unless o.DoSample, with o's
// temperature, top-k and top-p (torchmods' warpers and sampler). A row ends
// at one of o.StopTokens, which is not part of its output (the official
// loop breaks before appending EOS), or after o.MaxNewTokens.
func (m *Model) GenerateFrom(prefix *ts.Tensor, o torchmods.GenerateOptions) [][]int64 {
	if o.MaxNewTokens < 1 {
		panic(fmt.Errorf("icae: generate %d tokens, want at least 1", o.MaxNewTokens))
	}
	b := prefix.MustSize()[0]
	cache := torchmods.NewLlamaCache(m.LM)
	defer cache.Drop()
	sampler := torchmods.NewSampler(o.Seed)
	pick := func(h *ts.Tensor) []int64 {
		n := h.MustSize()[1]
		logits := m.LM.Logits(h.MustNarrow(1, n-1, 1, false)).MustSelect(1, 0, true).MustTotype(gotch.Float, true)
		if !o.DoSample {
			return logits.MustArgmax([]int64{-1}, false, true).Int64Values(true)
		}
		return sampler.Sample(torchmods.WarpLogits(logits, o))
	}
	out := make([][]int64, b)
	done := make([]bool, b)
	var next []int64
	step := func(first bool) {
		s := ts.NewScope()
		defer s.Close()
		if first {
			next = pick(m.HiddenCached(prefix, cache))
			return
		}
		ids := torchmods.FromSlice(next, []int64{b, 1}, prefix.MustDevice())
		next = pick(m.LM.Hidden(torchmods.LlamaInput{IDs: ids, Cache: cache}, false))
	}
	ts.NoGrad(func() {
		for i := range o.MaxNewTokens {
			step(i == 0)
			all := true
			for r, t := range next {
				if done[r] {
					continue
				}
				if slices.Contains(o.StopTokens, t) {
					done[r] = true
					continue
				}
				out[r] = append(out[r], t)
				all = false
			}
			if all {
				break
			}
		}
	})
	return out
}

// PrefixIDs are a decoder prompt for contexts of n tokens: the slot
// placeholders, then after (the [AE] token, say, or [FT] and a prompt).
func (m *Model) PrefixIDs(n int, after ...int64) []int64 {
	return append(slices.Repeat([]int64{m.Layout.MemID(0)}, m.SlotCount(n)), after...)
}
